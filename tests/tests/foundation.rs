//! Foundation: health, errors, units API, import, OpenAPI, metrics — on both backends.

use hamlet_shared::{NewUnit, Role, UnitLevel};
use hamlet_tests::*;
use serde_json::json;

const ADMIN_PW: &str = "admin-password-123";

fn app_with_tree(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app
}

fn health(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (status, body) = app.get("/healthz", None);
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "status": "ok", "database": "ok" }));
}

fn unknown_routes_and_methods_get_the_error_body(backend: Backend) {
    let app = TestApp::spawn(backend);
    assert_error(&app.get("/api/v1/no-such-thing", None), 404, "not_found");
    assert_error(&app.get("/nope", None), 404, "not_found");
    // A known path with the wrong method: 405 naming the methods it takes.
    assert_error(&app.post("/healthz", None, None), 405, "method_not_allowed");
    let res = TestApp::agent()
        .delete(&app.url("/api/v1/units/0190f3a4-0000-7000-8000-000000000000"))
        .call()
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "GET");
    // A literal path that a pattern of another method also matches (`GET /units/{id}`); the
    // token is checked first, so the caller is signed in.
    app.import_units(SMALL_TREE);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    let admin = hamlet_tests::Phone::login(&app, "p1admin", ADMIN_PW);
    let res = TestApp::agent()
        .get(&app.url("/api/v1/units/merge"))
        .header("Authorization", &format!("Bearer {}", admin.token))
        .call()
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "POST");
    // Every response carries a request id.
    let res = TestApp::agent().get(&app.url("/healthz")).call().unwrap();
    assert!(res.headers().get("x-request-id").is_some());
}

fn unit_read_with_path_and_children(backend: Backend) {
    let app = app_with_tree(backend);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    let api = app.login("p1admin", ADMIN_PW);

    let v1 = api.unit(app.unit_id("V1")).unwrap();
    assert_eq!(v1.unit.name, "Thôn Nà Lầu");
    assert_eq!(v1.unit.level, UnitLevel::Village);
    assert_eq!(v1.unit.code.as_deref(), Some("V1"));
    assert_eq!(v1.unit.parent_id, Some(app.unit_id("C1")));
    let names: Vec<_> = v1.path.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Việt Nam",
            "Tỉnh Tuyên Quang",
            "Huyện Na Hang",
            "Xã Nà Hang",
            "Thôn Nà Lầu"
        ]
    );
    assert_eq!(v1.path.last().unwrap().id, v1.unit.id);

    let kids = api.children(app.unit_id("P1")).unwrap();
    let codes: Vec<_> = kids.units.iter().map(|u| u.code.clone().unwrap()).collect();
    assert_eq!(codes, ["C2", "D1"]);
    let kids = api.children(app.unit_id("C1")).unwrap();
    assert_eq!(kids.units.len(), 2);
    assert!(api.children(app.unit_id("V1")).unwrap().units.is_empty());

    // Outside the scope: a sibling province and the ancestor country.
    assert_eq!(api.unit(app.unit_id("P2")).unwrap_err().status(), Some(403));
    assert_eq!(api.children(app.unit_id("VN")).unwrap_err().status(), Some(403));
    assert_eq!(api.children(app.unit_id("C3")).unwrap_err().status(), Some(403));
    // Unknown and malformed ids.
    let token = api.token().unwrap();
    assert_error(
        &app.get(&format!("/api/v1/units/{}", uuid::Uuid::new_v4()), Some(token)),
        404,
        "not_found",
    );
    assert_error(
        &app.get("/api/v1/units/not-a-uuid", Some(token)),
        400,
        "bad_request",
    );
    // No token.
    assert_error(
        &app.get(&format!("/api/v1/units/{}", app.unit_id("V1")), None),
        401,
        "unauthorized",
    );
}

