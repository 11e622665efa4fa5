//! A synthetic village with realistic survey data, and the 2G scenario: a phone collects it
//! offline, pushes it through a slow, lossy link, a second phone pulls it from scratch through
//! the same link, and everything the server holds is compared with what the phones hold.
//! Used by `tests/tests/slow_link.rs` (a short village, in CI) and
//! `benches/village_2g.rs` (100 households, for docs/benchmarks.md).

use crate::slow_link::{LinkProfile, SlowLink};
use crate::{Backend, SMALL_TREE, TestApp};
use hamlet_client::{Client, ClientOptions, RetryPolicy};
use hamlet_shared::records::RecordType::{Household, Member};
use hamlet_shared::{Role, UnitId};
use serde_json::{Map, Value, json};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

const FAMILY: [&str; 14] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Lò", "Ma", "Nông", "Triệu", "Hà", "Lục", "Sầm",
];
const MIDDLE: [&str; 8] = ["Văn", "Thị", "Đức", "Ngọc", "Minh", "Thu", "Quang", "Kim"];
const GIVEN: [&str; 32] = [
    "An", "Bình", "Chiến", "Dung", "Giang", "Hạnh", "Khánh", "Lan", "Mai", "Nam", "Oanh", "Phúc", "Quyết",
    "Sơn", "Tâm", "Uyên", "Vinh", "Xuân", "Yến", "Bảo", "Cường", "Dũng", "Hiếu", "Hùng", "Linh", "Long",
    "Nga", "Nhung", "Phương", "Thảo", "Trang", "Tuấn",
];

/// A name drawn from the lists by a small deterministic generator (real names vary; a synthetic
/// village that repeats eight names would compress better than any real one).
fn name(seed: &mut u64, family: &str) -> String {
    let mut next = |n: usize| {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as usize % n
    };
    format!(
        "{family} {} {}",
        MIDDLE[next(MIDDLE.len())],
        GIVEN[next(GIVEN.len())]
    )
}

/// Household `n` of `village`, every survey field filled, and its four members without their
/// `household_id` (the caller knows the household's id).
pub fn household(village: UnitId, n: usize) -> (Map<String, Value>, Vec<Map<String, Value>>) {
    let mut seed = n as u64 + 1;
    let family = FAMILY[(n * 7 + 3) % FAMILY.len()];
    let obj = |v: Value| v.as_object().cloned().expect("an object");
    let broadband = ["yes", "no"][n % 2];
    let household = obj(
        json!({ "village_id": village, "head_name": name(&mut seed, family),
        "address": format!("Xóm {}, thôn Nà Lầu", n % 12 + 1), "fixed_broadband": broadband,
        "surveyed_on": format!("2026-03-{:02}", n % 28 + 1) }),
    );
    let members = [(1971, "male"), (1975, "female"), (2001, "female"), (2012, "male")]
        .into_iter()
        .enumerate()
        .map(|(k, (year, sex))| {
            let tri = |i: usize| ["yes", "no", "unknown"][(n * 5 + k * 3 + i) % 3];
            obj(json!({ "full_name": name(&mut seed, family),
                "birth_year": year + (n % 9) as i32, "sex": sex, "owns_smartphone": tri(0),
                "has_transaction_account": tri(1), "vneid_level2": tri(2),
                "uses_online_public_services": tri(3), "uses_cashless_payment": tri(4),
                "has_digital_signature": tri(5) }))
        })
        .collect();
    (household, members)
}

/// What one run of [`sync_village`] took.
#[derive(Debug, Clone)]
pub struct VillageReport {
    pub households: usize,
    pub records: usize,
    /// Login attempts of both phones (a login is not retried by the client: the person taps
    /// again).
    pub login_attempts: u32,
    /// The collector's first push of the whole village.
    pub push: Duration,
    /// The collector's syncs after each round of edits, together.
    pub edits: Duration,
    /// Retries of the collector's requests (the push and the edit rounds).
    pub push_retries: u32,
    /// The second phone's pull from scratch.
    pub pull: Duration,
    pub pull_retries: u32,
}

/// Households whose address each round of edits changes.
const EDITS_PER_ROUND: usize = 5;

const PW: &str = "a-good-long-password";

/// A patient phone: a retry budget for a bad afternoon, short waits so a benchmark measures the
/// link more than the back-off.
fn patient() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 30,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

fn phone(
    base: &str,
    dir: &tempfile::TempDir,
    user: &str,
    retries: &Rc<Cell<u32>>,
    logins: &mut u32,
) -> Client {
    let mut c = Client::open_with(&dir.path().join("phone.db"), Some(base), patient()).expect("store");
    let counter = retries.clone();
    c.on_retry(move |_| counter.set(counter.get() + 1));
    for _ in 0..30 {
        *logins += 1;
        if c.login(user, PW, Some("village phone")).is_ok() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{user} could not log in through the link in 30 attempts");
}

/// Records as (type, id, deleted, fields), sorted: what two stores must agree on.
fn snapshot(c: &mut Client) -> Vec<(String, uuid::Uuid, bool, Map<String, Value>)> {
    let mut all: Vec<_> = c
        .records()
        .expect("records")
        .into_iter()
        .map(|r| (r.record_type.as_str().to_owned(), r.id, r.deleted, r.fields))
        .collect();
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    all
}

/// (numerator, denominator, unknown) of a yes/no/unknown answer over `rows`.
fn tally<'a>(rows: impl Iterator<Item = &'a Map<String, Value>>, field: &str) -> (i64, i64, i64) {
    rows.fold((0, 0, 0), |(yes, known, unknown), r| match r[field].as_str() {
        Some("yes") => (yes + 1, known + 1, unknown),
        Some("no") => (yes, known + 1, unknown),
        _ => (yes, known, unknown + 1),
    })
}

