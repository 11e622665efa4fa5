//! Indicators per unit (contract §7), from counters kept current by every record write.
//!
//! Villages have their own counters; every unit above a village reads its folded totals plus
//! the deltas not folded yet, so a read costs the same for a commune as for the country and is
//! never stale.

pub mod export;
pub mod fold;
pub mod overview;
pub mod tallies;

use crate::auth::{Action, Principal, authorize};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use crate::units::unit_from_row;
use hamlet_shared::aggregates::{Aggregate, ChildAggregates, INDICATOR_KEYS, Indicator, UnitRef};
use hamlet_shared::{ErrorCode, ErrorDetail, Role, Unit, UnitId, UnitLevel};
use std::collections::HashMap;
use tallies::{Count, Metric, NO_BIRTH_YEAR, Tally};

/// Definitions and disclosure rules.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct AggregateSettings {
    /// Members at least this old (reference year minus birth year) are adults.
    #[arg(long = "adult-age", env = "HAMLET_ADULT_AGE", default_value_t = 15)]
    pub adult_age: i32,
    /// Viewers see no ratios for units with fewer households than this.
    #[arg(
        long = "min-cell-households",
        env = "HAMLET_MIN_CELL_HOUSEHOLDS",
        default_value_t = 5
    )]
    pub min_cell_households: i64,
    /// Seconds between folds of counter deltas into the roll-ups (reads are exact either way).
    #[arg(
        long = "fold-interval-secs",
        env = "HAMLET_FOLD_INTERVAL_SECS",
        default_value_t = 2
    )]
    pub fold_interval_secs: u64,
}

