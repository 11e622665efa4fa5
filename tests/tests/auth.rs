//! Authentication, sessions, devices, users and the authorization matrix — on both backends.

use base64::Engine;
use hamlet_shared::{NewUnit, NewUser, Role, UnitLevel};
use hamlet_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("p1admin", PW, Role::Admin, &["P1"]);
    app.add_user("p1viewer", PW, Role::Viewer, &["P1"]);
    app.add_user("c1enum", PW, Role::Enumerator, &["C1"]);
    app.add_user("p2enum", PW, Role::Enumerator, &["P2"]);
    app
}

fn login_body(user: &str, password: &str, device: Uuid) -> Value {
    json!({ "username": user, "password": password, "device_id": device, "device_name": "Điện thoại thôn" })
}

fn login_refresh_logout(backend: Backend) {
    let app = setup(backend);
    let device = Uuid::new_v4();
    let (status, body) = app.post(
        "/api/v1/auth/login",
        Some(&login_body("c1enum", PW, device)),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["username"], "c1enum");
    assert_eq!(body["user"]["role"], "enumerator");
    assert_eq!(body["user"]["scope"], json!([app.unit_id("C1")]));
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/units/{}", app.unit_id("V1")), Some(&access))
            .0,
        200
    );

    let (status, pair) = app.post(
        "/api/v1/auth/refresh",
        Some(&json!({ "refresh_token": refresh })),
        None,
    );
    assert_eq!(status, 200, "{pair}");
    assert_ne!(pair["refresh_token"], refresh.as_str(), "refresh tokens rotate");
    assert_eq!(pair["user"]["username"], "c1enum");
    let access2 = pair["access_token"].as_str().unwrap().to_owned();
    let refresh2 = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/units/{}", app.unit_id("V1")), Some(&access2))
            .0,
        200
    );

    let (status, _) = app.post("/api/v1/auth/logout", None, Some(&access2));
    assert_eq!(status, 204);
    // Both tokens of the session die at once, long before they expire.
    assert_error(
        &app.get(&format!("/api/v1/units/{}", app.unit_id("V1")), Some(&access2)),
        401,
        "unauthorized",
    );
    assert_error(
        &app.get(&format!("/api/v1/units/{}", app.unit_id("V1")), Some(&access)),
        401,
        "unauthorized",
    );
    assert_error(
        &app.post(
            "/api/v1/auth/refresh",
            Some(&json!({ "refresh_token": refresh2 })),
            None,
        ),
        401,
        "unauthorized",
    );
    // Malformed bodies.
    assert_error(
        &app.post("/api/v1/auth/login", Some(&json!({ "username": "x" })), None),
        400,
        "bad_request",
    );
    assert_error(
        &app.post("/api/v1/auth/refresh", Some(&json!({})), None),
        400,
        "bad_request",
    );
    assert_error(
        &app.post(
            "/api/v1/auth/refresh",
            Some(&json!({ "refresh_token": "nope" })),
            None,
        ),
        401,
        "unauthorized",
    );
}

fn refresh_reuse_ends_the_session(backend: Backend) {
    let app = setup(backend);
    let tokens = app.api.login("c1enum", PW, Uuid::new_v4(), None).unwrap();
    let rotated = app.api.refresh(&tokens.refresh_token).unwrap();
    let v1 = format!("/api/v1/units/{}", app.unit_id("V1"));
    assert_eq!(app.get(&v1, Some(&rotated.access_token)).0, 200);
    // The old token again: a thief (or a replay). The whole device session ends.
    let err = app.api.refresh(&tokens.refresh_token).unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_error(&app.get(&v1, Some(&rotated.access_token)), 401, "unauthorized");
    assert_eq!(
        app.api.refresh(&rotated.refresh_token).unwrap_err().status(),
        Some(401)
    );
    // A fresh login works again.
    assert!(app.api.login("c1enum", PW, Uuid::new_v4(), None).is_ok());
}

fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
    let app = setup(backend);
    let device = Uuid::new_v4();
    let wrong_pw = app.post(
        "/api/v1/auth/login",
        Some(&login_body("c1enum", "not-the-password", device)),
        None,
    );
    let unknown = app.post(
        "/api/v1/auth/login",
        Some(&login_body("nobody-here", "not-the-password", device)),
        None,
    );
    let invalid_name = app.post(
        "/api/v1/auth/login",
        Some(&login_body("x y", "not-the-password", device)),
        None,
    );
    assert_error(&wrong_pw, 401, "unauthorized");
    assert_eq!(wrong_pw, unknown);
    assert_eq!(wrong_pw, invalid_name);
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn bad_tokens_are_refused(backend: Backend) {
    let app = setup(backend);
    let tokens = app.api.login("c1enum", PW, Uuid::new_v4(), None).unwrap();
    let path = format!("/api/v1/units/{}", app.unit_id("V1"));
    assert_eq!(app.get(&path, Some(&tokens.access_token)).0, 200);
    let parts: Vec<&str> = tokens.access_token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let now = claims["iat"].as_i64().unwrap();

    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let expired = sign(&expired, TEST_SECRET.as_bytes());
    let wrong_key = sign(&claims, b"another-secret-another-secret-another-secret");
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap();
    claims["sub"] = json!(Uuid::new_v4());
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    // Validly signed, but naming a user that is not the session's.
    let forged_sub = sign(&claims, TEST_SECRET.as_bytes());
    for bad in [
        expired.as_str(),
        &wrong_key,
        &none,
        &hs512,
        &tampered,
        &forged_sub,
        "garbage",
        "a.b.c",
    ] {
        assert_error(&app.get(&path, Some(bad)), 401, "unauthorized");
    }
    // Wrong scheme, no token, empty token.
    for header in [
        format!("Basic {}", tokens.access_token),
        "Bearer ".to_owned(),
        tokens.access_token.clone(),
    ] {
        let mut res = TestApp::agent()
            .get(&app.url(&path))
            .header("Authorization", &header)
            .call()
            .unwrap();
        assert_eq!(res.status().as_u16(), 401);
        let body: Value = res.body_mut().read_json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

fn revoking_a_device_is_immediate(backend: Backend) {
    let app = setup(backend);
    let phone = Uuid::new_v4();
    let tokens = app.api.login("c1enum", PW, phone, Some("Lan's phone")).unwrap();
    let path = format!("/api/v1/units/{}", app.unit_id("V1"));
    assert_eq!(app.get(&path, Some(&tokens.access_token)).0, 200);

    // An admin outside the user's scope may not; an admin covering it may.
    let outsider = app.add_user("p2admin", PW, Role::Admin, &["P2"]);
    let _ = outsider;
    let p2admin = app.login("p2admin", PW);
    assert_eq!(p2admin.revoke_device(phone).unwrap_err().status(), Some(403));
    assert_eq!(
        p2admin.revoke_device(Uuid::new_v4()).unwrap_err().status(),
        Some(404)
    );
    let admin = app.login("p1admin", PW);
    admin.revoke_device(phone).unwrap();
    assert_error(&app.get(&path, Some(&tokens.access_token)), 401, "unauthorized");
    assert_eq!(
        app.api.refresh(&tokens.refresh_token).unwrap_err().status(),
        Some(401)
    );
    let listed = admin.devices().unwrap().devices;
    let entry = listed.iter().find(|d| d.device_id == phone).unwrap();
    assert!(entry.revoked);
    assert_eq!(entry.username, "c1enum");
    assert_eq!(entry.name.as_deref(), Some("Lan's phone"));

    // A user may revoke their own phone, e.g. from another device.
    let lost = Uuid::new_v4();
    let on_lost = app.api.login("c1enum", PW, lost, None).unwrap();
    let on_new = app.login("c1enum", PW);
    on_new.revoke_device(lost).unwrap();
    assert_error(&app.get(&path, Some(&on_lost.access_token)), 401, "unauthorized");
    assert!(on_new.unit(app.unit_id("V1")).is_ok());
    // But not someone else's.
    let other = Uuid::new_v4();
    app.api.login("p2enum", PW, other, None).unwrap();
    assert_eq!(on_new.revoke_device(other).unwrap_err().status(), Some(403));
}

fn disabling_a_user_ends_every_session(backend: Backend) {
    let app = setup(backend);
    let enumerator = app.add_user("v1enum", PW, Role::Enumerator, &["V1"]);
    let phone1 = app.login("v1enum", PW);
    let phone2 = app.api.login("v1enum", PW, Uuid::new_v4(), None).unwrap();
    let admin = app.login("p1admin", PW);
    let viewer = app.login("p1viewer", PW);
    assert_eq!(viewer.disable_user(enumerator).unwrap_err().status(), Some(403));
    let p2admin_id = app.add_user("p2admin", PW, Role::Admin, &["P2"]);
    assert_eq!(
        admin.disable_user(p2admin_id).unwrap_err().status(),
        Some(403),
        "outside scope"
    );
    assert_eq!(
        admin
            .disable_user(hamlet_shared::UserId::new())
            .unwrap_err()
            .status(),
        Some(404)
    );

    admin.disable_user(enumerator).unwrap();
    assert_eq!(phone1.unit(app.unit_id("V1")).unwrap_err().status(), Some(401));
    assert_eq!(
        app.api.refresh(&phone2.refresh_token).unwrap_err().status(),
        Some(401)
    );
    let err = app.api.login("v1enum", PW, Uuid::new_v4(), None).unwrap_err();
    assert_eq!(err.status(), Some(401));

    admin.enable_user(enumerator).unwrap();
    assert!(app.api.login("v1enum", PW, Uuid::new_v4(), None).is_ok());
    // An admin cannot lock itself out.
    let me = app
        .api
        .login("p1admin", PW, Uuid::new_v4(), None)
        .unwrap()
        .user
        .id;
    assert_eq!(admin.disable_user(me).unwrap_err().status(), Some(409));
}

fn login_is_rate_limited(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = test_config(&db.url);
    config.login_limits.per_user = 3;
    config.login_limits.per_ip = 6;
    let app = TestApp::spawn_with(db, config);
    app.import_units(SMALL_TREE);
    app.add_user("c1enum", PW, Role::Enumerator, &["C1"]);
    app.add_user("other", PW, Role::Enumerator, &["C1"]);
    let device = Uuid::new_v4();
    for _ in 0..3 {
        assert_eq!(
            app.post(
                "/api/v1/auth/login",
                Some(&login_body("c1enum", "wrong-password", device)),
                None
            )
            .0,
            401
        );
    }
    let mut res = TestApp::agent()
        .post(&app.url("/api/v1/auth/login"))
        .send_json(login_body("c1enum", PW, device))
        .unwrap();
    assert_eq!(res.status().as_u16(), 429, "even the right password waits");
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry));
    let body: Value = res.body_mut().read_json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another user from the same address still gets in, until the address limit.
    assert_eq!(
        app.post("/api/v1/auth/login", Some(&login_body("other", PW, device)), None)
            .0,
        200
    );
    for _ in 0..3 {
        app.post(
            "/api/v1/auth/login",
            Some(&login_body("unknown-user", "x-wrong-password", device)),
            None,
        );
    }
    assert_error(
        &app.post("/api/v1/auth/login", Some(&login_body("other", PW, device)), None),
        429,
        "rate_limited",
    );
}

