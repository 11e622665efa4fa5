//! `hamlet-load`: simulates village teams syncing at once, measures the server against the raw
//! database ceiling, and checks that what the server counts is what the phones sent.
//!
//! Phases: set-up through the admin API (a fresh commune with its villages, one enumerator per
//! village, one login per device); optionally the ceiling (the same rows written straight into
//! scratch tables of the same database); the push phase (every device pushes its households and
//! members in batches, with replayed batches, members sent before their household and deletes);
//! concurrent edits of the same fields from two phones of a village; the pull phase (every device
//! pulls its village from scratch); and the check (pulled records and every aggregate of the
//! commune and its villages against the expected state). A wrong number exits 1.

mod ceiling;
mod check;
mod push;
mod setup;
mod stats;
mod workload;

use clap::Parser;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Clone, Parser)]
#[command(name = "hamlet-load", version, about)]
pub struct Args {
    /// The server's root URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "HAMLET_SERVER")]
    pub server: String,
    /// An admin account whose scope holds `--parent`.
    #[arg(long, default_value = "demo-admin")]
    pub admin: String,
    /// The admin's password.
    #[arg(long, env = "HAMLET_LOAD_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// The unit (province or district) under which the run's commune is created; default: the
    /// admin's first scope unit.
    #[arg(long)]
    pub parent: Option<uuid::Uuid>,
    /// Simulated phones.
    #[arg(long, default_value_t = 8)]
    pub devices: usize,
    /// Villages; default: one per four devices (at least one), so villages have several phones.
    #[arg(long)]
    pub villages: Option<usize>,
    /// Households in all (each with 1 to 6 members).
    #[arg(long, default_value_t = 2000)]
    pub households: usize,
    /// Mutations per push.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Share of batches sent twice (a phone that lost the response).
    #[arg(long, default_value_t = 0.05)]
    pub duplicates: f64,
    /// Share of households whose members are pushed one batch before the household.
    #[arg(long, default_value_t = 0.1)]
    pub out_of_order: f64,
    /// Share of households that get the same field edited concurrently on two phones.
    #[arg(long, default_value_t = 0.02)]
    pub conflicts: f64,
    /// Share of members deleted after the push.
    #[arg(long, default_value_t = 0.01)]
    pub deletes: f64,
    /// Compress push bodies (as phones do).
    #[arg(long)]
    pub gzip: bool,
    /// Rows per pull page.
    #[arg(long, default_value_t = 5000)]
    pub pull_limit: u32,
    /// The server's database, to measure the raw INSERT (and COPY) ceiling in the same run.
    #[arg(long, env = "HAMLET_LOAD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Seconds to wait after measuring the ceiling, before the server's run.
    #[arg(long, default_value_t = 10.0)]
    pub settle_secs: f64,
    /// Concurrent writers for the ceiling; default: the devices, at most 16 (one on SQLite).
    #[arg(long)]
    pub ceiling_writers: Option<usize>,
    /// The server's process id, to sample its memory during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's adult age (aggregates count adults from it).
    #[arg(long, default_value_t = 15)]
    pub adult_age: i32,
    /// Random seed, for a reproducible workload.
    #[arg(long, default_value_t = 2025)]
    pub seed: u64,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hamlet-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs every phase; `Ok(false)` when the server's numbers are wrong.
fn run(args: &Args) -> Result<bool, String> {
    if args.devices == 0 || args.households == 0 || args.batch == 0 || args.batch > 1000 {
        return Err("--devices and --households must be positive, --batch within 1..=1000".into());
    }
    let villages = args
        .villages
        .unwrap_or((args.devices / 4).max(1))
        .clamp(1, args.devices);
    let started = Instant::now();
    let site = setup::prepare(args, villages)?;
    println!(
        "set-up: commune {} with {villages} village(s), {} device(s) logged in ({:.1} s)",
        site.commune,
        site.devices.len(),
        started.elapsed().as_secs_f64()
    );
    let mut plan = workload::Plan::generate(args, &site);
    println!(
        "workload: {} households, {} members, {} mutations to push",
        plan.households.len(),
        plan.members.len(),
        plan.mutation_count()
    );

    let ceiling = match &args.database_url {
        Some(url) => {
            let c = ceiling::measure(url, &plan, args, &site)?;
            // Let the database finish what the ceiling's writes left it (dirty buffers, WAL,
            // autovacuum of the dropped scratch tables) before the server is measured.
            std::thread::sleep(std::time::Duration::from_secs_f64(args.settle_secs));
            Some(c)
        }
        None => None,
    };
    let server = stats::ServerSampler::start(args.server_pid);
    let machine = stats::MachineSampler::start();
    let pushed = push::run(args, &site, &mut plan)?;
    let push_machine = machine.stop();
    let push_use = server.stop();
    let edits = push::concurrent_edits(args, &site, &mut plan)?;
    let server = stats::ServerSampler::start(args.server_pid);
    let pulled = check::pull_all(args, &site)?;
    let pull_use = server.stop();

    println!();
    println!("push: {}", pushed.summary());
    if let Some(m) = &push_machine {
        let server = push_use
            .as_ref()
            .map(|u| {
                let server = u.cpu_s / pushed.wall.as_secs_f64().max(1e-9);
                format!(
                    ", {server:.2} the server, {:.2} everything else (the database)",
                    m.busy_cores - m.own_cores - server
                )
            })
            .unwrap_or_default();
        println!("push machine: {}{server}", m.summary());
    }
    if let Some(c) = &ceiling {
        println!("ceiling: {}", c.summary());
        println!(
            "ratio: server {:.0} records/s = {:.1}% of the INSERT ... ON CONFLICT ceiling",
            pushed.records_per_s(),
            100.0 * pushed.records_per_s() / c.insert_rows_per_s
        );
    }
    println!("edits: {}", edits.summary());
    println!("pull: {}", pulled.summary());
    if let (Some(push), Some(pull)) = (&push_use, &pull_use) {
        println!(
            "server memory: max RSS {:.1} MiB while pushing, {:.1} MiB while pulling (high-water mark since start {:.1} MiB)",
            push.max_rss_kib as f64 / 1024.0,
            pull.max_rss_kib as f64 / 1024.0,
            pull.hwm_kib as f64 / 1024.0
        );
        println!(
            "server CPU: {:.1} s while pushing ({:.0} µs per record, {:.2} cores), {:.1} s while pulling ({:.1} µs per change)",
            push.cpu_s,
            1e6 * push.cpu_s / pushed.records.max(1) as f64,
            push.cpu_s / pushed.wall.as_secs_f64(),
            pull.cpu_s,
            1e6 * pull.cpu_s / pulled.changes.max(1) as f64,
        );
    }

    let mut problems = Vec::new();
    problems.extend(pushed.problems.iter().cloned());
    problems.extend(edits.problems.iter().cloned());
    problems.extend(check::records(&plan, &site, &pulled));
    problems.extend(check::aggregates(args, &site, &plan)?);
    if problems.is_empty() {
        println!(
            "check: every pulled record and every aggregate of the commune and its {villages} village(s) \
             match what was sent"
        );
        Ok(true)
    } else {
        for p in problems.iter().take(50) {
            eprintln!("MISMATCH {p}");
        }
        eprintln!("check failed: {} problem(s)", problems.len());
        Ok(false)
    }
}
