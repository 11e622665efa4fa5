//! The raw database ceiling, measured in the same run on the same database: the same household
//! and member rows the server will store, written without the server into scratch tables of the
//! same shape (same columns, keys, checks, indexes and foreign key to `units`), in transactions of
//! `--batch` rows, by concurrent writers. Multi-row `INSERT ... ON CONFLICT (id) DO UPDATE`
//! first; then, on PostgreSQL, `COPY` (binary). The scratch tables are dropped afterwards.

use crate::Args;
use crate::stats::{MachineSampler, MachineUse};
use crate::workload::Plan;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel::upsert::excluded;
use std::time::Instant;

diesel::table! {
    hamlet_ceiling_households (id) {
        id -> Text,
        village_id -> Text,
        head_name -> Text,
        address -> Nullable<Text>,
        fixed_broadband -> Text,
        surveyed_on -> Nullable<Text>,
        version -> BigInt,
        clocks -> Text,
        deleted_us -> Nullable<BigInt>,
        created_us -> BigInt,
        updated_us -> BigInt,
    }
}

diesel::table! {
    hamlet_ceiling_members (id) {
        id -> Text,
        household_id -> Text,
        village_id -> Nullable<Text>,
        full_name -> Text,
        birth_year -> Integer,
        sex -> Nullable<Text>,
        owns_smartphone -> Text,
        has_transaction_account -> Text,
        vneid_level2 -> Text,
        uses_online_public_services -> Text,
        uses_cashless_payment -> Text,
        has_digital_signature -> Text,
        version -> BigInt,
        clocks -> Text,
        pushed_by -> Nullable<Text>,
        deleted_us -> Nullable<BigInt>,
        created_us -> BigInt,
        updated_us -> BigInt,
    }
}

use hamlet_ceiling_households as h;
use hamlet_ceiling_members as m;

/// The migration's tables, renamed (the SQL is valid on both backends).
const CREATE: [&str; 5] = [
    "CREATE TABLE hamlet_ceiling_households (
        id TEXT PRIMARY KEY NOT NULL,
        village_id TEXT NOT NULL REFERENCES units (id),
        head_name TEXT NOT NULL,
        address TEXT,
        fixed_broadband TEXT NOT NULL DEFAULT 'unknown' CHECK (fixed_broadband IN ('yes', 'no', 'unknown')),
        surveyed_on TEXT,
        version BIGINT NOT NULL,
        clocks TEXT NOT NULL DEFAULT '{}',
        deleted_us BIGINT,
        created_us BIGINT NOT NULL,
        updated_us BIGINT NOT NULL)",
    "CREATE INDEX hamlet_ceiling_households_village ON hamlet_ceiling_households (village_id)",
    "CREATE TABLE hamlet_ceiling_members (
        id TEXT PRIMARY KEY NOT NULL,
        household_id TEXT NOT NULL,
        village_id TEXT REFERENCES units (id),
        full_name TEXT NOT NULL,
        birth_year INTEGER NOT NULL,
        sex TEXT CHECK (sex IN ('male', 'female', 'other')),
        owns_smartphone TEXT NOT NULL CHECK (owns_smartphone IN ('yes', 'no', 'unknown')),
        has_transaction_account TEXT NOT NULL CHECK (has_transaction_account IN ('yes', 'no', 'unknown')),
        vneid_level2 TEXT NOT NULL DEFAULT 'unknown' CHECK (vneid_level2 IN ('yes', 'no', 'unknown')),
        uses_online_public_services TEXT NOT NULL DEFAULT 'unknown' CHECK (uses_online_public_services IN ('yes', 'no', 'unknown')),
        uses_cashless_payment TEXT NOT NULL DEFAULT 'unknown' CHECK (uses_cashless_payment IN ('yes', 'no', 'unknown')),
        has_digital_signature TEXT NOT NULL DEFAULT 'unknown' CHECK (has_digital_signature IN ('yes', 'no', 'unknown')),
        version BIGINT NOT NULL,
        clocks TEXT NOT NULL DEFAULT '{}',
        pushed_by TEXT REFERENCES users (id),
        deleted_us BIGINT,
        created_us BIGINT NOT NULL,
        updated_us BIGINT NOT NULL)",
    "CREATE INDEX hamlet_ceiling_members_household ON hamlet_ceiling_members (household_id)",
    "CREATE INDEX hamlet_ceiling_members_village ON hamlet_ceiling_members (village_id)",
];
const DROP: [&str; 2] = [
    "DROP TABLE IF EXISTS hamlet_ceiling_members",
    "DROP TABLE IF EXISTS hamlet_ceiling_households",
];

