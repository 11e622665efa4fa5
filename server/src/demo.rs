//! `hamlet demo seed`: a synthetic province with communes, villages, households, members and
//! demo accounts, so a fresh server has something to show. Deterministic: the same seed gives
//! the same data. Never run it on a production database.

use crate::auth::service::{UserDraft, insert_user};
use crate::clock::now_us;
use crate::db::records::{HouseholdRow, MemberRow};
use crate::db::units::{ClosureRow, UnitRow};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use hamlet_shared::{RecordType, Role, UnitId, UnitLevel, Username};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const DEMO_PROVINCE_CODE: &str = "DEMO";
pub const DEMO_PASSWORD: &str = "demo-password-2025";

const COMMUNES: [&str; 3] = ["Xã Nà Hang", "Xã Thượng Lâm", "Xã Khuôn Hà"];
const VILLAGES: [&str; 4] = ["Thôn Nà Lầu", "Bản Khuổi Phầy", "Thôn Bản Tấng", "Bản Nà Mỏ"];
const FAMILY: [&str; 8] = ["Nguyễn", "Hoàng", "Ma", "Quan", "Triệu", "Nông", "Lương", "Hà"];
const GIVEN: [&str; 10] = [
    "Văn Thắng",
    "Thị Hoa",
    "Văn Lâm",
    "Thị Lan",
    "Đức Minh",
    "Thị Mai",
    "Văn Sơn",
    "Thị Hằng",
    "Văn Tùng",
    "Thị Nga",
];

/// What the seed created.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub province_id: UnitId,
    pub villages: usize,
    pub households: usize,
    pub members: usize,
    /// `(username, role)` of the demo accounts; all share [`DEMO_PASSWORD`].
    pub users: Vec<(String, Role)>,
}

fn tri(rng: &mut StdRng, p_yes: f64, p_unknown: f64) -> String {
    let x: f64 = rng.random();
    if x < p_unknown {
        "unknown"
    } else if x < p_unknown + p_yes {
        "yes"
    } else {
        "no"
    }
    .to_owned()
}

fn unit_row(code: &str, name: &str, level: UnitLevel, parent: Option<&str>, now: i64) -> UnitRow {
    UnitRow {
        id: UnitId::new().to_string(),
        code: Some(code.to_owned()),
        name: name.to_owned(),
        level: level.as_str().to_owned(),
        parent_id: parent.map(str::to_owned),
        created_us: now,
        retired_us: None,
    }
}

