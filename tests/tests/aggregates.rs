//! Aggregates: exact indicators, roll-ups, suppression, exports, verify — on both backends.

use hamlet_shared::Role;
use hamlet_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("p1viewer", PW, Role::Viewer, &["P1"]);
    app.add_user("p1team", PW, Role::Enumerator, &["P1"]);
    app.add_user("v1team", PW, Role::Enumerator, &["V1"]);
    app.add_user("vnteam", PW, Role::Enumerator, &["VN"]);
    app
}

fn id() -> Uuid {
    Uuid::now_v7()
}

fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let (status, body) = app.get(path, Some(token));
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn indicator<'a>(agg: &'a Value, key: &str) -> &'a Value {
    agg["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("{key} missing"))
}

#[track_caller]
fn assert_indicator(agg: &Value, key: &str, num: i64, den: i64, unknown: i64) {
    let i = indicator(agg, key);
    assert_eq!(
        (
            i["numerator"].as_i64(),
            i["denominator"].as_i64(),
            i["unknown"].as_i64()
        ),
        (Some(num), Some(den), Some(unknown)),
        "{key}: {i}"
    );
    match den {
        0 => assert_eq!(i["ratio"], Value::Null, "{key}"),
        _ => assert!(
            (i["ratio"].as_f64().unwrap() - num as f64 / den as f64).abs() < 1e-12,
            "{key}: {i}"
        ),
    }
}

/// V1: H1 (adult 1990 with smartphone, no account; child 2015 without), H2 (1980, unknown
/// phone, account; fixed broadband), H3 (no members; no broadband).
fn hand_built_village(app: &TestApp, phone: &Phone) -> (Uuid, Uuid, Uuid, Uuid) {
    let v1 = app.unit_id("V1");
    let (h1, h2, h3, adult) = (id(), id(), id(), id());
    let results = phone.push_ok(&[
        phone.upsert("household", h1, 0, household(v1, "H1")),
        phone.upsert("member", adult, 0, member(h1, "Adult", 1990, "yes", "no")),
        phone.upsert("member", id(), 0, member(h1, "Child", 2015, "no", "unknown")),
        phone.upsert(
            "household",
            h2,
            0,
            json!({ "village_id": v1, "head_name": "H2", "fixed_broadband": "yes" }),
        ),
        phone.upsert("member", id(), 0, member(h2, "Elder", 1980, "unknown", "yes")),
        phone.upsert(
            "household",
            h3,
            0,
            json!({ "village_id": v1, "head_name": "H3", "fixed_broadband": "no" }),
        ),
    ]);
    assert!(results.iter().all(|r| r["status"] == "applied"), "{results:?}");
    (h1, h2, h3, adult)
}