fn users_are_created_within_scope(backend: Backend) {
    let app = setup(backend);
    let admin = app.login("p1admin", PW);
    let v1 = app.unit_id("V1");
    let user = admin
        .create_user(&NewUser {
            username: "Thu.Ha".into(),
            password: "thu-ha-long-password".into(),
            role: Role::Enumerator,
            scope: vec![v1],
        })
        .unwrap();
    assert_eq!(user.username, "thu.ha");
    assert_eq!(user.scope, vec![v1]);
    let login = app
        .api
        .login("thu.ha", "thu-ha-long-password", Uuid::new_v4(), None)
        .unwrap();
    assert_eq!(login.user, user);
    // Admins may create admins inside their scope.
    let token = admin.token().unwrap();
    let resp = app.post(
        "/api/v1/users",
        Some(
            &json!({ "username": "c2admin", "password": PW, "role": "admin", "scope": [app.unit_id("C2")] }),
        ),
        Some(token),
    );
    assert_eq!(resp.0, 201, "{}", resp.1);
    assert_eq!(resp.1["role"], "admin");

    let cases = [
        (
            json!({ "username": "x1x", "password": PW, "role": "viewer", "scope": [app.unit_id("P2")] }),
            403,
            "forbidden",
        ),
        (
            json!({ "username": "x2x", "password": PW, "role": "viewer", "scope": [v1, app.unit_id("VN")] }),
            403,
            "forbidden",
        ),
        (
            json!({ "username": "thu.ha", "password": PW, "role": "viewer", "scope": [v1] }),
            409,
            "conflict",
        ),
        (
            json!({ "username": "x3x", "password": "short", "role": "viewer", "scope": [v1] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "username": "x4x", "password": "x4x", "role": "viewer", "scope": [v1] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "username": "no spaces", "password": PW, "role": "viewer", "scope": [v1] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "username": "x5x", "password": PW, "role": "viewer", "scope": [] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "username": "x6x", "password": PW, "role": "viewer", "scope": [Uuid::new_v4()] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "username": "x7x", "password": PW, "role": "superuser", "scope": [v1] }),
            400,
            "bad_request",
        ),
    ];
    for (body, status, code) in cases {
        let resp = app.post("/api/v1/users", Some(&body), Some(token));
        assert_error(&resp, status, code);
    }
    let resp = app.post(
        "/api/v1/users",
        Some(&json!({ "username": "x3x", "password": "short", "role": "viewer", "scope": [v1] })),
        Some(token),
    );
    assert_eq!(resp.1["error"]["details"][0]["field"], "password");
}

