//! The reference client (`hamlet-client`) against the real server, on both backends: offline
//! edits on separate stores converge, the outbox survives a client that cannot reach the server,
//! retries honour `Retry-After`, an expired token is refreshed, and the CLI works end to end.

use hamlet_client::{Api, Client, ClientOptions, Error, RetryPolicy};
use hamlet_shared::Role;
use hamlet_shared::records::RecordType::{self, Household, Member};
use hamlet_shared::sync::PushRequest;
use hamlet_tests::proxy::Proxy;
use hamlet_tests::*;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(app: TestApp) -> TestApp {
    app.import_units(SMALL_TREE);
    app.add_user("alice", PW, Role::Enumerator, &["C1"]);
    app.add_user("bao", PW, Role::Enumerator, &["C1"]);
    app.add_user("p1admin", PW, Role::Admin, &["P1"]);
    app
}

/// Quick retries, so failures that are meant to happen do not slow the suite.
fn fast() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(10),
        },
        ..ClientOptions::default()
    }
}

fn store_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("store.db")
}

fn open(base: &str, dir: &tempfile::TempDir, options: ClientOptions) -> Client {
    Client::open_with(&store_path(dir), Some(base), options).expect("open the store")
}

/// A client on its own store, logged in as `user`.
fn phone(base: &str, dir: &tempfile::TempDir, user: &str) -> Client {
    let mut c = open(base, dir, fast());
    c.login(user, PW, Some("test phone")).expect("login");
    c
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// A field of the record as `c` shows it (null when absent).
fn field(c: &mut Client, t: RecordType, id: Uuid, name: &str) -> Value {
    let rec = c.record(t, id).expect("store").expect("record");
    rec.fields.get(name).cloned().unwrap_or(Value::Null)
}

fn two_offline_clients_converge(backend: Backend) {
    let app = setup(TestApp::spawn(backend));
    let (v1, v2) = (app.unit_id("V1"), app.unit_id("V2"));
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a = phone(&app.base, &da, "alice");
    let mut b = phone(&app.base, &db, "bao");

    // A common starting point: a household and two members, on both phones.
    let h1 = a.create(Household, obj(household(v1, "Hà Văn Thắng"))).unwrap();
    let m1 = a
        .create(Member, obj(member(h1, "Hà Thị Lan", 1990, "yes", "no")))
        .unwrap();
    let gone = a
        .create(Member, obj(member(h1, "Quan Thị Nga", 1985, "no", "no")))
        .unwrap();
    assert_eq!(a.sync().unwrap().push.summary.applied, 3);
    b.sync().unwrap();
    assert_eq!(b.record(Household, h1).unwrap().unwrap().version, 1);

    // Offline on A: two edits of H1 (folded into one mutation), a delete, a household created
    // and deleted again (it never leaves the phone), a new member.
    a.edit(Household, h1, obj(json!({ "head_name": "Early" })))
        .unwrap();
    a.edit(Household, h1, obj(json!({ "address": "Xóm Trên" })))
        .unwrap();
    a.delete(Member, gone).unwrap();
    let h3 = a.create(Household, obj(household(v1, "Never sent"))).unwrap();
    assert_eq!(a.delete(Household, h3).unwrap(), None);
    let m3 = a
        .create(Member, obj(member(h1, "Hà Văn Tùng", 2010, "no", "no")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));

    // Offline on B, later: the same field of H1 (a later clock), another field of H1, a stale edit
    // of the member A deleted, and a member that names a household created after it, so the
    // member is pushed before its household.
    b.edit(Household, h1, obj(json!({ "head_name": "Late" })))
        .unwrap();
    b.edit(Household, h1, obj(json!({ "fixed_broadband": "yes" })))
        .unwrap();
    b.edit(Member, gone, obj(json!({ "full_name": "Quan Thị Ngà" })))
        .unwrap();
    let m2 = b
        .create(Member, obj(member(h1, "Ma Thị Mai", 1999, "yes", "yes")))
        .unwrap();
    let h4 = b.create(Household, obj(household(v2, "Ma Văn Sơn"))).unwrap();
    b.edit(Member, m2, obj(json!({ "household_id": h4 }))).unwrap();

    // Each phone shows its own edits on top of what it pulled.
    let pending: Vec<i64> = a.pending().unwrap().iter().map(|e| e.mutation_id).collect();
    assert_eq!(
        pending,
        [4, 5, 7],
        "edits fold; the cancelled create left a gap, nothing reused"
    );
    assert_eq!(b.pending().unwrap().len(), 4);
    assert_eq!(field(&mut a, Household, h1, "head_name"), "Early");
    assert_eq!(field(&mut a, Household, h1, "address"), "Xóm Trên");
    assert_eq!(field(&mut b, Household, h1, "head_name"), "Late");
    assert!(a.record(Member, gone).unwrap().unwrap().deleted);
    assert!(a.record(Household, h3).unwrap().is_none());

    // A syncs first; B pushes one mutation per request; then both again.
    let ra = a.sync().unwrap();
    assert_eq!((ra.push.summary.applied, ra.push.rejected), (3, 0));
    b.set_options(ClientOptions {
        batch_size: 1,
        ..fast()
    });
    let rb = b.sync().unwrap();
    assert_eq!(rb.push.batches, 4);
    assert_eq!(
        (
            rb.push.summary.applied,
            rb.push.summary.conflict,
            rb.push.rejected
        ),
        (3, 1, 0),
        "the edit of the deleted member is a conflict: {rb:?}"
    );
    a.sync().unwrap();
    b.sync().unwrap();

    // Both phones hold the same records, and so does a third that pulls from scratch.
    let mut c = phone(&app.base, &dc, "alice");
    c.sync().unwrap();
    let (ca, cb, cc) = (
        a.server_copies().unwrap(),
        b.server_copies().unwrap(),
        c.server_copies().unwrap(),
    );
    assert_eq!(ca, cc, "A and a fresh pull");
    assert_eq!(cb, cc, "B and a fresh pull");
    assert_eq!(a.records().unwrap(), b.records().unwrap());
    for client in [&mut a, &mut b] {
        assert!(client.pending().unwrap().is_empty());
        assert!(client.rejected().unwrap().is_empty());
    }
    let ids: Vec<(RecordType, Uuid)> = cc.iter().map(|r| (r.record_type, r.id)).collect();
    let mut expected = vec![
        (Household, h1),
        (Household, h4),
        (Member, m1),
        (Member, gone),
        (Member, m2),
        (Member, m3),
    ];
    expected.sort();
    assert_eq!(ids, expected, "H3 never reached the server");

    // The merge: the later clock won the shared field, both other fields are kept, the delete
    // won over the stale edit, and the early member attached to its household.
    assert_eq!(field(&mut c, Household, h1, "head_name"), "Late");
    assert_eq!(field(&mut c, Household, h1, "address"), "Xóm Trên");
    assert_eq!(field(&mut c, Household, h1, "fixed_broadband"), "yes");
    let tomb = c.record(Member, gone).unwrap().unwrap();
    assert!(tomb.deleted);
    assert_eq!(
        tomb.fields,
        obj(json!({ "household_id": h1 })),
        "no personal data in a tombstone"
    );
    assert_eq!(field(&mut c, Member, m2, "household_id"), h4.to_string());
    assert!(!c.record(Member, m2).unwrap().unwrap().deleted);

    // The losing values are kept for review.
    let admin = Phone::login(&app, "p1admin", PW);
    let (status, list) = app.get("/api/v1/conflicts?resolved=false", Some(&admin.token));
    assert_eq!(status, 200, "{list}");
    let conflicts = list["conflicts"].as_array().unwrap();
    let on = |f: &str| conflicts.iter().find(|c| c["field"] == f).cloned();
    let head = on("head_name").expect("a head_name conflict");
    assert_eq!(
        (head["current_value"].clone(), head["incoming_value"].clone()),
        (json!("Late"), json!("Early"))
    );
    assert_eq!(
        on("full_name").expect("the stale edit")["record_id"],
        gone.to_string()
    );
    app.assert_consistent();
}

fn outbox_survives_a_client_that_cannot_reach_the_server(backend: Backend) {
    let app = setup(TestApp::spawn(backend));
    let v1 = app.unit_id("V1");
    let proxy = Proxy::start(format!("127.0.0.1:{}", app.port).parse().unwrap());
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let (h1, h2, h3, m1, device) = {
        let mut c = phone(&via_proxy, &dir, "alice");
        let h1 = c.create(Household, obj(household(v1, "Một"))).unwrap();
        let m1 = c
            .create(Member, obj(member(h1, "Hai", 1970, "yes", "yes")))
            .unwrap();
        let h2 = c.create(Household, obj(household(v1, "Ba"))).unwrap();
        proxy.cut();
        let err = c.sync().unwrap_err();
        assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{err}");
        let pending = c.pending().unwrap();
        assert_eq!(
            pending.iter().map(|e| e.mutation_id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(pending.iter().all(|e| e.sent), "marked sent before they left");
        // Edits made after a send attempt are new mutations: a sent one never changes.
        let h3 = c.create(Household, obj(household(v1, "Bốn"))).unwrap();
        assert_eq!(
            c.edit(Household, h1, obj(json!({ "address": "Xóm Dưới" })))
                .unwrap(),
            5
        );
        (h1, h2, h3, m1, c.device_id().unwrap())
        // The client is dropped here, as if the app were killed.
    };
    proxy.restore();

    // Reopened without naming the server: the store remembers it, and everything else.
    let mut c = Client::open_with(&store_path(&dir), None, fast()).unwrap();
    assert_eq!(c.server(), Some(via_proxy.as_str()));
    assert_eq!(c.device_id().unwrap(), device);
    let status = c.status().unwrap();
    assert_eq!(status.next_mutation_id, 6);
    assert_eq!(
        status.pending.iter().map(|e| e.mutation_id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // Suppose the first attempt had reached the server for the first two mutations and only
    // the answer was lost: the server holds them already.
    let token = c.store().session().unwrap().unwrap().access_token;
    let early: Vec<Value> = status.pending[..2]
        .iter()
        .map(|e| serde_json::to_value(e.mutation()).unwrap())
        .collect();
    let answer = Api::new(&app.base)
        .with_token(token)
        .push(&PushRequest {
            device_id: device,
            mutations: early,
        })
        .unwrap();
    assert_eq!(answer.summary.applied, 2);

    let m4 = c
        .create(Member, obj(member(h2, "Năm", 2001, "no", "yes")))
        .unwrap();
    assert_eq!(
        c.pending().unwrap().last().unwrap().mutation_id,
        6,
        "ids continue after the restart"
    );
    let report = c.sync().unwrap();
    assert_eq!(
        (
            report.push.summary.applied,
            report.push.summary.duplicate,
            report.push.rejected
        ),
        (4, 2, 0),
        "{report:?}"
    );
    assert!(c.pending().unwrap().is_empty());

    // Nothing lost, nothing twice.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = phone(&app.base, &fresh_dir, "bao");
    fresh.sync().unwrap();
    let copies = fresh.server_copies().unwrap();
    let mut ids: Vec<Uuid> = copies.iter().map(|r| r.id).collect();
    ids.sort();
    let mut expected = vec![h1, h2, h3, m1, m4];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(copies, c.server_copies().unwrap());
    let h1_copy = copies.iter().find(|r| r.id == h1).unwrap();
    assert_eq!(
        (h1_copy.version, h1_copy.fields["address"].clone()),
        (2, json!("Xóm Dưới"))
    );
    app.assert_consistent();
}

/// What the stub answers to one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// This status with the contract's error body, and `Retry-After` seconds when given.
    Status(u16, Option<u64>),
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Pass it to the server (what an empty script does).
    Forward,
}

/// One request the stub saw.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A request-level HTTP stub in front of the real server: each request takes the next scripted
/// reply, or is forwarded when the script is empty. Every answer closes its connection, so no
/// request slips past the script on a kept-alive connection.
struct Stub {
    base: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (s2, seen2) = (script.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (target, script, seen) = (target.clone(), s2.clone(), seen2.clone());
                std::thread::spawn(move || serve_one(conn, &target, &script, &seen));
            }
        });
        Self { base, script, seen }
    }

    fn script(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().copied());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// One request off the connection: its method, and what the stub records of it.
fn read_request(s: &mut TcpStream) -> Option<(String, Seen)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    let seen = Seen {
        at: Instant::now(),
        path,
        headers,
        body,
    };
    Some((method, seen))
}

fn respond(mut s: TcpStream, status: u16, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body));
}

