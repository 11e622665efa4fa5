//! What the simulated phones will send, generated up front from a seed, and what the server
//! must end up holding.

use crate::Args;
use crate::setup::Site;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The member answers the aggregates count, in this order.
pub const MEMBER_TRI_FIELDS: [&str; 6] = [
    "owns_smartphone",
    "has_transaction_account",
    "vneid_level2",
    "uses_online_public_services",
    "uses_cashless_payment",
    "has_digital_signature",
];

pub struct HouseholdPlan {
    pub id: Uuid,
    pub village: usize,
    pub device: usize,
    pub head_name: String,
    pub address: String,
    pub fixed_broadband: &'static str,
    /// The version the server gave it (0 until pushed).
    pub version: i64,
}

pub struct MemberPlan {
    pub id: Uuid,
    /// Index into [`Plan::households`].
    pub household: usize,
    pub full_name: String,
    pub birth_year: i32,
    pub sex: &'static str,
    /// Answers to [`MEMBER_TRI_FIELDS`].
    pub answers: [&'static str; 6],
    pub deleted: bool,
    pub version: i64,
}

/// One thing a phone sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Household(usize),
    Member(usize),
    DeleteMember(usize),
}

/// The same member's `owns_smartphone` set to different values on two phones of its village,
/// from the same base version.
pub struct EditPair {
    pub member: usize,
    pub devices: [usize; 2],
    pub values: [&'static str; 2],
}

pub struct Plan {
    pub households: Vec<HouseholdPlan>,
    pub members: Vec<MemberPlan>,
    /// Per device, in sending order.
    pub streams: Vec<Vec<Item>>,
    pub edits: Vec<EditPair>,
}

fn tri(rng: &mut StdRng, yes: f64, no: f64) -> &'static str {
    let x: f64 = rng.random();
    if x < yes {
        "yes"
    } else if x < yes + no {
        "no"
    } else {
        "unknown"
    }
}

const FAMILY: [&str; 8] = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vàng", "Lò", "Hà"];
const GIVEN: [&str; 8] = [
    "Thị Lan",
    "Văn Minh",
    "Thị Hoa",
    "A Páo",
    "Thị Mai",
    "Văn Dũng",
    "Seo Mỷ",
    "Đức Anh",
];

fn name(rng: &mut StdRng) -> String {
    format!(
        "{} {}",
        FAMILY[rng.random_range(0..FAMILY.len())],
        GIVEN[rng.random_range(0..GIVEN.len())]
    )
}