#[derive(Insertable, Clone)]
#[diesel(table_name = hamlet_ceiling_households)]
#[diesel(treat_none_as_default_value = false)]
struct HouseholdRow {
    id: String,
    village_id: String,
    head_name: String,
    address: Option<String>,
    fixed_broadband: String,
    surveyed_on: Option<String>,
    version: i64,
    clocks: String,
    deleted_us: Option<i64>,
    created_us: i64,
    updated_us: i64,
}

#[derive(Insertable, Clone)]
#[diesel(table_name = hamlet_ceiling_members)]
#[diesel(treat_none_as_default_value = false)]
struct MemberRow {
    id: String,
    household_id: String,
    village_id: Option<String>,
    full_name: String,
    birth_year: i32,
    sex: Option<String>,
    owns_smartphone: String,
    has_transaction_account: String,
    vneid_level2: String,
    uses_online_public_services: String,
    uses_cashless_payment: String,
    has_digital_signature: String,
    version: i64,
    clocks: String,
    pushed_by: Option<String>,
    deleted_us: Option<i64>,
    created_us: i64,
    updated_us: i64,
}

/// One transaction's worth of rows: a push batch's households and members.
#[derive(Default, Clone)]
struct Batch {
    households: Vec<HouseholdRow>,
    members: Vec<MemberRow>,
}

impl Batch {
    fn len(&self) -> usize {
        self.households.len() + self.members.len()
    }
}

/// Merge clocks as the server stores a new record's (one clock for all its fields, in its
/// compact form), so rows have the server's size.
fn clocks(fields: &[&str], hlc: &str) -> String {
    serde_json::json!([{ "h": hlc, "m": 1, "v": 1, "f": fields }]).to_string()
}

