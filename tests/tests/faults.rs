//! Faults under a running server (issue 10, items 4 and 5), against the real `hamlet` binary:
//!
//! - PostgreSQL stopped and started (cleanly, then as a crash) under load: every answer during
//!   the outage is 503 `unavailable` with `Retry-After` within the timeout, `/healthz` says the
//!   database is down, the same process recovers, and every acknowledged record is stored once.
//!   The test runs its own PostgreSQL instance, so the machine's shared cluster keeps serving.
//! - SQLite on a read-only file and on a full disk: 503 with a clear message, reads still
//!   served, nothing corrupted, and the writes go through once the fault is gone.
//! - Two `hamlet serve` processes on one database behave as one: idempotency across them, field
//!   merge, counters, pull completeness, revocation.

use hamlet_shared::{Role, UnitId};
use hamlet_tests::*;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

/// `HAMLET_DB_TIMEOUT_SECS` of the servers under test.
const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Slack on top of a timeout for a loaded 2-core CI machine. A request may wait the timeout
/// once for authentication and once for its own work.
const SLACK: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// HTTP with status, headers and timing

/// One answer of the server, as a client saw it.
#[derive(Debug, Clone)]
struct Reply {
    what: &'static str,
    /// 0 for a transport error (connection refused or reset, timeout).
    status: u16,
    body: Value,
    retry_after: Option<String>,
    elapsed: Duration,
    /// When the answer arrived.
    at: Instant,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A hang is a failure, not a stuck test.
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn finish(
    what: &'static str,
    started: Instant,
    res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Reply {
    match res {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = res.body_mut().read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Reply {
                what,
                status,
                body,
                retry_after,
                elapsed: started.elapsed(),
                at: Instant::now(),
            }
        }
        Err(e) => Reply {
            what,
            status: 0,
            body: Value::String(e.to_string()),
            retry_after: None,
            elapsed: started.elapsed(),
            at: Instant::now(),
        },
    }
}

fn get(what: &'static str, base: &str, path: &str, token: Option<&str>) -> Reply {
    let mut req = agent().get(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let started = Instant::now();
    finish(what, started, req.call())
}

fn post(what: &'static str, base: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Reply {
    let mut req = agent().post(&format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let started = Instant::now();
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.send_empty(),
    };
    finish(what, started, res)
}

fn push(phone: &Phone, base: &str, mutations: &[Value]) -> Reply {
    let body = json!({ "device_id": phone.device, "mutations": mutations });
    post("push", base, "/api/v1/sync/push", Some(&body), Some(&phone.token))
}

/// Asserts a 503 `unavailable` with a whole number of seconds in `Retry-After`.
#[track_caller]
fn assert_unavailable(r: &Reply) {
    assert_eq!(r.status, 503, "{} during the fault: {}", r.what, r.body);
    assert_eq!(r.body["error"]["code"], "unavailable", "{}", r.body);
    let secs = r
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{} 503 without Retry-After", r.what));
    assert!(secs.parse::<u64>().is_ok_and(|s| s > 0), "Retry-After {secs:?}");
}

/// A household with two members, as one batch; returns the batch and the record ids.
fn family(phone: &Phone, village: UnitId, n: usize) -> (Vec<Value>, [Uuid; 3]) {
    let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let smartphone = if n.is_multiple_of(3) { "no" } else { "yes" };
    let batch = vec![
        phone.upsert("household", ids[0], 0, household(village, "Hộ gia đình")),
        phone.upsert(
            "member",
            ids[1],
            0,
            member(ids[0], "Chủ hộ", 1980, smartphone, "yes"),
        ),
        phone.upsert("member", ids[2], 0, member(ids[0], "Con", 2015, "no", "no")),
    ];
    (batch, ids)
}

/// Asserts a 200 push whose every result is `applied`, or a `duplicate` of an applied one.
#[track_caller]
fn assert_stored(r: &Reply) {
    assert_eq!(r.status, 200, "push: {}", r.body);
    for result in r.body["results"].as_array().expect("results") {
        let ok = result["status"] == "applied"
            || (result["status"] == "duplicate" && result["original_status"] == "applied");
        assert!(ok, "{result}");
    }
}

/// Runs `hamlet verify` on the database; asserts it finds nothing to repair.
#[track_caller]
fn assert_verify_clean(database_url: &str) {
    let out = Command::new(hamlet_bin())
        .arg("verify")
        .env("HAMLET_DATABASE_URL", database_url)
        .output()
        .expect("run hamlet verify");
    assert!(
        out.status.success(),
        "hamlet verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Walks the pull cursor; asserts every record in `expected` comes back exactly once and
/// nothing else (for records written once: an edited record may come once per change).
#[track_caller]
fn assert_pulled_exactly(phone: &Phone, expected: &HashSet<Uuid>) {
    let (changes, _) = phone.pull_all(None);
    let ids: Vec<Uuid> = changes
        .iter()
        .map(|c| c["id"].as_str().expect("id").parse().expect("uuid"))
        .collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a fresh pull repeats nothing");
    let missing: Vec<_> = expected.difference(&unique).collect();
    assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
    let extra: Vec<_> = unique.difference(expected).collect();
    assert!(extra.is_empty(), "records nobody acknowledged: {extra:?}");
}

/// Polls `done` every 50 ms until it holds; panics with `what` after `limit`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// uid and gid of a system account, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// `hamlet serve` on port 0 with test settings, for `ServerProcess`-like starts the harness
/// does not offer (another user, a wrapper that ignores SIGXFSZ).
fn serve_command(program: &str, pre_args: &[&str], database_url: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(pre_args)
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
        .env("HAMLET_DATABASE_URL", database_url)
        .env("HAMLET_JWT_SECRET", TEST_SECRET)
        .env("HAMLET_LOG_FORMAT", "json")
        .env("HAMLET_LOG", "info")
        .env("HAMLET_DB_TIMEOUT_SECS", DB_TIMEOUT.as_secs().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns `cmd` (a `hamlet serve`) and waits until it listens, as `ServerProcess::start` does.
fn spawn_server(mut cmd: Command) -> ServerProcess {
    use std::io::BufRead;
    let mut child = cmd.spawn().expect("start hamlet serve");
    let stderr = child.stderr.take().expect("stderr");
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["fields"]["message"] == "hamlet serving"
            {
                let _ = tx.send(v["fields"]["port"].as_u64().unwrap_or(0) as u16);
            }
            sink.lock().expect("lock").push(line);
        }
    });
    let Ok(port) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("hamlet serve did not start: {:?}", logs.lock().expect("lock"));
    };
    ServerProcess {
        child,
        port,
        base: format!("http://127.0.0.1:{port}"),
        logs,
    }
}

/// Log lines of a server that contain `needle`.
fn log_lines(server: &ServerProcess, needle: &str) -> Vec<String> {
    server
        .logs
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Asserts the server logged no internal error and answered no request with a 500.
#[track_caller]
fn assert_no_internal_error(server: &ServerProcess) {
    assert_eq!(log_lines(server, "internal error"), Vec::<String>::new());
    assert_eq!(log_lines(server, "\"status\":500"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL instance

/// The directory of PostgreSQL's server programs: `HAMLET_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else whatever `PATH` finds.
fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HAMLET_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

/// A throwaway PostgreSQL cluster in a temporary directory, on a free port, that a test may
/// stop and start at will. Owned by the `postgres` account when the test runs as root
/// (PostgreSQL refuses to run as root).
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    port: u16,
}

impl PrivatePg {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hamlet-pg-")
            .tempdir()
            .expect("temp dir");
        let owner = running_as_root().then(|| {
            let owner =
                system_user("postgres").expect("running as root: a `postgres` account to run PostgreSQL");
            std::os::unix::fs::chown(dir.path(), Some(owner.0), Some(owner.1)).expect("chown");
            owner
        });
        let mut pg = Self {
            dir,
            bin: pg_bin_dir(),
            owner,
            port: 0,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // A free port can be taken by someone else before the server binds it: try another.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => {
                    pg.create_database("hamlet");
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("private PostgreSQL did not start: {last}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path()).env("LC_ALL", "C");
        cmd
    }

    #[track_caller]
    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().expect(program);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn try_start(&self) -> Result<(), String> {
        // fsync off: the tests stop and crash the server process, never the machine.
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c shared_buffers=16MB -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let out = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()])
            .args(["-w", "-t", "30", "-o", &options, "start"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Starts the stopped server again on the same port.
    fn restart(&self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("private PostgreSQL did not restart: {e}"));
    }

    /// `pg_ctl stop` in `mode`: `fast` (a clean shutdown that ends every session) or
    /// `immediate` (a crash: no checkpoint, recovery at the next start).
    fn stop(&self, mode: &str) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", mode, "-w", "-t", "30", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn create_database(&self, name: &str) {
        use diesel::{Connection, PgConnection, RunQueryDsl};
        let mut conn =
            PgConnection::establish(&self.url("postgres")).expect("connect to the private PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create database");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// 4. PostgreSQL stopped and started under load

/// What the load threads share with the test.
#[derive(Default)]
struct Load {
    replies: Mutex<Vec<Reply>>,
    stop: AtomicBool,
    /// Where and as whom the burst of reads during an outage goes.
    base: String,
    token: String,
    burst_path: String,
}

impl Load {
    fn record(&self, r: &Reply) {
        self.replies.lock().expect("lock").push(r.clone());
    }

    /// Whether an answer of `what` with `status` arrived after `since`.
    fn saw(&self, what: &str, status: u16, since: Instant) -> bool {
        self.replies
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r.what == what && r.status == status && r.at > since)
    }
}

/// A phone that pushes one family after another until told to stop, resending each batch until
/// it is acknowledged. Returns the acknowledged record ids.
fn pusher(
    phone: Phone,
    base: String,
    village: UnitId,
    load: Arc<Load>,
) -> std::thread::JoinHandle<Vec<Uuid>> {
    std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut n = 0;
        while !load.stop.load(Ordering::SeqCst) {
            n += 1;
            let (batch, ids) = family(&phone, village, n);
            let give_up = Instant::now() + Duration::from_secs(60);
            loop {
                let r = push(&phone, &base, &batch);
                load.record(&r);
                if r.status == 200 {
                    assert_stored(&r);
                    acknowledged.extend(ids);
                    break;
                }
                assert!(Instant::now() < give_up, "batch never acknowledged: {r:?}");
                // A phone would honour Retry-After; the test retries sooner to stay short.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        acknowledged
    })
}

/// Stops PostgreSQL in `mode`, keeps it down until both a push and `/healthz` have answered
/// 503, starts it again and waits until both answer 200 again. Returns the outage's length.
fn outage(pg: &PrivatePg, mode: &str, load: &Load) -> Duration {
    let down = Instant::now();
    pg.stop(mode);
    // A burst of clients at once: more requests than blocking threads and connections, so most
    // of them first queue for a thread. Each still answers within the timeout.
    let burst: Vec<_> = (0..24)
        .map(|_| {
            let (base, token, path) = (load.base.clone(), load.token.clone(), load.burst_path.clone());
            std::thread::spawn(move || get("burst", &base, &path, Some(&token)))
        })
        .collect();
    for b in burst {
        let r = b.join().expect("burst");
        load.record(&r);
    }
    wait_for("503s during the outage", Duration::from_secs(20), || {
        down.elapsed() >= Duration::from_millis(2500)
            && load.saw("push", 503, down)
            && load.saw("healthz", 503, down)
    });
    let up = Instant::now();
    pg.restart();
    wait_for("recovery", Duration::from_secs(30), || {
        load.saw("push", 200, up) && load.saw("healthz", 200, up)
    });
    eprintln!(
        "{mode} stop: down {:?}, recovered {:?} after the restart",
        up - down,
        up.elapsed()
    );
    up - down
}

#[test]
fn postgres_stopped_and_started_under_load() {
    let started = Instant::now();
    let pg = PrivatePg::start();
    let url = pg.url("hamlet");
    let pool = hamlet_server::db::build_pool(
        &url,
        &hamlet_server::db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .expect("pool");
    hamlet_server::db::run_migrations(&mut pool.get().expect("connection")).expect("migrations");
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "v1team", PW, Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");
    drop(pool);

    let mut server = ServerProcess::start(
        &url,
        &[
            ("HAMLET_DB_TIMEOUT_SECS", &DB_TIMEOUT.as_secs().to_string()),
            ("HAMLET_DB_POOL_SIZE", "4"),
        ],
    );
    let base = server.base.clone();
    let load = Arc::new(Load {
        base: base.clone(),
        token: Phone::login_at(&base, "v1team", PW).token,
        burst_path: format!("/api/v1/aggregates/{v1}"),
        ..Load::default()
    });
    let pushers: Vec<_> = (0..3)
        .map(|_| {
            pusher(
                Phone::login_at(&base, "v1team", PW),
                base.clone(),
                v1,
                load.clone(),
            )
        })
        .collect();
    let reader = {
        let (phone, base, load) = (Phone::login_at(&base, "v1team", PW), base.clone(), load.clone());
        std::thread::spawn(move || {
            let path = format!("/api/v1/aggregates/{v1}");
            while !load.stop.load(Ordering::SeqCst) {
                load.record(&get(
                    "pull",
                    &base,
                    "/api/v1/sync/pull?limit=50",
                    Some(&phone.token),
                ));
                load.record(&get("aggregates", &base, &path, Some(&phone.token)));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let health = {
        let (base, load) = (base.clone(), load.clone());
        std::thread::spawn(move || {
            while !load.stop.load(Ordering::SeqCst) {
                load.record(&get("healthz", &base, "/healthz", None));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let t0 = Instant::now();
    wait_for("pushes before the outage", Duration::from_secs(20), || {
        load.saw("push", 200, t0) && load.saw("healthz", 200, t0)
    });
    outage(&pg, "fast", &load);
    outage(&pg, "immediate", &load);
    std::thread::sleep(Duration::from_millis(300));
    load.stop.store(true, Ordering::SeqCst);
    let mut acknowledged = HashSet::new();
    for p in pushers {
        acknowledged.extend(p.join().expect("pusher"));
    }
    reader.join().expect("reader");
    health.join().expect("health");

    // Every answer was a success or a 503 with Retry-After, within the timeout.
    let replies = load.replies.lock().expect("lock");
    let mut unavailable: HashMap<&str, usize> = HashMap::new();
    for r in replies.iter() {
        assert!(
            r.status == 200 || r.status == 503,
            "{} answered {}: {}",
            r.what,
            r.status,
            r.body
        );
        let limit = if r.what == "pull" {
            // A pull may wait up to 1 s for an older transaction to commit.
            DB_TIMEOUT * 2 + SLACK + Duration::from_secs(1)
        } else {
            DB_TIMEOUT * 2 + SLACK
        };
        assert!(r.elapsed <= limit, "{} took {:?}", r.what, r.elapsed);
        if r.what == "healthz" {
            let expected = if r.status == 200 { "ok" } else { "unavailable" };
            assert_eq!(r.body["database"], expected, "{}", r.body);
            if r.status == 503 {
                assert!(r.retry_after.is_some(), "healthz 503 without Retry-After");
            }
            assert!(r.elapsed <= DB_TIMEOUT + SLACK, "healthz took {:?}", r.elapsed);
        } else if r.status == 503 {
            assert_unavailable(r);
        }
        if r.status == 503 {
            *unavailable.entry(r.what).or_default() += 1;
        }
    }
    eprintln!(
        "{} answers, 503s: {unavailable:?}, slowest {:?}",
        replies.len(),
        replies.iter().map(|r| r.elapsed).max().unwrap_or_default()
    );
    drop(replies);

    // The same process served throughout, and logged no internal error.
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the server exited"
    );
    assert_no_internal_error(&server);
    assert!(
        !log_lines(&server, "database connection failed").is_empty(),
        "the outage is logged"
    );

    // Nothing acknowledged was lost or stored twice.
    let phone = Phone::login_at(&base, "v1team", PW);
    assert_pulled_exactly(&phone, &acknowledged);
    let aggregates = get(
        "aggregates",
        &base,
        &format!("/api/v1/aggregates/{v1}"),
        Some(&phone.token),
    );
    assert_eq!(aggregates.status, 200);
    assert_eq!(aggregates.body["households"], acknowledged.len() / 3);
    assert_eq!(aggregates.body["members"], acknowledged.len() / 3 * 2);
    server.signal("TERM");
    server.wait(Duration::from_secs(15)).expect("graceful stop");
    assert_verify_clean(&url);
    eprintln!(
        "{} records acknowledged; test took {:?}",
        acknowledged.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite: a read-only file, a full disk

/// The file of a `sqlite://` URL.
fn sqlite_path(url: &str) -> PathBuf {
    PathBuf::from(url.trim_start_matches("sqlite://"))
}

/// `PRAGMA integrity_check` of a SQLite file, opened as the test's own connection.
fn integrity_check(url: &str) -> String {
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let mut conn = SqliteConnection::establish(sqlite_path(url).to_str().expect("path")).expect("open");
    let rows: Vec<Row> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .expect("integrity_check");
    rows.into_iter()
        .map(|r| r.integrity_check)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Folds the WAL into the database file and closes, so the file alone holds everything.
fn checkpoint(url: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let mut conn = SqliteConnection::establish(sqlite_path(url).to_str().expect("path")).expect("open");
    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// SQLite database files, WAL and shared-memory index included.
fn sqlite_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

/// The database file turns read-only (an operator's `chmod`, a restore with the wrong owner)
/// and the server is restarted on it: it starts, serves reads, answers every write 503
/// `unavailable` with a clear message, and changes nothing. Once the file is writable again,
/// the refused batch goes through and the file is intact.
#[test]
fn sqlite_read_only_database_refuses_writes_cleanly() {
    let db = TestDb::new(Backend::Sqlite);
    let path = sqlite_path(&db.url);
    let dir = path.parent().expect("dir").to_owned();
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "v1team", PW, Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");
    drop(pool);

    let mut server = ServerProcess::start(&db.url, &[]);
    let mut phone = Phone::login_at(&server.base, "v1team", PW);
    let (before, before_ids) = family(&phone, v1, 1);
    assert_stored(&push(&phone, &server.base, &before));
    server.signal("TERM");
    server.wait(Duration::from_secs(15)).expect("graceful stop");
    checkpoint(&db.url);

    // Root ignores file permissions: the server then runs as `nobody`, which owns the directory
    // (SQLite creates its -wal and -shm files there) but may only read the database file.
    let nobody = running_as_root().then_some((65534, 65534));
    if let Some((uid, gid)) = nobody {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        for f in sqlite_files(&path) {
            std::os::unix::fs::chown(&f, Some(uid), Some(gid)).expect("chown");
        }
    }
    for f in sqlite_files(&path) {
        chmod(&f, 0o444);
    }
    let size_before = std::fs::metadata(&path).expect("db file").len();
    let mut cmd = serve_command(hamlet_bin().to_str().expect("path"), &[], &db.url);
    if let Some((uid, gid)) = nobody {
        cmd.uid(uid).gid(gid);
    }
    let server = spawn_server(cmd);

    let (refused, refused_ids) = family(&phone, v1, 2);
    for _ in 0..3 {
        let r = push(&phone, &server.base, &refused);
        assert_unavailable(&r);
        let message = r.body["error"]["message"].as_str().expect("message");
        assert!(message.contains("cannot be written"), "{message}");
    }
    // Logging in writes a session: refused the same way, not with a 500.
    let login = post(
        "login",
        &server.base,
        "/api/v1/auth/login",
        Some(&json!({ "username": "v1team", "password": PW, "device_id": Uuid::new_v4() })),
        None,
    );
    assert_unavailable(&login);
    // Reads are served: the phone still pulls what was stored before.
    phone.base = server.base.clone();
    assert_pulled_exactly(&phone, &before_ids.into_iter().collect());
    let aggregates = get(
        "aggregates",
        &server.base,
        &format!("/api/v1/aggregates/{v1}"),
        Some(&phone.token),
    );
    assert_eq!(aggregates.status, 200, "{}", aggregates.body);
    assert_eq!(aggregates.body["households"], 1, "{}", aggregates.body);
    assert_eq!(get("healthz", &server.base, "/healthz", None).status, 200);
    assert!(
        !log_lines(&server, "database cannot be written").is_empty(),
        "the operator is told"
    );
    assert_no_internal_error(&server);
    drop(server);

    assert_eq!(
        std::fs::metadata(&path).expect("db file").len(),
        size_before,
        "file untouched"
    );
    for f in sqlite_files(&path) {
        chmod(&f, 0o644);
    }
    assert_eq!(integrity_check(&db.url), "ok");
    let server = ServerProcess::start(&db.url, &[]);
    let r = push(&phone, &server.base, &refused);
    assert_stored(&r);
    assert!(
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "applied"),
        "nothing of the refused batch was stored before: {}",
        r.body
    );
    let mut all: HashSet<Uuid> = before_ids.into_iter().collect();
    all.extend(refused_ids);
    phone.base = server.base.clone();
    assert_pulled_exactly(&phone, &all);
    drop(server);
    assert_eq!(integrity_check(&db.url), "ok");
    assert_verify_clean(&db.url);
}

/// The disk fills up under a running server. Simulated with the process's file-size limit
/// (`prlimit --fsize`), which makes every write that would grow a database file fail as a full
/// disk does (the server ignores SIGXFSZ, as it ignores nothing else: the wrapper sets it).
/// Writes get 503 with a clear message, reads are served, and once there is room again the
/// same process accepts the refused batch; the file is intact.
#[test]
fn sqlite_full_disk_refuses_writes_then_recovers_without_restart() {
    let db = TestDb::new(Backend::Sqlite);
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "v1team", PW, Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");
    drop(pool);

    let bin = hamlet_bin();
    let server = spawn_server(serve_command(
        "sh",
        &[
            "-c",
            "trap '' XFSZ; exec \"$0\" \"$@\"",
            bin.to_str().expect("path"),
        ],
        &db.url,
    ));
    let pid = server.child.id().to_string();
    let prlimit = |limit: &str| {
        let out = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={limit}")])
            .output()
            .expect("prlimit (util-linux) sets the file-size limit of the server");
        assert!(
            out.status.success(),
            "prlimit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut phone = Phone::login_at(&server.base, "v1team", PW);
    phone.base = server.base.clone();
    let (first, first_ids) = family(&phone, v1, 1);
    assert_stored(&push(&phone, &server.base, &first));

    // The soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE.
    prlimit("1:");
    let (refused, refused_ids) = family(&phone, v1, 2);
    // Several tries, so several pooled connections meet the fault.
    for _ in 0..4 {
        let r = push(&phone, &server.base, &refused);
        assert_unavailable(&r);
        let message = r.body["error"]["message"].as_str().expect("message");
        assert!(message.contains("cannot be written"), "{message}");
    }
    assert_pulled_exactly(&phone, &first_ids.into_iter().collect());

    prlimit("unlimited:");
    let r = push(&phone, &server.base, &refused);
    assert_stored(&r);
    assert!(
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "applied"),
        "nothing of the refused batch was stored before: {}",
        r.body
    );
    // Every pooled connection works again (none kept a broken transaction).
    let mut all: HashSet<Uuid> = first_ids.into_iter().chain(refused_ids).collect();
    for n in 3..9 {
        let (batch, ids) = family(&phone, v1, n);
        assert_stored(&push(&phone, &server.base, &batch));
        all.extend(ids);
    }
    assert_pulled_exactly(&phone, &all);
    assert!(
        !log_lines(&server, "database cannot be written").is_empty(),
        "the operator is told"
    );
    assert_no_internal_error(&server);
    drop(server);
    assert_eq!(integrity_check(&db.url), "ok");
    assert_verify_clean(&db.url);
}

// ---------------------------------------------------------------------------------------------
// 5. Several processes, one database

/// One page of a pull from `base`.
fn pull_page(base: &str, token: &str, cursor: Option<&str>, limit: u32) -> Reply {
    let mut path = format!("/api/v1/sync/pull?limit={limit}");
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    get("pull", base, &path, Some(token))
}

/// Walks the cursor from `cursor` to the end, each page from the next of `bases` in turn.
/// Returns the ids seen and the last cursor.
fn pull_alternating(
    bases: &[String],
    token: &str,
    mut cursor: Option<String>,
    limit: u32,
) -> (Vec<Uuid>, String) {
    let mut ids = Vec::new();
    for page in 0.. {
        let r = pull_page(&bases[page % bases.len()], token, cursor.as_deref(), limit);
        assert_eq!(r.status, 200, "pull: {}", r.body);
        for c in r.body["changes"].as_array().expect("changes") {
            ids.push(c["id"].as_str().expect("id").parse().expect("uuid"));
        }
        cursor = Some(r.body["cursor"].as_str().expect("cursor").to_owned());
        if r.body["has_more"] == false {
            break;
        }
    }
    (ids, cursor.unwrap_or_default())
}

/// The last state of one record a full pull from `base` returns.
fn pulled_record(base: &str, token: &str, id: Uuid) -> Value {
    let mut cursor: Option<String> = None;
    let mut found = None;
    loop {
        let r = pull_page(base, token, cursor.as_deref(), 500);
        assert_eq!(r.status, 200, "{}", r.body);
        for c in r.body["changes"].as_array().expect("changes") {
            if c["id"] == id.to_string() {
                found = Some(c.clone());
            }
        }
        cursor = Some(r.body["cursor"].as_str().expect("cursor").to_owned());
        if r.body["has_more"] == false {
            return found.unwrap_or_else(|| panic!("{id} not pulled from {base}"));
        }
    }
}

/// Two `hamlet serve` processes on one database, a client alternating between them:
/// everything holds as with one process.
fn two_processes_on_one_database_behave_as_one(backend: Backend) {
    let db = TestDb::new(backend);
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "v1team", PW, Role::Enumerator, &["V1"]);
    add_user(&pool, "c1admin", PW, Role::Admin, &["C1"]);
    let v1other = add_user(&pool, "v1other", PW, Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");
    let c1 = unit_id(&pool, "C1");
    drop(pool);
    let a = ServerProcess::start(&db.url, &[]);
    let b = ServerProcess::start(&db.url, &[]);
    let bases = [a.base.clone(), b.base.clone()];

    // Idempotency: a batch acknowledged by A and replayed to B is a duplicate there.
    let p1 = Phone::login_at(&a.base, "v1team", PW);
    let (batch, [h, _, _]) = family(&p1, v1, 1);
    let first = push(&p1, &a.base, &batch);
    assert_stored(&first);
    let replay = push(&p1, &b.base, &batch);
    assert_eq!(replay.status, 200, "{}", replay.body);
    for (x, y) in first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(replay.body["results"].as_array().unwrap())
    {
        assert_eq!(y["status"], "duplicate", "{y}");
        assert_eq!(y["original_status"], "applied", "{y}");
        assert_eq!((&y["id"], &y["version"]), (&x["id"], &x["version"]));
    }

    // Field merge: different fields from the same base through different processes both win;
    // the same field: the later clock wins whichever process hears it first.
    let p2 = Phone::login_at(&b.base, "v1team", PW);
    let version = first.body["results"][0]["version"].as_i64().expect("version");
    let address = p1.upsert("household", h, version, json!({ "address": "Xóm Trên" }));
    let head = p2.upsert("household", h, version, json!({ "head_name": "Lò Văn Bình" }));
    assert_stored(&push(&p1, &a.base, &[address]));
    let merged = push(&p2, &b.base, &[head]);
    assert_stored(&merged);
    assert_eq!(merged.body["results"][0]["status"], "applied", "{}", merged.body);
    let version = merged.body["results"][0]["version"].as_i64().expect("version");
    let earlier = p1.upsert("household", h, version, json!({ "head_name": "Từ máy 1" }));
    // Clocks of two phones in the same millisecond order by device id: let the wall time move.
    std::thread::sleep(Duration::from_millis(5));
    let later = p2.upsert("household", h, version, json!({ "head_name": "Từ máy 2" }));
    assert_stored(&push(&p2, &b.base, &[later]));
    let lost = push(&p1, &a.base, &[earlier]);
    assert_eq!(lost.status, 200, "{}", lost.body);
    assert_eq!(lost.body["results"][0]["status"], "conflict", "{}", lost.body);
    assert_eq!(lost.body["results"][0]["conflicts"], json!(["head_name"]));
    for base in &bases {
        let record = pulled_record(base, &p1.token, h);
        assert_eq!(record["fields"]["head_name"], "Từ máy 2", "from {base}");
        assert_eq!(record["fields"]["address"], "Xóm Trên", "from {base}");
    }
    let admin = Phone::login_at(&a.base, "c1admin", PW);
    let conflicts = get(
        "conflicts",
        &b.base,
        &format!("/api/v1/conflicts?unit_id={v1}&resolved=false"),
        Some(&admin.token),
    );
    assert_eq!(conflicts.status, 200, "{}", conflicts.body);
    let found = conflicts.body["conflicts"].as_array().expect("conflicts");
    assert!(
        found.iter().any(|c| c["record_id"] == h.to_string()
            && c["field"] == "head_name"
            && c["incoming_value"] == "Từ máy 1"),
        "the lost value is kept for review, seen from the other process: {found:?}"
    );

    // Counters and pull completeness: two phones push concurrently, each batch through one
    // process and replayed through the other, while a third walks the pull cursor across both.
    let mut acknowledged: HashSet<Uuid> = batch_ids(&batch);
    let smartphones = Arc::new(Mutex::new(usize::from(
        batch[1]["fields"]["owns_smartphone"] == "yes",
    )));
    let done = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = [p1, p2]
        .into_iter()
        .enumerate()
        .map(|(i, phone)| {
            let (bases, smartphones) = (bases.clone(), smartphones.clone());
            std::thread::spawn(move || {
                let mut ids = HashSet::new();
                for n in 0..15 {
                    let (batch, _) = family(&phone, v1, n + i);
                    let (here, there) = (&bases[(n + i) % 2], &bases[(n + i + 1) % 2]);
                    assert_stored(&push(&phone, here, &batch));
                    let replay = push(&phone, there, &batch);
                    assert_eq!(replay.status, 200, "{}", replay.body);
                    for r in replay.body["results"].as_array().expect("results") {
                        assert_eq!(r["status"], "duplicate", "{r}");
                    }
                    ids.extend(batch_ids(&batch));
                    if batch[1]["fields"]["owns_smartphone"] == "yes" {
                        *smartphones.lock().unwrap() += 1;
                    }
                }
                ids
            })
        })
        .collect();
    let walker = {
        let (bases, done) = (bases.clone(), done.clone());
        let reader = Phone::login_at(&bases[1], "v1team", PW);
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut cursor = None;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let (ids, last) = pull_alternating(&bases, &reader.token, cursor.take(), 4);
                seen.extend(ids);
                cursor = Some(last);
                if finished {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for p in pushers {
        acknowledged.extend(p.join().expect("pusher"));
    }
    done.store(true, Ordering::SeqCst);
    let seen = walker.join().expect("walker");
    let missing: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "an incremental pull across processes skipped {missing:?}"
    );

    let households = acknowledged.len() / 3;
    let smartphones = *smartphones.lock().unwrap();
    let mut answers = Vec::new();
    for base in &bases {
        for unit in [v1, c1] {
            let r = get(
                "aggregates",
                base,
                &format!("/api/v1/aggregates/{unit}"),
                Some(&admin.token),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["households"], households, "{}", r.body);
            assert_eq!(r.body["members"], households * 2, "{}", r.body);
            let indicator = r.body["indicators"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["key"] == "population_with_smartphone")
                .expect("indicator")
                .clone();
            assert_eq!(indicator["numerator"], smartphones, "{indicator}");
            assert_eq!(indicator["denominator"], households * 2, "{indicator}");
            let mut body = r.body.clone();
            body["as_of"] = Value::Null;
            answers.push((unit, body));
        }
    }
    assert_eq!(answers[0], answers[2], "V1 from A and from B");
    assert_eq!(answers[1], answers[3], "C1 from A and from B");
    let reader = Phone::login_at(&a.base, "v1team", PW);
    // (A record edited several times may come once per change: the contract says at least once.)
    let (fresh, last) = pull_alternating(&bases, &reader.token, None, 7);
    assert_eq!(fresh.into_iter().collect::<HashSet<_>>(), acknowledged);
    for base in &bases {
        let r = pull_page(base, &reader.token, Some(&last), 100);
        assert_eq!(
            r.body["changes"],
            json!([]),
            "nothing new after the last cursor, from {base}"
        );
    }

    // A device revoked through A is refused by B at once, refresh token included.
    let p3 = Phone::login_at(&b.base, "v1team", PW);
    let (batch, _) = family(&p3, v1, 0);
    assert_stored(&push(&p3, &b.base, &batch));
    let revoke = post(
        "revoke",
        &a.base,
        &format!("/api/v1/devices/{}/revoke", p3.device),
        None,
        Some(&admin.token),
    );
    assert_eq!(revoke.status, 204, "{}", revoke.body);
    let (batch, _) = family(&p3, v1, 0);
    assert_eq!(push(&p3, &b.base, &batch).status, 401);
    assert_eq!(pull_page(&b.base, &p3.token, None, 10).status, 401);
    assert_eq!(push(&p3, &a.base, &batch).status, 401);
    let refresh = post(
        "refresh",
        &b.base,
        "/api/v1/auth/refresh",
        Some(&json!({ "refresh_token": p3.refresh })),
        None,
    );
    assert_eq!(refresh.status, 401, "{}", refresh.body);

    // A user disabled through B is refused by A at once.
    let other = Phone::login_at(&a.base, "v1other", PW);
    assert_eq!(pull_page(&a.base, &other.token, None, 10).status, 200);
    let disable = post(
        "disable",
        &b.base,
        &format!("/api/v1/users/{v1other}/disable"),
        None,
        Some(&admin.token),
    );
    assert_eq!(disable.status, 204, "{}", disable.body);
    assert_eq!(pull_page(&a.base, &other.token, None, 10).status, 401);

    assert_no_internal_error(&a);
    assert_no_internal_error(&b);
    drop((a, b));
    assert_verify_clean(&db.url);
}

/// The record ids of a batch.
fn batch_ids(batch: &[Value]) -> HashSet<Uuid> {
    batch
        .iter()
        .map(|m| m["id"].as_str().expect("id").parse().expect("uuid"))
        .collect()
}

backend_tests!(two_processes_on_one_database_behave_as_one);