impl Plan {
    pub fn generate(args: &Args, site: &Site) -> Self {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let this_year = time::OffsetDateTime::now_utc().year();
        let devices = site.devices.len();
        let mut households = Vec::with_capacity(args.households);
        let mut members = Vec::new();
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); args.households];
        for (h, owned_by_h) in owned.iter_mut().enumerate() {
            let device = h % devices;
            households.push(HouseholdPlan {
                id: Uuid::now_v7(),
                village: site.devices[device].village,
                device,
                head_name: name(&mut rng),
                address: format!("Xóm {}", rng.random_range(1..20)),
                fixed_broadband: tri(&mut rng, 0.45, 0.45),
                version: 0,
            });
            // 1 to 6 members, about 3.5 on average.
            for _ in 0..rng.random_range(1..=6) {
                owned_by_h.push(members.len());
                members.push(MemberPlan {
                    id: Uuid::now_v7(),
                    household: h,
                    full_name: name(&mut rng),
                    birth_year: rng.random_range(1935..=this_year),
                    sex: if rng.random_bool(0.5) { "female" } else { "male" },
                    answers: [
                        tri(&mut rng, 0.72, 0.23),
                        tri(&mut rng, 0.55, 0.35),
                        tri(&mut rng, 0.40, 0.45),
                        tri(&mut rng, 0.30, 0.55),
                        tri(&mut rng, 0.35, 0.50),
                        tri(&mut rng, 0.05, 0.80),
                    ],
                    deleted: false,
                    version: 0,
                });
            }
        }

        // Each phone sends its households with their members; some households only after the
        // next batch, so their members arrive first and wait.
        let mut streams = vec![Vec::new(); devices];
        let mut deferred: Vec<Vec<(usize, usize)>> = vec![Vec::new(); devices];
        for (h, hp) in households.iter().enumerate() {
            let d = hp.device;
            let stream: &mut Vec<Item> = &mut streams[d];
            let len = stream.len();
            deferred[d].retain(|&(release, held)| {
                if release <= len {
                    stream.push(Item::Household(held));
                    false
                } else {
                    true
                }
            });
            let late = rng.random_bool(args.out_of_order.clamp(0.0, 1.0));
            if !late {
                stream.push(Item::Household(h));
            }
            stream.extend(owned[h].iter().map(|&m| Item::Member(m)));
            if late {
                deferred[d].push((stream.len() + args.batch, h));
            }
        }
        for (d, held) in deferred.into_iter().enumerate() {
            streams[d].extend(held.into_iter().map(|(_, h)| Item::Household(h)));
        }
        // Deletes come last, once the phone knows the member's version.
        for (m, mp) in members.iter_mut().enumerate() {
            if rng.random_bool(args.deletes.clamp(0.0, 1.0)) {
                mp.deleted = true;
                streams[households[mp.household].device].push(Item::DeleteMember(m));
            }
        }

        // Concurrent edits need a second phone in the village.
        let mut by_village: Vec<Vec<usize>> = vec![Vec::new(); site.villages.len()];
        for (d, dev) in site.devices.iter().enumerate() {
            by_village[dev.village].push(d);
        }
        let mut edits = Vec::new();
        for h in 0..households.len() {
            let phones = &by_village[households[h].village];
            if phones.len() < 2 || !rng.random_bool(args.conflicts.clamp(0.0, 1.0)) {
                continue;
            }
            let Some(&m) = owned[h].iter().find(|&&m| !members[m].deleted) else {
                continue;
            };
            let first = households[h].device;
            let others: Vec<usize> = phones.iter().copied().filter(|&d| d != first).collect();
            let second = others[rng.random_range(0..others.len())];
            let values = if rng.random_bool(0.5) {
                ["yes", "no"]
            } else {
                ["no", "yes"]
            };
            edits.push(EditPair {
                member: m,
                devices: [first, second],
                values,
            });
        }
        Self {
            households,
            members,
            streams,
            edits,
        }
    }

    pub fn mutation_count(&self) -> usize {
        self.streams.iter().map(Vec::len).sum()
    }

    /// The fields of an item's mutation (none for a delete).
    pub fn fields(&self, item: Item, villages: &[hamlet_shared::UnitId]) -> Option<Map<String, Value>> {
        let value = match item {
            Item::Household(h) => {
                let hp = &self.households[h];
                json!({
                    "village_id": villages[hp.village],
                    "head_name": hp.head_name,
                    "address": hp.address,
                    "fixed_broadband": hp.fixed_broadband,
                })
            }
            Item::Member(m) => {
                let mp = &self.members[m];
                let mut v = json!({
                    "household_id": self.households[mp.household].id,
                    "full_name": mp.full_name,
                    "birth_year": mp.birth_year,
                    "sex": mp.sex,
                });
                for (field, answer) in MEMBER_TRI_FIELDS.iter().zip(mp.answers) {
                    v[*field] = json!(answer);
                }
                v
            }
            Item::DeleteMember(_) => return None,
        };
        match value {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn record_of(&self, item: Item) -> (hamlet_shared::RecordType, Uuid) {
        match item {
            Item::Household(h) => (hamlet_shared::RecordType::Household, self.households[h].id),
            Item::Member(m) | Item::DeleteMember(m) => {
                (hamlet_shared::RecordType::Member, self.members[m].id)
            }
        }
    }
}