/// Seeds the demo province under the live `VN` country (created if missing). `hash` is the
/// demo password hashed with the server's parameters. Refuses when the province exists.
pub fn seed(conn: &mut DbConn, seed: u64, hash: String) -> AppResult<DemoReport> {
    crate::db::tx::write(conn, |conn| {
        if db::units::find_live_by_code(conn, DEMO_PROVINCE_CODE)?.is_some() {
            return Err(AppError::Conflict(
                "the demo province already exists; nothing was changed".to_owned(),
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let now = now_us();
        let year = time::OffsetDateTime::now_utc().year();
        let mut units = Vec::new();
        let mut closure = Vec::new();
        let mut add = |row: UnitRow, parent_closure: &[ClosureRow], closure: &mut Vec<ClosureRow>| {
            let own = crate::units::import::closure_rows(&row.id, parent_closure);
            closure.extend(own.iter().cloned());
            units.push(row);
            own
        };
        let country_closure = match db::units::find_live_by_code(conn, "VN")? {
            Some(vn) => db::units::ancestors_of(conn, &[vn.id])?,
            None => add(
                unit_row("VN", "Việt Nam", UnitLevel::Country, None, now),
                &[],
                &mut closure,
            ),
        };
        let country_id = country_closure
            .iter()
            .find(|c| c.depth == 0)
            .map(|c| c.descendant_id.clone())
            .unwrap_or_default();
        let province = unit_row(
            DEMO_PROVINCE_CODE,
            "Tỉnh Mẫu (demo)",
            UnitLevel::Province,
            Some(&country_id),
            now,
        );
        let province_id = province.id.clone();
        let province_closure = add(province, &country_closure, &mut closure);
        let mut villages = Vec::new();
        for (c, commune_name) in COMMUNES.iter().enumerate() {
            let commune = unit_row(
                &format!("DEMO-{:02}", c + 1),
                commune_name,
                UnitLevel::Commune,
                Some(&province_id),
                now,
            );
            let commune_id = commune.id.clone();
            let commune_closure = add(commune, &province_closure, &mut closure);
            for (v, village_name) in VILLAGES.iter().enumerate() {
                let village = unit_row(
                    &format!("DEMO-{:02}-{:02}", c + 1, v + 1),
                    village_name,
                    UnitLevel::Village,
                    Some(&commune_id),
                    now,
                );
                villages.push(village.id.clone());
                add(village, &commune_closure, &mut closure);
            }
        }
        db::units::insert_all(conn, &units, &closure)?;

        // Villages differ: remote ones lag behind, as in the field reports.
        let mut households = Vec::new();
        let mut members = Vec::new();
        for (i, village) in villages.iter().enumerate() {
            let reach = 0.45 + 0.4 * (i as f64 / villages.len() as f64);
            for _ in 0..rng.random_range(12..28) {
                let family = FAMILY[rng.random_range(0..FAMILY.len())];
                let household_id = uuid::Uuid::now_v7().to_string();
                households.push(HouseholdRow {
                    id: household_id.clone(),
                    village_id: village.clone(),
                    head_name: format!("{family} {}", GIVEN[rng.random_range(0..GIVEN.len())]),
                    address: None,
                    fixed_broadband: tri(&mut rng, reach * 0.4, 0.1),
                    surveyed_on: None,
                    version: 1,
                    clocks: "{}".to_owned(),
                    deleted_us: None,
                    created_us: now,
                    updated_us: now,
                });
                for _ in 0..rng.random_range(1..7) {
                    let birth_year = year - rng.random_range(0..85);
                    let adult = year - birth_year >= 15;
                    members.push(MemberRow {
                        id: uuid::Uuid::now_v7().to_string(),
                        household_id: household_id.clone(),
                        village_id: Some(village.clone()),
                        full_name: format!("{family} {}", GIVEN[rng.random_range(0..GIVEN.len())]),
                        birth_year,
                        sex: Some(if rng.random_bool(0.5) { "male" } else { "female" }.to_owned()),
                        owns_smartphone: tri(&mut rng, if adult { reach + 0.1 } else { 0.2 }, 0.03),
                        has_transaction_account: tri(&mut rng, if adult { reach } else { 0.05 }, 0.05),
                        vneid_level2: tri(&mut rng, if adult { reach } else { 0.0 }, 0.1),
                        uses_online_public_services: tri(&mut rng, reach * 0.6, 0.1),
                        uses_cashless_payment: tri(&mut rng, reach * 0.7, 0.1),
                        has_digital_signature: tri(&mut rng, reach * 0.1, 0.1),
                        version: 1,
                        clocks: "{}".to_owned(),
                        pushed_by: None,
                        deleted_us: None,
                        created_us: now,
                        updated_us: now,
                    });
                }
            }
        }
        db::records::insert_households(conn, &households)?;
        db::records::insert_members(conn, &members)?;
        // Counted and pullable like pushed records.
        db::tallies::add_to_villages(
            conn,
            &crate::aggregates::tallies::of_bundles(&households, &members),
        )?;
        let changes: Vec<_> = households
            .iter()
            .map(|h| (h.village_id.clone(), RecordType::Household, h.id.clone()))
            .chain(members.iter().map(|m| {
                let village = m.village_id.clone().unwrap_or_default();
                (village, RecordType::Member, m.id.clone())
            }))
            .collect();
        db::sync::insert_changes(conn, &crate::sync::feed_rows(&changes, now))?;

        let province_uid: UnitId = province_id
            .parse()
            .map_err(|_| AppError::Internal("bad id".to_owned()))?;
        let first_village: UnitId = villages[0]
            .parse()
            .map_err(|_| AppError::Internal("bad id".to_owned()))?;
        let accounts = [
            ("demo-admin", Role::Admin, province_uid),
            ("demo-viewer", Role::Viewer, province_uid),
            ("demo-enumerator", Role::Enumerator, first_village),
        ];
        let mut users = Vec::new();
        for (name, role, scope) in accounts {
            if db::auth::user_by_username(conn, name)?.is_some() {
                continue;
            }
            let draft = UserDraft {
                username: Username::parse(name).map_err(|d| AppError::Internal(d.message))?,
                password: DEMO_PASSWORD.to_owned(),
                role,
                scope: vec![scope],
            };
            insert_user(conn, &draft, hash.clone(), None)?;
            users.push((name.to_owned(), role));
        }
        Ok(DemoReport {
            province_id: province_uid,
            villages: villages.len(),
            households: households.len(),
            members: members.len(),
            users,
        })
    })
}