impl Default for AggregateSettings {
    fn default() -> Self {
        Self {
            adult_age: 15,
            min_cell_households: 5,
            fold_interval_secs: 2,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub reference_year: i32,
    pub as_of: time::Date,
}

impl Request {
    /// Parses `?year=` and `?as_of=` (defaults: the current UTC year and date).
    pub fn parse(year: Option<i32>, as_of: Option<&str>) -> AppResult<Self> {
        let today = time::OffsetDateTime::now_utc().date();
        let reference_year = year.unwrap_or(today.year());
        if !(1900..=9999).contains(&reference_year) {
            return Err(AppError::invalid(ErrorDetail::field(
                "year",
                ErrorCode::OutOfRange,
                "year must be within 1900..=9999",
            )));
        }
        let as_of = match as_of {
            None => today,
            Some(s) => time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| {
                    AppError::invalid(ErrorDetail::field(
                        "as_of",
                        ErrorCode::InvalidFormat,
                        "as_of must be a date YYYY-MM-DD",
                    ))
                })?,
        };
        Ok(Self {
            reference_year,
            as_of,
        })
    }
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// Indicators of one unit from its tally rows (the rows' unit is ignored).
pub fn indicators(t: &Tally, reference_year: i32, adult_age: i32) -> (i64, i64, Vec<Indicator>) {
    let mut by_metric: HashMap<(Metric, bool), Count> = HashMap::new();
    for (k, c) in t.iter() {
        let adult = k.birth_year != NO_BIRTH_YEAR && reference_year - k.birth_year >= adult_age;
        by_metric.entry((k.metric, false)).or_default().add(c);
        if adult {
            by_metric.entry((k.metric, true)).or_default().add(c);
        }
    }
    let get = |metric: Metric, adults: bool| by_metric.get(&(metric, adults)).copied().unwrap_or_default();
    let indicator = |key: &str| {
        let c = match key {
            "population_with_smartphone" => get(Metric::OwnsSmartphone, false),
            "households_with_smartphone" => get(Metric::HouseholdSmartphone, false),
            "households_with_fixed_broadband" => get(Metric::FixedBroadband, false),
            "adults_with_transaction_account" => get(Metric::HasTransactionAccount, true),
            "adults_with_smartphone" => get(Metric::OwnsSmartphone, true),
            "adults_with_vneid_level2" => get(Metric::Vneid2, true),
            "adults_using_online_public_services" => get(Metric::UsesOnlinePublicServices, true),
            "adults_using_cashless_payment" => get(Metric::UsesCashlessPayment, true),
            _ => get(Metric::HasDigitalSignature, true),
        };
        Indicator {
            key: key.to_owned(),
            numerator: c.yes,
            denominator: c.yes + c.no,
            unknown: c.unknown,
            ratio: ratio(c.yes, c.yes + c.no),
        }
    };
    (
        get(Metric::Households, false).yes,
        get(Metric::Members, false).yes,
        INDICATOR_KEYS.iter().map(|k| indicator(k)).collect(),
    )
}

/// Counters of each given unit, read from one snapshot.
pub fn tallies_of(conn: &mut DbConn, units: &[Unit]) -> AppResult<HashMap<String, Tally>> {
    let (villages, others): (Vec<&Unit>, Vec<&Unit>) =
        units.iter().partition(|u| u.level == UnitLevel::Village);
    let villages: Vec<String> = villages.iter().map(|u| u.id.to_string()).collect();
    let others: Vec<String> = others.iter().map(|u| u.id.to_string()).collect();
    let (a, b) = crate::db::tx::snapshot(conn, |conn| -> AppResult<_> {
        Ok((
            db::tallies::of_villages(conn, &villages)?,
            db::tallies::of_units(conn, &others)?,
        ))
    })?;
    let mut out: HashMap<String, Tally> = units
        .iter()
        .map(|u| (u.id.to_string(), Tally::default()))
        .collect();
    out.extend(a.into_units().chain(b.into_units()));
    Ok(out)
}

/// Builds one unit's response, applying small-cell suppression for viewers.
pub fn build(unit: &Unit, t: &Tally, req: &Request, settings: &AggregateSettings, role: Role) -> Aggregate {
    let (households, members, mut indicators) = indicators(t, req.reference_year, settings.adult_age);
    let suppressed = role == Role::Viewer && households < settings.min_cell_households;
    if suppressed {
        for i in &mut indicators {
            i.ratio = None;
        }
    }
    Aggregate {
        unit: UnitRef {
            id: unit.id,
            name: unit.name.clone(),
            level: unit.level,
        },
        as_of: req.as_of.to_string(),
        reference_year: req.reference_year,
        adult_age: settings.adult_age,
        households,
        members,
        indicators,
        suppressed,
    }
}

/// The tree of a past date, when it differs from today's.
struct PastTree {
    day: String,
    children: HashMap<String, Vec<String>>,
    present: std::collections::HashSet<String>,
}

fn past_tree(conn: &mut DbConn, req: &Request) -> AppResult<Option<PastTree>> {
    let day = req.as_of.to_string();
    if req.as_of >= time::OffsetDateTime::now_utc().date() || !db::units::changed_after(conn, &day)? {
        return Ok(None);
    }
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    let mut present = std::collections::HashSet::new();
    for (unit, parent) in db::units::edges_on(conn, &day)? {
        if let Some(p) = parent {
            children.entry(p).or_default().push(unit.clone());
        }
        present.insert(unit);
    }
    Ok(Some(PastTree {
        day,
        children,
        present,
    }))
}

impl PastTree {
    /// The unit as it is recorded (retired units included), if it existed on the day.
    fn unit(&self, conn: &mut DbConn, id: UnitId) -> AppResult<Unit> {
        let key = id.to_string();
        match db::units::find(conn, &key)? {
            Some(row) if self.present.contains(&key) => unit_from_row(row),
            _ => Err(AppError::not_found(format!("unit {id} on {}", self.day))),
        }
    }

    /// Counters of each root's subtree on the day (current records, past tree).
    fn tallies(&self, conn: &mut DbConn, roots: &[String]) -> AppResult<HashMap<String, Tally>> {
        let mut owner: HashMap<String, String> = HashMap::new();
        for root in roots {
            let mut stack = vec![root.clone()];
            while let Some(u) = stack.pop() {
                stack.extend(self.children.get(&u).into_iter().flatten().cloned());
                owner.insert(u, root.clone());
            }
        }
        let ids: Vec<String> = owner.keys().cloned().collect();
        let villages: Vec<String> = db::units::find_many(conn, &ids)?
            .into_iter()
            .filter(|u| u.level == UnitLevel::Village.as_str())
            .map(|u| u.id)
            .collect();
        let mut out: HashMap<String, Tally> = roots.iter().map(|r| (r.clone(), Tally::default())).collect();
        for (k, c) in db::tallies::of_villages(conn, &villages)?.iter() {
            if let Some(root) = owner.get(k.unit) {
                out.entry(root.clone())
                    .or_default()
                    .add(k.unit, k.metric, k.birth_year, c);
            }
        }
        Ok(out)
    }
}

/// `GET /api/v1/aggregates/{unit_id}`: the subtree of the unit in the tree of `as_of` (today's
/// by default), counted from the current records.
pub fn aggregate(
    conn: &mut DbConn,
    principal: &Principal,
    id: UnitId,
    req: &Request,
    settings: &AggregateSettings,
) -> AppResult<Aggregate> {
    let (unit, t) = match past_tree(conn, req)? {
        Some(tree) => {
            let unit = tree.unit(conn, id)?;
            authorize(conn, principal, Action::ReadAggregates(id))?;
            let t = tree
                .tallies(conn, &[id.to_string()])?
                .remove(&id.to_string())
                .unwrap_or_default();
            (unit, t)
        }
        None => {
            let unit = crate::units::get(conn, id)?;
            authorize(conn, principal, Action::ReadAggregates(id))?;
            let t = tallies_of(conn, std::slice::from_ref(&unit))?
                .remove(&id.to_string())
                .unwrap_or_default();
            (unit, t)
        }
    };
    Ok(build(&unit, &t, req, settings, principal.role))
}

/// `GET /api/v1/aggregates/{unit_id}/children`: a fixed number of queries however many children.
pub fn children(
    conn: &mut DbConn,
    principal: &Principal,
    id: UnitId,
    req: &Request,
    settings: &AggregateSettings,
) -> AppResult<ChildAggregates> {
    let (unit, kids, mut t) = match past_tree(conn, req)? {
        Some(tree) => {
            let unit = tree.unit(conn, id)?;
            authorize(conn, principal, Action::ReadAggregates(id))?;
            let ids = tree.children.get(&id.to_string()).cloned().unwrap_or_default();
            let mut kids: Vec<Unit> = db::units::find_many(conn, &ids)?
                .into_iter()
                .map(unit_from_row)
                .collect::<AppResult<_>>()?;
            kids.sort_by(|a, b| (&a.code, &a.name).cmp(&(&b.code, &b.name)));
            let t = tree.tallies(conn, &ids)?;
            (unit, kids, t)
        }
        None => {
            let unit = crate::units::get(conn, id)?;
            authorize(conn, principal, Action::ReadAggregates(id))?;
            let kids: Vec<Unit> = db::units::children(conn, &id.to_string())?
                .into_iter()
                .map(unit_from_row)
                .collect::<AppResult<_>>()?;
            let t = tallies_of(conn, &kids)?;
            (unit, kids, t)
        }
    };
    let children = kids
        .iter()
        .map(|k| {
            build(
                k,
                &t.remove(&k.id.to_string()).unwrap_or_default(),
                req,
                settings,
                principal.role,
            )
        })
        .collect();
    Ok(ChildAggregates {
        unit: UnitRef {
            id: unit.id,
            name: unit.name,
            level: unit.level,
        },
        children,
    })
}