/// The plan's records as rows, in the phones' sending order, cut into batches.
/// `users`: the team member whose phones push each village's records (the server stamps a
/// member's row with its pusher, a reference its foreign key checks).
fn batches(plan: &Plan, villages: &[String], users: &[String], batch: usize) -> Vec<Batch> {
    let hlc = format!("2026-11-20T08:15:00.123Z/0005/{}", uuid::Uuid::nil());
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    let mut out = Vec::new();
    let mut current = Batch::default();
    for stream in &plan.streams {
        for &item in stream {
            match item {
                crate::workload::Item::Household(i) => {
                    let hp = &plan.households[i];
                    current.households.push(HouseholdRow {
                        id: hp.id.to_string(),
                        village_id: villages[hp.village].clone(),
                        head_name: hp.head_name.clone(),
                        address: Some(hp.address.clone()),
                        fixed_broadband: hp.fixed_broadband.to_owned(),
                        surveyed_on: None,
                        version: 1,
                        // Every field, defaulted ones too, as the server stamps a new record.
                        clocks: clocks(
                            &[
                                "village_id",
                                "head_name",
                                "address",
                                "fixed_broadband",
                                "surveyed_on",
                            ],
                            &hlc,
                        ),
                        deleted_us: None,
                        created_us: now,
                        updated_us: now,
                    });
                }
                crate::workload::Item::Member(i) => {
                    let mp = &plan.members[i];
                    let hp = &plan.households[mp.household];
                    let a = mp.answers;
                    current.members.push(MemberRow {
                        id: mp.id.to_string(),
                        household_id: hp.id.to_string(),
                        village_id: Some(villages[hp.village].clone()),
                        full_name: mp.full_name.clone(),
                        birth_year: mp.birth_year,
                        sex: Some(mp.sex.to_owned()),
                        owns_smartphone: a[0].to_owned(),
                        has_transaction_account: a[1].to_owned(),
                        vneid_level2: a[2].to_owned(),
                        uses_online_public_services: a[3].to_owned(),
                        uses_cashless_payment: a[4].to_owned(),
                        has_digital_signature: a[5].to_owned(),
                        version: 1,
                        clocks: clocks(
                            &[
                                "household_id",
                                "full_name",
                                "birth_year",
                                "sex",
                                "owns_smartphone",
                                "has_transaction_account",
                                "vneid_level2",
                                "uses_online_public_services",
                                "uses_cashless_payment",
                                "has_digital_signature",
                            ],
                            &hlc,
                        ),
                        pushed_by: Some(users[hp.village].clone()),
                        deleted_us: None,
                        created_us: now,
                        updated_us: now,
                    });
                }
                crate::workload::Item::DeleteMember(_) => continue,
            }
            if current.len() == batch {
                out.push(std::mem::take(&mut current));
            }
        }
        if current.len() > 0 {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

enum Conn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

fn connect(url: &str) -> Result<Conn, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        PgConnection::establish(url)
            .map(Conn::Pg)
            .map_err(|e| format!("ceiling: cannot connect to PostgreSQL: {e}"))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        let mut c =
            SqliteConnection::establish(path).map_err(|e| format!("ceiling: cannot open {path}: {e}"))?;
        // The server's pragmas, so both write under the same durability rules.
        for pragma in [
            "PRAGMA busy_timeout = 5000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
        ] {
            diesel::sql_query(pragma)
                .execute(&mut c)
                .map_err(|e| format!("ceiling: {pragma}: {e}"))?;
        }
        Ok(Conn::Sqlite(c))
    } else {
        Err("--database-url must be sqlite://PATH or postgres://...".into())
    }
}

macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Pg($c) => $body,
            Conn::Sqlite($c) => $body,
        }
    };
}

fn execute(conn: &mut Conn, sql: &str) -> Result<(), String> {
    on_conn!(conn, |c| diesel::sql_query(sql).execute(c))
        .map(|_| ())
        .map_err(|e| format!("ceiling: {e}"))
}

/// One batch as two multi-row upserts in one transaction.
fn upsert(conn: &mut Conn, b: &Batch) -> QueryResult<()> {
    on_conn!(conn, |c| c.transaction(|c| {
        diesel::insert_into(h::table)
            .values(&b.households)
            .on_conflict(h::id)
            .do_update()
            .set((
                h::village_id.eq(excluded(h::village_id)),
                h::head_name.eq(excluded(h::head_name)),
                h::address.eq(excluded(h::address)),
                h::fixed_broadband.eq(excluded(h::fixed_broadband)),
                h::version.eq(excluded(h::version)),
                h::clocks.eq(excluded(h::clocks)),
                h::updated_us.eq(excluded(h::updated_us)),
            ))
            .execute(c)?;
        diesel::insert_into(m::table)
            .values(&b.members)
            .on_conflict(m::id)
            .do_update()
            .set((
                m::household_id.eq(excluded(m::household_id)),
                m::village_id.eq(excluded(m::village_id)),
                m::full_name.eq(excluded(m::full_name)),
                m::birth_year.eq(excluded(m::birth_year)),
                m::owns_smartphone.eq(excluded(m::owns_smartphone)),
                m::has_transaction_account.eq(excluded(m::has_transaction_account)),
                m::version.eq(excluded(m::version)),
                m::clocks.eq(excluded(m::clocks)),
                m::updated_us.eq(excluded(m::updated_us)),
            ))
            .execute(c)?;
        Ok(())
    }))
}