fn serve_one(mut conn: TcpStream, target: &str, script: &Mutex<VecDeque<Reply>>, seen: &Mutex<Vec<Seen>>) {
    let Some((method, request)) = read_request(&mut conn) else {
        return;
    };
    seen.lock().unwrap().push(request.clone());
    let Seen {
        path, headers, body, ..
    } = request;
    let reply = script.lock().unwrap().pop_front();
    match reply {
        Some(Reply::Drop) => drop(conn),
        Some(Reply::Status(status, retry_after)) => {
            let code = match status {
                401 => "unauthorized",
                413 => "payload_too_large",
                429 => "rate_limited",
                503 => "unavailable",
                _ => "internal",
            };
            let body = json!({ "error": { "code": code, "message": "scripted by the stub", "details": [] } });
            let extra = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            respond(conn, status, &extra, body.to_string().as_bytes());
        }
        None | Some(Reply::Forward) => {
            let url = format!("{target}{path}");
            let agent = TestApp::agent();
            let pass = ["authorization", "content-type", "content-encoding"];
            let res = if method == "GET" {
                let mut r = agent.get(&url);
                for (k, v) in headers.iter().filter(|(k, _)| pass.contains(&k.as_str())) {
                    r = r.header(k, v);
                }
                r.call()
            } else {
                let mut r = agent.post(&url);
                for (k, v) in headers.iter().filter(|(k, _)| pass.contains(&k.as_str())) {
                    r = r.header(k, v);
                }
                r.send(&body[..])
            };
            match res {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let body = res.body_mut().read_to_vec().unwrap_or_default();
                    respond(conn, status, "", &body);
                }
                Err(_) => drop(conn),
            }
        }
    }
}

