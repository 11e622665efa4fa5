//! Reorganising the map: moves and merges with effective dates; records never move; aggregates
//! follow the current tree and answer for the tree of a past date. Both backends.

use hamlet_server::units::import::{ImportOptions, import};
use hamlet_server::units::reform::{self, ReformError, ReformReport};
use hamlet_shared::Role;
use hamlet_tests::*;
use serde_json::json;
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(backend: Backend) -> (TestApp, Phone, String) {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("p1admin", PW, Role::Admin, &["P1"]);
    app.add_user("c1admin", PW, Role::Admin, &["C1"]);
    app.add_user("team", PW, Role::Enumerator, &["VN"]);
    let phone = Phone::login(&app, "team", PW);
    // V1: 3 households, V2: 1, V3: 2, V4: 1.
    let mut batch = Vec::new();
    for (code, n) in [("V1", 3), ("V2", 1), ("V3", 2), ("V4", 1)] {
        for _ in 0..n {
            let h = Uuid::now_v7();
            batch.push(phone.upsert("household", h, 0, household(app.unit_id(code), "H")));
            batch.push(phone.upsert("member", Uuid::now_v7(), 0, member(h, "M", 1990, "yes", "no")));
        }
    }
    phone.push_ok(&batch);
    let root = app.login("root", PW).token().unwrap().to_owned();
    (app, phone, root)
}

fn households(app: &TestApp, token: &str, code: &str, as_of: Option<&str>) -> i64 {
    let mut path = format!("/api/v1/aggregates/{}", app.unit_id_any(code));
    if let Some(d) = as_of {
        path.push_str(&format!("?as_of={d}"));
    }
    let (status, body) = app.get(&path, Some(token));
    assert_eq!(status, 200, "{path}: {body}");
    body["households"].as_i64().unwrap()
}

fn moving_a_village_keeps_its_records_and_the_past(backend: Backend) {
    let (app, phone, root) = setup(backend);
    let (v1, c2) = (app.unit_id("V1"), app.unit_id("C2"));
    let (status, report) = app.post(
        &format!("/api/v1/units/{v1}/move"),
        Some(&json!({ "parent_id": c2, "effective_on": "2025-07-01" })),
        Some(&root),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["moved"], json!([v1]));
    for folded in [false, true] {
        if folded {
            app.fold();
        }
        assert_eq!(households(&app, &root, "C1", None), 1, "C1 keeps V2");
        assert_eq!(households(&app, &root, "C2", None), 5, "C2 has V3 and V1");
        assert_eq!(households(&app, &root, "D1", None), 1);
        assert_eq!(
            households(&app, &root, "P1", None),
            6,
            "the province is unchanged"
        );
        // The tree of a date before the move.
        assert_eq!(households(&app, &root, "C1", Some("2025-06-30")), 4);
        assert_eq!(households(&app, &root, "C2", Some("2025-06-30")), 2);
        assert_eq!(households(&app, &root, "D1", Some("2025-06-30")), 4);
        assert_eq!(
            households(&app, &root, "C2", Some("2025-07-01")),
            5,
            "effective that day"
        );
        let (_, kids) = app.get(
            &format!(
                "/api/v1/aggregates/{}/children?as_of=2025-06-30",
                app.unit_id("C1")
            ),
            Some(&root),
        );
        assert_eq!(kids["children"].as_array().unwrap().len(), 2, "{kids}");
    }
    // The unit's path and children follow the move; the households did not move.
    let (_, unit) = app.get(&format!("/api/v1/units/{v1}"), Some(&root));
    assert_eq!(unit["parent_id"], c2.to_string());
    assert_eq!(
        unit["path"].as_array().unwrap().len(),
        4,
        "VN > P1 > C2 > V1: {unit}"
    );
    let (changes, _) = phone.pull_all(None);
    assert_eq!(
        changes
            .iter()
            .filter(|c| c["type"] == "household" && c["fields"]["village_id"] == v1.to_string())
            .count(),
        3
    );
    app.assert_consistent();
}

