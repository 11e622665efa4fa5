//! Test harness: the real server on port 0 over a throwaway database, spoken to over HTTP.
//!
//! PostgreSQL tests need `HAMLET_TEST_PG_URL` (an account allowed to create databases);
//! `scripts/test.sh` starts PostgreSQL and sets it. Without it they fail, never skip.

pub mod proxy;
pub mod slow_link;
pub mod village;
pub mod webdriver;
pub mod wire;

use hamlet_server::auth::LoginLimits;
use hamlet_server::auth::password::PasswordParams;
use hamlet_server::auth::service::{UserDraft, insert_user};
use hamlet_server::config::{Config, DEFAULT_BODY_LIMIT, JwtSecret};
use hamlet_server::db::{self, DbPool, PoolOptions};
use hamlet_server::startup::Application;
use hamlet_server::units::import::{ImportOptions, import};
use hamlet_shared::{Role, UnitId, UserId, Username};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

pub use hamlet_client::{Api, ApiError};

/// Runs each named test function `fn(Backend)` once per backend, as `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::Backend::Postgres) } )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

/// The administrative URL for PostgreSQL tests.
pub fn pg_admin_url() -> String {
    std::env::var("HAMLET_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("HAMLET_TEST_PG_URL is not set: run scripts/test.sh, which starts PostgreSQL and sets it")
    })
}

fn pg_admin(sql: &str) {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let mut conn = PgConnection::establish(&pg_admin_url()).expect("connect to the PostgreSQL test server");
    diesel::sql_query(sql)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base.rfind('/').expect("URL has a path");
    format!("{}/{name}{query}", &base[..cut])
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("hamlet.db").display());
                Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                // The test process's id in the name: scripts/pg-up.sh drops leftovers of
                // processes that are gone, never a running test's database.
                let name = format!(
                    "hamlet_t_{}_{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                );
                pg_admin(&format!("CREATE DATABASE {name}"));
                Self {
                    url: with_database(&pg_admin_url(), &name),
                    backend,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A small pool on this database, migrated.
    pub fn pool(&self) -> DbPool {
        let pool = db::build_pool(
            &self.url,
            &PoolOptions {
                max_size: 2,
                ..PoolOptions::default()
            },
        )
        .expect("pool");
        db::run_migrations(&mut pool.get().expect("connection")).expect("migrations");
        pool
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            // FORCE: a server thread may still hold pooled connections.
            let _ = std::panic::catch_unwind(|| {
                pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            });
        }
    }
}

pub const TEST_SECRET: &str = "hamlet-test-secret-0123456789abcdef0123456789";
pub const ROOT_PASSWORD: &str = "root-password-for-tests";

/// Server settings for tests; adjust before [`TestApp::spawn_with`].
pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".to_owned(),
        jwt_secret: JwtSecret::new(TEST_SECRET.as_bytes().to_vec()).expect("secret"),
        body_limit: DEFAULT_BODY_LIMIT,
        pool: PoolOptions {
            max_size: 4,
            connection_timeout: Duration::from_secs(3),
        },
        workers: Some(2),
        keep_alive: Duration::from_secs(75),
        access_ttl_secs: 900,
        refresh_ttl_secs: 3600,
        password: PasswordParams::default(),
        login_limits: LoginLimits::default(),
        sync: hamlet_server::sync::SyncSettings::default(),
        aggregates: hamlet_server::aggregates::AggregateSettings::default(),
        dashboard: Default::default(),
        handle_signals: false,
    }
}