/// Every role against every route that must refuse it.
fn role_route_matrix(backend: Backend) {
    let app = setup(backend);
    let tokens: Vec<(&str, String)> = ["p1admin", "p1viewer", "c1enum"]
        .into_iter()
        .map(|u| (u, app.login(u, PW).token().unwrap().to_owned()))
        .collect();
    let some_user = app.add_user("target", PW, Role::Enumerator, &["V1"]);
    let (p1, c1, v1) = (app.unit_id("P1"), app.unit_id("C1"), app.unit_id("V1"));
    let new_unit = |n: usize| json!({ "name": format!("Thôn {n}"), "level": "village", "parent_id": c1 });
    let new_user =
        |n: usize| json!({ "username": format!("new{n}"), "password": PW, "role": "viewer", "scope": [v1] });
    // (method, path, body, expected status for p1admin, p1viewer, c1enum)
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let rows: Vec<(&str, String, Option<Value>, [u16; 3])> = vec![
        ("GET", format!("/api/v1/units/{p1}"), None, [200, 200, 403]),
        ("GET", format!("/api/v1/units/{c1}"), None, [200, 200, 200]),
        (
            "GET",
            format!("/api/v1/units/{p1}/children"),
            None,
            [200, 200, 403],
        ),
        (
            "GET",
            format!("/api/v1/units/{}", app.unit_id("P2")),
            None,
            [403, 403, 403],
        ),
        (
            "POST",
            "/api/v1/units".into(),
            Some(new_unit(next())),
            [201, 403, 403],
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(new_user(next())),
            [201, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/users/{some_user}/disable"),
            None,
            [204, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/users/{some_user}/enable"),
            None,
            [204, 403, 403],
        ),
        ("GET", "/api/v1/audit".into(), None, [200, 403, 403]),
        ("GET", "/api/v1/devices".into(), None, [200, 200, 200]),
    ];
    for (method, path, body, expected) in rows {
        for (i, (user, token)) in tokens.iter().enumerate() {
            // Bodies that create things need a fresh name per attempt.
            let body = body.clone().map(|mut b| {
                if let Some(name) = b.get_mut("username") {
                    *name = json!(format!("{}{user}", name.as_str().unwrap()));
                }
                b
            });
            let (status, resp) = match method {
                "GET" => app.get(&path, Some(token)),
                _ => app.post(&path, body.as_ref(), Some(token)),
            };
            assert_eq!(status, expected[i], "{user} {method} {path}: {resp}");
            if status >= 400 {
                assert_error(&(status, resp), status, "forbidden");
            }
        }
        // And nobody without a token.
        let (status, _) = match method {
            "GET" => app.get(&path, None),
            _ => app.post(&path, body.as_ref(), None),
        };
        assert_eq!(status, 401, "anonymous {method} {path}");
    }
}

fn scope_covers_subtrees_only(backend: Backend) {
    let app = setup(backend);
    let enumerator = app.login("c1enum", PW);
    assert!(enumerator.unit(app.unit_id("C1")).is_ok());
    assert!(enumerator.unit(app.unit_id("V1")).is_ok());
    assert!(enumerator.unit(app.unit_id("V2")).is_ok());
    for outside in ["D1", "P1", "VN", "C2", "V3", "V4"] {
        assert_eq!(
            enumerator.unit(app.unit_id(outside)).unwrap_err().status(),
            Some(403),
            "{outside}"
        );
    }
    // A unit created later inside the scope is covered at once.
    let admin = app.login("p1admin", PW);
    let new = admin
        .create_unit(&NewUnit {
            code: None,
            name: "Thôn Mới".into(),
            level: UnitLevel::Village,
            parent_id: app.unit_id("C1"),
        })
        .unwrap();
    assert!(enumerator.unit(new.id).is_ok());
    // A scope of several units covers each subtree.
    app.add_user("two", PW, Role::Viewer, &["V1", "P2"]);
    let two = app.login("two", PW);
    assert!(two.unit(app.unit_id("V1")).is_ok() && two.unit(app.unit_id("V4")).is_ok());
    assert_eq!(two.unit(app.unit_id("V2")).unwrap_err().status(), Some(403));
}

fn devices_are_listed_by_scope(backend: Backend) {
    let app = setup(backend);
    let shared_phone = Uuid::new_v4();
    app.api
        .login("c1enum", PW, shared_phone, Some("Máy chung"))
        .unwrap();
    app.api
        .login("p2enum", PW, shared_phone, Some("Máy chung"))
        .unwrap();
    let own = app.api.login("p1viewer", PW, Uuid::new_v4(), None).unwrap();
    let admin = app.login("p1admin", PW);
    let list = admin.devices().unwrap().devices;
    let users: Vec<&str> = list.iter().map(|d| d.username.as_str()).collect();
    assert!(users.contains(&"c1enum") && users.contains(&"p1viewer") && users.contains(&"p1admin"));
    assert!(
        !users.contains(&"p2enum"),
        "p2enum is outside p1admin's scope: {users:?}"
    );
    let entry = list.iter().find(|d| d.username == "c1enum").unwrap();
    assert!(entry.last_sync.is_none());
    assert!(entry.last_seen.ends_with('Z'));
    assert!(!entry.revoked);
    // Others see their own devices only.
    let viewer = app.api.with_token(own.access_token);
    let mine = viewer.devices().unwrap().devices;
    assert!(!mine.is_empty() && mine.iter().all(|d| d.username == "p1viewer"));
    // Revoking the shared phone as p1admin ends c1enum's session on it, not p2enum's.
    admin.revoke_device(shared_phone).unwrap();
    let root = app.login("root", PW);
    let all = root.devices().unwrap().devices;
    let revoked: Vec<(&str, bool)> = all
        .iter()
        .filter(|d| d.device_id == shared_phone)
        .map(|d| (d.username.as_str(), d.revoked))
        .collect();
    assert!(
        revoked.contains(&("c1enum", true)) && revoked.contains(&("p2enum", false)),
        "{revoked:?}"
    );
}

fn audit_log_records_security_events(backend: Backend) {
    let app = setup(backend);
    let phone = Uuid::new_v4();
    app.api.login("c1enum", PW, phone, None).unwrap();
    let _ = app.api.login("c1enum", "wrong-password", Uuid::new_v4(), None);
    let _ = app.api.login("ghost", "wrong-password", Uuid::new_v4(), None);
    let admin = app.login("p1admin", PW);
    admin
        .create_user(&NewUser {
            username: "audited".into(),
            password: PW.into(),
            role: Role::Viewer,
            scope: vec![app.unit_id("V1")],
        })
        .unwrap();
    admin.revoke_device(phone).unwrap();
    let (status, body) = app.get("/api/v1/audit", admin.token());
    assert_eq!(status, 200);
    let actions: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["login", "login_failed", "user_created", "device_revoked"] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    let failed = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login_failed")
        .unwrap();
    assert_eq!(failed["ip"], "127.0.0.1");
    assert!(failed["detail"].to_string().contains("c1enum"));
    // Only root sees the failed login of a name that does not exist.
    assert!(!body.to_string().contains("ghost"));
    let root = app.login("root", PW);
    let (_, all) = app.get("/api/v1/audit?limit=1000", root.token());
    assert!(all.to_string().contains("ghost"));
    assert_error(
        &app.get("/api/v1/audit?limit=x", root.token()),
        400,
        "bad_request",
    );
}

backend_tests!(
    login_refresh_logout,
    refresh_reuse_ends_the_session,
    wrong_password_and_unknown_user_look_the_same,
    bad_tokens_are_refused,
    revoking_a_device_is_immediate,
    disabling_a_user_ends_every_session,
    login_is_rate_limited,
    users_are_created_within_scope,
    role_route_matrix,
    scope_covers_subtrees_only,
    devices_are_listed_by_scope,
    audit_log_records_security_events,
    role_route_matrix_for_records,
);

/// The same matrix for the sync, conflict, aggregate and reorganisation routes, with each
/// user on a phone of its own (pushes must name the session's device).
fn role_route_matrix_for_records(backend: Backend) {
    let app = setup(backend);
    let users = ["p1admin", "p1viewer", "c1enum"];
    let phones: Vec<Phone> = users.iter().map(|u| Phone::login(&app, u, PW)).collect();
    let (c1, c2, p2, v3) = (
        app.unit_id("C1"),
        app.unit_id("C2"),
        app.unit_id("P2"),
        app.unit_id("V3"),
    );
    type Row = (
        &'static str,
        String,
        Box<dyn Fn(&Phone) -> Option<Value>>,
        [u16; 3],
    );
    let rows: Vec<Row> = vec![
        (
            "POST",
            "/api/v1/sync/push".into(),
            Box::new(|p: &Phone| Some(json!({ "device_id": p.device, "mutations": [] }))),
            [200, 403, 200],
        ),
        (
            "GET",
            "/api/v1/sync/pull".into(),
            Box::new(|_: &Phone| None),
            [200, 403, 200],
        ),
        (
            "GET",
            "/api/v1/conflicts".into(),
            Box::new(|_: &Phone| None),
            [200, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/aggregates/{c1}"),
            Box::new(|_: &Phone| None),
            [200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/aggregates/{c1}/children"),
            Box::new(|_: &Phone| None),
            [200, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/aggregates/{p2}"),
            Box::new(|_: &Phone| None),
            [403, 403, 403],
        ),
        (
            "GET",
            format!("/api/v1/aggregates/{p2}/export?format=csv"),
            Box::new(|_: &Phone| None),
            [403, 403, 403],
        ),
        (
            "POST",
            format!("/api/v1/units/{v3}/move"),
            Box::new(move |_: &Phone| Some(json!({ "parent_id": c1, "effective_on": "2025-07-01" }))),
            [200, 403, 403],
        ),
        (
            "POST",
            "/api/v1/units/merge".into(),
            Box::new(move |_: &Phone| {
                Some(json!({ "sources": [c2], "into": c1, "effective_on": "2025-07-01" }))
            }),
            [200, 403, 403],
        ),
    ];
    for (method, path, body, expected) in &rows {
        for (i, phone) in phones.iter().enumerate() {
            let (status, resp) = match *method {
                "GET" => app.get(path, Some(&phone.token)),
                _ => app.post(path, body(phone).as_ref(), Some(&phone.token)),
            };
            assert_eq!(status, expected[i], "{} {method} {path}: {resp}", users[i]);
            if status == 403 {
                assert_error(&(status, resp), 403, "forbidden");
            }
        }
    }
}
