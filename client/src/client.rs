//! The offline client: one local store, the server it syncs with, and the user's edits.

use crate::api::Api;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::fields;
use crate::outbox::{self, Edit, OutboxEntry};
use crate::retry::{RetryEvent, RetryPolicy};
use crate::store::{self, ServerCopy, Store, load_state, parse_uuid, server_copy};
use crate::view::{LocalRecord, local_records};
use diesel::sqlite::SqliteConnection;
use hamlet_shared::UserInfo;
use hamlet_shared::hlc::format_wall_ms;
use hamlet_shared::records::RecordType;
use hamlet_shared::sync::{MAX_MUTATIONS, Op};
use serde_json::{Map, Value};
use std::path::Path;
use uuid::Uuid;

/// How the client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    /// Mutations per push, 1 to the contract's 1,000. A few hundred lose little work when a
    /// slow link drops mid-request.
    pub batch_size: usize,
    /// Changes per pull page, 1 to 5,000.
    pub pull_limit: u32,
    /// Send push bodies gzip-compressed.
    pub gzip: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            batch_size: 250,
            pull_limit: 500,
            gzip: true,
        }
    }
}

/// Where the store stands, for `hamlet-client status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub device_id: Uuid,
    pub server: Option<String>,
    pub username: Option<String>,
    pub role: Option<String>,
    /// The id the next new mutation will get.
    pub next_mutation_id: i64,
    pub pending: Vec<OutboxEntry>,
    pub rejected: Vec<OutboxEntry>,
    /// RFC 3339 UTC time of the last complete sync.
    pub last_sync: Option<String>,
    pub cursor: Option<String>,
    /// Server copies held (tombstones included).
    pub records: usize,
}

/// A reference offline client over one local store.
pub struct Client {
    pub(crate) store: Store,
    pub(crate) server: Option<String>,
    pub(crate) options: ClientOptions,
    pub(crate) notify: Box<dyn Fn(&RetryEvent)>,
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

impl Client {
    /// Opens the store at `path`. `server` may be left out once a login has bound the store to
    /// its server; a different one is refused, so one store never mixes two servers' records.
    pub fn open(path: &Path, server: Option<&str>) -> Result<Self> {
        Self::open_with(path, server, ClientOptions::default())
    }

    pub fn open_with(path: &Path, server: Option<&str>, options: ClientOptions) -> Result<Self> {
        let mut store = Store::open(path)?;
        let bound = store.state()?.server_url;
        let server = match (server.map(normalise), bound) {
            (Some(given), Some(bound)) if given != bound => {
                return Err(Error::Invalid(format!(
                    "the store {} syncs with {bound}, not {given}; use another --store for that server",
                    path.display()
                )));
            }
            (given, bound) => given.or(bound),
        };
        Ok(Self {
            store,
            server,
            options,
            notify: Box::new(|_| {}),
        })
    }