/// A running server and its database.
pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub db: TestDb,
    pub pool: DbPool,
    pub api: Api,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApp {
    pub fn spawn(backend: Backend) -> Self {
        let db = TestDb::new(backend);
        let config = test_config(&db.url);
        Self::spawn_with(db, config)
    }

    /// Starts the server in its own thread and actix system, bound to port 0.
    pub fn spawn_with(db: TestDb, config: Config) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match Application::build(config) {
                    Ok(app) => {
                        tx.send(Ok((app.port(), app.handle(), app.pool().clone())))
                            .expect("test waits");
                        app.run_until_stopped().await.expect("server runs");
                    }
                    Err(e) => tx.send(Err(e)).expect("test waits"),
                }
            })
        });
        let (port, handle, pool) = rx.recv().expect("server thread").expect("server starts");
        let base = format!("http://127.0.0.1:{port}");
        Self {
            api: Api::new(&base),
            base,
            port,
            db,
            pool,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A raw HTTP agent that returns error statuses as responses.
    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// GET with an optional bearer token; returns status and JSON body (Null when empty).
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = Self::agent().get(&self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        read(req.call().expect("request"))
    }

    /// POST a JSON body (or none) with an optional bearer token.
    pub fn post(&self, path: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
        let mut req = Self::agent().post(&self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.send_empty(),
        };
        read(res.expect("request"))
    }

    /// Asserts that every derived table (unit closure, counters) matches a recomputation
    /// from the records, as `hamlet verify` reports it.
    #[track_caller]
    pub fn assert_consistent(&self) {
        let mut conn = self.pool.get().expect("connection");
        let report = hamlet_server::verify::verify(&mut conn, false).expect("verify runs");
        assert!(
            report.is_clean(),
            "verify found differences: {:#?}",
            report.problems
        );
    }

    /// Folds counter deltas into the roll-ups now (the server also does it every few seconds).
    pub fn fold(&self) {
        let mut conn = self.pool.get().expect("connection");
        hamlet_server::aggregates::fold::fold(&mut conn).expect("fold");
    }

    /// Imports a units CSV as `hamlet units import` does.
    pub fn import_units(&self, csv: &str) {
        import_units(&self.pool, csv);
    }

    /// The id of the live unit with `code`.
    pub fn unit_id(&self, code: &str) -> UnitId {
        unit_id(&self.pool, code)
    }

    /// The id of the unit that holds (or first held) `code`, retired units included.
    pub fn unit_id_any(&self, code: &str) -> UnitId {
        use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
        use hamlet_server::db::schema::units;
        let mut conn = self.pool.get().expect("connection");
        let id: String = units::table
            .filter(units::code.eq(code))
            .order(units::created_us.asc())
            .select(units::id)
            .first(&mut *conn)
            .expect("unit exists");
        id.parse().expect("uuid")
    }

    /// Creates a user as `hamlet user add` does.
    pub fn add_user(&self, username: &str, password: &str, role: Role, scope: &[&str]) -> UserId {
        add_user(&self.pool, username, password, role, scope)
    }

    /// Logs in on a fresh device; returns an API handle carrying the access token.
    pub fn login(&self, username: &str, password: &str) -> Api {
        let tokens = self
            .api
            .login(username, password, uuid::Uuid::new_v4(), Some("test phone"))
            .expect("login");
        self.api.with_token(tokens.access_token)
    }
}

/// Imports a units CSV into the database behind `pool`.
pub fn import_units(pool: &DbPool, csv: &str) {
    let mut conn = pool.get().expect("connection");
    import(&mut conn, csv.as_bytes(), &ImportOptions::default(), |_| {}).expect("import");
}

/// The id of the live unit with `code`.
pub fn unit_id(pool: &DbPool, code: &str) -> UnitId {
    let mut conn = pool.get().expect("connection");
    db::units::find_live_by_code(&mut conn, code)
        .expect("query")
        .expect("unit exists")
        .id
        .parse()
        .expect("uuid")
}

