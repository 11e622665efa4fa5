//! Hostile input, on both backends: gzip bombs, malformed UTF-8, huge numbers, deep nesting,
//! 10,000-character names, NUL bytes, wrong content types, empty bodies. Each gets a clear 4xx
//! with the contract's error body (inside a push, a per-record `rejected`), never a 5xx, and
//! nothing of it is written. Also: compressed responses, scope escalation by an admin, and no
//! personal data in the logs or metrics of the real binary.

use hamlet_shared::Role;
use hamlet_tests::wire::{self, WireResponse};
use hamlet_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    add_users(&app.pool);
    app
}

fn add_users(pool: &hamlet_server::db::DbPool) {
    add_user(pool, "p1admin", PW, Role::Admin, &["P1"]);
    add_user(pool, "c1admin", PW, Role::Admin, &["C1"]);
    add_user(pool, "p1viewer", PW, Role::Viewer, &["P1"]);
    add_user(pool, "v1team", PW, Role::Enumerator, &["V1"]);
    add_user(pool, "c1team", PW, Role::Enumerator, &["C1"]);
}

fn id() -> Uuid {
    Uuid::now_v7()
}

/// Headers of a JSON request with a bearer token.
fn json_headers(token: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("Authorization".into(), format!("Bearer {token}")),
    ]
}

fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> WireResponse {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    wire::request(&app.base, method, path, &headers, body)
}

/// Asserts a 4xx with the contract's error body and, when given, its code.
#[track_caller]
fn assert_4xx(case: &str, res: &WireResponse, status: u16, code: &str) {
    let body = res.json();
    assert_eq!(res.status, status, "{case}: status; body: {body}");
    assert_eq!(body["error"]["code"], code, "{case}: code; body: {body}");
    assert!(body["error"]["message"].is_string(), "{case}: {body}");
    assert!(body["error"]["details"].is_array(), "{case}: {body}");
    assert!(
        res.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{case}: {:?}",
        res.headers
    );
}

/// Peak resident memory of this process (the in-process server's included), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Resets the peak to the current resident size (Linux: writing 5 to clear_refs).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// A realistic push body of `households` households with three members each.
fn village_push(phone: &Phone, village: hamlet_shared::UnitId, households: usize) -> Value {
    let mut mutations = Vec::new();
    for n in 0..households {
        let h = id();
        mutations.push(phone.upsert(
            "household",
            h,
            0,
            json!({ "village_id": village, "head_name": format!("Hoàng Văn Chủ {n}"),
                "address": format!("Xóm {n}, thôn Nà Lầu"), "fixed_broadband": "no", "surveyed_on": "2026-03-02" }),
        ));
        for (k, year) in [1968, 1972, 2004].into_iter().enumerate() {
            mutations.push(phone.upsert(
                "member",
                id(),
                0,
                member(h, &format!("Hoàng Thị Thành Viên {n}-{k}"), year, "yes", "no"),
            ));
        }
    }
    json!({ "device_id": phone.device, "mutations": mutations })
}

// ---------------------------------------------------------------------------------------------
// Bandwidth: gzip bodies, bombs, compressed responses.

fn gzip_bodies_and_bombs(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let v1 = app.unit_id("V1");
    let mut gz = json_headers(&phone.token);
    gz.push(("Content-Encoding".into(), "gzip".into()));

    // A gzip push and a deflate push are applied.
    let h = id();
    let body = json!({ "device_id": phone.device, "mutations": [phone.upsert("household", h, 0, household(v1, "Nén gzip"))] });
    let res = send(
        &app,
        "POST",
        "/api/v1/sync/push",
        &gz,
        Some(&wire::gzip(body.to_string().as_bytes())),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    assert_eq!(res.json()["summary"]["applied"], 1);
    let mut deflate_headers = json_headers(&phone.token);
    deflate_headers.push(("Content-Encoding".into(), "deflate".into()));
    let body = json!({ "device_id": phone.device, "mutations": [phone.upsert("household", id(), 0, household(v1, "Nén deflate"))] });
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, body.to_string().as_bytes()).unwrap();
    let res = send(
        &app,
        "POST",
        "/api/v1/sync/push",
        &deflate_headers,
        Some(&z.finish().unwrap()),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    assert_eq!(res.json()["summary"]["applied"], 1);

    // Bombs: a few KiB on the wire, more than the 8 MiB limit decoded.
    let login_gz = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("Content-Encoding".to_owned(), "gzip".to_owned()),
    ];
    for (case, bomb, path, headers) in [
        (
            "10 MiB of zeros",
            wire::gzip_bomb(0, 10),
            "/api/v1/sync/push",
            &gz,
        ),
        ("10 MiB of [", wire::gzip_bomb(b'[', 10), "/api/v1/sync/push", &gz),
        (
            "64 MiB of spaces",
            wire::gzip_bomb(b' ', 64),
            "/api/v1/sync/push",
            &gz,
        ),
        (
            "10 MiB of zeros at login",
            wire::gzip_bomb(0, 10),
            "/api/v1/auth/login",
            &login_gz,
        ),
    ] {
        assert!(bomb.len() < 80 * 1024, "{case}: {} bytes", bomb.len());
        let res = send(&app, "POST", path, headers, Some(&bomb));
        assert_4xx(case, &res, 413, "payload_too_large");
    }
    // A bomb under the limit is decoded, then refused for what it is.
    let res = send(
        &app,
        "POST",
        "/api/v1/sync/push",
        &gz,
        Some(&wire::gzip(&vec![b'['; 1 << 20])),
    );
    assert_4xx("1 MiB of [ (nesting)", &res, 400, "bad_request");

    // The limit is on the decoded size: a push of under 32 KiB compressed, over 192 KiB decoded,
    // against a server limited to 64 KiB.
    let db = TestDb::new(backend);
    let mut config = test_config(&db.url);
    config.body_limit = 64 * 1024;
    let small = TestApp::spawn_with(db, config);
    small.import_units(SMALL_TREE);
    add_users(&small.pool);
    let p = Phone::login(&small, "v1team", PW);
    let plain = village_push(&p, small.unit_id("V1"), 150)
        .to_string()
        .into_bytes();
    let packed = wire::gzip(&plain);
    assert!(
        plain.len() > 3 * 64 * 1024 && packed.len() < 32 * 1024,
        "{} -> {}",
        plain.len(),
        packed.len()
    );
    let mut small_gz = json_headers(&p.token);
    small_gz.push(("Content-Encoding".into(), "gzip".into()));
    let res = send(&small, "POST", "/api/v1/sync/push", &small_gz, Some(&packed));
    assert_4xx(
        "compressed under, decoded over the limit",
        &res,
        413,
        "payload_too_large",
    );
    // The same records in pushes that fit are accepted.
    let fits = village_push(&p, small.unit_id("V1"), 10).to_string().into_bytes();
    let res = send(
        &small,
        "POST",
        "/api/v1/sync/push",
        &small_gz,
        Some(&wire::gzip(&fits)),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    assert_eq!(res.json()["summary"]["applied"], 40);

    // Encodings the server does not speak, and broken gzip.
    let good = wire::gzip(
        json!({ "device_id": phone.device, "mutations": [] })
            .to_string()
            .as_bytes(),
    );
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 6);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"{}");
    for (case, encoding, body) in [
        ("brotli", "br", good.clone()),
        ("stacked gzip", "gzip, gzip", wire::gzip(&good)),
        ("unknown", "snappy", good.clone()),
        ("not gzip at all", "gzip", br#"{"device_id": 1}"#.to_vec()),
        ("truncated gzip", "gzip", truncated),
        ("data after the gzip stream", "gzip", trailing),
        ("empty gzip body", "gzip", Vec::new()),
    ] {
        let mut headers = json_headers(&phone.token);
        headers.push(("Content-Encoding".into(), encoding.into()));
        let res = send(&app, "POST", "/api/v1/sync/push", &headers, Some(&body));
        assert_4xx(case, &res, 400, "bad_request");
    }
    // Nothing of the refused requests was written.
    let (changes, _) = phone.pull_all(None);
    assert_eq!(changes.len(), 2, "only the two good pushes: {changes:?}");
    app.assert_consistent();
    small.assert_consistent();
}