    /// Called before each retry (for progress messages).
    pub fn on_retry(&mut self, notify: impl Fn(&RetryEvent) + 'static) {
        self.notify = Box::new(notify);
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn set_options(&mut self, options: ClientOptions) {
        self.options = options;
    }

    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    pub fn device_id(&mut self) -> Result<Uuid> {
        self.store.device_id()
    }

    /// The server's API without a token.
    pub(crate) fn api(&self) -> Result<Api> {
        let server = self
            .server
            .as_deref()
            .ok_or_else(|| Error::Invalid("no server: pass --server URL".to_owned()))?;
        Ok(Api::new(server).with_gzip_requests(self.options.gzip))
    }

    /// Logs in on this device and keeps the tokens. Not retried: a person is waiting.
    pub fn login(&mut self, username: &str, password: &str, device_name: Option<&str>) -> Result<UserInfo> {
        let api = self.api()?;
        let device = self.device_id()?;
        let tokens = api.login(username, password, device, device_name)?;
        let server = api.base().to_owned();
        self.store.write(|c| {
            store::bind_server(c, &server)?;
            store::save_tokens(c, &tokens)
        })?;
        Ok(tokens.user)
    }

    /// Ends the session on the server (best effort) and forgets the tokens. The outbox, the
    /// mutation counter and the clock stay: they belong to the device, not the user.
    pub fn logout(&mut self) -> Result<()> {
        if let (Some(s), Ok(api)) = (self.store.session()?, self.api()) {
            // A logout that cannot reach the server still forgets the tokens here.
            let _ = api.with_token(s.access_token).logout();
        }
        self.store.write(store::clear_session)
    }

    /// Creates a record offline; returns its new id.
    pub fn create(&mut self, t: RecordType, fields: Map<String, Value>) -> Result<Uuid> {
        let fields = fields::validate(t, &fields, true)?;
        let id = Uuid::now_v7();
        let now = now_ms();
        self.store.write(|c| {
            check_placement(c, t, &fields)?;
            outbox::enqueue(
                c,
                Edit {
                    record_type: t,
                    id,
                    op: Op::Upsert,
                    base_version: 0,
                    fields,
                },
                now,
            )
        })?;
        Ok(id)
    }

    /// Changes fields of a live record offline. Returns the outbox mutation that carries the
    /// change (an unsent one of the same record absorbs it).
    pub fn edit(&mut self, t: RecordType, id: Uuid, fields: Map<String, Value>) -> Result<i64> {
        if fields.is_empty() {
            return Err(Error::Invalid("nothing to change: give FIELD=VALUE".to_owned()));
        }
        let fields = fields::validate(t, &fields, false)?;
        let now = now_ms();
        self.store.write(|c| {
            live_record(c, t, id)?;
            check_placement(c, t, &fields)?;
            let base_version = base_of(c, t, id)?;
            let queued = outbox::enqueue(
                c,
                Edit {
                    record_type: t,
                    id,
                    op: Op::Upsert,
                    base_version,
                    fields,
                },
                now,
            )?;
            queued.ok_or_else(|| Error::Store("an edit cancelled its record".to_owned()))
        })
    }

    /// Deletes a live record offline. Returns the outbox mutation that carries the delete, or
    /// `None` when the record never left this device (its create is dropped with it).
    pub fn delete(&mut self, t: RecordType, id: Uuid) -> Result<Option<i64>> {
        let now = now_ms();
        self.store.write(|c| {
            live_record(c, t, id)?;
            let base_version = base_of(c, t, id)?;
            outbox::enqueue(
                c,
                Edit {
                    record_type: t,
                    id,
                    op: Op::Delete,
                    base_version,
                    fields: Map::new(),
                },
                now,
            )
        })
    }

    /// Every record as this device shows it, sorted by type and id.
    pub fn records(&mut self) -> Result<Vec<LocalRecord>> {
        self.store.read(|c| local_records(c, None))
    }

    pub fn record(&mut self, t: RecordType, id: Uuid) -> Result<Option<LocalRecord>> {
        Ok(self.store.read(|c| local_records(c, Some((t, id))))?.pop())
    }

    /// The last pulled state of every record, sorted by type and id.
    pub fn server_copies(&mut self) -> Result<Vec<ServerCopy>> {
        self.store.server_copies()
    }

    /// Mutations waiting to be pushed or acknowledged, in id order.
    pub fn pending(&mut self) -> Result<Vec<OutboxEntry>> {
        self.store.read(|c| outbox::entries(c, false))
    }

    /// Mutations the server rejected, with its reasons.
    pub fn rejected(&mut self) -> Result<Vec<OutboxEntry>> {
        self.store.read(|c| outbox::entries(c, true))
    }

    /// Forgets one rejected mutation, or all of them.
    pub fn dismiss(&mut self, mutation_id: Option<i64>) -> Result<usize> {
        self.store.write(|c| outbox::dismiss(c, mutation_id))
    }

    pub fn status(&mut self) -> Result<Status> {
        self.store.read(|c| {
            let s = load_state(c)?;
            let session = store::load_session(c)?;
            Ok(Status {
                device_id: parse_uuid(&s.device_id)?,
                server: s.server_url,
                username: session.as_ref().map(|s| s.username.clone()),
                role: session
                    .as_ref()
                    .and_then(store::role_of)
                    .map(|r| r.as_str().to_owned()),
                next_mutation_id: s.next_mutation_id,
                pending: outbox::entries(c, false)?,
                rejected: outbox::entries(c, true)?,
                last_sync: s.last_sync_us.map(|us| format_wall_ms(us / 1000)),
                cursor: s.pull_cursor,
                records: store::server_copies(c, None)?.len(),
            })
        })
    }

    pub(crate) fn batch_size(&self) -> usize {
        self.options.batch_size.clamp(1, MAX_MUTATIONS)
    }
}

/// The record as shown here, which must exist and be live.
fn live_record(c: &mut SqliteConnection, t: RecordType, id: Uuid) -> Result<LocalRecord> {
    match local_records(c, Some((t, id)))?.pop() {
        None => Err(Error::Invalid(format!(
            "no {t} {id} on this device (made elsewhere? sync first)"
        ))),
        Some(r) if r.deleted => Err(Error::Invalid(format!("{t} {id} is deleted"))),
        Some(r) => Ok(r),
    }
}

/// A member must name a household this device knows and shows live (it may still be only in
/// the outbox: the server accepts members before their household).
fn check_placement(c: &mut SqliteConnection, t: RecordType, fields: &Map<String, Value>) -> Result<()> {
    if t != RecordType::Member {
        return Ok(());
    }
    let Some(household) = fields.get("household_id").and_then(Value::as_str) else {
        return Ok(());
    };
    let id = parse_uuid(household)?;
    live_record(c, RecordType::Household, id).map(|_| ())
}

/// The version an edit is based on: the server copy's, never a push result's.
fn base_of(c: &mut SqliteConnection, t: RecordType, id: Uuid) -> Result<i64> {
    Ok(server_copy(c, t, id)?.map_or(0, |s| s.version))
}
