//! The local SQLite store: device identity, session, sync position and server copies.
//! The outbox (`outbox.rs`) and the clock (`clock.rs`) live in the same file and join the same
//! transactions, which is what keeps ids, clocks and cursors consistent through a crash.

use crate::error::{Error, Result};
use crate::schema::{records, session, state};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use hamlet_shared::records::RecordType;
use hamlet_shared::sync::Change;
use hamlet_shared::{Role, TokenResponse};
use serde_json::{Map, Value};
use std::path::Path;
use uuid::Uuid;

/// Bumped with every change to [`SCHEMA`]; a store from a newer client is refused.
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    device_id TEXT NOT NULL,
    next_mutation_id BIGINT NOT NULL CHECK (next_mutation_id > 0),
    hlc_wall_ms BIGINT,
    hlc_counter BIGINT NOT NULL DEFAULT 0,
    server_url TEXT,
    synced_scope TEXT,
    pull_cursor TEXT,
    last_sync_us BIGINT
);
CREATE TABLE IF NOT EXISTS session (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    record_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (record_type, id)
);
CREATE TABLE IF NOT EXISTS outbox (
    mutation_id BIGINT PRIMARY KEY NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    op TEXT NOT NULL,
    base_version BIGINT NOT NULL,
    hlc TEXT NOT NULL,
    fields TEXT NOT NULL,
    sent BOOLEAN NOT NULL DEFAULT 0,
    rejected BOOLEAN NOT NULL DEFAULT 0,
    errors TEXT,
    created_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_record ON outbox (record_type, record_id);
";

/// The store's single state row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = state)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct StateRow {
    pub id: i32,
    pub device_id: String,
    /// The id the next new outbox row gets.
    pub next_mutation_id: i64,
    pub hlc_wall_ms: Option<i64>,
    pub hlc_counter: i64,
    /// The server this store syncs with, fixed at the first login.
    pub server_url: Option<String>,
    /// JSON array of the unit ids the server copies were pulled with.
    pub synced_scope: Option<String>,
    pub pull_cursor: Option<String>,
    pub last_sync_us: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = session)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct SessionRow {
    pub id: i32,
    pub user_id: String,
    pub username: String,
    pub role: String,
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = records)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
struct RecordRow {
    record_type: String,
    id: String,
    version: i64,
    deleted: bool,
    fields: String,
}

/// The last pulled state of one record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerCopy {
    #[serde(rename = "type")]
    pub record_type: RecordType,
    pub id: Uuid,
    pub version: i64,
    pub deleted: bool,
    /// The whole record when live; only its placement when deleted.
    pub fields: Map<String, Value>,
}

impl TryFrom<RecordRow> for ServerCopy {
    type Error = Error;
    fn try_from(r: RecordRow) -> Result<Self> {
        Ok(Self {
            record_type: parse_type(&r.record_type)?,
            id: parse_uuid(&r.id)?,
            version: r.version,
            deleted: r.deleted,
            fields: parse_object(&r.fields)?,
        })
    }
}

pub(crate) fn parse_type(s: &str) -> Result<RecordType> {
    s.parse().map_err(Error::Store)
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::Store(format!("bad id {s:?} in the store: {e}")))
}