/// A 1 GiB bomb (1 MiB on the wire) is refused after decoding at most the limit: the process's
/// peak memory hardly moves. actix-web's own decoder inflated each received chunk whole (one
/// 128 KiB chunk of this bomb is 128 MiB) before checking the limit.
fn a_gzip_bomb_is_refused_without_inflating_it(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let mut gz = json_headers(&phone.token);
    gz.push(("Content-Encoding".into(), "gzip".into()));
    let bomb = wire::gzip_bomb(b'[', 1024);
    // Warm up (connections, buffers), then measure from here.
    let ok = wire::gzip(
        json!({ "device_id": phone.device, "mutations": [] })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        send(&app, "POST", "/api/v1/sync/push", &gz, Some(&ok)).status,
        200
    );
    reset_peak_rss();
    let before = peak_rss_kib();
    let res = send(&app, "POST", "/api/v1/sync/push", &gz, Some(&bomb));
    let grew_mib = (peak_rss_kib() - before) / 1024;
    assert_4xx("1 GiB of [", &res, 413, "payload_too_large");
    // The 8 MiB body buffer, the bomb itself and a few decoding buffers; never the 1 GiB.
    assert!(grew_mib < 32, "peak memory grew by {grew_mib} MiB");
    // The server is fine afterwards.
    assert_eq!(
        send(&app, "POST", "/api/v1/sync/push", &gz, Some(&ok)).status,
        200
    );
}