/// Creates a user in the database behind `pool`, as `hamlet user add` does.
pub fn add_user(pool: &DbPool, username: &str, password: &str, role: Role, scope: &[&str]) -> UserId {
    let scope = scope.iter().map(|c| unit_id(pool, c)).collect();
    let mut conn = pool.get().expect("connection");
    let draft = UserDraft {
        username: Username::parse(username).expect("username"),
        password: password.to_owned(),
        role,
        scope,
    };
    let hash = PasswordParams::default().hash(password).expect("hash");
    insert_user(&mut conn, &draft, hash, None)
        .expect("insert user")
        .id
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stop the server before its database is dropped.
        let _ = std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(false))).join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(mut res: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts the contract's error body with the given status and code.
#[track_caller]
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.0, status, "status; body: {}", resp.1);
    assert_eq!(resp.1["error"]["code"], code, "error code; body: {}", resp.1);
    assert!(
        resp.1["error"]["message"].is_string(),
        "error message; body: {}",
        resp.1
    );
    assert!(
        resp.1["error"]["details"].is_array(),
        "error details; body: {}",
        resp.1
    );
}

/// A small tree used by many tests:
/// VN > P1 (province) > D1 (district) > C1 (commune) > V1, V2 (villages); P1 > C2 > V3; VN > P2 > C3 > V4.
pub const SMALL_TREE: &str = "code,name,level,parent_code
V1,Thôn Nà Lầu,village,C1
V2,Bản Khuổi Phầy,village,C1
C1,Xã Nà Hang,commune,D1
D1,Huyện Na Hang,district,P1
P1,Tỉnh Tuyên Quang,province,VN
VN,Việt Nam,country,
C2,Xã Thượng Lâm,commune,P1
V3,Thôn Bản Tấng,village,C2
P2,Tỉnh Cao Bằng,province,VN
C3,Xã Hà Quảng,commune,P2
V4,Bản Nà Mỏ,village,C3
";

/// The `hamlet` binary built from this workspace (`scripts/test.sh` builds it first).
pub fn hamlet_bin() -> PathBuf {
    workspace_bin("hamlet", "HAMLET_BIN")
}

/// The `hamlet-client` binary built from this workspace (`scripts/test.sh` builds it first).
pub fn hamlet_client_bin() -> PathBuf {
    workspace_bin("hamlet-client", "HAMLET_CLIENT_BIN")
}

/// The `hamlet-load` binary built from this workspace (`scripts/test.sh` builds it first).
pub fn hamlet_load_bin() -> PathBuf {
    workspace_bin("hamlet-load", "HAMLET_LOAD_BIN")
}

/// A binary of this workspace: `env_var` when set, else next to the test executable's target dir.
fn workspace_bin(name: &str, env_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin {name}` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The repository root (for files like `data/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A `hamlet serve` child process (the real binary), for tests that signal or kill it.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub port: u16,
    pub base: String,
    /// Every line the process wrote to stderr so far (JSON logs).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `hamlet serve` on port 0 over `database_url` and waits until it listens.
    pub fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(hamlet_bin())
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
            .env("HAMLET_DATABASE_URL", database_url)
            .env("HAMLET_JWT_SECRET", TEST_SECRET)
            .env("HAMLET_LOG_FORMAT", "json")
            .env("HAMLET_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start hamlet serve");
        let stderr = child.stderr.take().expect("stderr");
        let logs: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
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
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("hamlet serve did not start: {:?}", logs.lock().expect("lock"));
            }
        };
        Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            logs,
        }
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A phone in tests: one device of one user, with its own clock and mutation ids.
pub struct Phone {
    pub device: uuid::Uuid,
    pub token: String,
    pub refresh: String,
    pub base: String,
    next_mutation: std::cell::Cell<i64>,
    clock: std::cell::Cell<Option<hamlet_shared::Hlc>>,
}

impl Phone {
    /// Logs `user` in on a new device of `app`.
    pub fn login(app: &TestApp, user: &str, password: &str) -> Self {
        Self::login_at(&app.base, user, password)
    }

    pub fn login_at(base: &str, user: &str, password: &str) -> Self {
        let device = uuid::Uuid::new_v4();
        let tokens = Api::new(base)
            .login(user, password, device, Some("test phone"))
            .expect("login");
        Self {
            device,
            token: tokens.access_token,
            refresh: tokens.refresh_token,
            base: base.to_owned(),
            next_mutation: std::cell::Cell::new(1),
            clock: std::cell::Cell::new(None),
        }
    }

