//! `hamlet-client`: the reference offline client on the command line. Edits go to a local
//! outbox and work without a network; `sync` pushes them and pulls what changed.

use clap::{Args, Parser, Subcommand};
use hamlet_client::{Client, ClientOptions, Error, LocalRecord, OutboxEntry, RetryPolicy, Status, fields};
use hamlet_shared::records::RecordType;
use hamlet_shared::sync::Op;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;

/// `println!` that ends the program quietly when stdout is closed (`hamlet-client list | head`)
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "hamlet-client",
    version,
    about = "Reference offline client for a Hamlet server: edit offline, then sync."
)]
struct Cli {
    /// The local store file (created on first use; one per device).
    #[arg(long, env = "HAMLET_CLIENT_STORE", default_value = "hamlet-client.db")]
    store: PathBuf,
    /// The server's root URL, e.g. http://127.0.0.1:8080 (remembered at login).
    #[arg(long, env = "HAMLET_SERVER")]
    server: Option<String>,
    /// Mutations per push request (1 to 1000).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: u16,
    /// Tries per request on network errors, 429, 500 and 503 (1 = no retry).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
    /// Send push bodies uncompressed.
    #[arg(long)]
    no_gzip: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in on this device; the password comes from HAMLET_PASSWORD, stdin or a prompt.
    Login {
        user: String,
        /// Read the password from the first line of stdin (its newline is not part of it).
        #[arg(long)]
        password_stdin: bool,
        /// A name for this device in the server's device list.
        #[arg(long, default_value = "hamlet-client")]
        device_name: String,
    },
    /// End the session here and on the server; unsent edits stay for the next login.
    Logout,
    /// Households.
    #[command(subcommand)]
    Household(HouseholdCommand),
    /// Household members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Change fields of a record: `edit household ID head_name="Hà Văn Lâm" address=`
    /// (an empty value clears an optional field).
    Edit {
        #[arg(value_parser = parse_type)]
        record_type: RecordType,
        id: Uuid,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Delete a record (deleting a household does not delete its members).
    Delete {
        #[arg(value_parser = parse_type)]
        record_type: RecordType,
        id: Uuid,
    },
    /// The records on this device, local edits included.
    List {
        /// Also show deleted records.
        #[arg(long)]
        deleted: bool,
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Push pending edits, then pull what changed.
    Sync,
    /// Pending and rejected edits, last sync time, pull cursor.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget rejected edits once read: one by mutation id, or all with --all.
    Dismiss {
        #[arg(required_unless_present = "all")]
        mutation_id: Option<i64>,
        #[arg(long, conflicts_with = "mutation_id")]
        all: bool,
    },
}

#[derive(Subcommand)]
enum HouseholdCommand {
    /// Add a household; prints its new id.
    Add(HouseholdAdd),
}

#[derive(Args)]
struct HouseholdAdd {
    /// The village's unit id.
    #[arg(long)]
    village: String,
    /// The head of household's name.
    #[arg(long)]
    head: String,
    #[arg(long)]
    address: Option<String>,
    /// yes, no or unknown.
    #[arg(long)]
    fixed_broadband: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    surveyed_on: Option<String>,
    /// Any other household field.
    #[arg(value_name = "FIELD=VALUE")]
    more: Vec<String>,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member to a household; prints the member's new id.
    Add(MemberAdd),
}

#[derive(Args)]
struct MemberAdd {
    /// The household's id (it may not have been synced yet).
    #[arg(long)]
    household: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    birth_year: String,
    /// male, female or other.
    #[arg(long)]
    sex: Option<String>,
    /// Owns a smartphone: yes, no or unknown.
    #[arg(long)]
    smartphone: Option<String>,
    /// Has a transaction account: yes, no or unknown.
    #[arg(long)]
    account: Option<String>,
    /// Any other member field, e.g. vneid_level2=yes.
    #[arg(value_name = "FIELD=VALUE")]
    more: Vec<String>,
}

fn parse_type(s: &str) -> Result<RecordType, String> {
    s.parse()
}

/// Fields from named flags (mapped to the contract's field names) and FIELD=VALUE arguments,
/// typed by the shared field specs.
fn collect(
    t: RecordType,
    named: &[(&str, Option<&String>)],
    more: &[String],
) -> Result<Map<String, Value>, Error> {
    let mut out = fields::parse_assignments(t, more)?;
    for (name, raw) in named {
        let Some(raw) = raw else { continue };
        let spec = t
            .spec(name)
            .ok_or_else(|| Error::Invalid(format!("a {t} has no field {name}")))?;
        if out
            .insert((*name).to_owned(), fields::value_for(spec, raw))
            .is_some()
        {
            return Err(Error::Invalid(format!("{name} is given twice")));
        }
    }
    Ok(out)
}

fn password(user: &str, from_stdin: bool) -> Result<String, Error> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Error::Invalid(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("HAMLET_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(format!("Password for {user}: "))
        .map_err(|e| Error::Invalid(format!("cannot read the password (set HAMLET_PASSWORD?): {e}")))
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn record_line(r: &LocalRecord, skip: &str) -> String {
    let mut line = format!("{} {} v{}", r.record_type, r.id, r.version);
    if r.deleted {
        line.push_str(" [deleted]");
    }
    if r.pending > 0 {
        line.push_str(&format!(" [{} unsynced]", r.pending));
    }
    for spec in r.record_type.fields() {
        match r.fields.get(spec.name) {
            Some(Value::Null) | None => {}
            Some(_) if spec.name == skip => {}
            Some(v) => line.push_str(&format!(" {}={}", spec.name, show_value(v))),
        }
    }
    line
}

fn print_list(records: &[LocalRecord], deleted: bool) {
    let shown: Vec<&LocalRecord> = records.iter().filter(|r| deleted || !r.deleted).collect();
    let household_of = |r: &LocalRecord| {
        r.fields
            .get("household_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let households: Vec<&&LocalRecord> = shown
        .iter()
        .filter(|r| r.record_type == RecordType::Household)
        .collect();
    let mut placed = std::collections::HashSet::new();
    for h in &households {
        out!("{}", record_line(h, ""));
        for m in shown
            .iter()
            .filter(|m| m.record_type == RecordType::Member && household_of(m) == Some(h.id.to_string()))
        {
            out!("  {}", record_line(m, "household_id"));
            placed.insert(m.id);
        }
    }
    for m in shown
        .iter()
        .filter(|m| m.record_type == RecordType::Member && !placed.contains(&m.id))
    {
        out!("{}", record_line(m, ""));
    }
    if shown.is_empty() {
        out!("no records (add some, or sync)");
    }
}

fn entry_line(e: &OutboxEntry) -> String {
    let op = match e.op {
        Op::Upsert => "upsert",
        Op::Delete => "delete",
    };
    let mut line = format!(
        "#{} {op} {} {} (base v{})",
        e.mutation_id, e.record_type, e.record_id, e.base_version
    );
    if e.sent && !e.rejected {
        line.push_str(" sent, awaiting an answer");
    }
    line
}

fn print_status(s: &Status) {
    out!("device:        {}", s.device_id);
    out!("server:        {}", s.server.as_deref().unwrap_or("(none yet)"));
    match (&s.username, &s.role) {
        (Some(u), Some(r)) => out!("user:          {u} ({r})"),
        _ => out!("user:          not logged in"),
    }
    out!("last sync:     {}", s.last_sync.as_deref().unwrap_or("never"));
    out!(
        "pull cursor:   {}",
        s.cursor.as_deref().unwrap_or("(from the beginning)")
    );
    out!("records held:  {}", s.records);
    out!("next mutation: #{}", s.next_mutation_id);
    out!("pending:       {}", s.pending.len());
    for e in &s.pending {
        out!("  {}", entry_line(e));
    }
    out!("rejected:      {}", s.rejected.len());
    for e in &s.rejected {
        out!("  {}", entry_line(e));
        for d in &e.errors {
            match &d.field {
                Some(f) => out!("      {f}: {} ({})", d.message, d.code),
                None => out!("      {} ({})", d.message, d.code),
            }
        }
    }
}

fn json_out<T: serde::Serialize>(v: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    out!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: cli.attempts,
            ..RetryPolicy::default()
        },
        batch_size: usize::from(cli.batch_size),
        gzip: !cli.no_gzip,
        ..ClientOptions::default()
    };
    let mut client = Client::open_with(&cli.store, cli.server.as_deref(), options)?;
    client.on_retry(|ev| {
        eprintln!(
            "{}; retrying in {:.1} s (attempt {} failed)",
            ev.error,
            ev.wait.as_secs_f64(),
            ev.attempt
        )
    });
    match cli.command {
        Command::Login {
            user,
            password_stdin,
            device_name,
        } => {
            if client.server().is_none() {
                return Err(Error::Invalid("no server: pass --server URL".to_owned()));
            }
            let pw = password(&user, password_stdin)?;
            let info = client.login(&user, &pw, Some(&device_name))?;
            let device = client.device_id()?;
            out!(
                "logged in as {} ({}) on {}; device {device}",
                info.username,
                info.role,
                client.server().unwrap_or_default(),
            );
            let scope: Vec<String> = info.scope.iter().map(ToString::to_string).collect();
            out!("scope: {}", scope.join(" "));
        }
        Command::Logout => {
            client.logout()?;
            out!("logged out; unsynced edits are kept");
        }
        Command::Household(HouseholdCommand::Add(a)) => {
            let t = RecordType::Household;
            let f = collect(
                t,
                &[
                    ("village_id", Some(&a.village)),
                    ("head_name", Some(&a.head)),
                    ("address", a.address.as_ref()),
                    ("fixed_broadband", a.fixed_broadband.as_ref()),
                    ("surveyed_on", a.surveyed_on.as_ref()),
                ],
                &a.more,
            )?;
            out!("{}", client.create(t, f)?);
        }
        Command::Member(MemberCommand::Add(a)) => {
            let t = RecordType::Member;
            let f = collect(
                t,
                &[
                    ("household_id", Some(&a.household)),
                    ("full_name", Some(&a.name)),
                    ("birth_year", Some(&a.birth_year)),
                    ("sex", a.sex.as_ref()),
                    ("owns_smartphone", a.smartphone.as_ref()),
                    ("has_transaction_account", a.account.as_ref()),
                ],
                &a.more,
            )?;
            match client.create(t, f) {
                // Name the flags of the two required answers, which have no default.
                Err(Error::Validation(d))
                    if d.iter().any(|d| {
                        matches!(
                            d.field.as_deref(),
                            Some("owns_smartphone" | "has_transaction_account")
                        )
                    }) =>
                {
                    return Err(Error::Invalid(format!(
                        "{} (--smartphone and --account take yes, no or unknown)",
                        Error::Validation(d)
                    )));
                }
                other => out!("{}", other?),
            }
        }
        Command::Edit {
            record_type,
            id,
            fields: assignments,
        } => {
            let f = fields::parse_assignments(record_type, &assignments)?;
            let m = client.edit(record_type, id, f)?;
            out!("queued as mutation #{m}; run `hamlet-client sync` to send it");
        }
        Command::Delete { record_type, id } => match client.delete(record_type, id)? {
            Some(m) => out!("queued as mutation #{m}; run `hamlet-client sync` to send it"),
            None => out!("removed: the {record_type} had never left this device"),
        },
        Command::List { deleted, json } => {
            let records = client.records()?;
            if json {
                let shown: Vec<_> = records.into_iter().filter(|r| deleted || !r.deleted).collect();
                json_out(&shown)?;
            } else {
                print_list(&records, deleted);
            }
        }
        Command::Sync => {
            let r = client.sync()?;
            let s = &r.push.summary;
            let n = |count: usize, what: &str| format!("{count} {what}{}", if count == 1 { "" } else { "s" });
            out!(
                "pushed: {} applied, {} duplicate, {} conflict, {} rejected ({}); pulled: {} ({})",
                s.applied,
                s.duplicate,
                s.conflict,
                s.rejected,
                n(r.push.batches, "request"),
                n(r.pull.changes, "change"),
                n(r.pull.pages, "page"),
            );
            if r.push.conflicts > 0 {
                eprintln!(
                    "note: {} edits lost to later edits from other devices; an admin can review them",
                    r.push.conflicts
                );
            }
            if r.push.rejected > 0 {
                eprintln!(
                    "warning: {} edits were rejected; see `hamlet-client status`",
                    r.push.rejected
                );
            }
        }
        Command::Status { json } => {
            let s = client.status()?;
            if json { json_out(&s)? } else { print_status(&s) }
        }
        Command::Dismiss { mutation_id, all } => {
            let n = client.dismiss(if all { None } else { mutation_id })?;
            if n == 0 && !all {
                return Err(Error::Invalid("no rejected mutation with that id".to_owned()));
            }
            out!("dismissed {n} rejected mutations");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
