//! What a household bundle (a household and its members) contributes to its village's tallies.
//! Pure: a write snapshots the bundles it touches before and after, and the difference is what
//! the counters move by.

use crate::db::records::{HouseholdRow, MemberRow};
use std::collections::BTreeMap;

/// What a tally row counts. Stored by name ([`Metric::as_str`]); in memory a metric is its
/// position here, so counting compares integers, not names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Count of live households (in `yes`).
    Households,
    /// Count of counted members per birth year (in `yes`).
    Members,
    /// Household smartphone state: yes (a live member owns one), no (some member answered,
    /// none owns one), unknown (every live member answered unknown). A household without live
    /// members counts in none of the three.
    HouseholdSmartphone,
    /// The household's `fixed_broadband` answer.
    FixedBroadband,
    /// Member answers, tallied per birth year, named as the member fields (these last six
    /// are [`Metric::MEMBER_TRI`]).
    OwnsSmartphone,
    HasTransactionAccount,
    Vneid2,
    UsesOnlinePublicServices,
    UsesCashlessPayment,
    HasDigitalSignature,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Households,
        Metric::Members,
        Metric::HouseholdSmartphone,
        Metric::FixedBroadband,
        Metric::OwnsSmartphone,
        Metric::HasTransactionAccount,
        Metric::Vneid2,
        Metric::UsesOnlinePublicServices,
        Metric::UsesCashlessPayment,
        Metric::HasDigitalSignature,
    ];

    /// The member answers tallied per birth year: the last six.
    pub const MEMBER_TRI: &'static [Metric] = Metric::ALL.split_at(4).1;

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Households => "households",
            Metric::Members => "members",
            Metric::HouseholdSmartphone => "household_smartphone",
            Metric::FixedBroadband => "fixed_broadband",
            Metric::OwnsSmartphone => "owns_smartphone",
            Metric::HasTransactionAccount => "has_transaction_account",
            Metric::Vneid2 => "vneid_level2",
            Metric::UsesOnlinePublicServices => "uses_online_public_services",
            Metric::UsesCashlessPayment => "uses_cashless_payment",
            Metric::HasDigitalSignature => "has_digital_signature",
        }
    }

    /// The metric of that name, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Birth year used for household-level metrics.
pub const NO_BIRTH_YEAR: i32 = 0;

/// Rows counted by answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub yes: i64,
    pub no: i64,
    pub unknown: i64,
}

impl Count {
    pub fn of(answer: &str, n: i64) -> Self {
        match answer {
            "yes" => Self {
                yes: n,
                ..Self::default()
            },
            "no" => Self {
                no: n,
                ..Self::default()
            },
            _ => Self {
                unknown: n,
                ..Self::default()
            },
        }
    }

    pub fn add(&mut self, other: Count) {
        self.yes += other.yes;
        self.no += other.no;
        self.unknown += other.unknown;
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// Key of one tally row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TallyKey<'a> {
    pub unit: &'a str,
    pub metric: Metric,
    pub birth_year: i32,
}

/// A set of tally rows, by unit and then by (metric, birth year): iterated in (unit, metric,
/// birth year) order, which is the order counters are written in (a fixed lock order, so two
/// writers never deadlock on counters). Adding to a unit already present allocates nothing
/// (a push counts every member seven times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<String, BTreeMap<(Metric, i32), Count>>);

impl Tally {
    pub fn add(&mut self, unit: &str, metric: Metric, birth_year: i32, count: Count) {
        let rows = match self.0.get_mut(unit) {
            Some(rows) => rows,
            None => self.0.entry(unit.to_owned()).or_default(),
        };
        rows.entry((metric, birth_year)).or_default().add(count);
    }

    /// Rows in key order.
    pub fn iter(&self) -> impl Iterator<Item = (TallyKey<'_>, Count)> {
        self.0.iter().flat_map(|(unit, rows)| {
            rows.iter().map(move |(&(metric, birth_year), &c)| {
                (
                    TallyKey {
                        unit,
                        metric,
                        birth_year,
                    },
                    c,
                )
            })
        })
    }