fn unit_create_rules(backend: Backend) {
    let app = app_with_tree(backend);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    app.add_user("p1viewer", ADMIN_PW, Role::Viewer, &["P1"]);
    app.add_user("v1enum", ADMIN_PW, Role::Enumerator, &["C2"]);
    let admin = app.login("p1admin", ADMIN_PW);
    let token = admin.token().unwrap().to_owned();
    let c2 = app.unit_id("C2");

    let created = admin
        .create_unit(&NewUnit {
            code: Some("V9".into()),
            name: " Thôn Mới ".into(),
            level: UnitLevel::Village,
            parent_id: c2,
        })
        .unwrap();
    assert_eq!(created.name, "Thôn Mới");
    assert_eq!(created.parent_id, Some(c2));
    let read = admin.unit(created.id).unwrap();
    assert_eq!(read.path.len(), 4);
    assert!(
        admin
            .children(c2)
            .unwrap()
            .units
            .iter()
            .any(|u| u.id == created.id)
    );
    // Raw response: 201 with the unit.
    let resp = app.post(
        "/api/v1/units",
        Some(&json!({ "name": "Thôn Khác", "level": "village", "parent_id": c2 })),
        Some(&token),
    );
    assert_eq!(resp.0, 201, "{}", resp.1);
    assert_eq!(resp.1["code"], serde_json::Value::Null);

    // Code already used by a live unit.
    let dup = json!({ "code": "V9", "name": "Thôn Trùng", "level": "village", "parent_id": c2 });
    assert_error(
        &app.post("/api/v1/units", Some(&dup), Some(&token)),
        409,
        "conflict",
    );
    // A province cannot go under a commune.
    let bad = json!({ "name": "X", "level": "province", "parent_id": c2 });
    let resp = app.post("/api/v1/units", Some(&bad), Some(&token));
    assert_error(&resp, 422, "validation_failed");
    assert_eq!(resp.1["error"]["details"][0]["field"], "level");
    // Empty name and bad code together: both reported.
    let bad = json!({ "code": "a b", "name": "  ", "level": "village", "parent_id": c2 });
    let resp = app.post("/api/v1/units", Some(&bad), Some(&token));
    assert_error(&resp, 422, "validation_failed");
    let fields: Vec<_> = resp.1["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].clone())
        .collect();
    assert_eq!(fields, [json!("code"), json!("name")]);
    // Parent that does not exist.
    let bad = json!({ "name": "X", "level": "village", "parent_id": uuid::Uuid::new_v4() });
    assert_error(
        &app.post("/api/v1/units", Some(&bad), Some(&token)),
        422,
        "validation_failed",
    );
    // Unknown field, wrong types, malformed JSON, wrong content type.
    let bad = json!({ "name": "X", "level": "village", "parent_id": c2, "colour": "red" });
    assert_error(
        &app.post("/api/v1/units", Some(&bad), Some(&token)),
        400,
        "bad_request",
    );
    let bad = json!({ "name": 5, "level": "hamlet", "parent_id": c2 });
    assert_error(
        &app.post("/api/v1/units", Some(&bad), Some(&token)),
        400,
        "bad_request",
    );
    let res = TestApp::agent()
        .post(&app.url("/api/v1/units"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send("{\"name\": ")
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let res = TestApp::agent()
        .post(&app.url("/api/v1/units"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "text/plain")
        .send("hello")
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);

    // Outside the scope, and roles that may not create units.
    let p2 = json!({ "name": "X", "level": "commune", "parent_id": app.unit_id("P2") });
    assert_error(
        &app.post("/api/v1/units", Some(&p2), Some(&token)),
        403,
        "forbidden",
    );
    let ok_body = json!({ "name": "X", "level": "village", "parent_id": c2 });
    for user in ["p1viewer", "v1enum"] {
        let t = app.login(user, ADMIN_PW).token().unwrap().to_owned();
        assert_error(
            &app.post("/api/v1/units", Some(&ok_body), Some(&t)),
            403,
            "forbidden",
        );
    }
}

fn oversize_body_is_413_with_error_body(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = test_config(&db.url);
    config.body_limit = 2048;
    let app = TestApp::spawn_with(db, config);
    app.import_units(SMALL_TREE);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    let token = app.login("p1admin", ADMIN_PW).token().unwrap().to_owned();
    let big = json!({ "name": "x".repeat(4096), "level": "village", "parent_id": app.unit_id("C2") });
    assert_error(
        &app.post("/api/v1/units", Some(&big), Some(&token)),
        413,
        "payload_too_large",
    );
    // Same without Content-Length (chunked): the limit applies while reading.
    let res = TestApp::agent()
        .post(&app.url("/api/v1/units"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(ureq::SendBody::from_reader(&mut std::io::Cursor::new(
            big.to_string().into_bytes(),
        )))
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
}

fn import_is_idempotent_and_all_or_nothing(backend: Backend) {
    use hamlet_server::units::import::{ImportError, ImportOptions, import};
    let app = TestApp::spawn(backend);
    let mut conn = app.pool.get().unwrap();
    let first = import(
        &mut conn,
        SMALL_TREE.as_bytes(),
        &ImportOptions::default(),
        |_| {},
    )
    .unwrap();
    assert_eq!((first.rows, first.created, first.unchanged), (11, 11, 0));
    let again = import(
        &mut conn,
        SMALL_TREE.as_bytes(),
        &ImportOptions::default(),
        |_| {},
    )
    .unwrap();
    assert_eq!((again.created, again.renamed, again.unchanged), (0, 0, 11));
    let renamed = SMALL_TREE.replace("Thôn Nà Lầu", "Thôn Nà Lầu Trên");
    let r = import(&mut conn, renamed.as_bytes(), &ImportOptions::default(), |_| {}).unwrap();
    assert_eq!((r.created, r.renamed), (0, 1));

    let bad = "code,name,level,parent_code
V5,Thôn Năm,village,C1
V6,,village,C1
V7,Thôn Bảy,hamlet,C1
V8,Thôn Tám,village,NOPE
V5,Thôn Trùng,village,C1
P9,Tỉnh Sai,province,C1
V1,Thôn Nà Lầu,village,C2
too,few
";
    let Err(ImportError::Invalid(errors)) =
        import(&mut conn, bad.as_bytes(), &ImportOptions::default(), |_| {})
    else {
        panic!("bad file must be refused");
    };
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 6, 9], "parse errors first: {errors:?}");
    // Fix the parse errors: the resolution errors come next, still nothing written.
    let bad = "code,name,level,parent_code
V5,Thôn Năm,village,C1
V8,Thôn Tám,village,NOPE
P9,Tỉnh Sai,province,C1
";
    let Err(ImportError::Invalid(errors)) =
        import(&mut conn, bad.as_bytes(), &ImportOptions::default(), |_| {})
    else {
        panic!("bad file must be refused");
    };
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4]);
    assert!(errors[0].message.contains("NOPE"));
    let moved = "code,name,level,parent_code\nV1,Thôn Nà Lầu Trên,village,C2\n";
    let Err(ImportError::Invalid(errors)) =
        import(&mut conn, moved.as_bytes(), &ImportOptions::default(), |_| {})
    else {
        panic!("moving a unit by import must be refused");
    };
    assert!(errors[0].message.contains("reorganisation"));
    assert!(
        hamlet_server::db::units::find_live_by_code(&mut conn, "V5")
            .unwrap()
            .is_none(),
        "nothing half-imported"
    );

    // A re-import that adds a village under a commune the file lists again (found by the
    // units_csv fuzz target): the new village's closure must reach every ancestor.
    let grown = format!("{SMALL_TREE}V9,Thôn Chín,village,C1\n");
    let r = import(&mut conn, grown.as_bytes(), &ImportOptions::default(), |_| {}).unwrap();
    assert_eq!(r.created, 1);
    let check = hamlet_server::verify::verify(&mut conn, false).unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);

    let bad_header = "code,name,level\nX,Y,village\n";
    assert!(
        import(
            &mut conn,
            bad_header.as_bytes(),
            &ImportOptions::default(),
            |_| {}
        )
        .is_err()
    );
}

