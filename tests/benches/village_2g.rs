//! A village over 2G (issue: field conditions, item 2): a phone pushes its offline survey of a
//! village (100 households, 4 members each, every field filled) through a noxious proxy at
//! about 50 kbit/s each way with 300 ms added to each round trip and one connection in four
//! cut mid-transfer, then corrects a few households in three rounds, each synced at once; a
//! second phone pulls the village from scratch. Every run proves that the server's records and
//! aggregates equal the phones' (`village::sync_village`). The same scenario over a clean
//! loopback link, in the same run, is the reference.
//!
//! `cargo bench -p hamlet-tests --bench village_2g --profile dev` (SQLite; `postgres` as
//! argument for PostgreSQL with `HAMLET_TEST_PG_URL`; `--runs N`, default 3).

use hamlet_tests::Backend;
use hamlet_tests::slow_link::LinkProfile;
use hamlet_tests::village::{VillageReport, sync_village};
use std::time::Duration;

const HOUSEHOLDS: usize = 100;
const EDIT_ROUNDS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = if args.iter().any(|a| a == "postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let clean = LinkProfile {
        bytes_per_sec: 1_000_000_000,
        one_way_latency: Duration::ZERO,
        cut: None,
        cut_up: None,
    };
    let reference = sync_village(backend, HOUSEHOLDS, EDIT_ROUNDS, clean);
    let reports: Vec<VillageReport> = (0..runs)
        .map(|i| {
            let r = sync_village(backend, HOUSEHOLDS, EDIT_ROUNDS, LinkProfile::village_2g());
            eprintln!("run {}: {r:?}", i + 1);
            r
        })
        .collect();

    let secs = |d: Duration| format!("{:.1}", d.as_secs_f64());
    println!("A village of {HOUSEHOLDS} households over 2G, {backend:?}, {runs} runs:\n");
    println!(
        "| link | push of the village (s) | {EDIT_ROUNDS} edit rounds (s) | pull from scratch (s) | login attempts | retries: push + edits | retries: pull | records checked |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |what: &str, r: &VillageReport| {
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} |",
            secs(r.push),
            secs(r.edits),
            secs(r.pull),
            r.login_attempts,
            r.push_retries,
            r.pull_retries,
            r.records
        );
    };
    row("loopback, no faults (reference)", &reference);
    for (i, r) in reports.iter().enumerate() {
        row(&format!("2G, run {}", i + 1), r);
    }
}
