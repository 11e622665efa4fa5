//! A unit's overview for the dashboard: its path, its own figures and its children's, sorted by
//! any indicator. The figures are the API's (same suppression for viewers).

use super::{AggregateSettings, Request};
use crate::auth::{Principal, authz::scope_covers};
use crate::db::DbConn;
use crate::error::AppResult;
use hamlet_shared::aggregates::{Aggregate, INDICATOR_KEYS};
use hamlet_shared::{PathEntry, UnitId};

/// What a children table can be sorted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Households,
    Members,
    /// The ratio of one of `INDICATOR_KEYS`.
    Indicator(&'static str),
}

impl SortKey {
    /// `name`, `households`, `members` or an indicator key; anything else is `name`.
    pub fn parse(s: Option<&str>) -> Self {
        match s.unwrap_or("name") {
            "households" => Self::Households,
            "members" => Self::Members,
            other => INDICATOR_KEYS
                .iter()
                .find(|k| **k == other)
                .map_or(Self::Name, |k| Self::Indicator(k)),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Households => "households",
            Self::Members => "members",
            Self::Indicator(k) => k,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Overview {
    /// Root first, ending with the unit; `true` where the entry lies in the caller's scope.
    pub path: Vec<(PathEntry, bool)>,
    pub own: Aggregate,
    pub children: Vec<Aggregate>,
}

/// The unit's path, figures and children's figures, children sorted by `sort`. Units with no
/// ratio (no answers, or suppressed) sort last whichever the direction.
pub fn overview(
    conn: &mut DbConn,
    principal: &Principal,
    id: UnitId,
    req: &Request,
    settings: &AggregateSettings,
    sort: &SortKey,
    descending: bool,
) -> AppResult<Overview> {
    let own = super::aggregate(conn, principal, id, req, settings)?;
    let mut children = super::children(conn, principal, id, req, settings)?.children;
    let unit = crate::units::get_with_path(conn, id)?;
    let mut path = Vec::with_capacity(unit.path.len());
    for entry in unit.path {
        let covered = scope_covers(conn, &principal.scope, &[entry.id])?;
        path.push((entry, covered));
    }
    sort_children(&mut children, sort, descending);
    Ok(Overview { path, own, children })
}

/// Sorts in place; ties and names compare by name.
pub fn sort_children(children: &mut [Aggregate], sort: &SortKey, descending: bool) {
    let ratio = |a: &Aggregate, key: &str| a.indicators.iter().find(|i| i.key == key).and_then(|i| i.ratio);
    children.sort_by(|a, b| {
        use std::cmp::Ordering;
        let primary = match sort {
            SortKey::Name => Ordering::Equal,
            SortKey::Households => a.households.cmp(&b.households),
            SortKey::Members => a.members.cmp(&b.members),
            SortKey::Indicator(k) => match (ratio(a, k), ratio(b, k)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                // No figure sorts last in both directions (flipped below when descending).
                (Some(_), None) => {
                    if descending {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (None, Some(_)) => {
                    if descending {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (None, None) => Ordering::Equal,
            },
        };
        let primary = if descending { primary.reverse() } else { primary };
        let by_name = a.unit.name.cmp(&b.unit.name);
        let by_name = if descending && *sort == SortKey::Name {
            by_name.reverse()
        } else {
            by_name
        };
        primary.then(by_name)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamlet_shared::UnitLevel;
    use hamlet_shared::aggregates::{Indicator, UnitRef};

    fn agg(name: &str, ratio: Option<f64>) -> Aggregate {
        Aggregate {
            unit: UnitRef {
                id: UnitId::new(),
                name: name.to_owned(),
                level: UnitLevel::Village,
            },
            as_of: String::new(),
            reference_year: 2026,
            adult_age: 15,
            households: 1,
            members: 1,
            indicators: vec![Indicator {
                key: "population_with_smartphone".to_owned(),
                numerator: 0,
                denominator: 0,
                unknown: 0,
                ratio,
            }],
            suppressed: false,
        }
    }

    #[test]
    fn missing_ratios_sort_last_both_ways() {
        let key = SortKey::parse(Some("population_with_smartphone"));
        let mut v = vec![agg("a", None), agg("b", Some(0.9)), agg("c", Some(0.1))];
        sort_children(&mut v, &key, false);
        let names: Vec<&str> = v.iter().map(|a| a.unit.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        sort_children(&mut v, &key, true);
        let names: Vec<&str> = v.iter().map(|a| a.unit.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert_eq!(SortKey::parse(Some("drop table")), SortKey::Name);
    }
}