    /// The next clock reading (real time, monotonic).
    pub fn tick(&self) -> hamlet_shared::Hlc {
        let now_ms = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()) as i64;
        let h = hamlet_shared::Hlc::tick(self.clock.get(), now_ms, self.device);
        self.clock.set(Some(h));
        h
    }

    /// The next mutation id.
    pub fn next_id(&self) -> i64 {
        let id = self.next_mutation.get();
        self.next_mutation.set(id + 1);
        id
    }

    /// An upsert mutation with this phone's next id and clock.
    pub fn upsert(&self, record_type: &str, id: uuid::Uuid, base_version: i64, fields: Value) -> Value {
        let (mid, hlc) = (self.next_id(), self.tick());
        serde_json::json!({ "mutation_id": mid, "type": record_type, "id": id, "op": "upsert",
            "base_version": base_version, "hlc": hlc.to_string(), "fields": fields })
    }

    pub fn delete(&self, record_type: &str, id: uuid::Uuid, base_version: i64) -> Value {
        let (mid, hlc) = (self.next_id(), self.tick());
        serde_json::json!({ "mutation_id": mid, "type": record_type, "id": id, "op": "delete",
            "base_version": base_version, "hlc": hlc.to_string() })
    }

    /// POST /api/v1/sync/push with these mutations.
    pub fn push(&self, mutations: &[Value]) -> (u16, Value) {
        let body = serde_json::json!({ "device_id": self.device, "mutations": mutations });
        let res = TestApp::agent()
            .post(&format!("{}/api/v1/sync/push", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(&body)
            .expect("push");
        read(res)
    }

    /// A push that reports transport failures instead of panicking (for servers that die).
    pub fn try_push(&self, mutations: &[Value]) -> Result<(u16, Value), String> {
        let body = serde_json::json!({ "device_id": self.device, "mutations": mutations });
        TestApp::agent()
            .post(&format!("{}/api/v1/sync/push", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(&body)
            .map(read)
            .map_err(|e| e.to_string())
    }

    /// Pushes and asserts 200; returns the results.
    #[track_caller]
    pub fn push_ok(&self, mutations: &[Value]) -> Vec<Value> {
        let (status, body) = self.push(mutations);
        assert_eq!(status, 200, "push: {body}");
        body["results"].as_array().expect("results").clone()
    }

    /// One pull page.
    pub fn pull_page(&self, cursor: Option<&str>, limit: i64) -> (u16, Value) {
        let mut url = format!("{}/api/v1/sync/pull?limit={limit}", self.base);
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let res = TestApp::agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .expect("pull");
        read(res)
    }

    /// Walks the cursor from `cursor` until `has_more` is false; returns the changes and the last cursor.
    pub fn pull_all(&self, cursor: Option<&str>) -> (Vec<Value>, String) {
        let mut cursor = cursor.map(str::to_owned);
        let mut changes = Vec::new();
        loop {
            let (status, body) = self.pull_page(cursor.as_deref(), 100);
            assert_eq!(status, 200, "pull: {body}");
            changes.extend(body["changes"].as_array().expect("changes").iter().cloned());
            cursor = Some(body["cursor"].as_str().expect("cursor").to_owned());
            if body["has_more"] == false {
                return (changes, cursor.unwrap_or_default());
            }
        }
    }
}

/// Fields of a new household in `village`.
pub fn household(village: UnitId, head: &str) -> Value {
    serde_json::json!({ "village_id": village, "head_name": head })
}

/// Fields of a new member of `household`.
pub fn member(household: uuid::Uuid, name: &str, birth_year: i32, smartphone: &str, account: &str) -> Value {
    serde_json::json!({ "household_id": household, "full_name": name, "birth_year": birth_year,
        "owns_smartphone": smartphone, "has_transaction_account": account })
}