fn merging_communes_retires_them(backend: Backend) {
    let (app, _phone, root) = setup(backend);
    let p1 = app.unit_id("P1");
    let (status, c9) = app.post(
        "/api/v1/units",
        Some(&json!({ "code": "C9", "name": "Xã Mới", "level": "commune", "parent_id": p1 })),
        Some(&root),
    );
    assert_eq!(status, 201);
    let c9 = c9["id"].as_str().unwrap().to_owned();
    let (c1, c2) = (app.unit_id("C1"), app.unit_id("C2"));
    let body = json!({ "sources": [c1, c2], "into": c9, "effective_on": "2025-07-01" });
    let (status, report) = app.post("/api/v1/units/merge", Some(&body), Some(&root));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["retired"], json!([c1, c2]));
    assert_eq!(report["moved"].as_array().unwrap().len(), 3, "V1, V2, V3");
    assert_eq!(households(&app, &root, "C9", None), 6);
    assert_eq!(households(&app, &root, "P1", None), 6);
    app.fold();
    assert_eq!(households(&app, &root, "C9", None), 6);
    // Retired units: gone from the current tree, present in the past one.
    assert_error(
        &app.get(&format!("/api/v1/units/{c1}"), Some(&root)),
        404,
        "not_found",
    );
    assert_error(
        &app.get(&format!("/api/v1/aggregates/{c1}"), Some(&root)),
        404,
        "not_found",
    );
    let (status, old) = app.get(&format!("/api/v1/aggregates/{c1}?as_of=2025-06-30"), Some(&root));
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["households"], 4);
    assert_eq!(
        households(&app, &root, "C9", Some("2025-06-30")),
        0,
        "C9 had no villages before the merge"
    );
    let (_, kids) = app.get(
        &format!("/api/v1/aggregates/{p1}/children?as_of=2025-06-30"),
        Some(&root),
    );
    let names: Vec<&str> = kids["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["unit"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Xã Thượng Lâm") && names.contains(&"Huyện Na Hang"),
        "{names:?}"
    );
    // A retired unit's code is free again.
    let (status, _) = app.post(
        "/api/v1/units",
        Some(&json!({ "code": "C1", "name": "Xã Khác", "level": "commune", "parent_id": p1 })),
        Some(&root),
    );
    assert_eq!(status, 201);
    app.assert_consistent();
}

fn reorganisation_rules(backend: Backend) {
    let (app, _phone, root) = setup(backend);
    let id = |c: &str| app.unit_id(c).to_string();
    let mv = |unit: &str, to: &str, day: &str, token: &str| {
        app.post(
            &format!("/api/v1/units/{}/move", id(unit)),
            Some(&json!({ "parent_id": id(to), "effective_on": day })),
            Some(token),
        )
    };
    assert_error(&mv("P1", "C1", "2025-07-01", &root), 422, "validation_failed");
    assert_error(&mv("D1", "C1", "2025-07-01", &root), 422, "validation_failed");
    assert_error(&mv("C1", "D1", "2025-07-01", &root), 422, "validation_failed");
    assert_error(&mv("V1", "C2", "2999-01-01", &root), 422, "validation_failed");
    assert_error(&mv("V1", "C2", "01/07/2025", &root), 422, "validation_failed");
    // A parent or merge target that does not exist is an invalid body, not a missing resource.
    let nowhere = hamlet_shared::UnitId::new().to_string();
    let (status, body) = app.post(
        &format!("/api/v1/units/{}/move", id("V1")),
        Some(&json!({ "parent_id": nowhere, "effective_on": "2025-07-01" })),
        Some(&root),
    );
    assert_eq!(
        (status, &body["error"]["details"][0]["field"]),
        (422, &json!("parent_id")),
        "{body}"
    );
    let merge = json!({ "sources": [id("C1")], "into": nowhere, "effective_on": "2025-07-01" });
    let (status, body) = app.post("/api/v1/units/merge", Some(&merge), Some(&root));
    assert_eq!(
        (status, &body["error"]["details"][0]["field"]),
        (422, &json!("into")),
        "{body}"
    );
    let merge = json!({ "sources": [id("C1"), nowhere], "into": id("C2"), "effective_on": "2025-07-01" });
    let (status, body) = app.post("/api/v1/units/merge", Some(&merge), Some(&root));
    assert_eq!(
        (status, &body["error"]["details"][0]["field"]),
        (422, &json!("sources[1]")),
        "{body}"
    );
    // Checked before scope: a commune admin's typo is a typo, not a unit outside its scope.
    let typo = app.login("c1admin", PW).token().unwrap().to_owned();
    assert_error(
        &app.post("/api/v1/units/merge", Some(&merge), Some(&typo)),
        422,
        "validation_failed",
    );
    let p1admin = app.login("p1admin", PW).token().unwrap().to_owned();
    let c1admin = app.login("c1admin", PW).token().unwrap().to_owned();
    let team = app.login("team", PW).token().unwrap().to_owned();
    assert_error(&mv("V1", "C3", "2025-07-01", &p1admin), 403, "forbidden");
    assert_error(&mv("V1", "C2", "2025-07-01", &c1admin), 403, "forbidden");
    assert_error(&mv("V1", "C2", "2025-07-01", &team), 403, "forbidden");
    assert_eq!(mv("V1", "C2", "2025-07-01", &p1admin).0, 200);
    assert_error(&mv("V1", "C1", "2025-06-01", &p1admin), 422, "validation_failed");
    let merge = json!({ "sources": [id("V1")], "into": id("V2"), "effective_on": "2025-07-01" });
    assert_error(
        &app.post("/api/v1/units/merge", Some(&merge), Some(&root)),
        422,
        "validation_failed",
    );
    let merge = json!({ "sources": [id("C1")], "into": id("P2"), "effective_on": "2025-07-01" });
    assert_error(
        &app.post("/api/v1/units/merge", Some(&merge), Some(&root)),
        422,
        "validation_failed",
    );
    app.assert_consistent();
}