fn gunzip(body: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .expect("a gzip body");
    serde_json::from_str(&text).expect("JSON")
}

fn retries_honour_retry_after_and_refresh_on_401(backend: Backend) {
    let app = setup(TestApp::spawn(backend));
    let v1 = app.unit_id("V1");
    let stub = Stub::start(app.base.clone());
    let dir = tempfile::tempdir().unwrap();
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(10),
        },
        batch_size: 3,
        ..ClientOptions::default()
    };
    let mut c = open(&stub.base, &dir, options);
    c.login("alice", PW, None).unwrap();
    let pushes = |from: usize| -> Vec<Seen> {
        stub.seen()[from..]
            .iter()
            .filter(|s| s.path == "/api/v1/sync/push")
            .cloned()
            .collect()
    };

    // 503 and 429 with Retry-After, a 500 without, a dropped connection, then through.
    c.create(Household, obj(household(v1, "Chờ"))).unwrap();
    stub.script(&[
        Reply::Status(503, Some(1)),
        Reply::Status(429, Some(1)),
        Reply::Status(500, None),
        Reply::Drop,
    ]);
    let mark = stub.seen().len();
    let report = c.sync().unwrap();
    assert_eq!(report.push.summary.applied, 1);
    let tries = pushes(mark);
    assert_eq!(tries.len(), 5, "four failures, then the answer");
    let gap = |i: usize| tries[i + 1].at - tries[i].at;
    assert!(
        gap(0) >= Duration::from_secs(1),
        "Retry-After of the 503: {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_secs(1),
        "Retry-After of the 429: {:?}",
        gap(1)
    );
    assert!(
        gap(2) < Duration::from_secs(1),
        "plain backoff is short here: {:?}",
        gap(2)
    );
    for t in &tries {
        assert_eq!(
            t.headers.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
        assert_eq!(
            gunzip(&t.body),
            gunzip(&tries[0].body),
            "the same batch each time"
        );
    }

    // Retries run out: the error says so and the mutation stays pending.
    c.create(Household, obj(household(v1, "Bận"))).unwrap();
    stub.script(&[Reply::Status(503, Some(0)); 5]);
    let err = c.sync().unwrap_err();
    assert!(matches!(err, Error::GaveUp { attempts: 5, .. }), "{err}");
    assert_eq!(err.status(), Some(503));
    assert_eq!(c.pending().unwrap().len(), 1);

    // A 401 refreshes the tokens once, then the push goes again with the new token.
    let before = c.store().session().unwrap().unwrap();
    stub.script(&[Reply::Status(401, None)]);
    let mark = stub.seen().len();
    assert_eq!(c.sync().unwrap().push.summary.applied, 1);
    let paths: Vec<String> = stub.seen()[mark..].iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        &paths[..3],
        ["/api/v1/sync/push", "/api/v1/auth/refresh", "/api/v1/sync/push"]
    );
    let after = c.store().session().unwrap().unwrap();
    assert_ne!(before.refresh_token, after.refresh_token, "the new pair is kept");
    let tries = pushes(mark);
    assert_ne!(
        tries[0].headers["authorization"],
        tries[1].headers["authorization"]
    );

    // 413: the same mutations, in smaller pushes, ids still increasing.
    for name in ["Một", "Hai", "Ba"] {
        c.create(Household, obj(household(v1, name))).unwrap();
    }
    stub.script(&[Reply::Status(413, None)]);
    let mark = stub.seen().len();
    assert_eq!(c.sync().unwrap().push.summary.applied, 3);
    let sizes: Vec<usize> = pushes(mark)
        .iter()
        .map(|t| gunzip(&t.body)["mutations"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 1, 1, 1]);

    let check_dir = tempfile::tempdir().unwrap();
    let mut check = phone(&app.base, &check_dir, "bao");
    check.sync().unwrap();
    assert_eq!(check.server_copies().unwrap().len(), 5);
    assert_eq!(check.server_copies().unwrap(), c.server_copies().unwrap());
    app.assert_consistent();
}