/// Syncs a village of `households` through a link with `profile`, then `edit_rounds` rounds of
/// a few edits each synced at once (every sync opens new connections, so it meets the link's
/// cuts afresh), then proves that the server's records and aggregates equal what the phones
/// hold and that every mutation was applied exactly once. Panics on any difference.
pub fn sync_village(
    backend: Backend,
    households: usize,
    edit_rounds: usize,
    profile: LinkProfile,
) -> VillageReport {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("collector", PW, Role::Enumerator, &["V1"]);
    app.add_user("reader", PW, Role::Enumerator, &["V1"]);
    app.add_user("admin", PW, Role::Admin, &["VN"]);
    let v1 = app.unit_id("V1");
    let link = SlowLink::start(([127, 0, 0, 1], app.port).into(), profile);
    let mut logins = 0;

    // The collecting phone logs in while in coverage, then surveys the village offline.
    let (dir_a, push_retries) = (tempfile::tempdir().unwrap(), Rc::new(Cell::new(0)));
    let mut a = phone(&link.base(), &dir_a, "collector", &push_retries, &mut logins);
    let mut household_ids = Vec::with_capacity(households);
    for n in 0..households {
        let (h, members) = household(v1, n);
        let id = a.create(Household, h).expect("household");
        household_ids.push(id);
        for mut m in members {
            m.insert("household_id".to_owned(), json!(id));
            a.create(Member, m).expect("member");
        }
    }
    let started = Instant::now();
    let pushed = a.push().expect("the push gets through");
    let push = started.elapsed();
    assert_eq!(pushed.rejected, 0, "{pushed:?}");
    assert!(a.pending().unwrap().is_empty(), "every mutation acknowledged");
    a.pull().expect("the collector pulls its own records' versions");

    // Back in the village: a few households corrected per round, synced each time.
    let mut versions: HashMap<uuid::Uuid, i64> = HashMap::new();
    let started = Instant::now();
    for round in 0..edit_rounds {
        for k in 0..EDITS_PER_ROUND.min(households) {
            let id = household_ids[(round * EDITS_PER_ROUND + k) % households];
            let address = json!({ "address": format!("Xóm {k}, sửa lần {round}") });
            a.edit(Household, id, address.as_object().cloned().unwrap())
                .expect("edit");
            *versions.entry(id).or_insert(1) += 1;
        }
        let report = a.sync().expect("the round gets through");
        assert_eq!(report.push.rejected, 0, "{report:?}");
    }
    let edits = started.elapsed();

    // A second phone of the team pulls the village from scratch.
    let (dir_b, pull_retries) = (tempfile::tempdir().unwrap(), Rc::new(Cell::new(0)));
    let mut b = phone(&link.base(), &dir_b, "reader", &pull_retries, &mut logins);
    let started = Instant::now();
    b.pull().expect("the pull gets through");
    let pull = started.elapsed();
    drop(link);

    // The server holds exactly what the phones hold: a third phone reads it without the link.
    let dir_c = tempfile::tempdir().unwrap();
    let mut c = phone(&app.base, &dir_c, "reader", &Rc::new(Cell::new(0)), &mut 0);
    c.pull().expect("direct pull");
    let (on_a, on_b, on_server) = (snapshot(&mut a), snapshot(&mut b), snapshot(&mut c));
    assert_eq!(on_server.len(), households * 5, "every record stored once");
    assert!(
        on_a == on_server,
        "the collector's records differ from the server's"
    );
    assert!(on_b == on_server, "the reader's records differ from the server's");
    for r in c.records().unwrap() {
        let expected = versions.get(&r.id).copied().unwrap_or(1);
        assert_eq!(
            r.version, expected,
            "{:?} {}: a mutation applied twice or lost",
            r.record_type, r.id
        );
    }

    // And the aggregates are the phone's records counted.
    let members: Vec<&Map<String, Value>> = on_a.iter().filter(|r| r.0 == "member").map(|r| &r.3).collect();
    let year = time::OffsetDateTime::now_utc().year() as i64;
    let adults: Vec<&Map<String, Value>> = members
        .iter()
        .copied()
        .filter(|m| year - m["birth_year"].as_i64().unwrap() >= 15)
        .collect();
    let admin = crate::Phone::login(&app, "admin", PW);
    app.fold();
    for unit in ["V1", "C1", "P1", "VN"] {
        let (status, agg) = app.get(
            &format!("/api/v1/aggregates/{}", app.unit_id(unit)),
            Some(&admin.token),
        );
        assert_eq!(status, 200, "{agg}");
        assert_eq!(agg["households"], households, "{unit}");
        assert_eq!(agg["members"], members.len(), "{unit}");
        let indicator = |key: &str| {
            let i = agg["indicators"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["key"] == key)
                .unwrap_or_else(|| panic!("{key} in {agg}"));
            (
                i["numerator"].as_i64().unwrap(),
                i["denominator"].as_i64().unwrap(),
                i["unknown"].as_i64().unwrap(),
            )
        };
        assert_eq!(
            indicator("population_with_smartphone"),
            tally(members.iter().copied(), "owns_smartphone"),
            "{unit}"
        );
        assert_eq!(
            indicator("adults_with_transaction_account"),
            tally(adults.iter().copied(), "has_transaction_account"),
            "{unit}"
        );
    }
    app.assert_consistent();
    VillageReport {
        households,
        records: on_server.len(),
        login_attempts: logins,
        push,
        edits,
        push_retries: push_retries.get(),
        pull,
        pull_retries: pull_retries.get(),
    }
}