fn cli_moves_and_merges(backend: Backend) {
    let (app, _phone, root) = setup(backend);
    let run = |args: &[&str]| {
        std::process::Command::new(hamlet_bin())
            .args(args)
            .env("HAMLET_DATABASE_URL", &app.db.url)
            .output()
            .unwrap()
    };
    let out = run(&["units", "move", "V3", "--to", "C1", "--effective", "2025-08-01"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(households(&app, &root, "C1", None), 6);
    let out = run(&[
        "units",
        "merge",
        "C2",
        "--into",
        "C1",
        "--effective",
        "2025-08-01",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["units", "move", "V4", "--to", "C1", "--effective", "someday"]);
    assert!(!out.status.success());
    assert!(run(&["verify"]).status.success());
}

// --- Reforms: a whole new map and an old->new code mapping, applied at once ---------------

const OLD_MAP: &str = "code,name,level,parent_code
VN,Việt Nam,country,
01,Tỉnh Một,province,VN
02,Tỉnh Hai,province,VN
001,Huyện A,district,01
002,Huyện B,district,01
003,Huyện C,district,02
004,Huyện Đảo,district,02
00001,Xã Một,commune,001
00002,Xã Hai,commune,001
00003,Xã Ba,commune,001
00004,Xã Bốn,commune,002
00005,Xã Năm,commune,003
V1,Thôn 1,village,00001
V2,Thôn 2,village,00001
V3,Thôn 3,village,00002
V4,Thôn 4,village,00003
V5,Thôn 5,village,00005
";

/// Province 02 joins 01; districts go; 00002 joins 00001; 00003 and 00004 are split between a
/// new 00003 and a new 00006, which also takes all of 00005; district 004 becomes commune 00009.
const NEW_MAP: &str = "code,name,level,parent_code
01,Tỉnh Một Mới,province,
00001,Phường Hồng Hà,commune,01
00003,Xã Ba Mới,commune,01
00006,Xã Sáu,commune,01
00009,Đặc khu Đảo,commune,01
";

const MAPPING: &str = "old_code,new_code
00001,00001
00002,00001
00003,00003
00003,00006
00004,00003
00004,00006
00005,00006
004,00009
";

fn reform_app(backend: Backend) -> (TestApp, String) {
    let app = TestApp::spawn(backend);
    app.import_units(OLD_MAP);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("d1admin", PW, Role::Admin, &["001"]);
    app.add_user("team", PW, Role::Enumerator, &["VN"]);
    let phone = Phone::login(&app, "team", PW);
    // V1: 2 households, V2: 1, V3: 1, V4: 1, V5: 2.
    let mut batch = Vec::new();
    for (code, n) in [("V1", 2), ("V2", 1), ("V3", 1), ("V4", 1), ("V5", 2)] {
        for _ in 0..n {
            let h = Uuid::now_v7();
            batch.push(phone.upsert("household", h, 0, household(app.unit_id(code), "H")));
            batch.push(phone.upsert("member", Uuid::now_v7(), 0, member(h, "M", 1990, "yes", "no")));
        }
    }
    phone.push_ok(&batch);
    let root = app.login("root", PW).token().unwrap().to_owned();
    (app, root)
}

fn run_reform(
    app: &TestApp,
    units: &str,
    mapping: &str,
    date: &str,
    dry_run: bool,
) -> Result<ReformReport, ReformError> {
    let mut conn = app.pool.get().unwrap();
    let input = reform::parse(units.as_bytes(), mapping.as_bytes())?;
    let date = hamlet_server::units::reorg::parse_effective(date).unwrap();
    reform::reform(&mut conn, &input, app.unit_id("VN"), date, dry_run)
}

fn live_units(app: &TestApp) -> usize {
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    use hamlet_server::db::schema::units;
    let mut conn = app.pool.get().unwrap();
    let n: i64 = units::table
        .filter(units::retired_us.is_null())
        .count()
        .get_result(&mut *conn)
        .unwrap();
    n as usize
}

fn a_reform_keeps_whole_units_and_lists_split_ones(backend: Backend) {
    let (app, root) = reform_app(backend);
    let before = live_units(&app);
    let dry = run_reform(&app, NEW_MAP, MAPPING, "2025-07-01", true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(live_units(&app), before, "a dry run changes nothing");
    let report = run_reform(&app, NEW_MAP, MAPPING, "2025-07-01", false).unwrap();
    assert_eq!(report.kept, 2, "province 01 and commune 00001 keep their units");
    assert_eq!(report.renamed, 2);
    assert_eq!(report.created, [("commune".to_owned(), 3)].into());
    assert_eq!(
        report.retired,
        [
            ("commune".to_owned(), 3),
            ("district".to_owned(), 4),
            ("province".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(report.moved, 4, "00001, V3, V5 and the pending 00003");
    assert_eq!(
        (
            report.kept,
            report.renamed,
            &report.created,
            &report.retired,
            report.moved
        ),
        (dry.kept, dry.renamed, &dry.created, &dry.retired, dry.moved),
        "the dry run said what the reform did"
    );
    // The old 00003 holds V4, which went to the new 00003 or 00006: only an admin knows.
    assert_eq!(report.pending.len(), 1);
    let pending = &report.pending[0];
    assert_eq!(pending.old_code, "00003");
    assert_eq!(pending.targets, ["00003", "00006"]);
    assert_eq!(
        pending.villages,
        [(app.unit_id("V4").to_string(), "Thôn 4".to_owned())]
    );
    assert_eq!(
        report.stale_scopes,
        [("d1admin".to_owned(), "district 001 (Huyện A)".to_owned())]
    );
    app.assert_consistent();

    // The new tree: every household counted once, under its new units.
    let total = |code: &str, as_of: Option<&str>| households(&app, &root, code, as_of);
    for folded in [false, true] {
        if folded {
            app.fold();
        }
        assert_eq!(total("VN", None), 7);
        assert_eq!(total("01", None), 7);
        assert_eq!(total("00001", None), 4, "V1, V2 and V3 from the merged 00002");
        assert_eq!(total("00006", None), 2, "V5 from 00005");
        assert_eq!(total("00003", None), 0, "the new 00003 has no villages yet");
        assert_eq!(total("00009", None), 0);
        let (status, body) = app.get(&format!("/api/v1/aggregates/{}", pending.unit_id), Some(&root));
        assert_eq!((status, body["households"].as_i64()), (200, Some(1)), "{body}");
        // The old tree on the eve of the reform.
        assert_eq!(total("01", Some("2025-06-30")), 5);
        assert_eq!(total("02", Some("2025-06-30")), 2);
        assert_eq!(total("001", Some("2025-06-30")), 5);
        assert_eq!(total("003", Some("2025-06-30")), 2);
    }
    let (_, unit) = app.get(&format!("/api/v1/units/{}", app.unit_id("00001")), Some(&root));
    assert_eq!(unit["name"], "Phường Hồng Hà");
    assert_eq!(unit["parent_id"], json!(app.unit_id("01")));
    let (status, _) = app.get(&format!("/api/v1/units/{}", app.unit_id_any("02")), Some(&root));
    assert_eq!(status, 404, "retired units are gone from the current tree");

    // The same files again change nothing.
    let again = run_reform(&app, NEW_MAP, MAPPING, "2025-07-01", false).unwrap();
    assert!(again.already_applied);
    assert_eq!(live_units(&app), before - 8 + 3);

    // An admin finishes the split: V4 went to the new 00006; the emptied old unit merges away.
    let (status, body) = app.post(
        &format!("/api/v1/units/{}/move", app.unit_id("V4")),
        Some(&json!({ "parent_id": app.unit_id("00006"), "effective_on": "2025-07-01" })),
        Some(&root),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.post(
        "/api/v1/units/merge",
        Some(&json!({ "sources": [pending.unit_id], "into": app.unit_id("00003"), "effective_on": "2025-07-01" })),
        Some(&root),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(total("00006", None), 3);
    assert_eq!(total("01", None), 7);
    app.assert_consistent();
}

fn a_reform_that_would_strand_records_changes_nothing(backend: Backend) {
    let (app, _root) = reform_app(backend);
    let count = live_units(&app);
    // A commune the mapping forgot, holding a village.
    app.import_units("code,name,level,parent_code\n00007,Xã Bảy,commune,002\nV7,Thôn 7,village,00007\n");
    let Err(ReformError::Plan(problems)) = run_reform(&app, NEW_MAP, MAPPING, "2025-07-01", false) else {
        panic!("a forgotten commune must stop the reform");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains("commune 00007 (Xã Bảy)") && p.contains("village V7")),
        "{problems:?}"
    );
    assert_eq!(live_units(&app), count + 2);

    let Err(ReformError::Mapping(lines)) = run_reform(
        &app,
        NEW_MAP,
        "old_code,new_code\n00001,00001\n00002,\n",
        "2025-07-01",
        false,
    ) else {
        panic!("a bad mapping line is refused");
    };
    assert_eq!(lines[0].line, 3, "{lines:?}");
    let Err(ReformError::Plan(problems)) = run_reform(
        &app,
        NEW_MAP,
        "old_code,new_code\n00001,00042\n",
        "2025-07-01",
        false,
    ) else {
        panic!("a target missing from the units file is refused");
    };
    assert!(
        problems[0].contains("00042 is not in the units file"),
        "{problems:?}"
    );

    // Nothing is reorganised before its current placement began (00002 is retired by it).
    let (v3, c1) = (app.unit_id("00002"), app.unit_id("002"));
    let mut conn = app.pool.get().unwrap();
    let date = hamlet_server::units::reorg::parse_effective("2025-08-01").unwrap();
    hamlet_server::units::reorg::move_unit(&mut conn, None, v3, c1, date).unwrap();
    drop(conn);
    let Err(ReformError::Plan(problems)) = run_reform(&app, NEW_MAP, MAPPING, "2025-07-01", false) else {
        panic!("an effective date before a placement is refused");
    };
    assert!(
        problems.iter().any(|p| p.contains("since 2025-08-01")),
        "{problems:?}"
    );
    assert_eq!(live_units(&app), count + 2);
    app.assert_consistent();
}

/// The real 2025 reform over the real 2024 map, through the CLI: the live tree becomes the
/// 2025 list exactly, and records follow their communes.
fn the_real_2025_reform(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.import_units("code,name,level,parent_code\nVN,Việt Nam,country,\n");
    {
        let mut conn = app.pool.get().unwrap();
        let file = std::fs::read(repo_root().join("data/vn-admin-units-2024.csv")).unwrap();
        let options = ImportOptions {
            root_parent: Some(app.unit_id("VN")),
        };
        import(&mut conn, file.as_slice(), &options, |_| {}).unwrap();
    }
    // 00004 keeps its unit; 00001 joins 00097; 00025 is split and its code goes to a new unit;
    // 00691 keeps its unit but its province (02 Hà Giang) joins 08 Tuyên Quang.
    app.import_units(
        "code,name,level,parent_code\nT1,Tổ 1,village,00004\nT2,Tổ 2,village,00001\n\
         T3,Tổ 3,village,00025\nT4,Tổ 4,village,00025\nT5,Tổ 5,village,00691\n",
    );
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("team", PW, Role::Enumerator, &["VN"]);
    let phone = Phone::login(&app, "team", PW);
    let batch: Vec<_> = ["T1", "T2", "T3", "T4", "T5"]
        .iter()
        .map(|v| phone.upsert("household", Uuid::now_v7(), 0, household(app.unit_id(v), "H")))
        .collect();
    phone.push_ok(&batch);
    let root = app.login("root", PW).token().unwrap().to_owned();

    let run = || {
        std::process::Command::new(hamlet_bin())
            .args(["units", "reform", "--effective", "2025-07-01", "--units"])
            .arg(repo_root().join("data/vn-admin-units-2025.csv"))
            .arg("--mapping")
            .arg(repo_root().join("data/vn-commune-merges-2025.csv"))
            .env("HAMLET_DATABASE_URL", &app.db.url)
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("created 146 commune, retired 6859 commune, 696 district, 29 province"),
        "{stdout}"
    );
    assert!(stdout.contains("1 split unit(s) still hold villages"), "{stdout}");
    assert!(stdout.contains("00025 Phường Ngọc Khánh"), "{stdout}");

    // The live tree is the 2025 list, row for row (the pending split aside: it has no code).
    let expected: std::collections::BTreeSet<(String, String, String, String)> =
        csv::Reader::from_path(repo_root().join("data/vn-admin-units-2025.csv"))
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                let parent = if r[3].is_empty() { "VN" } else { &r[3] };
                (
                    r[0].to_owned(),
                    r[1].to_owned(),
                    r[2].to_owned(),
                    parent.to_owned(),
                )
            })
            .collect();
    let mut conn = app.pool.get().unwrap();
    let live = hamlet_server::db::units::subtree(&mut conn, &app.unit_id("VN").to_string()).unwrap();
    drop(conn);
    let code_of: std::collections::HashMap<&str, &str> = live
        .iter()
        .filter_map(|u| u.code.as_deref().map(|c| (u.id.as_str(), c)))
        .collect();
    let actual: std::collections::BTreeSet<(String, String, String, String)> = live
        .iter()
        .filter(|u| !matches!(u.level.as_str(), "country" | "village") && u.code.is_some())
        .map(|u| {
            let parent = u.parent_id.as_deref().and_then(|p| code_of.get(p)).unwrap_or(&"");
            (
                u.code.clone().unwrap(),
                u.name.clone(),
                u.level.clone(),
                parent.to_string(),
            )
        })
        .collect();
    assert_eq!(actual.len(), 3355);
    assert!(
        actual == expected,
        "{:?}",
        actual.symmetric_difference(&expected).take(5).collect::<Vec<_>>()
    );

    // Codes are reused: ask for the live unit of a code, or the unit that held it on a date.
    let total = |code: &str, as_of: Option<&str>| match as_of {
        None => {
            let path = format!("/api/v1/aggregates/{}", app.unit_id(code));
            let (status, body) = app.get(&path, Some(&root));
            assert_eq!(status, 200, "{path}: {body}");
            body["households"].as_i64().unwrap()
        }
        Some(_) => households(&app, &root, code, as_of),
    };
    app.fold();
    assert_eq!(total("00004", None), 1);
    assert_eq!(total("00097", None), 1, "T2 came with 00001");
    assert_eq!(total("00025", None), 0, "the new 00025 waits for an admin");
    assert_eq!(total("01", None), 4, "T1, T2 and the pending split's T3 and T4");
    assert_eq!(total("08", None), 1, "T5 came with its commune from Hà Giang");
    assert_eq!(total("08", Some("2025-06-30")), 0);
    assert_eq!(total("02", Some("2025-06-30")), 1);
    app.assert_consistent();
    let again = run();
    assert!(String::from_utf8_lossy(&again.stdout).contains("already applied"));
}

backend_tests!(
    a_reform_keeps_whole_units_and_lists_split_ones,
    a_reform_that_would_strand_records_changes_nothing,
    the_real_2025_reform,
    moving_a_village_keeps_its_records_and_the_past,
    merging_communes_retires_them,
    reorganisation_rules,
    cli_moves_and_merges
);