fn pulls_resume_from_the_persisted_cursor(backend: Backend) {
    let app = setup(TestApp::spawn(backend));
    let v1 = app.unit_id("V1");
    let writer_dir = tempfile::tempdir().unwrap();
    let mut writer = phone(&app.base, &writer_dir, "bao");
    for i in 0..5 {
        writer
            .create(Household, obj(household(v1, &format!("Nhà {i}"))))
            .unwrap();
    }
    writer.sync().unwrap();

    let stub = Stub::start(app.base.clone());
    let dir = tempfile::tempdir().unwrap();
    let options = ClientOptions {
        pull_limit: 2,
        ..fast()
    };
    let mut c = open(&stub.base, &dir, options);
    c.login("alice", PW, None).unwrap();
    // The first page arrives, then the link drops for good.
    stub.script(&[Reply::Forward, Reply::Drop, Reply::Drop, Reply::Drop]);
    let err = c.pull().unwrap_err();
    assert!(matches!(err, Error::GaveUp { .. }), "{err}");
    let cursor = c
        .status()
        .unwrap()
        .cursor
        .expect("the first page's cursor is kept");
    assert_eq!(
        c.server_copies().unwrap().len(),
        2,
        "the first page is kept with it"
    );

    // Reopened, the walk goes on from that cursor instead of the beginning.
    drop(c);
    let mut c = Client::open_with(&store_path(&dir), None, options).unwrap();
    let mark = stub.seen().len();
    let report = c.pull().unwrap();
    assert_eq!(report.changes, 3, "{report:?}");
    let first = &stub.seen()[mark];
    assert!(first.path.starts_with("/api/v1/sync/pull?"), "{}", first.path);
    assert!(
        first.path.contains(&format!("cursor={cursor}")),
        "{} resumes at {cursor}",
        first.path
    );
    assert!(
        first.headers["accept-encoding"].contains("gzip"),
        "gzip answers are accepted"
    );
    assert_eq!(c.server_copies().unwrap(), writer.server_copies().unwrap());

    // A cursor the server cannot read is dropped and the pull starts over.
    let bad = "not-a-cursor";
    drop(c);
    {
        let db = diesel_sqlite(&store_path(&dir));
        set_cursor(db, bad);
    }
    let mut c = Client::open_with(&store_path(&dir), None, options).unwrap();
    let report = c.pull().unwrap();
    assert_eq!(report.changes, 5, "from the beginning: {report:?}");
    assert_ne!(c.status().unwrap().cursor.as_deref(), Some(bad));
}

