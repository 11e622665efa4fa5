//! Reorganising the map: moves and merges with effective dates; records never move; aggregates
//! follow the current tree and answer for the tree of a past date. Both backends.

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

backend_tests!(
    moving_a_village_keeps_its_records_and_the_past,
    merging_communes_retires_them,
    reorganisation_rules,
    cli_moves_and_merges
);