fn import_vietnam_2025(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.import_units("code,name,level,parent_code\nVN,Việt Nam,country,\n");
    app.add_user("root", ADMIN_PW, Role::Admin, &["VN"]);
    let file = repo_root().join("data/vn-admin-units-2025.csv");
    let run = |args: &[&str]| {
        std::process::Command::new(hamlet_bin())
            .args(args)
            .env("HAMLET_DATABASE_URL", &app.db.url)
            .output()
            .expect("run hamlet")
    };
    let out = run(&["units", "import", file.to_str().unwrap(), "--parent", "VN"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3355 rows: 3355 created"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["units", "import", file.to_str().unwrap(), "--parent", "VN"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created, 0 renamed, 3355 unchanged"));

    let api = app.login("root", ADMIN_PW);
    let provinces = api.children(app.unit_id("VN")).unwrap().units;
    assert_eq!(provinces.len(), 34);
    assert!(provinces.iter().all(|p| p.level == UnitLevel::Province));
    let cao_bang = provinces
        .iter()
        .find(|p| p.code.as_deref() == Some("04"))
        .unwrap();
    assert_eq!(cao_bang.name, "Tỉnh Cao Bằng");
    let communes = api.children(cao_bang.id).unwrap().units;
    assert!(!communes.is_empty() && communes.iter().all(|c| c.level == UnitLevel::Commune));
    let path = api.unit(communes[0].id).unwrap().path;
    assert_eq!(
        path.iter().map(|p| p.level).collect::<Vec<_>>(),
        [UnitLevel::Country, UnitLevel::Province, UnitLevel::Commune]
    );
}