fn diesel_sqlite(path: &Path) -> diesel::SqliteConnection {
    use diesel::Connection;
    diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap()
}

/// Writes a pull cursor straight into a client store, as a corrupted or outdated one.
fn set_cursor(mut db: diesel::SqliteConnection, cursor: &str) {
    use diesel::RunQueryDsl;
    diesel::sql_query(format!("UPDATE state SET pull_cursor = '{cursor}'"))
        .execute(&mut db)
        .unwrap();
}

fn expired_access_tokens_are_refreshed(backend: Backend) {
    let db = TestDb::new(backend);
    let mut config = test_config(&db.url);
    config.access_ttl_secs = 1;
    let app = setup(TestApp::spawn_with(db, config));
    let dir = tempfile::tempdir().unwrap();
    let mut c = phone(&app.base, &dir, "alice");
    let before = c.store().session().unwrap().unwrap();
    c.create(Household, obj(household(app.unit_id("V1"), "Hết hạn")))
        .unwrap();
    // One second of life plus the server's five seconds of leeway.
    std::thread::sleep(Duration::from_secs(7));
    let report = c.sync().unwrap();
    assert_eq!((report.push.summary.applied, report.pull.changes), (1, 1));
    let after = c.store().session().unwrap().unwrap();
    assert_ne!(before.access_token, after.access_token);
    assert_ne!(before.refresh_token, after.refresh_token);
}

