//! The `hamlet` command line. Every command works on the database named by
//! `HAMLET_DATABASE_URL` (or `--database-url`), also while `hamlet serve` runs on it.

use crate::auth::password::PasswordParams;
use crate::auth::service::{UserDraft, insert_user};
use crate::config::{Config, ServeArgs};
use crate::db::{self, DbPool, PoolOptions};
use crate::error::AppError;
use crate::startup::Application;
use crate::units::import::{ImportError, ImportOptions};
use clap::{Parser, Subcommand};
use hamlet_shared::{NewUser, Role, UnitCode, UnitId};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hamlet",
    version,
    about = "Offline-first sync server for village digital-adoption surveys"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST/DB.
    #[arg(
        long,
        env = "HAMLET_DATABASE_URL",
        default_value = "sqlite://hamlet.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (runs pending migrations first).
    Serve(ServeArgs),
    /// Run pending database migrations and exit.
    Migrate,
    /// Administrative units.
    Units {
        #[command(subcommand)]
        command: UnitsCommand,
    },
    /// User accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Demo data for trying Hamlet out.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Recompute derived data (unit closure and every aggregate counter) and report differences.
    /// Exits 1 when something differs.
    Verify {
        /// Rewrite what differs.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UnitsCommand {
    /// Import units from a CSV with header `code,name,level,parent_code` (any row order;
    /// re-running the same file changes nothing).
    Import {
        file: PathBuf,
        /// Put rows with an empty parent_code under this existing unit (id or code), e.g.
        /// `--parent VN` for the national files, which list provinces without their country.
        #[arg(long)]
        parent: Option<String>,
    },
    /// Move a unit (and its subtree) under another parent, effective on a date.
    Move {
        /// Unit id or code.
        unit: String,
        /// The new parent (id or code).
        #[arg(long)]
        to: String,
        /// YYYY-MM-DD, not in the future.
        #[arg(long)]
        effective: String,
    },
    /// Merge units into one: their children move under it and they are retired.
    Merge {
        /// Units to merge away (ids or codes).
        #[arg(required = true)]
        sources: Vec<String>,
        /// The unit they merge into (id or code).
        #[arg(long)]
        into: String,
        /// YYYY-MM-DD, not in the future.
        #[arg(long)]
        effective: String,
    },
    /// Apply a national reorganisation: the new list of units (header
    /// `code,name,level,parent_code`) and an old->new code mapping (header `old_code,new_code`),
    /// e.g. data/vn-admin-units-2025.csv and data/vn-commune-merges-2025.csv. One transaction;
    /// split units that hold villages are listed for an admin to finish.
    Reform {
        /// The new list of units.
        #[arg(long)]
        units: PathBuf,
        /// The old->new code mapping.
        #[arg(long)]
        mapping: PathBuf,
        /// YYYY-MM-DD, not in the future (2025-07-01 for the 2025 reform).
        #[arg(long)]
        effective: String,
        /// The unit reorganised (id or code); default: the only root unit.
        #[arg(long)]
        root: Option<String>,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Prompts for the password on a terminal; otherwise use --password-stdin.
    Add {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Unit id or code; repeat for several units.
        #[arg(long, required = true)]
        scope: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        password: PasswordParams,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Create a synthetic province with communes, villages, households, members and demo
    /// accounts (demo-admin, demo-viewer, demo-enumerator).
    Seed {
        /// Random seed; the same seed gives the same data.
        #[arg(long, default_value_t = 2025)]
        seed: u64,
        #[command(flatten)]
        password: PasswordParams,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Entry point of the `hamlet` binary.
pub fn main() -> ExitCode {
    crate::telemetry::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn pool_for_cli(url: &str) -> Result<DbPool, String> {
    let pool = db::build_pool(
        url,
        &PoolOptions {
            max_size: 2,
            ..PoolOptions::default()
        },
    )?;
    let mut conn = pool
        .get()
        .map_err(|e| format!("cannot connect to {}: {e}", db::redact_url(url)))?;
    db::run_migrations(&mut conn)?;
    Ok(pool)
}

fn app_error(e: AppError) -> String {
    match e {
        AppError::Validation { message, details } => {
            let fields: Vec<String> = details
                .iter()
                .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or("record"), d.message))
                .collect();
            if fields.is_empty() {
                message
            } else {
                fields.join("; ")
            }
        }
        other => other.to_string(),
    }
}

/// Resolves a unit given by id or by live code.
fn resolve_unit(conn: &mut db::DbConn, given: &str) -> Result<UnitId, String> {
    if let Ok(id) = given.parse::<UnitId>() {
        return crate::units::get(conn, id)
            .map(|u| u.id)
            .map_err(|_| format!("no unit with id {given}"));
    }
    let code = UnitCode::parse(given).map_err(|d| d.message)?;
    match db::units::find_live_by_code(conn, code.as_str()).map_err(|e| e.to_string())? {
        Some(row) => row.id.parse().map_err(|_| "bad unit id in database".to_owned()),
        None => Err(format!("no unit with code {given}")),
    }
}

fn only_root(conn: &mut db::DbConn) -> Result<UnitId, String> {
    let roots = db::units::live_roots(conn).map_err(|e| e.to_string())?;
    match roots.as_slice() {
        [one] => one.id.parse().map_err(|_| "bad unit id in database".to_owned()),
        [] => Err("there are no units: import them first".to_owned()),
        _ => Err("there are several root units: name one with --root".to_owned()),
    }
}

fn print_reform(
    result: Result<crate::units::reform::ReformReport, crate::units::reform::ReformError>,
    units: &std::path::Path,
    mapping: &std::path::Path,
) -> Result<ExitCode, String> {
    use crate::units::reform::ReformError;
    let print_lines = |file: &std::path::Path, errors: &[crate::units::import::LineError]| {
        for e in errors.iter().take(100) {
            eprintln!("{}:{e}", file.display());
        }
        if errors.len() > 100 {
            eprintln!("... and {} more", errors.len() - 100);
        }
    };
    let r = match result {
        Ok(r) => r,
        Err(ReformError::Units(errors)) => {
            print_lines(units, &errors);
            return Err(ReformError::Units(errors).to_string());
        }
        Err(ReformError::Mapping(errors)) => {
            print_lines(mapping, &errors);
            return Err(ReformError::Mapping(errors).to_string());
        }
        Err(ReformError::Plan(problems)) => {
            for p in problems.iter().take(100) {
                eprintln!("{p}");
            }
            if problems.len() > 100 {
                eprintln!("... and {} more", problems.len() - 100);
            }
            return Err(ReformError::Plan(problems).to_string());
        }
        Err(ReformError::App(e)) => return Err(app_error(e)),
    };
    if r.already_applied {
        println!(
            "these files were already applied (effective {}): nothing changed",
            r.effective_on
        );
        return Ok(ExitCode::SUCCESS);
    }
    let by_level = |m: &std::collections::BTreeMap<String, usize>| {
        let parts: Vec<String> = m.iter().map(|(l, n)| format!("{n} {l}")).collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    };
    println!(
        "{}reform effective {}: {} unit(s) kept ({} renamed), created {}, retired {}, {} unit(s) moved",
        if r.dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        },
        r.effective_on,
        r.kept,
        r.renamed,
        by_level(&r.created),
        by_level(&r.retired),
        r.moved
    );
    if !r.pending.is_empty() {
        println!(
            "{} split unit(s) still hold villages: move each village to its new unit \
             (`hamlet units move VILLAGE --to NEW --effective {}`), then merge the emptied unit away:",
            r.pending.len(),
            r.effective_on
        );
        for p in &r.pending {
            println!(
                "  {} {} (id {}), split into {}:",
                p.old_code,
                p.name,
                p.unit_id,
                p.targets.join(", ")
            );
            for (id, name) in &p.villages {
                println!("    village {id} {name}");
            }
        }
    }
    if !r.stale_scopes.is_empty() {
        println!(
            "{} user scope(s) name a retired unit; give these users a new scope:",
            r.stale_scopes.len()
        );
        for (user, unit) in &r.stale_scopes {
            println!("  {user}: {unit}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(password.strip_suffix('\r').unwrap_or(password).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err("standard input is not a terminal: pass --password-stdin".to_owned());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let again = rpassword::prompt_password("Password again: ").map_err(|e| e.to_string())?;
    if first != again {
        return Err("the passwords differ".to_owned());
    }
    Ok(first)
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let url = cli.database_url;
    match cli.command {
        Command::Serve(args) => {
            let config = Config::from_args(url, args)?;
            let bind = config.bind.clone();
            let redacted = db::redact_url(&config.database_url);
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(config)?;
                tracing::info!(bind = %bind, port = app.port(), database = %redacted, "hamlet serving");
                app.run_until_stopped().await.map_err(|e| e.to_string())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let pool = db::build_pool(
                &url,
                &PoolOptions {
                    max_size: 1,
                    ..PoolOptions::default()
                },
            )?;
            let mut conn = pool
                .get()
                .map_err(|e| format!("cannot connect to {}: {e}", db::redact_url(&url)))?;
            let applied = db::run_migrations(&mut conn)?;
            println!("{} migration(s) applied", applied.len());
            for m in applied {
                println!("  {m}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Units {
            command: UnitsCommand::Import { file, parent },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let root_parent = parent.map(|p| resolve_unit(&mut conn, &p)).transpose()?;
            let input =
                std::fs::File::open(&file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let total = std::fs::read_to_string(&file)
                .map(|s| s.lines().count().saturating_sub(1))
                .unwrap_or(0);
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} units {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let result = crate::units::import::import(
                &mut conn,
                std::io::BufReader::new(input),
                &ImportOptions { root_parent },
                |done| bar.set_position(done as u64),
            );
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    println!(
                        "{}: {} rows: {} created, {} renamed, {} unchanged",
                        file.display(),
                        r.rows,
                        r.created,
                        r.renamed,
                        r.unchanged
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(ImportError::Invalid(errors)) => {
                    for e in errors.iter().take(100) {
                        eprintln!("{}:{e}", file.display());
                    }
                    if errors.len() > 100 {
                        eprintln!("... and {} more", errors.len() - 100);
                    }
                    Err(format!(
                        "{} invalid line(s) in {}; nothing was imported",
                        errors.len(),
                        file.display()
                    ))
                }
                Err(ImportError::App(e)) => Err(app_error(e)),
            }
        }
        Command::Units {
            command: UnitsCommand::Move { unit, to, effective },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let (unit, to) = (resolve_unit(&mut conn, &unit)?, resolve_unit(&mut conn, &to)?);
            let date = crate::units::reorg::parse_effective(&effective).map_err(app_error)?;
            let r = crate::units::reorg::move_unit(&mut conn, None, unit, to, date).map_err(app_error)?;
            println!("moved {} unit(s), effective {}", r.moved.len(), r.effective_on);
            Ok(ExitCode::SUCCESS)
        }
        Command::Units {
            command:
                UnitsCommand::Merge {
                    sources,
                    into,
                    effective,
                },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let sources = sources
                .iter()
                .map(|s| resolve_unit(&mut conn, s))
                .collect::<Result<Vec<_>, _>>()?;
            let into = resolve_unit(&mut conn, &into)?;
            let date = crate::units::reorg::parse_effective(&effective).map_err(app_error)?;
            let r =
                crate::units::reorg::merge_units(&mut conn, None, &sources, into, date).map_err(app_error)?;
            println!(
                "merged {} unit(s): {} child unit(s) moved, effective {}",
                r.retired.len(),
                r.moved.len(),
                r.effective_on
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Units {
            command:
                UnitsCommand::Reform {
                    units,
                    mapping,
                    effective,
                    root,
                    dry_run,
                },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let root = match root {
                Some(r) => resolve_unit(&mut conn, &r)?,
                None => only_root(&mut conn)?,
            };
            let date = crate::units::reorg::parse_effective(&effective).map_err(app_error)?;
            let read =
                |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
            let (units_bytes, mapping_bytes) = (read(&units)?, read(&mapping)?);
            let result = crate::units::reform::parse(&units_bytes, &mapping_bytes)
                .and_then(|input| crate::units::reform::reform(&mut conn, &input, root, date, dry_run));
            print_reform(result, &units, &mapping)
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    scope,
                    password_stdin,
                    password: params,
                },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let scope = scope
                .iter()
                .map(|s| resolve_unit(&mut conn, s))
                .collect::<Result<Vec<_>, _>>()?;
            let password = read_password(password_stdin)?;
            let draft = UserDraft::parse(NewUser {
                username,
                password,
                role,
                scope,
            })
            .map_err(app_error)?;
            let hash = params.hash(&draft.password)?;
            let user = insert_user(&mut conn, &draft, hash, None).map_err(app_error)?;
            println!(
                "created {} {} ({}) with scope {:?}",
                user.role,
                user.username,
                user.id,
                user.scope.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            command: DemoCommand::Seed { seed, password },
        } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let hash = password.hash(crate::demo::DEMO_PASSWORD)?;
            let report = crate::demo::seed(&mut conn, seed, hash).map_err(app_error)?;
            println!(
                "demo province {} ({}): {} villages, {} households, {} members",
                crate::demo::DEMO_PROVINCE_CODE,
                report.province_id,
                report.villages,
                report.households,
                report.members
            );
            for (name, role) in &report.users {
                println!(
                    "  account {name} ({role}), password {}",
                    crate::demo::DEMO_PASSWORD
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { repair } => {
            let pool = pool_for_cli(&url)?;
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            let report = crate::verify::verify(&mut conn, repair).map_err(app_error)?;
            for p in &report.problems {
                println!("{p}");
            }
            if report.is_clean() {
                println!("verify: everything matches");
                Ok(ExitCode::SUCCESS)
            } else if report.repaired {
                println!(
                    "verify: {} difference(s) found and repaired",
                    report.missing_closure_rows + report.extra_closure_rows + report.tally_differences
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("verify: differences found (run with --repair to fix)");
                Ok(ExitCode::from(1))
            }
        }
    }
}