pub(crate) fn parse_object(s: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(s).map_err(|e| Error::Store(format!("bad JSON in the store: {e}")))
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

#[derive(QueryableByName)]
struct UserVersion {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    user_version: i32,
}

/// One local store file.
pub struct Store {
    conn: SqliteConnection,
}

impl Store {
    /// Opens (or creates) the store at `path`. A new store gets a new device id, for good.
    pub fn open(path: &Path) -> Result<Self> {
        let url = path
            .to_str()
            .ok_or_else(|| Error::Invalid(format!("the store path {} is not UTF-8", path.display())))?;
        let mut conn = SqliteConnection::establish(url)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", path.display())))?;
        // synchronous=FULL: after a power cut a committed mutation id must still be on disk,
        // or the next edit could take an id the server already holds and be dropped as a duplicate.
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
        )?;
        let version = diesel::sql_query("PRAGMA user_version")
            .get_result::<UserVersion>(&mut conn)?
            .user_version;
        if version > SCHEMA_VERSION {
            return Err(Error::Store(format!(
                "{} was written by a newer hamlet-client (schema {version}); upgrade this one",
                path.display()
            )));
        }
        let mut store = Self { conn };
        store.write(|c| {
            c.batch_execute(SCHEMA)?;
            c.batch_execute(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            diesel::insert_or_ignore_into(state::table)
                .values((
                    state::id.eq(1),
                    state::device_id.eq(Uuid::now_v7().to_string()),
                    state::next_mutation_id.eq(1i64),
                ))
                .execute(c)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: another process writing the same store
    /// waits instead of failing halfway.
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&mut SqliteConnection) -> Result<T>) -> Result<T> {
        self.conn.immediate_transaction(f)
    }

    /// Runs `f` on one consistent snapshot.
    pub(crate) fn read<T>(&mut self, f: impl FnOnce(&mut SqliteConnection) -> Result<T>) -> Result<T> {
        self.conn.transaction(f)
    }

    pub fn state(&mut self) -> Result<StateRow> {
        self.read(load_state)
    }

    /// This installation's device id.
    pub fn device_id(&mut self) -> Result<Uuid> {
        parse_uuid(&self.state()?.device_id)
    }

    pub fn session(&mut self) -> Result<Option<SessionRow>> {
        self.read(load_session)
    }

    /// The server copies, every type, sorted by type and id.
    pub fn server_copies(&mut self) -> Result<Vec<ServerCopy>> {
        self.read(|c| server_copies(c, None))
    }
}

pub(crate) fn load_state(c: &mut SqliteConnection) -> Result<StateRow> {
    Ok(state::table.select(StateRow::as_select()).first(c)?)
}

pub(crate) fn load_session(c: &mut SqliteConnection) -> Result<Option<SessionRow>> {
    Ok(session::table
        .select(SessionRow::as_select())
        .first(c)
        .optional()?)
}

pub(crate) fn set_cursor(c: &mut SqliteConnection, cursor: Option<&str>) -> Result<()> {
    diesel::update(state::table)
        .set(state::pull_cursor.eq(cursor))
        .execute(c)?;
    Ok(())
}

pub(crate) fn set_last_sync(c: &mut SqliteConnection, at_us: i64) -> Result<()> {
    diesel::update(state::table)
        .set(state::last_sync_us.eq(at_us))
        .execute(c)?;
    Ok(())
}

pub(crate) fn bind_server(c: &mut SqliteConnection, url: &str) -> Result<()> {
    diesel::update(state::table)
        .set(state::server_url.eq(url))
        .execute(c)?;
    Ok(())
}

/// Keeps a new token pair (persisted before it is used: refresh tokens are single use). When
/// the user's scope differs from the one the server copies were pulled with, the copies and
/// the cursor are dropped so the next pull starts over; the outbox is kept.
pub(crate) fn save_tokens(c: &mut SqliteConnection, t: &TokenResponse) -> Result<bool> {
    let row = SessionRow {
        id: 1,
        user_id: t.user.id.to_string(),
        username: t.user.username.clone(),
        role: t.user.role.as_str().to_owned(),
        access_token: t.access_token.clone(),
        refresh_token: t.refresh_token.clone(),
    };
    diesel::replace_into(session::table).values(&row).execute(c)?;
    let mut scope: Vec<String> = t.user.scope.iter().map(ToString::to_string).collect();
    scope.sort();
    let scope = serde_json::to_string(&scope).map_err(|e| Error::Store(e.to_string()))?;
    let old = load_state(c)?.synced_scope;
    let changed = old.as_deref().is_some_and(|old| old != scope);
    if changed {
        diesel::delete(records::table).execute(c)?;
        set_cursor(c, None)?;
    }
    diesel::update(state::table)
        .set(state::synced_scope.eq(scope))
        .execute(c)?;
    Ok(changed)
}

pub(crate) fn clear_session(c: &mut SqliteConnection) -> Result<()> {
    diesel::delete(session::table).execute(c)?;
    Ok(())
}

pub(crate) fn role_of(s: &SessionRow) -> Option<Role> {
    s.role.parse().ok()
}

/// The server copy of one record.
pub(crate) fn server_copy(c: &mut SqliteConnection, t: RecordType, id: Uuid) -> Result<Option<ServerCopy>> {
    records::table
        .find((t.as_str(), id.to_string()))
        .select(RecordRow::as_select())
        .first(c)
        .optional()?
        .map(ServerCopy::try_from)
        .transpose()
}

/// Server copies, of one record or of all, sorted by type and id.
pub(crate) fn server_copies(
    c: &mut SqliteConnection,
    only: Option<(RecordType, Uuid)>,
) -> Result<Vec<ServerCopy>> {
    let mut q = records::table
        .select(RecordRow::as_select())
        .order((records::record_type, records::id))
        .into_boxed();
    if let Some((t, id)) = only {
        q = q
            .filter(records::record_type.eq(t.as_str()))
            .filter(records::id.eq(id.to_string()));
    }
    q.load(c)?.into_iter().map(ServerCopy::try_from).collect()
}

/// Applies one pulled change: a higher version replaces the copy, an equal one is the same
/// state again (pulls are at least once), a lower one is stale and ignored.
pub(crate) fn apply_change(c: &mut SqliteConnection, change: &Change) -> Result<bool> {
    let held: Option<i64> = records::table
        .find((change.record_type.as_str(), change.id.to_string()))
        .select(records::version)
        .first(c)
        .optional()?;
    if held.is_some_and(|v| v > change.version) {
        return Ok(false);
    }
    let row = RecordRow {
        record_type: change.record_type.as_str().to_owned(),
        id: change.id.to_string(),
        version: change.version,
        deleted: change.deleted,
        // A tombstone arrives with its placement only: the personal data goes.
        fields: Value::Object(change.fields.clone()).to_string(),
    };
    diesel::replace_into(records::table).values(&row).execute(c)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamlet_shared::{UnitId, UserId, UserInfo};

    fn tokens(scope: Vec<UnitId>) -> TokenResponse {
        TokenResponse {
            access_token: "a".into(),
            refresh_token: "r".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            user: UserInfo {
                id: UserId::new(),
                username: "lan".into(),
                role: Role::Enumerator,
                scope,
            },
        }
    }

    #[test]
    fn a_new_scope_drops_the_server_copies_and_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let (v1, v2) = (UnitId::new(), UnitId::new());
        let change = Change {
            record_type: RecordType::Household,
            id: Uuid::now_v7(),
            version: 1,
            deleted: false,
            fields: Map::new(),
        };
        assert!(!s.write(|c| save_tokens(c, &tokens(vec![v1, v2]))).unwrap());
        s.write(|c| {
            apply_change(c, &change)?;
            set_cursor(c, Some("cursor"))
        })
        .unwrap();
        // The same scope in another order changes nothing.
        assert!(!s.write(|c| save_tokens(c, &tokens(vec![v2, v1]))).unwrap());
        assert_eq!(s.server_copies().unwrap().len(), 1);
        assert!(s.write(|c| save_tokens(c, &tokens(vec![v1]))).unwrap());
        assert!(s.server_copies().unwrap().is_empty());
        assert_eq!(s.state().unwrap().pull_cursor, None);
        assert_eq!(s.session().unwrap().unwrap().access_token, "a");
    }
}