/// Runs the `hamlet-client` binary on `store`; returns success, stdout and stderr.
fn cli_with(store: &Path, password: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(hamlet_client_bin())
        .arg("--store")
        .arg(store)
        .args(["--attempts", "2"])
        .args(args)
        .env("HAMLET_PASSWORD", password)
        .env_remove("HAMLET_SERVER")
        .env_remove("HAMLET_CLIENT_STORE")
        .output()
        .expect("run hamlet-client");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli(store: &Path, args: &[&str]) -> (bool, String, String) {
    cli_with(store, PW, args)
}

#[track_caller]
fn cli_ok(store: &Path, args: &[&str]) -> String {
    let (ok, out, err) = cli(store, args);
    assert!(ok, "hamlet-client {args:?} failed:\n{out}\n{err}");
    out
}

#[track_caller]
fn cli_fails(store: &Path, args: &[&str], says: &str) {
    let (ok, out, err) = cli(store, args);
    assert!(!ok, "hamlet-client {args:?} should fail:\n{out}");
    assert!(
        err.contains(says),
        "hamlet-client {args:?}: {err:?} should say {says:?}"
    );
}

fn the_cli_end_to_end(backend: Backend) {
    let app = setup(TestApp::spawn(backend));
    let (v1, v4) = (app.unit_id("V1").to_string(), app.unit_id("V4").to_string());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cli.db");
    let s = store.as_path();

    let (ok, _, err) = cli_with(s, "wrong-password", &["--server", &app.base, "login", "alice"]);
    assert!(!ok && err.contains("unauthorized"), "{err}");
    let out = cli_ok(s, &["--server", &app.base, "login", "alice"]);
    assert!(out.contains("logged in as alice (enumerator)"), "{out}");

    // Offline edits; each add prints the new id.
    let h = cli_ok(
        s,
        &[
            "household",
            "add",
            "--village",
            &v1,
            "--head",
            "Hà Văn Thắng",
            "--fixed-broadband",
            "yes",
            "address=Xóm Nà Lầu",
        ],
    )
    .trim()
    .to_owned();
    let h_id: Uuid = h.parse().expect("a household id on stdout");
    let m = cli_ok(
        s,
        &[
            "member",
            "add",
            "--household",
            &h,
            "--name",
            "Hà Thị Lan",
            "--birth-year",
            "1990",
            "--smartphone",
            "yes",
            "--account",
            "no",
            "vneid_level2=yes",
        ],
    )
    .trim()
    .to_owned();
    let m_id: Uuid = m.parse().expect("a member id on stdout");
    let member_args = |year: &'static str| {
        vec![
            "member",
            "add",
            "--household",
            h.as_str(),
            "--name",
            "Lỗi",
            "--birth-year",
            year,
        ]
    };
    let mut bad_year = member_args("1850");
    bad_year.extend(["--smartphone", "yes", "--account", "no"]);
    cli_fails(s, &bad_year, "birth_year must be within 1900..=");
    cli_fails(s, &member_args("1990"), "--smartphone");
    let stranger = Uuid::now_v7().to_string();
    cli_fails(
        s,
        &[
            "member",
            "add",
            "--household",
            &stranger,
            "--name",
            "X",
            "--birth-year",
            "1990",
            "--smartphone",
            "no",
            "--account",
            "no",
        ],
        "no household",
    );
    cli_fails(
        s,
        &["edit", "household", &h, "colour=red"],
        "has no field \"colour\"",
    );
    cli_fails(s, &["edit", "cow", &h, "a=b"], "household or member");
    // Outside alice's scope: only the server can tell.
    cli_ok(
        s,
        &["household", "add", "--village", &v4, "--head", "Ngoài phạm vi"],
    );
    let out = cli_ok(s, &["edit", "household", &h, "head_name=Hà Văn Lâm"]);
    assert!(out.contains("#1"), "folded into the unsent create: {out}");
    let status: Value = serde_json::from_str(&cli_ok(s, &["status", "--json"])).unwrap();
    assert_eq!(status["pending"].as_array().unwrap().len(), 3);
    assert_eq!(status["last_sync"], Value::Null);

    let (ok, out, err) = cli(s, &["sync"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 applied") && out.contains("1 rejected"), "{out}");
    assert!(err.contains("1 edits were rejected"), "{err}");

    let status: Value = serde_json::from_str(&cli_ok(s, &["status", "--json"])).unwrap();
    assert_eq!(status["pending"], json!([]));
    assert_eq!(status["username"], "alice");
    assert!(
        status["last_sync"].is_string() && status["cursor"].is_string(),
        "{status}"
    );
    let rejected = status["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["errors"][0]["code"], "forbidden");
    let text = cli_ok(s, &["status"]);
    assert!(
        text.contains("rejected:      1") && text.contains("forbidden"),
        "{text}"
    );
    assert!(!text.contains("last sync:     never"), "{text}");

    let list: Value = serde_json::from_str(&cli_ok(s, &["list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "the rejected household is not shown: {list:?}");
    let hh = list.iter().find(|r| r["id"] == h).unwrap();
    assert_eq!(
        (hh["version"].clone(), hh["fields"]["head_name"].clone()),
        (json!(1), json!("Hà Văn Lâm"))
    );
    assert_eq!(hh["fields"]["address"], "Xóm Nà Lầu");
    let text = cli_ok(s, &["list"]);
    assert!(text.contains("head_name=\"Hà Văn Lâm\""), "{text}");
    assert!(
        text.contains(&format!("\n  member {m}")),
        "members under their household: {text}"
    );

    let out = cli_ok(s, &["delete", "member", &m]);
    assert!(out.contains("queued"), "{out}");
    cli_fails(s, &["edit", "member", &m, "full_name=X"], "is deleted");
    cli_ok(s, &["sync"]);
    let live: Value = serde_json::from_str(&cli_ok(s, &["list", "--json"])).unwrap();
    let all: Value = serde_json::from_str(&cli_ok(s, &["list", "--json", "--deleted"])).unwrap();
    assert_eq!(
        (live.as_array().unwrap().len(), all.as_array().unwrap().len()),
        (1, 2)
    );
    assert!(cli_ok(s, &["dismiss", "--all"]).contains("dismissed 1"));

    // The store belongs to one server, and nothing syncs without a login.
    cli_fails(s, &["--server", "http://127.0.0.1:9", "status"], "syncs with");
    cli_fails(&dir.path().join("other.db"), &["sync"], "not logged in");

    // The server has what the CLI sent.
    let (changes, _) = Phone::login(&app, "bao", PW).pull_all(None);
    let on_server = |id: Uuid| {
        changes
            .iter()
            .find(|c| c["id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    assert_eq!(on_server(h_id)["fields"]["head_name"], "Hà Văn Lâm");
    assert_eq!(on_server(h_id)["fields"]["fixed_broadband"], "yes");
    assert_eq!(on_server(m_id)["deleted"], true);
    app.assert_consistent();
}

backend_tests!(
    two_offline_clients_converge,
    outbox_survives_a_client_that_cannot_reach_the_server,
    retries_honour_retry_after_and_refresh_on_401,
    pulls_resume_from_the_persisted_cursor,
    expired_access_tokens_are_refreshed,
    the_cli_end_to_end,
);
