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
    /// Recompute derived data (unit closure; aggregates once they exist) and report differences.
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