fn indicators_are_exact_for_a_hand_built_village(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    hand_built_village(&app, &phone);
    let token = phone.token.clone();
    let a = get(
        &app,
        &token,
        &format!("/api/v1/aggregates/{}?year=2026", app.unit_id("V1")),
    );
    assert_eq!(a["unit"]["name"], "Thôn Nà Lầu");
    assert_eq!(a["unit"]["level"], "village");
    assert_eq!(
        (a["households"].as_i64(), a["members"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(a["reference_year"], 2026);
    assert_eq!(a["adult_age"], 15);
    assert_eq!(a["indicators"].as_array().unwrap().len(), 9);
    assert_indicator(&a, "population_with_smartphone", 1, 2, 1);
    assert_indicator(&a, "households_with_smartphone", 1, 1, 1);
    assert_indicator(&a, "adults_with_transaction_account", 1, 2, 0);
    assert_indicator(&a, "adults_with_smartphone", 1, 1, 1);
    assert_indicator(&a, "adults_with_vneid_level2", 0, 0, 2);
    assert_indicator(&a, "households_with_fixed_broadband", 1, 2, 1);
    // Another reference year: the 2015 child is an adult in 2031.
    let later = get(
        &app,
        &token,
        &format!("/api/v1/aggregates/{}?year=2031", app.unit_id("V1")),
    );
    assert_indicator(&later, "adults_with_smartphone", 1, 2, 1);
    assert_indicator(&later, "adults_with_transaction_account", 1, 2, 1);
    // The same numbers one level up, and at the top.
    let province_token = Phone::login(&app, "p1team", PW).token;
    for code in ["C1", "D1", "P1"] {
        let up = get(
            &app,
            &province_token,
            &format!("/api/v1/aggregates/{}?year=2026", app.unit_id(code)),
        );
        assert_eq!(up["households"], 3, "{code}");
        assert_indicator(&up, "households_with_smartphone", 1, 1, 1);
    }
    app.assert_consistent();
}

fn counters_follow_edits_deletes_and_moves(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "p1team", PW);
    let (h1, h2, _h3, adult) = hand_built_village(&app, &phone);
    let (v1, v2) = (app.unit_id("V1"), app.unit_id("V2"));
    let agg = |code: &str| {
        get(
            &app,
            &phone.token,
            &format!("/api/v1/aggregates/{}?year=2026", app.unit_id(code)),
        )
    };
    // An edit: the adult gives up the phone; H1 has a known "no" answer left.
    phone.push_ok(&[phone.upsert("member", adult, 1, json!({ "owns_smartphone": "no" }))]);
    let a = agg("V1");
    assert_indicator(&a, "population_with_smartphone", 0, 2, 1);
    assert_indicator(&a, "households_with_smartphone", 0, 1, 1);
    // A delete: the adult counts nowhere.
    phone.push_ok(&[phone.delete("member", adult, 2)]);
    let a = agg("V1");
    assert_eq!(a["members"], 2);
    assert_indicator(&a, "adults_with_transaction_account", 1, 1, 0);
    // A household moved to V2 takes its members' counts with it.
    phone.push_ok(&[phone.upsert("household", h2, 1, json!({ "village_id": v2 }))]);
    let (a1, a2) = (agg("V1"), agg("V2"));
    assert_eq!(
        (a1["households"].as_i64(), a1["members"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (a2["households"].as_i64(), a2["members"].as_i64()),
        (Some(1), Some(1))
    );
    assert_indicator(&a2, "households_with_fixed_broadband", 1, 1, 0);
    assert_eq!(agg("C1")["households"], 3, "the commune holds both villages");
    // A deleted household takes its members out of every count.
    phone.push_ok(&[phone.delete("household", h1, 1)]);
    let a1 = agg("V1");
    assert_eq!(
        (a1["households"].as_i64(), a1["members"].as_i64()),
        (Some(1), Some(0))
    );
    assert_indicator(&a1, "households_with_smartphone", 0, 0, 0);
    let _ = v1;
    app.assert_consistent();
    app.fold();
    app.assert_consistent();
    assert_eq!(agg("C1")["households"], 2);
}

fn members_before_household_count_once_attached(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let (h, m) = (id(), id());
    phone.push_ok(&[phone.upsert("member", m, 0, member(h, "Early", 1990, "yes", "yes"))]);
    let path = format!("/api/v1/aggregates/{}", app.unit_id("V1"));
    assert_eq!(
        get(&app, &phone.token, &path)["members"],
        0,
        "waiting members count nowhere"
    );
    phone.push_ok(&[phone.upsert("household", h, 0, household(app.unit_id("V1"), "Late"))]);
    let a = get(&app, &phone.token, &path);
    assert_eq!(
        (a["households"].as_i64(), a["members"].as_i64()),
        (Some(1), Some(1))
    );
    assert_indicator(&a, "households_with_smartphone", 1, 1, 0);
    app.assert_consistent();
}

fn sums(agg: &Value) -> Vec<i64> {
    let mut v = vec![
        agg["households"].as_i64().unwrap(),
        agg["members"].as_i64().unwrap(),
    ];
    for i in agg["indicators"].as_array().unwrap() {
        v.extend([
            i["numerator"].as_i64().unwrap(),
            i["denominator"].as_i64().unwrap(),
            i["unknown"].as_i64().unwrap(),
        ]);
    }
    v
}

fn roll_ups_equal_the_sum_of_children_at_every_level(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "vnteam", PW);
    let mut batch = Vec::new();
    for (n, code) in ["V1", "V1", "V2", "V3", "V3", "V3", "V4"].iter().enumerate() {
        let h = id();
        let broadband = ["yes", "no", "unknown"][n % 3];
        batch.push(phone.upsert("household", h, 0, json!({ "village_id": app.unit_id(code), "head_name": format!("H{n}"), "fixed_broadband": broadband })));
        for k in 0..(n % 4) {
            let phone_answer = ["yes", "no", "unknown"][(n + k) % 3];
            batch.push(phone.upsert(
                "member",
                id(),
                0,
                member(
                    h,
                    "M",
                    1950 + 11 * k as i32 + n as i32,
                    phone_answer,
                    ["no", "yes"][k % 2],
                ),
            ));
        }
    }
    phone.push_ok(&batch);
    for folded in [false, true] {
        if folded {
            app.fold();
        }
        for parent in ["VN", "P1", "D1", "C1", "C2", "P2", "C3"] {
            let pid = app.unit_id(parent);
            let whole = get(&app, &phone.token, &format!("/api/v1/aggregates/{pid}"));
            let kids = get(&app, &phone.token, &format!("/api/v1/aggregates/{pid}/children"));
            assert_eq!(kids["unit"]["id"], pid.to_string());
            let children = kids["children"].as_array().unwrap();
            assert!(!children.is_empty());
            let mut total = vec![0; sums(&whole).len()];
            for c in children {
                for (t, x) in total.iter_mut().zip(sums(c)) {
                    *t += x;
                }
            }
            assert_eq!(total, sums(&whole), "{parent} (folded: {folded})");
        }
    }
    assert_eq!(
        get(
            &app,
            &phone.token,
            &format!("/api/v1/aggregates/{}", app.unit_id("VN"))
        )["households"],
        7
    );
    app.assert_consistent();
}

fn viewers_see_no_ratios_for_small_cells(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    hand_built_village(&app, &phone);
    let viewer = app.login("p1viewer", PW);
    let token = viewer.token().unwrap();
    let a = get(&app, token, &format!("/api/v1/aggregates/{}", app.unit_id("V1")));
    assert_eq!(a["suppressed"], true);
    assert_eq!(a["households"], 3, "counts stay");
    assert!(
        a["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["ratio"].is_null() && i["numerator"].is_i64())
    );
    // The enumerator of the village sees the ratios.
    let b = get(
        &app,
        &phone.token,
        &format!("/api/v1/aggregates/{}", app.unit_id("V1")),
    );
    assert_eq!(b["suppressed"], false);
    assert!(!indicator(&b, "population_with_smartphone")["ratio"].is_null());
    // So do viewers once the unit is large enough.
    let more: Vec<Value> = (0..2)
        .map(|n| {
            phone.upsert(
                "household",
                id(),
                0,
                household(app.unit_id("V1"), &format!("More {n}")),
            )
        })
        .collect();
    phone.push_ok(&more);
    let c = get(&app, token, &format!("/api/v1/aggregates/{}", app.unit_id("V1")));
    assert_eq!(c["suppressed"], false);
    // Small children are suppressed one by one.
    let kids = get(
        &app,
        token,
        &format!("/api/v1/aggregates/{}/children", app.unit_id("C1")),
    );
    let v2 = kids["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["unit"]["id"] == app.unit_id("V2").to_string())
        .unwrap();
    assert_eq!(v2["suppressed"], true);
}

fn exports_parse_back_to_the_same_numbers(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    hand_built_village(&app, &phone);
    let root = app.login("root", PW);
    let token = root.token().unwrap().to_owned();
    let p1 = app.unit_id("P1");
    let fetch = |format: &str| {
        let mut res = TestApp::agent()
            .get(&app.url(&format!("/api/v1/aggregates/{p1}/export?format={format}")))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let kind = res
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        (
            kind,
            res.body_mut()
                .with_config()
                .limit(50_000_000)
                .read_to_vec()
                .unwrap(),
        )
    };
    let (kind, csv_bytes) = fetch("csv");
    assert!(kind.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(&csv_bytes[..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        &header[..7],
        [
            "unit_id",
            "code",
            "name",
            "level",
            "path",
            "households",
            "members"
        ]
    );
    assert_eq!(header.len(), 7 + 9 * 4);
    assert_eq!(header[7], "population_with_smartphone_numerator");
    assert_eq!(header[10], "population_with_smartphone_ratio");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7, "P1, D1, C1, V1, V2, C2, V3");
    let row_of = |code: &str| rows.iter().find(|r| &r[1] == code).unwrap().clone();
    assert_eq!(
        &row_of("V1")[4],
        "Việt Nam / Tỉnh Tuyên Quang / Huyện Na Hang / Xã Nà Hang / Thôn Nà Lầu"
    );
    assert_eq!(&row_of("P1")[4], "Việt Nam / Tỉnh Tuyên Quang");
    for code in ["P1", "C1", "V1", "V2"] {
        let r = row_of(code);
        let api = get(&app, &token, &format!("/api/v1/aggregates/{}", app.unit_id(code)));
        let from_csv: Vec<i64> = (5..7)
            .chain((7..43).filter(|c| (c - 7) % 4 != 3))
            .map(|c| r[c].parse().unwrap())
            .collect();
        assert_eq!(from_csv, sums(&api), "{code}");
        for (k, i) in api["indicators"].as_array().unwrap().iter().enumerate() {
            let cell = &r[7 + 4 * k + 3];
            match i["ratio"].as_f64() {
                None => assert_eq!(cell, "", "null ratio is an empty cell"),
                Some(x) => assert!((cell.parse::<f64>().unwrap() - x).abs() < 1e-12),
            }
        }
    }

    let (kind, xlsx_bytes) = fetch("xlsx");
    assert!(kind.contains("spreadsheetml"));
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx_bytes)).unwrap();
    let sheet = book.worksheet_range("aggregates").unwrap();
    let grid: Vec<Vec<Data>> = sheet.rows().map(|r| r.to_vec()).collect();
    assert_eq!(grid.len(), 8);
    assert_eq!(grid[0][0], Data::String("unit_id".into()));
    let v1 = grid.iter().find(|r| r[1] == Data::String("V1".into())).unwrap();
    let csv_v1 = row_of("V1");
    assert_eq!(v1[5], Data::Float(3.0), "counts are numbers, not text");
    for c in 5..43 {
        match &v1[c] {
            Data::Float(x) => assert!(
                (x - csv_v1[c].parse::<f64>().unwrap()).abs() < 1e-12,
                "column {c}"
            ),
            Data::Empty => assert_eq!(&csv_v1[c], "", "column {c}"),
            other => panic!("column {c}: {other:?}"),
        }
    }
    assert_error(
        &app.get(
            &format!("/api/v1/aggregates/{p1}/export?format=pdf"),
            Some(&token),
        ),
        400,
        "bad_request",
    );
    let past = app.get(
        &format!("/api/v1/aggregates/{p1}/export?format=csv&as_of=2025-01-01"),
        Some(&token),
    );
    assert_error(&past, 422, "validation_failed");
}

fn verify_finds_and_repairs_a_corrupted_counter(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    hand_built_village(&app, &phone);
    app.fold();
    app.assert_consistent();
    for table in ["village_tallies", "unit_tallies"] {
        {
            use diesel::RunQueryDsl;
            let mut conn = app.pool.get().unwrap();
            let n = diesel::sql_query(format!(
                "UPDATE {table} SET yes = yes + 7 WHERE metric = 'households'"
            ))
            .execute(&mut *conn)
            .unwrap();
            assert!(n > 0, "{table} has rows");
        }
        let run = |args: &[&str]| {
            std::process::Command::new(hamlet_bin())
                .args(args)
                .env("HAMLET_DATABASE_URL", &app.db.url)
                .output()
                .unwrap()
        };
        let out = run(&["verify"]);
        assert_eq!(out.status.code(), Some(1), "{table}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(table));
        assert!(run(&["verify", "--repair"]).status.success());
        assert!(run(&["verify"]).status.success());
    }
    assert_eq!(
        get(
            &app,
            &phone.token,
            &format!("/api/v1/aggregates/{}", app.unit_id("V1"))
        )["households"],
        3
    );
}

fn aggregate_access_and_parameters(backend: Backend) {
    let app = setup(backend);
    let village_team = app.login("v1team", PW);
    let token = village_team.token().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/aggregates/{}", app.unit_id("V1")), Some(token))
            .0,
        200
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{}", app.unit_id("C1")), Some(token)),
        403,
        "forbidden",
    );
    assert_error(
        &app.get(
            &format!("/api/v1/aggregates/{}/children", app.unit_id("P2")),
            Some(token),
        ),
        403,
        "forbidden",
    );
    assert_error(
        &app.get(
            &format!("/api/v1/aggregates/{}/export?format=csv", app.unit_id("P2")),
            Some(token),
        ),
        403,
        "forbidden",
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{}", Uuid::new_v4()), Some(token)),
        404,
        "not_found",
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{}", app.unit_id("V1")), None),
        401,
        "unauthorized",
    );
    let v1 = app.unit_id("V1");
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{v1}?year=abc"), Some(token)),
        400,
        "bad_request",
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{v1}?year=1800"), Some(token)),
        422,
        "validation_failed",
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{v1}?as_of=yesterday"), Some(token)),
        422,
        "validation_failed",
    );
    let a = get(&app, token, &format!("/api/v1/aggregates/{v1}?as_of=2025-07-01"));
    assert_eq!(a["as_of"], "2025-07-01");
    // An empty unit: zero counts, null ratios.
    assert_eq!(a["households"], 0);
    assert!(
        a["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["ratio"].is_null() && i["denominator"] == 0)
    );
}

backend_tests!(
    indicators_are_exact_for_a_hand_built_village,
    counters_follow_edits_deletes_and_moves,
    members_before_household_count_once_attached,
    roll_ups_equal_the_sum_of_children_at_every_level,
    viewers_see_no_ratios_for_small_cells,
    exports_parse_back_to_the_same_numbers,
    verify_finds_and_repairs_a_corrupted_counter,
    aggregate_access_and_parameters,
);