    /// One row's count (zero when absent).
    pub fn get(&self, key: TallyKey<'_>) -> Count {
        self.0
            .get(key.unit)
            .and_then(|rows| rows.get(&(key.metric, key.birth_year)))
            .copied()
            .unwrap_or_default()
    }

    /// The units with rows, in order.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Each unit's rows as a tally of its own.
    pub fn into_units(self) -> impl Iterator<Item = (String, Tally)> {
        self.0.into_iter().map(|(unit, rows)| {
            let one = Tally(BTreeMap::from([(unit.clone(), rows)]));
            (unit, one)
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }

    /// Adds every row of `other` multiplied by `sign` (+1 or -1).
    pub fn merge(&mut self, other: &Tally, sign: i64) {
        for (k, c) in other.iter() {
            let c = Count {
                yes: sign * c.yes,
                no: sign * c.no,
                unknown: sign * c.unknown,
            };
            self.add(k.unit, k.metric, k.birth_year, c);
        }
    }

    /// Drops rows that add up to nothing.
    pub fn without_zeros(mut self) -> Self {
        for rows in self.0.values_mut() {
            rows.retain(|_, c| !c.is_zero());
        }
        self.0.retain(|_, rows| !rows.is_empty());
        self
    }

    /// `after - before`, without zero rows.
    pub fn delta(before: &Tally, after: &Tally) -> Tally {
        let mut d = after.clone();
        d.merge(before, -1);
        d.without_zeros()
    }
}

fn member_answer(m: &MemberRow, metric: Metric) -> &str {
    match metric {
        Metric::OwnsSmartphone => &m.owns_smartphone,
        Metric::HasTransactionAccount => &m.has_transaction_account,
        Metric::Vneid2 => &m.vneid_level2,
        Metric::UsesOnlinePublicServices => &m.uses_online_public_services,
        Metric::UsesCashlessPayment => &m.uses_cashless_payment,
        _ => &m.has_digital_signature,
    }
}

/// Adds what one bundle contributes: nothing unless the household is live; then the household,
/// and each live member attached to it. Members of a deleted household count nowhere.
pub fn add_bundle(out: &mut Tally, household: Option<&HouseholdRow>, members: &[&MemberRow]) {
    let Some(h) = household.filter(|h| h.deleted_us.is_none()) else {
        return;
    };
    let village = h.village_id.as_str();
    out.add(village, Metric::Households, NO_BIRTH_YEAR, Count::of("yes", 1));
    out.add(
        village,
        Metric::FixedBroadband,
        NO_BIRTH_YEAR,
        Count::of(&h.fixed_broadband, 1),
    );
    let live: Vec<&&MemberRow> = members
        .iter()
        .filter(|m| {
            m.deleted_us.is_none() && m.household_id == h.id && m.village_id.as_deref() == Some(village)
        })
        .collect();
    let smartphone = if live.iter().any(|m| m.owns_smartphone == "yes") {
        Some("yes")
    } else if live.iter().any(|m| m.owns_smartphone == "no") {
        Some("no")
    } else if !live.is_empty() {
        Some("unknown")
    } else {
        None
    };
    if let Some(answer) = smartphone {
        out.add(
            village,
            Metric::HouseholdSmartphone,
            NO_BIRTH_YEAR,
            Count::of(answer, 1),
        );
    }
    for m in live {
        out.add(village, Metric::Members, m.birth_year, Count::of("yes", 1));
        for &metric in Metric::MEMBER_TRI {
            out.add(
                village,
                metric,
                m.birth_year,
                Count::of(member_answer(m, metric), 1),
            );
        }
    }
}

/// Tallies of many bundles: `members` may hold members of any of `households`.
pub fn of_bundles<'a>(
    households: impl IntoIterator<Item = &'a HouseholdRow>,
    members: impl IntoIterator<Item = &'a MemberRow>,
) -> Tally {
    let mut by_household: BTreeMap<&str, Vec<&MemberRow>> = BTreeMap::new();
    for m in members {
        by_household.entry(m.household_id.as_str()).or_default().push(m);
    }
    let mut out = Tally::default();
    for h in households {
        add_bundle(
            &mut out,
            Some(h),
            by_household.get(h.id.as_str()).map_or(&[][..], Vec::as_slice),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn household(id: &str, deleted: bool) -> HouseholdRow {
        HouseholdRow {
            id: id.into(),
            village_id: "v".into(),
            head_name: "H".into(),
            address: None,
            fixed_broadband: "no".into(),
            surveyed_on: None,
            version: 1,
            clocks: "{}".into(),
            deleted_us: deleted.then_some(1),
            created_us: 0,
            updated_us: 0,
        }
    }

    fn member(household: &str, year: i32, phone: &str, deleted: bool) -> MemberRow {
        MemberRow {
            id: format!("m{year}{phone}"),
            household_id: household.into(),
            village_id: Some("v".into()),
            full_name: "M".into(),
            birth_year: year,
            sex: None,
            owns_smartphone: phone.into(),
            has_transaction_account: "yes".into(),
            vneid_level2: "unknown".into(),
            uses_online_public_services: "unknown".into(),
            uses_cashless_payment: "unknown".into(),
            has_digital_signature: "unknown".into(),
            version: 1,
            clocks: "{}".into(),
            pushed_by: None,
            deleted_us: deleted.then_some(1),
            created_us: 0,
            updated_us: 0,
        }
    }

    fn get(t: &Tally, metric: Metric, year: i32) -> Count {
        t.get(TallyKey {
            unit: "v",
            metric,
            birth_year: year,
        })
    }

    #[test]
    fn metrics_name_themselves_and_the_members_tri_fields() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("nope"), None);
        use hamlet_shared::records::{FieldKind, RecordType};
        let mut tri: Vec<&str> = RecordType::Member
            .fields()
            .iter()
            .filter(|f| matches!(f.kind, FieldKind::Tri))
            .map(|f| f.name)
            .collect();
        let mut counted: Vec<&str> = Metric::MEMBER_TRI.iter().map(|m| m.as_str()).collect();
        tri.sort_unstable();
        counted.sort_unstable();
        assert_eq!(counted, tri);
    }

    #[test]
    fn household_smartphone_state() {
        let h = household("h", false);
        let t = of_bundles(
            std::slice::from_ref(&h),
            &[member("h", 1990, "no", false), member("h", 2000, "yes", false)],
        );
        assert_eq!(get(&t, Metric::HouseholdSmartphone, 0), Count::of("yes", 1));
        assert_eq!(
            get(&t, Metric::Members, 1990).yes + get(&t, Metric::Members, 2000).yes,
            2
        );
        let t = of_bundles(
            std::slice::from_ref(&h),
            &[
                member("h", 1990, "unknown", false),
                member("h", 2000, "yes", true),
            ],
        );
        assert_eq!(
            get(&t, Metric::HouseholdSmartphone, 0),
            Count::of("unknown", 1),
            "deleted members do not count"
        );
        let t = of_bundles(std::slice::from_ref(&h), &[]);
        assert_eq!(
            get(&t, Metric::HouseholdSmartphone, 0),
            Count::default(),
            "no members: households only"
        );
        assert_eq!(get(&t, Metric::Households, 0).yes, 1);
        let t = of_bundles(&[household("h", true)], &[member("h", 1990, "yes", false)]);
        assert!(t.is_empty(), "a deleted household and its members count nowhere");
    }

    #[test]
    fn deltas() {
        let before = of_bundles(&[household("h", false)], &[member("h", 1990, "no", false)]);
        let after = of_bundles(&[household("h", false)], &[member("h", 1990, "yes", false)]);
        let d = Tally::delta(&before, &after);
        assert_eq!(
            get(&d, Metric::OwnsSmartphone, 1990),
            Count {
                yes: 1,
                no: -1,
                unknown: 0
            }
        );
        assert_eq!(
            get(&d, Metric::HouseholdSmartphone, 0),
            Count {
                yes: 1,
                no: -1,
                unknown: 0
            }
        );
        assert!(get(&d, Metric::Households, 0).is_zero());
        assert!(
            !d.iter().any(|(k, _)| k.metric == Metric::Households),
            "zero rows are dropped"
        );
    }
}