fn responses_are_gzipped_when_asked(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let body = village_push(&phone, app.unit_id("V1"), 5);
    phone.push_ok(body["mutations"].as_array().unwrap());
    let auth = vec![("Authorization".to_owned(), format!("Bearer {}", phone.token))];
    let with = |encoding: &str| {
        let mut h = auth.clone();
        h.push(("Accept-Encoding".into(), encoding.into()));
        h
    };
    let plain = send(&app, "GET", "/api/v1/sync/pull", &auth, None);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.body.len() > 1024, "a pull of 20 records is over 1 KiB");
    let packed = send(&app, "GET", "/api/v1/sync/pull", &with("gzip"), None);
    assert_eq!(packed.status, 200);
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    assert!(
        packed.body.len() * 3 < plain.body.len(),
        "{} bytes gzip, {} plain",
        packed.body.len(),
        plain.body.len()
    );
    assert_eq!(packed.json()["changes"], plain.json()["changes"]);
    // A client that prefers gzip among others gets gzip; one that speaks only others gets plain.
    let preferred = send(
        &app,
        "GET",
        "/api/v1/sync/pull",
        &with("br;q=0.5, gzip;q=1.0"),
        None,
    );
    assert_eq!(preferred.header("content-encoding"), Some("gzip"));
    let identity = send(&app, "GET", "/api/v1/sync/pull", &with("identity"), None);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.json()["changes"], plain.json()["changes"]);
    // The other large answers too.
    for path in ["/api/v1/openapi.json", "/metrics"] {
        let res = send(&app, "GET", path, &with("gzip"), None);
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.header("content-encoding"), Some("gzip"), "{path}");
        assert!(!wire::gunzip(&res.body).is_empty());
    }
    // A gzip request asking for a gzip answer.
    let mut both = with("gzip");
    both.push(("Content-Type".into(), "application/json".into()));
    both.push(("Content-Encoding".into(), "gzip".into()));
    let body = village_push(&phone, app.unit_id("V1"), 5);
    let res = send(
        &app,
        "POST",
        "/api/v1/sync/push",
        &both,
        Some(&wire::gzip(body.to_string().as_bytes())),
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    assert_eq!(res.json()["summary"]["applied"], 20);
    // Push answers are compressed by a compressor each thread reuses: answers in a row, of other
    // sizes, each decode whole; a client that does not ask gets plain JSON.
    for (records, encoding) in [(40, "gzip"), (1, "gzip"), (3, "identity"), (2, "gzip;q=0")] {
        let mut headers = with(encoding);
        headers.push(("Content-Type".into(), "application/json".into()));
        let body = village_push(&phone, app.unit_id("V1"), records);
        let res = send(
            &app,
            "POST",
            "/api/v1/sync/push",
            &headers,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(res.status, 200, "{encoding}");
        let packed = (encoding == "gzip").then_some("gzip");
        assert_eq!(res.header("content-encoding"), packed, "{encoding}");
        let answer = res.json();
        assert_eq!(answer["summary"]["applied"], 4 * records, "{encoding}");
        assert_eq!(answer["results"].as_array().unwrap().len(), 4 * records);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies.

/// `depth` opening brackets of one kind, unclosed.
fn nested(open: &str, depth: usize) -> Vec<u8> {
    open.repeat(depth).into_bytes()
}

/// A JSON value nested `depth` arrays deep, closed.
fn deep_array(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn malformed_bodies_get_a_clear_4xx(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let admin = Phone::login(&app, "p1admin", PW);
    let (v1, c1) = (app.unit_id("V1"), app.unit_id("C1"));
    let dev = phone.device;
    let one = phone.upsert("household", id(), 0, household(v1, "PLACEHOLDER"));
    let push_with = |name_json: &str| -> Vec<u8> {
        let text = json!({ "device_id": dev, "mutations": [one] }).to_string();
        text.replace("\"PLACEHOLDER\"", name_json).into_bytes()
    };
    let mut invalid_utf8 = push_with("\"Ng\u{1EA1}\"");
    let at = invalid_utf8
        .windows(3)
        .position(|w| w == "\u{1EA1}".as_bytes())
        .unwrap();
    invalid_utf8[at..at + 3].copy_from_slice(&[0xff, 0xfe, 0xfd]);
    let login_utf8 = {
        let text = json!({ "username": "v1teamX", "password": PW, "device_id": Uuid::new_v4() }).to_string();
        let mut b = text.into_bytes();
        let at = b.iter().position(|c| *c == b'X').unwrap();
        b[at] = 0xc3; // a lone lead byte
        b
    };
    let unit_utf8 = {
        let mut b = json!({ "name": "Thôn X", "level": "village", "parent_id": c1 })
            .to_string()
            .into_bytes();
        let at = b.iter().position(|c| *c == b'X').unwrap();
        b[at] = 0x80; // a continuation byte alone
        b
    };
    let long_conflict = format!("/api/v1/conflicts/{}/resolve", "a".repeat(10_000));
    let as_of_nul = format!("/api/v1/aggregates/{v1}?as_of=2026-01-01%00");
    let format_nul = format!("/api/v1/aggregates/{v1}/export?format=csv%00");
    let ph = json_headers(&phone.token);
    let ah = json_headers(&admin.token);
    let anon = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let with_type = |token: &str, t: &str| {
        vec![
            ("Content-Type".to_owned(), t.to_owned()),
            ("Authorization".to_owned(), format!("Bearer {token}")),
        ]
    };
    let no_type = vec![("Authorization".to_owned(), format!("Bearer {}", phone.token))];
    let empty_push = json!({ "device_id": dev, "mutations": [] })
        .to_string()
        .into_bytes();
    let login_ok = json!({ "username": "v1team", "password": PW, "device_id": Uuid::new_v4() })
        .to_string()
        .into_bytes();

    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(String, String)>,
        Option<Vec<u8>>,
        u16,
        &'a str,
    );
    let push = "/api/v1/sync/push";
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Malformed UTF-8 and broken escapes.
        ("invalid UTF-8 in a push", "POST", push, ph.clone(), Some(invalid_utf8), 400, "bad_request"),
        ("invalid UTF-8 at login", "POST", "/api/v1/auth/login", anon.clone(), Some(login_utf8), 400, "bad_request"),
        ("invalid UTF-8 in a unit", "POST", "/api/v1/units", ah.clone(), Some(unit_utf8), 400, "bad_request"),
        ("a bad escape", "POST", push, ph.clone(), Some(push_with(r#""\x41""#)), 400, "bad_request"),
        ("a raw NUL outside strings", "POST", push, ph.clone(), Some([&empty_push[..], b"\0"].concat()), 400, "bad_request"),
        ("a raw NUL inside a string", "POST", push, ph.clone(), Some(push_with("\"A\0B\"")), 400, "bad_request"),
        ("invalid UTF-8 in the query", "GET", "/api/v1/sync/pull?cursor=%FF%FE", ph.clone(), None, 400, "bad_request"),
        ("a cursor that is not one", "GET", "/api/v1/sync/pull?cursor=%00%00", ph.clone(), None, 400, "bad_request"),
        ("invalid UTF-8 in the path", "GET", "/api/v1/units/%FF%FE", ah.clone(), None, 400, "bad_request"),
        ("a NUL as a unit id", "GET", "/api/v1/units/%00", ah.clone(), None, 400, "bad_request"),
        ("a NUL as an aggregate's unit", "GET", "/api/v1/aggregates/%00", ah.clone(), None, 400, "bad_request"),
        ("a NUL as a user id", "POST", "/api/v1/users/%00/disable", ah.clone(), None, 400, "bad_request"),
        ("a NUL as a device id", "POST", "/api/v1/devices/%00/revoke", ah.clone(), None, 400, "bad_request"),
        ("a NUL as a conflict id", "POST", "/api/v1/conflicts/%00/resolve", ah.clone(), Some(br#"{"choose": "current"}"#.to_vec()), 404, "not_found"),
        ("a 10,000-char conflict id", "POST", &long_conflict, ah.clone(), Some(br#"{"choose": "current"}"#.to_vec()), 404, "not_found"),
        ("a NUL in a refresh token", "POST", "/api/v1/auth/refresh", anon.clone(), Some(br#"{"refresh_token": "abc\u0000def"}"#.to_vec()), 401, "unauthorized"),
        ("a NUL in a username at login", "POST", "/api/v1/auth/login", anon.clone(), Some(json!({ "username": "v1\u{0}team", "password": PW, "device_id": Uuid::new_v4() }).to_string().into_bytes()), 401, "unauthorized"),
        ("a NUL in the unit_id filter", "GET", "/api/v1/conflicts?unit_id=%00", ah.clone(), None, 400, "bad_request"),
        ("a NUL in as_of", "GET", &as_of_nul, ah.clone(), None, 422, "validation_failed"),
        ("a NUL in the export format", "GET", &format_nul, ah.clone(), None, 400, "bad_request"),
        ("pull limit beyond i64", "GET", "/api/v1/sync/pull?limit=99999999999999999999999", ph.clone(), None, 400, "bad_request"),
        ("pull limit negative", "GET", "/api/v1/sync/pull?limit=-5", ph.clone(), None, 400, "bad_request"),
        ("conflicts limit beyond i64", "GET", "/api/v1/conflicts?limit=1e400", ah.clone(), None, 400, "bad_request"),
        // Deep nesting.
        ("100,000 [as the body", "POST", push, ph.clone(), Some(nested("[", 100_000)), 400, "bad_request"),
        ("100,000 {\"a\": as the body", "POST", push, ph.clone(), Some(nested("{\"a\":", 100_000)), 400, "bad_request"),
        ("100,000 [at login", "POST", "/api/v1/auth/login", anon.clone(), Some(nested("[", 100_000)), 400, "bad_request"),
        ("100,000 [in a unit", "POST", "/api/v1/units", ah.clone(), Some(nested("[", 100_000)), 400, "bad_request"),
        ("100,000 [in a refresh", "POST", "/api/v1/auth/refresh", anon.clone(), Some(nested("[", 100_000)), 400, "bad_request"),
        // Wrong content types.
        ("text/plain", "POST", push, with_type(&phone.token, "text/plain"), Some(empty_push.clone()), 400, "bad_request"),
        ("no content type", "POST", push, no_type.clone(), Some(empty_push.clone()), 400, "bad_request"),
        ("a form", "POST", push, with_type(&phone.token, "application/x-www-form-urlencoded"), Some(b"device_id=1&mutations=2".to_vec()), 400, "bad_request"),
        ("multipart", "POST", push, with_type(&phone.token, "multipart/form-data; boundary=x"), Some(b"--x\r\n\r\n{}\r\n--x--".to_vec()), 400, "bad_request"),
        ("a broken content type", "POST", push, with_type(&phone.token, ";;;/"), Some(empty_push.clone()), 400, "bad_request"),
        ("text/plain at login", "POST", "/api/v1/auth/login", vec![("Content-Type".to_owned(), "text/plain".to_owned())], Some(login_ok.clone()), 400, "bad_request"),
        // Empty and not-an-object bodies.
        ("an empty push", "POST", push, ph.clone(), Some(Vec::new()), 400, "bad_request"),
        ("no body at all", "POST", push, ph.clone(), None, 400, "bad_request"),
        ("a push of null", "POST", push, ph.clone(), Some(b"null".to_vec()), 400, "bad_request"),
        ("a push of {}", "POST", push, ph.clone(), Some(b"{}".to_vec()), 400, "bad_request"),
        ("a push of a string", "POST", push, ph.clone(), Some(b"\"push\"".to_vec()), 400, "bad_request"),
        ("an empty login", "POST", "/api/v1/auth/login", anon.clone(), Some(Vec::new()), 400, "bad_request"),
        ("an empty refresh", "POST", "/api/v1/auth/refresh", anon.clone(), Some(Vec::new()), 400, "bad_request"),
        ("an empty unit", "POST", "/api/v1/units", ah.clone(), Some(Vec::new()), 400, "bad_request"),
        ("an empty user", "POST", "/api/v1/users", ah.clone(), Some(Vec::new()), 400, "bad_request"),
        ("a unit of []", "POST", "/api/v1/units", ah.clone(), Some(b"[]".to_vec()), 400, "bad_request"),
        ("mutations of a string", "POST", push, ph.clone(), Some(json!({ "device_id": dev, "mutations": "x" }).to_string().into_bytes()), 400, "bad_request"),
        // Envelope numbers that parse but are no mutation id.
        ("mutation_id beyond i64", "POST", push, ph.clone(), Some(format!(r#"{{"device_id": "{dev}", "mutations": [{{"mutation_id": 99999999999999999999999}}]}}"#).into_bytes()), 422, "validation_failed"),
        ("mutation_id beyond u64 as a float", "POST", push, ph.clone(), Some(format!(r#"{{"device_id": "{dev}", "mutations": [{{"mutation_id": 1e300}}]}}"#).into_bytes()), 422, "validation_failed"),
        // A mutation id no parser here holds is no mutation id either.
        ("mutation_id 1e400", "POST", push, ph.clone(), Some(format!(r#"{{"device_id": "{dev}", "mutations": [{{"mutation_id": 1e400}}]}}"#).into_bytes()), 422, "validation_failed"),
        ("device_id with a NUL", "POST", push, ph.clone(), Some(json!({ "device_id": format!("{dev}\u{0}"), "mutations": [] }).to_string().into_bytes()), 400, "bad_request"),
    ];
    for (case, method, path, headers, body, status, code) in cases {
        let res = send(&app, method, path, &headers, body.as_deref());
        assert_4xx(case, &res, status, code);
    }
    // Nothing was written: no record, no unit, and the refused logins made no device.
    assert!(phone.pull_all(None).0.is_empty());
    let (_, children) = app.get(&format!("/api/v1/units/{c1}/children"), Some(&admin.token));
    assert_eq!(children["units"].as_array().unwrap().len(), 2, "{children}");
    app.assert_consistent();
}

/// Mutations that are JSON but hold what no parser here represents (a number beyond a float's
/// range, a lone UTF-16 surrogate, nesting beyond the parser's depth): each is rejected on its
/// own, with its mutation id and record id, and the rest of the push applies.
fn unreadable_mutations_are_rejected_one_by_one(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let v1 = app.unit_id("V1");
    let cases = [
        ("a good household", r#""Good""#, None),
        (
            "birth_year 1e400",
            r#""A", "x": 1e400"#,
            Some("number out of range"),
        ),
        (
            "a number of 10,000 digits",
            &*format!(r#""A", "x": 1{}"#, "0".repeat(10_000)),
            Some("number out of range"),
        ),
        ("a lone surrogate escape", r#""\ud800""#, Some("hex escape")),
        (
            "100,000 closed [in a field",
            &*deep_array(100_000),
            Some("recursion limit"),
        ),
        ("another good household", r#""Good too""#, None),
    ];
    let ids: Vec<Uuid> = cases.iter().map(|_| id()).collect();
    let mutations: Vec<String> = cases
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, ((_, head_name, _), h))| {
            let mut m = phone.upsert("household", *h, 0, household(v1, "PLACEHOLDER"));
            m["mutation_id"] = json!(i + 1);
            m.to_string().replace("\"PLACEHOLDER\"", head_name)
        })
        .collect();
    let body = format!(
        r#"{{"device_id": "{}", "mutations": [{}]}}"#,
        phone.device,
        mutations.join(",")
    );
    let res = send(
        &app,
        "POST",
        "/api/v1/sync/push",
        &json_headers(&phone.token),
        Some(body.as_bytes()),
    );
    let answer = res.json();
    assert_eq!(res.status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len(), "{answer}");
    for (((case, _, problem), h), (i, result)) in cases.iter().zip(&ids).zip(results.iter().enumerate()) {
        assert_eq!(result["mutation_id"], json!(i + 1), "{case}: {result}");
        assert_eq!(result["id"], h.to_string(), "{case}: {result}");
        match problem {
            None => assert_eq!(result["status"], "applied", "{case}: {result}"),
            Some(problem) => {
                assert_eq!(result["status"], "rejected", "{case}: {result}");
                let error = &result["errors"][0];
                assert_eq!(error["code"], "invalid_format", "{case}: {result}");
                let message = error["message"].as_str().unwrap();
                assert!(message.contains(problem), "{case}: {message}");
            }
        }
    }
    assert_eq!(answer["summary"]["applied"], 2, "{answer}");
    assert_eq!(answer["summary"]["rejected"], 4, "{answer}");
    // Only the good households were written.
    let (pulled, _) = phone.pull_all(None);
    let mut pulled_ids: Vec<&str> = pulled.iter().map(|c| c["id"].as_str().unwrap()).collect();
    pulled_ids.sort_unstable();
    let mut good = vec![ids[0].to_string(), ids[5].to_string()];
    good.sort_unstable();
    assert_eq!(pulled_ids, good);
    app.assert_consistent();
}

// ---------------------------------------------------------------------------------------------
// Hostile values inside a well-formed push: rejected one by one.

fn hostile_values_in_a_push_are_rejected_one_by_one(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let v1 = app.unit_id("V1");
    let long = "Ngô".repeat(3_334); // 10,002 characters
    let h = id();
    phone.push_ok(&[phone.upsert("household", h, 0, household(v1, "Existing"))]);
    let m = |fields: Value| phone.upsert("member", id(), 0, fields);
    let with = |base: Value, key: &str, value: Value| {
        let mut f = base;
        f[key] = value;
        f
    };
    let good_member = member(h, "Good Member", 1990, "yes", "no");
    let mut nul_id = phone.upsert("household", id(), 0, household(v1, "A"));
    nul_id["id"] = json!(format!("{}\u{0}", id()));
    let mut long_id = phone.upsert("household", id(), 0, household(v1, "A"));
    long_id["id"] = json!(long);
    let mut nul_hlc = phone.upsert("household", id(), 0, household(v1, "A"));
    nul_hlc["hlc"] = json!(format!("{}\u{0}", nul_hlc["hlc"].as_str().unwrap()));
    let mut huge_counter = phone.upsert("household", id(), 0, household(v1, "A"));
    huge_counter["hlc"] = json!(format!(
        "2026-01-01T00:00:00.000Z/{}/{}",
        "9".repeat(40),
        phone.device
    ));
    let mut year_zero = phone.upsert("household", id(), 0, household(v1, "A"));
    year_zero["hlc"] = json!(format!("0000-01-01T00:00:00.000Z/0000/{}", phone.device));
    let mut nul_type = phone.upsert("household", id(), 0, household(v1, "A"));
    nul_type["type"] = json!("household\u{0}");
    let mut nul_key = phone.upsert("household", id(), 0, household(v1, "A"));
    nul_key["fields"]["head\u{0}name"] = json!("A");
    let mut long_key = phone.upsert("household", id(), 0, household(v1, "A"));
    long_key["fields"][long.as_str()] = json!("A");
    let mut mutation_nul_key = phone.upsert("household", id(), 0, household(v1, "A"));
    mutation_nul_key["op\u{0}"] = json!("upsert");
    let mut huge_base = phone.upsert("household", h, 0, json!({ "address": "Base from the future" }));
    huge_base["base_version"] = json!(i64::MAX);
    let mut float_base = phone.upsert("household", id(), 0, household(v1, "A"));
    float_base["base_version"] = json!(1e30);
    let mut nul_village = phone.upsert("household", id(), 0, household(v1, "A"));
    nul_village["fields"]["village_id"] = json!(format!("{v1}\u{0}"));

    /// (case, mutation, expected status, expected (field, code) among its errors)
    type Case<'a> = (&'a str, Value, &'a str, Option<(&'a str, &'a str)>);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("good household", phone.upsert("household", id(), 0, household(v1, "Good")), "applied", None),
        ("10,000-char head_name", phone.upsert("household", id(), 0, household(v1, &long)), "rejected", Some(("head_name", "too_long"))),
        ("10,000-char address", phone.upsert("household", id(), 0, with(household(v1, "A"), "address", json!(long))), "rejected", Some(("address", "too_long"))),
        ("10,000-char full_name", m(member(h, &long, 1990, "yes", "no")), "rejected", Some(("full_name", "too_long"))),
        ("NUL in head_name", phone.upsert("household", id(), 0, household(v1, "Lò\u{0}Văn")), "rejected", Some(("head_name", "invalid_format"))),
        ("NUL in full_name", m(member(h, "\u{0}", 1990, "yes", "no")), "rejected", Some(("full_name", "invalid_format"))),
        ("NUL in address", phone.upsert("household", id(), 0, with(household(v1, "A"), "address", json!("Xóm\u{0}1"))), "rejected", Some(("address", "invalid_format"))),
        ("NUL in a tri", m(with(good_member.clone(), "owns_smartphone", json!("yes\u{0}"))), "rejected", Some(("owns_smartphone", "invalid_value"))),
        ("NUL in a date", phone.upsert("household", id(), 0, with(household(v1, "A"), "surveyed_on", json!("2026-01-01\u{0}"))), "rejected", Some(("surveyed_on", "invalid_format"))),
        ("NUL in village_id", nul_village, "rejected", Some(("village_id", "invalid_format"))),
        ("NUL in the record id", nul_id, "rejected", Some(("id", "invalid_format"))),
        ("10,000-char record id", long_id, "rejected", Some(("id", "invalid_format"))),
        ("NUL in the type", nul_type, "rejected", Some(("type", "invalid_value"))),
        ("NUL in a field name", nul_key, "rejected", Some(("head\u{0}name", "unknown_field"))),
        ("10,000-char field name", long_key, "rejected", Some((long.as_str(), "unknown_field"))),
        ("NUL in a mutation key", mutation_nul_key, "rejected", Some(("op\u{0}", "unknown_field"))),
        ("NUL in the hlc", nul_hlc, "rejected", Some(("hlc", "invalid_format"))),
        ("a 40-digit clock counter", huge_counter, "rejected", Some(("hlc", "invalid_format"))),
        ("a clock in year 0", year_zero, "rejected", Some(("hlc", "invalid_format"))),
        ("birth_year 1e23", m(with(good_member.clone(), "birth_year", json!(1e23))), "rejected", Some(("birth_year", "invalid_format"))),
        ("birth_year i64::MAX", m(with(good_member.clone(), "birth_year", json!(i64::MAX))), "rejected", Some(("birth_year", "out_of_range"))),
        ("birth_year u64::MAX", m(with(good_member.clone(), "birth_year", json!(u64::MAX))), "rejected", Some(("birth_year", "invalid_format"))),
        ("birth_year -1e300", m(with(good_member.clone(), "birth_year", json!(-1e300))), "rejected", Some(("birth_year", "invalid_format"))),
        ("birth_year 1990.5", m(with(good_member.clone(), "birth_year", json!(1990.5))), "rejected", Some(("birth_year", "invalid_format"))),
        ("birth_year as text", m(with(good_member.clone(), "birth_year", json!("1990"))), "rejected", Some(("birth_year", "invalid_format"))),
        ("a name 100 arrays deep", phone.upsert("household", id(), 0, household(v1, "A")).tap(|m| m["fields"]["head_name"] = serde_json::from_str(&deep_array(100)).unwrap()), "rejected", Some(("head_name", "invalid_format"))),
        ("base_version 1e30", float_base, "rejected", Some(("base_version", "invalid_value"))),
        // A base ahead of the record (a phone that saw versions a restored server lost) counts as
        // having seen everything: it applies, and the version only moves on by one.
        ("base_version i64::MAX on a record at 1", huge_base, "applied", None),
        ("good member", m(good_member.clone()), "applied", None),
    ];
    let mut mutations: Vec<Value> = cases.iter().map(|c| c.1.clone()).collect();
    // Pushed in this order: number them so.
    for (i, mutation) in mutations.iter_mut().enumerate() {
        mutation["mutation_id"] = json!(100 + i);
    }
    // The last id is the largest a device may use.
    let last = mutations.len() - 1;
    mutations[last]["mutation_id"] = json!(i64::MAX);
    let (status, body) = phone.push(&mutations);
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    for ((case, _, expected, error), result) in cases.iter().zip(results) {
        assert_eq!(result["status"], *expected, "{case}: {result}");
        if let Some((field, code)) = error {
            let errors = result["errors"].as_array().unwrap();
            assert!(
                errors.iter().any(|e| e["field"] == *field && e["code"] == *code),
                "{case}: expected {field:?}/{code}, got {result}"
            );
        }
    }
    assert_eq!(body["summary"]["applied"], 3);
    assert_eq!(body["summary"]["rejected"], cases.len() - 3);
    // A replay gives the stored outcomes and changes nothing.
    let (status, again) = phone.push(&mutations);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["summary"]["duplicate"], cases.len());
    for (first, replay) in results.iter().zip(again["results"].as_array().unwrap()) {
        assert_eq!(replay["original_status"], first["status"], "{replay}");
        assert_eq!(replay["errors"], first["errors"], "{replay}");
        assert_eq!(replay["id"], first["id"], "{replay}");
    }
    // Only the good records exist; the existing household took the one applied edit.
    let (changes, _) = phone.pull_all(None);
    assert_eq!(changes.len(), 3, "{changes:?}");
    let existing = changes.iter().find(|c| c["id"] == h.to_string()).unwrap();
    assert_eq!(existing["version"], 2);
    assert_eq!(existing["fields"]["address"], "Base from the future");
    assert_eq!(existing["fields"]["head_name"], "Existing");
    app.assert_consistent();
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Long names and NUL bytes outside pushes.

fn long_and_nul_names_elsewhere(backend: Backend) {
    let app = setup(backend);
    let admin = app.login("p1admin", PW);
    let token = admin.token().unwrap().to_owned();
    let c1 = app.unit_id("C1");
    let v1 = app.unit_id("V1");
    let long = "Ngô".repeat(3_334);
    let long_ascii = "a".repeat(10_000);
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("10,000-char unit name", "/api/v1/units", json!({ "name": long, "level": "village", "parent_id": c1 }), 422, "validation_failed"),
        ("NUL in a unit name", "/api/v1/units", json!({ "name": "Thôn\u{0}Mới", "level": "village", "parent_id": c1 }), 422, "validation_failed"),
        ("10,000-char unit code", "/api/v1/units", json!({ "code": long_ascii, "name": "Thôn Mới", "level": "village", "parent_id": c1 }), 422, "validation_failed"),
        ("NUL in a unit code", "/api/v1/units", json!({ "code": "V9\u{0}", "name": "Thôn Mới", "level": "village", "parent_id": c1 }), 422, "validation_failed"),
        ("NUL in a unit level", "/api/v1/units", json!({ "name": "Thôn Mới", "level": "village\u{0}", "parent_id": c1 }), 400, "bad_request"),
        ("10,000-char username", "/api/v1/users", json!({ "username": long_ascii, "password": PW, "role": "viewer", "scope": [v1] }), 422, "validation_failed"),
        ("NUL in a username", "/api/v1/users", json!({ "username": "thu\u{0}ha", "password": PW, "role": "viewer", "scope": [v1] }), 422, "validation_failed"),
        ("10,000-char password", "/api/v1/users", json!({ "username": "longpw", "password": long, "role": "viewer", "scope": [v1] }), 422, "validation_failed"),
        ("NUL in a password", "/api/v1/users", json!({ "username": "nulpw", "password": "a-good-\u{0}-password", "role": "viewer", "scope": [v1] }), 422, "validation_failed"),
        ("10,000 unknown scope entries", "/api/v1/users", json!({ "username": "wide", "password": PW, "role": "viewer", "scope": (0..10_000).map(|_| Uuid::new_v4()).collect::<Vec<_>>() }), 422, "validation_failed"),
    ];
    for (case, path, body, status, code) in cases {
        let res = app.post(path, Some(&body), Some(&token));
        assert_eq!(res.0, status, "{case}: {}", res.1);
        assert_error(&res, status, code);
    }
    let (_, children) = app.get(&format!("/api/v1/units/{c1}/children"), Some(&token));
    assert_eq!(
        children["units"].as_array().unwrap().len(),
        2,
        "no unit was created"
    );

    // Logins with such names are wrong logins, like any other (and create nothing).
    let device = Uuid::new_v4();
    let refused = app.post(
        "/api/v1/auth/login",
        Some(&json!({ "username": "v1team", "password": "wrong-password", "device_id": device })),
        None,
    );
    assert_error(&refused, 401, "unauthorized");
    for (username, password) in [
        (long_ascii.as_str(), PW),
        ("v1\u{0}team", PW),
        ("v1team", long.as_str()),
        ("v1team", "a-good-long-password\u{0}"),
        ("", ""),
    ] {
        let res = app.post(
            "/api/v1/auth/login",
            Some(&json!({ "username": username, "password": password, "device_id": device })),
            None,
        );
        assert_eq!(res, refused, "{:?}", &username[..username.len().min(20)]);
    }
    // A device name is free text: cleaned (no control characters) and cut, never refused.
    let phone = app
        .api
        .login("v1team", PW, device, Some(&format!("Máy\u{0}của Lan {long}")))
        .expect("login with a long device name");
    let mine = app.api.with_token(phone.access_token).devices().unwrap().devices;
    let name = mine
        .iter()
        .find(|d| d.device_id == device)
        .and_then(|d| d.name.clone())
        .expect("named device");
    assert!(name.starts_with("Máycủa Lan Ngô"), "{name:?}");
    assert!(name.chars().count() <= 100 && !name.contains('\u{0}'), "{name:?}");

    // A conflict resolved with a hostile value is refused; the record keeps its value.
    let a = Phone::login(&app, "v1team", PW);
    let b = Phone::login(&app, "c1team", PW);
    let h = id();
    a.push_ok(&[a.upsert("household", h, 0, household(v1, "Start"))]);
    let early = a.upsert("household", h, 1, json!({ "head_name": "Early" }));
    std::thread::sleep(std::time::Duration::from_millis(3));
    b.push_ok(&[b.upsert("household", h, 1, json!({ "head_name": "Late" }))]);
    a.push_ok(&[early]);
    let (_, list) = app.get("/api/v1/conflicts?resolved=false", Some(&token));
    let conflict = list["conflicts"][0]["id"]
        .as_str()
        .expect("a conflict")
        .to_owned();
    let path = format!("/api/v1/conflicts/{conflict}/resolve");
    for (case, value) in [
        ("10,000 chars", json!(long)),
        ("a NUL", json!("Lò\u{0}Văn")),
        ("a number", json!(1e300)),
        (
            "100 arrays deep",
            serde_json::from_str::<Value>(&deep_array(100)).unwrap(),
        ),
    ] {
        let res = app.post(
            &path,
            Some(&json!({ "choose": "value", "value": value })),
            Some(&token),
        );
        assert_eq!(res.0, 422, "{case}: {}", res.1);
        assert_error(&res, 422, "validation_failed");
    }
    let (changes, _) = a.pull_all(None);
    assert_eq!(changes[0]["fields"]["head_name"], "Late");
    app.assert_consistent();
}

// ---------------------------------------------------------------------------------------------
// Scope escalation by an admin (docs/security.md).

fn an_admin_cannot_grant_beyond_its_scope(backend: Backend) {
    let app = setup(backend);
    let c1admin = app.login("c1admin", PW);
    let token = c1admin.token().unwrap().to_owned();
    let (vn, p1, c1, v1, v3) = (
        app.unit_id("VN"),
        app.unit_id("P1"),
        app.unit_id("C1"),
        app.unit_id("V1"),
        app.unit_id("V3"),
    );
    // An admin of C1 may create an admin of C1 or below, of nothing above or beside it.
    for (n, (role, scope)) in [
        ("admin", vec![p1]),
        ("admin", vec![vn]),
        ("admin", vec![v3]),
        ("viewer", vec![p1]),
        ("enumerator", vec![v1, v3]),
    ]
    .into_iter()
    .enumerate()
    {
        let res = app.post(
            "/api/v1/users",
            Some(&json!({ "username": format!("grab{n}"), "password": PW, "role": role, "scope": scope })),
            Some(&token),
        );
        assert_error(&res, 403, "forbidden");
        assert!(
            app.api
                .login(&format!("grab{n}"), PW, Uuid::new_v4(), None)
                .is_err(),
            "grab{n} was not created"
        );
    }
    let res = app.post(
        "/api/v1/users",
        Some(&json!({ "username": "c1admin2", "password": PW, "role": "admin", "scope": [c1] })),
        Some(&token),
    );
    assert_eq!(res.0, 201, "{}", res.1);
    // It may not disable, enable or revoke what lies above it.
    let p1admin = app.api.login("p1admin", PW, Uuid::new_v4(), None).unwrap();
    assert_error(
        &app.post(
            &format!("/api/v1/users/{}/disable", p1admin.user.id),
            None,
            Some(&token),
        ),
        403,
        "forbidden",
    );
    assert_error(
        &app.post(
            &format!("/api/v1/users/{}/enable", p1admin.user.id),
            None,
            Some(&token),
        ),
        403,
        "forbidden",
    );
    let p1admin_device = Uuid::new_v4();
    app.api.login("p1admin", PW, p1admin_device, None).unwrap();
    assert_error(
        &app.post(
            &format!("/api/v1/devices/{p1admin_device}/revoke"),
            None,
            Some(&token),
        ),
        403,
        "forbidden",
    );
    // Nor create units beside its scope.
    assert_error(
        &app.post(
            "/api/v1/units",
            Some(&json!({ "name": "Thôn Lấn", "level": "village", "parent_id": app.unit_id("C2") })),
            Some(&token),
        ),
        403,
        "forbidden",
    );
    // The p1 admin is untouched.
    assert!(app.api.login("p1admin", PW, Uuid::new_v4(), None).is_ok());
}

// ---------------------------------------------------------------------------------------------
// No personal data in logs or metrics.

/// Every value below carries the marker "zqx" (or is a token or password): none may appear in
/// the logs or the metrics of the real binary, at the default level or at debug.
fn logs_and_metrics_hold_no_personal_data(backend: Backend) {
    let db = TestDb::new(backend);
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_users(&pool);
    add_user(&pool, "zqxuser", "zqx-secret-password", Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");
    for (run, level) in ["info", "debug"].into_iter().enumerate() {
        let mut server = ServerProcess::start(&db.url, &[("HAMLET_LOG", level)]);
        let mut secrets = exercise_with_personal_data(&server.base, v1, run);
        let metrics = wire::request(&server.base, "GET", "/metrics", &[], None);
        assert_eq!(metrics.status, 200);
        let metrics = String::from_utf8(metrics.decoded()).unwrap();
        server.signal("TERM");
        assert!(
            server.wait(std::time::Duration::from_secs(20)).is_some(),
            "server stops"
        );
        std::thread::sleep(std::time::Duration::from_millis(300)); // the log reader drains the pipe
        let logs = server.logs.lock().unwrap().join("\n");
        // The logs do describe the requests (so the test is not vacuous).
        for route in [
            "/api/v1/sync/push",
            "/api/v1/sync/pull",
            "/api/v1/auth/login",
            "/api/v1/conflicts/{id}/resolve",
        ] {
            assert!(logs.contains(route), "{level}: no log of {route}");
            assert!(metrics.contains(route), "{level}: no metric of {route}");
        }
        assert!(
            logs.contains("\"status\":400") && logs.contains("\"status\":401"),
            "{level}: errors are logged"
        );
        secrets.push("zqx".to_owned());
        for secret in &secrets {
            for (what, text) in [("logs", &logs), ("metrics", &metrics)] {
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.to_lowercase().contains(&secret.to_lowercase()))
                    .collect();
                assert!(
                    lines.is_empty(),
                    "{level}: {what} hold {secret:?}:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
}

/// Logs in, pushes, pulls, makes and resolves a conflict, fails in several ways, all with
/// distinctive values; returns the values (other than the "zqx" marker) that are secret too.
fn exercise_with_personal_data(base: &str, v1: hamlet_shared::UnitId, run: usize) -> Vec<String> {
    let api = Api::new(base);
    let device = Uuid::new_v4();
    let tokens = api
        .login("zqxuser", "zqx-secret-password", device, Some("Zqx máy của Lan"))
        .expect("login");
    let _ = api.login("zqxuser", "zqx-wrong-password", Uuid::new_v4(), None);
    let _ = api.login("zqxnobody", "zqx-wrong-password", Uuid::new_v4(), None);
    let phone = Phone::login_at(base, "zqxuser", "zqx-secret-password");
    let h = id();
    let m1 = id();
    let results = phone.push_ok(&[
        phone.upsert(
            "household",
            h,
            0,
            json!({ "village_id": v1, "head_name": "Zqxhead Lò Văn Pủ", "address": "Zqxaddr Xóm Nà 7",
                "fixed_broadband": "yes", "surveyed_on": "2019-03-17" }),
        ),
        phone.upsert(
            "member",
            m1,
            0,
            member(h, "Zqxmember Lò Thị Mai", 1931, "yes", "no"),
        ),
        // Rejected ones, whose errors might quote what was sent.
        phone.upsert(
            "member",
            id(),
            0,
            member(h, &"Zqxlong ".repeat(40), 1990, "yes", "no"),
        ),
        phone.upsert(
            "member",
            id(),
            0,
            json!({ "household_id": h, "full_name": "Zqxbad Year", "birth_year": "zqx1990",
            "owns_smartphone": "zqxmaybe", "has_transaction_account": "no", "zqxfield": "zqxvalue" }),
        ),
        phone.upsert(
            "household",
            id(),
            0,
            json!({ "village_id": "zqx-village", "head_name": "Zqx\u{0}nul" }),
        ),
    ]);
    assert_eq!(results[0]["status"], "applied");
    assert_eq!(results[4]["status"], "rejected");
    let mut bad_hlc = phone.upsert("household", id(), 0, household(v1, "Zqx clock"));
    bad_hlc["hlc"] = json!("zqx-clock");
    bad_hlc["id"] = json!("zqx-record-id");
    phone.push_ok(&[bad_hlc]);
    // Whole requests refused: bodies that quote values in their parse errors.
    let auth = format!("Bearer {}", phone.token);
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    for body in [
        json!({ "device_id": phone.device, "mutations": "zqx envelope value" }).to_string(),
        json!({ "device_id": "zqx-device", "mutations": [] }).to_string(),
        r#"{"device_id": "zqx"#.to_owned(),
        json!({ "device_id": phone.device, "mutations": [{ "mutation_id": "zqx-id" }] }).to_string(),
    ] {
        let res = wire::request(base, "POST", "/api/v1/sync/push", &headers, Some(body.as_bytes()));
        assert!((400..500).contains(&res.status), "{}", res.json());
    }
    let res = wire::request(
        base,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(
            json!({ "username": "zqxuser", "password": "zqx-secret-password", "device_id": "zqx" })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(res.status, 400);
    let res = wire::request(
        base,
        "POST",
        "/api/v1/auth/refresh",
        &[("Content-Type", "application/json")],
        Some(
            json!({ "refresh_token": "zqx-not-a-token" })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(res.status, 401);
    // Query strings, paths, methods and agents the client chose.
    for (method, path) in [
        ("GET", "/api/v1/sync/pull?cursor=zqx-cursor"),
        ("GET", "/api/v1/sync/pull?limit=zqx"),
        ("GET", "/api/v1/units/zqx-unit"),
        ("GET", "/zqx/path"),
        ("ZQXMETHOD", "/api/v1/sync/pull"),
    ] {
        let res = wire::request(
            base,
            method,
            path,
            &[("Authorization", auth.as_str()), ("User-Agent", "zqx-agent")],
            None,
        );
        assert!(
            (400..500).contains(&res.status),
            "{method} {path}: {}",
            res.status
        );
    }
    // Pulls, plain and gzip.
    let (changes, _) = phone.pull_all(None);
    assert!(
        changes
            .iter()
            .any(|c| c["fields"]["head_name"] == "Zqxhead Lò Văn Pủ")
    );
    let res = wire::request(
        base,
        "GET",
        "/api/v1/sync/pull",
        &[("Authorization", auth.as_str()), ("Accept-Encoding", "gzip")],
        None,
    );
    assert_eq!(res.status, 200);
    // A conflict between two phones, listed and resolved by an admin.
    let other = Phone::login_at(base, "c1team", PW);
    let early = phone.upsert("household", h, 1, json!({ "head_name": "Zqxearly Name" }));
    std::thread::sleep(std::time::Duration::from_millis(3));
    other.push_ok(&[other.upsert("household", h, 1, json!({ "head_name": "Zqxlate Name" }))]);
    phone.push_ok(&[early]);
    let admin = Api::new(base)
        .login("p1admin", PW, Uuid::new_v4(), None)
        .expect("admin login");
    let admin_auth = format!("Bearer {}", admin.access_token);
    let list = wire::request(
        base,
        "GET",
        "/api/v1/conflicts?resolved=false",
        &[("Authorization", admin_auth.as_str())],
        None,
    );
    let conflict = list.json()["conflicts"][0]["id"]
        .as_str()
        .expect("a conflict")
        .to_owned();
    let res = wire::request(
        base,
        "POST",
        &format!("/api/v1/conflicts/{conflict}/resolve"),
        &[
            ("Authorization", admin_auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(
            json!({ "choose": "value", "value": "Zqxresolved Name" })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(res.status, 200, "{}", res.json());
    let res = wire::request(
        base,
        "POST",
        &format!("/api/v1/conflicts/{conflict}/resolve"),
        &[
            ("Authorization", admin_auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(
            json!({ "choose": "value", "value": "Zqxagain" })
                .to_string()
                .as_bytes(),
        ),
    );
    assert!((400..500).contains(&res.status));
    // A user created with a personal name; aggregates and their export.
    let res = wire::request(base, "POST", "/api/v1/users",
        &[("Authorization", admin_auth.as_str()), ("Content-Type", "application/json")],
        Some(json!({ "username": format!("zqxcreated{run}"), "password": "zqx-created-password", "role": "viewer", "scope": [v1] }).to_string().as_bytes()));
    assert_eq!(res.status, 201, "{}", res.json());
    for path in [
        format!("/api/v1/aggregates/{v1}"),
        format!("/api/v1/aggregates/{v1}/export?format=csv"),
    ] {
        assert_eq!(
            wire::request(
                base,
                "GET",
                &path,
                &[("Authorization", admin_auth.as_str())],
                None
            )
            .status,
            200
        );
    }
    // A refresh, a rotation reuse (theft detection) and a logout.
    let rotated = api.refresh(&tokens.refresh_token).expect("refresh");
    assert!(api.refresh(&tokens.refresh_token).is_err());
    let _ = api.with_token(rotated.access_token.clone()).logout();
    vec![
        "2019-03-17".to_owned(),
        h.to_string(),
        m1.to_string(),
        tokens.access_token,
        tokens.refresh_token,
        phone.token.clone(),
        phone.refresh.clone(),
        rotated.access_token,
        rotated.refresh_token,
        admin.access_token,
        admin.refresh_token,
        PW.to_owned(),
    ]
}

backend_tests!(
    gzip_bodies_and_bombs,
    a_gzip_bomb_is_refused_without_inflating_it,
    responses_are_gzipped_when_asked,
    malformed_bodies_get_a_clear_4xx,
    unreadable_mutations_are_rejected_one_by_one,
    hostile_values_in_a_push_are_rejected_one_by_one,
    long_and_nul_names_elsewhere,
    an_admin_cannot_grant_beyond_its_scope,
    logs_and_metrics_hold_no_personal_data,
);