/// One batch as two binary COPYs in one transaction (PostgreSQL only).
fn copy(conn: &mut Conn, b: &Batch) -> QueryResult<()> {
    match conn {
        Conn::Pg(c) => c.transaction(|c| {
            diesel::copy_from(h::table)
                .from_insertable(b.households.clone())
                .execute(c)?;
            diesel::copy_from(m::table)
                .from_insertable(b.members.clone())
                .execute(c)?;
            Ok(())
        }),
        Conn::Sqlite(_) => Ok(()),
    }
}

/// Writes every batch with `writers` connections; returns rows/s.
fn timed(
    url: &str,
    writers: usize,
    all: &[Batch],
    write: fn(&mut Conn, &Batch) -> QueryResult<()>,
) -> Result<(f64, Option<MachineUse>), String> {
    let mut conns = (0..writers)
        .map(|_| connect(url))
        .collect::<Result<Vec<_>, _>>()?;
    let rows: usize = all.iter().map(Batch::len).sum();
    let machine = MachineSampler::start();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(w, conn)| {
                s.spawn(move || {
                    for b in all.iter().skip(w).step_by(writers) {
                        // SQLite answers "busy" past its timeout under heavy contention: retry,
                        // as the server does.
                        let mut tries = 0;
                        loop {
                            match write(conn, b) {
                                Ok(()) => break,
                                Err(e) if tries < 20 && e.to_string().contains("locked") => tries += 1,
                                Err(e) => return Err(format!("ceiling writer {w}: {e}")),
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a ceiling writer panicked".into()))
            })
            .collect()
    });
    let wall = started.elapsed();
    let used = machine.stop();
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((rows as f64 / wall.as_secs_f64().max(1e-9), used))
}

/// What the ceiling measured.
pub struct Ceiling {
    pub rows: usize,
    pub writers: usize,
    pub insert_rows_per_s: f64,
    /// The machine's cores during the INSERT ... ON CONFLICT run.
    pub insert_use: Option<MachineUse>,
    pub copy_rows_per_s: Option<f64>,
}

impl Ceiling {
    pub fn summary(&self) -> String {
        let copy = self
            .copy_rows_per_s
            .map(|c| format!(", COPY {c:.0} rows/s"))
            .unwrap_or_default();
        let used = self
            .insert_use
            .map(|u| format!(" ({})", u.summary()))
            .unwrap_or_default();
        format!(
            "{} rows by {} writer(s): INSERT ... ON CONFLICT DO UPDATE {:.0} rows/s{used}{copy}",
            self.rows, self.writers, self.insert_rows_per_s
        )
    }
}

pub fn measure(url: &str, plan: &Plan, args: &Args, site: &crate::setup::Site) -> Result<Ceiling, String> {
    let mut admin = connect(url)?;
    let sqlite = matches!(admin, Conn::Sqlite(_));
    let writers = if sqlite {
        1
    } else {
        args.ceiling_writers.unwrap_or(args.devices.min(16)).max(1)
    };
    let villages: Vec<String> = site.villages.iter().map(ToString::to_string).collect();
    let users: Vec<String> = site.users.iter().map(ToString::to_string).collect();
    let all = batches(plan, &villages, &users, args.batch);
    let rows = all.iter().map(Batch::len).sum();
    for sql in DROP.iter().chain(&CREATE) {
        execute(&mut admin, sql)?;
    }
    let measured = (|| -> Result<Ceiling, String> {
        let (insert, insert_use) = timed(url, writers, &all, upsert)?;
        let copy_rate = if sqlite {
            None
        } else {
            execute(
                &mut admin,
                "TRUNCATE hamlet_ceiling_members, hamlet_ceiling_households",
            )?;
            Some(timed(url, writers, &all, copy)?.0)
        };
        Ok(Ceiling {
            rows,
            writers,
            insert_rows_per_s: insert,
            insert_use,
            copy_rows_per_s: copy_rate,
        })
    })();
    for sql in DROP {
        execute(&mut admin, sql)?;
    }
    measured
}