fn openapi_lists_every_route(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (status, doc) = app.get("/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("post", "/api/v1/users"),
        ("post", "/api/v1/users/{id}/disable"),
        ("post", "/api/v1/users/{id}/enable"),
        ("get", "/api/v1/devices"),
        ("post", "/api/v1/devices/{device_id}/revoke"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/units/{id}"),
        ("get", "/api/v1/units/{id}/children"),
        ("post", "/api/v1/units"),
        ("post", "/api/v1/sync/push"),
        ("get", "/api/v1/sync/pull"),
        ("get", "/api/v1/conflicts"),
        ("post", "/api/v1/conflicts/{id}/resolve"),
        ("get", "/api/v1/aggregates/{unit_id}"),
        ("get", "/api/v1/aggregates/{unit_id}/children"),
        ("get", "/api/v1/aggregates/{unit_id}/export"),
        ("post", "/api/v1/units/{id}/move"),
        ("post", "/api/v1/units/merge"),
    ];
    for (method, path) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from openapi.json");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "a route is documented that this test does not know: update it"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

fn metrics_use_route_patterns(backend: Backend) {
    let app = app_with_tree(backend);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    let api = app.login("p1admin", ADMIN_PW);
    let v1 = app.unit_id("V1");
    api.unit(v1).unwrap();
    let mut res = TestApp::agent().get(&app.url("/metrics")).call().unwrap();
    assert!(
        res.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.body_mut().read_to_string().unwrap();
    assert!(
        text.contains(
            r#"hamlet_http_requests_total{method="GET",route="/api/v1/units/{id}",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("hamlet_http_request_duration_seconds_bucket"));
    assert!(text.contains("hamlet_db_pool_max_connections 4"));
    assert!(!text.contains(&v1.to_string()), "raw ids must not become labels");
}

fn cli_user_add_works_while_serving(backend: Backend) {
    let app = app_with_tree(backend);
    let mut child = std::process::Command::new(hamlet_bin())
        .args([
            "user",
            "add",
            "Root",
            "--role",
            "admin",
            "--scope",
            "VN",
            "--password-stdin",
        ])
        .env("HAMLET_DATABASE_URL", &app.db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long root password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The trailing newline is not part of the password; the name is case-insensitive.
    let api = app.login("root", "a long root password");
    assert_eq!(api.children(app.unit_id("VN")).unwrap().units.len(), 2);
    assert!(
        app.api
            .login("root", "a long root password\n", uuid::Uuid::new_v4(), None)
            .is_err()
    );

    // Scope by unit id works too; a weak password is refused with a reason.
    let out = std::process::Command::new(hamlet_bin())
        .args([
            "user",
            "add",
            "weak",
            "--role",
            "viewer",
            "--scope",
            &app.unit_id("P1").to_string(),
            "--password-stdin",
        ])
        .env("HAMLET_DATABASE_URL", &app.db.url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cli_verify_finds_and_repairs_closure_damage(backend: Backend) {
    let app = app_with_tree(backend);
    let run = |args: &[&str]| {
        std::process::Command::new(hamlet_bin())
            .args(args)
            .env("HAMLET_DATABASE_URL", &app.db.url)
            .output()
            .unwrap()
    };
    assert!(run(&["verify"]).status.success());
    {
        use diesel::RunQueryDsl;
        let mut conn = app.pool.get().unwrap();
        let sql = format!(
            "DELETE FROM unit_closure WHERE descendant_id = '{}' AND depth = 2",
            app.unit_id("V1")
        );
        diesel::sql_query(sql).execute(&mut *conn).unwrap();
    }
    let out = run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing"));
    assert!(run(&["verify", "--repair"]).status.success());
    assert!(run(&["verify"]).status.success());
}

fn cli_demo_seed_then_serve_shows_it(backend: Backend) {
    let app = TestApp::spawn(backend);
    let run = |args: &[&str]| {
        std::process::Command::new(hamlet_bin())
            .args(args)
            .env("HAMLET_DATABASE_URL", &app.db.url)
            .output()
            .unwrap()
    };
    let out = run(&["demo", "seed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !run(&["demo", "seed"]).status.success(),
        "a second seed is refused"
    );
    let api = app.login("demo-admin", hamlet_server::demo::DEMO_PASSWORD);
    let province = app.unit_id("DEMO");
    let communes = api.children(province).unwrap().units;
    assert_eq!(communes.len(), 3);
    assert_eq!(api.children(communes[0].id).unwrap().units.len(), 4);
    let mut conn = app.pool.get().unwrap();
    let villages: Vec<String> = communes
        .iter()
        .flat_map(|c| api.children(c.id).unwrap().units)
        .map(|v| v.id.to_string())
        .collect();
    let (households, members) = hamlet_server::db::records::count_live(&mut conn, &villages).unwrap();
    assert!(
        households >= 12 * 12 && members > households,
        "{households} households, {members} members"
    );
}

fn serve_refuses_to_start_without_a_secret(backend: Backend) {
    let db = TestDb::new(backend);
    let out = std::process::Command::new(hamlet_bin())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("HAMLET_DATABASE_URL", &db.url)
        .env_remove("HAMLET_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HAMLET_JWT_SECRET"));
    let out = std::process::Command::new(hamlet_bin())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("HAMLET_DATABASE_URL", &db.url)
        .env("HAMLET_JWT_SECRET", "too-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = std::process::Command::new(hamlet_bin())
        .args(["migrate"])
        .env("HAMLET_DATABASE_URL", "host=localhost dbname=x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

backend_tests!(
    health,
    unknown_routes_and_methods_get_the_error_body,
    unit_read_with_path_and_children,
    unit_create_rules,
    oversize_body_is_413_with_error_body,
    import_is_idempotent_and_all_or_nothing,
    import_vietnam_2025,
    openapi_lists_every_route,
    metrics_use_route_patterns,
    cli_user_add_works_while_serving,
    cli_verify_finds_and_repairs_closure_damage,
    cli_demo_seed_then_serve_shows_it,
    serve_refuses_to_start_without_a_secret,
    serve_process_starts_together_and_stops_gracefully_on_sigterm,
);

/// PostgreSQL going away: `/healthz` and API calls answer 503 with Retry-After, then the same
/// process recovers once the database is back. The database sits behind a proxy the test cuts,
/// so the shared PostgreSQL keeps serving the other tests.
#[test]
fn postgres_outage_gives_503_and_recovers_without_restart() {
    let db = TestDb::new(Backend::Postgres);
    let pg_port: u16 = url_port(&db.url);
    let proxy = proxy::Proxy::start(([127, 0, 0, 1], pg_port).into());
    let proxied = db
        .url
        .replacen(&format!(":{pg_port}/"), &format!(":{}/", proxy.port), 1);
    let config = test_config(&proxied);
    let app = TestApp::spawn_with(db, config);
    app.import_units(SMALL_TREE);
    app.add_user("p1admin", ADMIN_PW, Role::Admin, &["P1"]);
    let api = app.login("p1admin", ADMIN_PW);
    let v1 = app.unit_id("V1");
    assert_eq!(app.get("/healthz", None).0, 200);

    proxy.cut();
    let started = std::time::Instant::now();
    let resp = app.get("/healthz", None);
    assert_eq!(resp.0, 503, "{}", resp.1);
    assert_eq!(resp.1["database"], "unavailable");
    let res = TestApp::agent().get(&app.url("/healthz")).call().unwrap();
    assert!(res.headers().get("retry-after").is_some());
    let err = api.unit(v1).unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "outage answers must not hang"
    );

    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.get("/healthz", None).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "did not recover");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(api.unit(v1).is_ok());
}

fn url_port(url: &str) -> u16 {
    let after_at = url.rsplit('@').next().unwrap();
    let host_port = after_at.split('/').next().unwrap();
    host_port.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn migration_folders_are_identical_for_both_backends() {
    let names = |backend: &str| {
        let mut v: Vec<String> = std::fs::read_dir(repo_root().join("migrations").join(backend))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let (sqlite, postgres) = (names("sqlite"), names("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "every migration needs a folder of the same name for both backends"
    );
    for name in &sqlite {
        for backend in ["sqlite", "postgres"] {
            for file in ["up.sql", "down.sql"] {
                assert!(
                    repo_root()
                        .join("migrations")
                        .join(backend)
                        .join(name)
                        .join(file)
                        .exists(),
                    "{backend}/{name}/{file}"
                );
            }
        }
    }
}

#[test]
fn shipped_units_file_matches_the_reference_data() {
    let shipped = std::fs::read(repo_root().join("data/vn-admin-units-2025.csv")).unwrap();
    let reference = repo_root().join("../shared/data/vn-admin-units-2025.csv");
    if let Ok(reference) = std::fs::read(reference) {
        assert_eq!(shipped, reference, "data/ must be an exact copy of shared/data");
    }
    assert_eq!(String::from_utf8(shipped).unwrap().lines().count(), 3356);
}

/// The real binary: serves, answers, and exits cleanly on SIGTERM; two processes starting on
/// one database at once both come up (migrations are serialized).
fn serve_process_starts_together_and_stops_gracefully_on_sigterm(backend: Backend) {
    let db = TestDb::new(backend);
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| ServerProcess::start(&db.url, &[]));
        let b = s.spawn(|| ServerProcess::start(&db.url, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    for server in [&first, &second] {
        let res = TestApp::agent()
            .get(&format!("{}/healthz", server.base))
            .call()
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }
    for mut server in [first, second] {
        server.signal("TERM");
        let status = server
            .wait(std::time::Duration::from_secs(15))
            .expect("exits after SIGTERM");
        assert!(status.success(), "graceful exit, got {status:?}");
    }
}
