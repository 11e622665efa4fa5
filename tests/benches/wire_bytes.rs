//! Bytes on the wire per household (issue: field conditions, item 1): a household with four
//! members, every survey field filled, pushed and pulled, plain and gzip. Counts what crosses
//! the TCP connection: request and status lines, headers (the bearer token included), chunk
//! framing and bodies; not TCP/IP or TLS framing. Sizes do not depend on speed, so this runs
//! unoptimised: `cargo bench -p hamlet-tests --bench wire_bytes --profile dev` (SQLite, in-process
//! server; `postgres` as argument for PostgreSQL, with `HAMLET_TEST_PG_URL`).

use hamlet_shared::Role;
use hamlet_tests::wire::{self, WireResponse};
use hamlet_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PW: &str = "a-good-long-password";
/// Households in the village pushed in one request, and pulled.
const VILLAGE: usize = 100;
/// Households pushed one request each (a phone that syncs after every interview).
const SINGLES: usize = 20;

/// The mutations of one household and its four members (`village::household`'s data).
fn household_mutations(phone: &Phone, village: hamlet_shared::UnitId, n: usize) -> Vec<Value> {
    let h = Uuid::now_v7();
    let (household, members) = hamlet_tests::village::household(village, n);
    let mut out = vec![phone.upsert("household", h, 0, Value::Object(household))];
    for mut m in members {
        m.insert("household_id".to_owned(), json!(h));
        out.push(phone.upsert("member", Uuid::now_v7(), 0, Value::Object(m)));
    }
    out
}

/// One push, plain or gzip both ways (as the reference client sends it).
fn push(base: &str, phone: &Phone, mutations: &[Value], gzip: bool) -> WireResponse {
    let body = json!({ "device_id": phone.device, "mutations": mutations }).to_string();
    let auth = format!("Bearer {}", phone.token);
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let body = if gzip {
        headers.push(("Content-Encoding", "gzip"));
        headers.push(("Accept-Encoding", "gzip"));
        wire::gzip(body.as_bytes())
    } else {
        body.into_bytes()
    };
    let res = wire::request(base, "POST", "/api/v1/sync/push", &headers, Some(&body));
    assert_eq!(res.status, 200, "{}", res.json());
    assert_eq!(res.json()["summary"]["rejected"], 0);
    res
}

/// Walks the pull cursor from `cursor`; returns the bytes each way, the records and the cursor.
fn pull(base: &str, phone: &Phone, cursor: Option<&str>, gzip: bool) -> (usize, usize, usize, String) {
    let auth = format!("Bearer {}", phone.token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if gzip {
        headers.push(("Accept-Encoding", "gzip"));
    }
    let (mut sent, mut received, mut records) = (0, 0, 0);
    let mut cursor = cursor.map(str::to_owned);
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/sync/pull?limit=500&cursor={c}"),
            None => "/api/v1/sync/pull?limit=500".to_owned(),
        };
        let res = wire::request(base, "GET", &path, &headers, None);
        assert_eq!(res.status, 200);
        let body = res.json();
        sent += res.sent;
        received += res.received;
        records += body["changes"].as_array().expect("changes").len();
        cursor = Some(body["cursor"].as_str().expect("cursor").to_owned());
        if body["has_more"] == false {
            return (sent, received, records, cursor.unwrap_or_default());
        }
    }
}

struct Row {
    what: &'static str,
    plain: (usize, usize),
    gzip: (usize, usize),
    households: usize,
}

fn main() {
    let backend = match std::env::args().skip(1).find(|a| !a.starts_with('-')).as_deref() {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("v1team", PW, Role::Enumerator, &["V1"]);
    app.add_user("v2team", PW, Role::Enumerator, &["V2"]);
    let mut rows = Vec::new();

    // A village in one push and households one by one, then a fresh phone pulling them all,
    // then one household more. Plain in one village, gzip in another.
    for (i, gzip, user, code) in [(0, false, "v1team", "V1"), (1, true, "v2team", "V2")] {
        let v1 = app.unit_id(code);
        let phone = Phone::login(&app, user, PW);
        let village = Vec::from_iter((0..VILLAGE).flat_map(|n| household_mutations(&phone, v1, n)));
        let res = push(&app.base, &phone, &village, gzip);
        rows.push((
            i,
            "push: 100 households in one request",
            res.sent,
            res.received,
            VILLAGE,
        ));
        let mut singles = (0, 0);
        for n in 0..SINGLES {
            let res = push(&app.base, &phone, &household_mutations(&phone, v1, n), gzip);
            singles = (singles.0 + res.sent, singles.1 + res.received);
        }
        rows.push((
            i,
            "push: one household per request",
            singles.0,
            singles.1,
            SINGLES,
        ));
        // A new phone of the same team pulls the village, then what changed since.
        let reader = Phone::login(&app, user, PW);
        let (sent, received, records, cursor) = pull(&app.base, &reader, None, gzip);
        assert_eq!(records, (VILLAGE + SINGLES) * 5, "pulled every record once");
        rows.push((
            i,
            "pull: 120 households from scratch",
            sent,
            received,
            VILLAGE + SINGLES,
        ));
        push(&app.base, &phone, &household_mutations(&phone, v1, 7), gzip);
        let (sent, received, records, _) = pull(&app.base, &reader, Some(&cursor), gzip);
        assert_eq!(records, 5);
        rows.push((i, "pull: the one household that changed", sent, received, 1));
    }
    let mut table: Vec<Row> = Vec::new();
    for (i, what, sent, received, households) in rows {
        match table.iter_mut().find(|r| r.what == what) {
            Some(row) if i == 1 => row.gzip = (sent, received),
            _ => table.push(Row {
                what,
                plain: (sent, received),
                gzip: (0, 0),
                households,
            }),
        }
    }
    println!("Bytes on the wire per household (1 household + 4 members, every field filled), {backend:?}:\n");
    println!(
        "| exchange | plain: up | plain: down | gzip: up | gzip: down | plain total | gzip total | gzip / plain |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &table {
        let per = |b: usize| b as f64 / r.households as f64;
        let (pt, gt) = (per(r.plain.0 + r.plain.1), per(r.gzip.0 + r.gzip.1));
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            r.what,
            per(r.plain.0),
            per(r.plain.1),
            per(r.gzip.0),
            per(r.gzip.1),
            pt,
            gt,
            gt / pt
        );
    }
}
