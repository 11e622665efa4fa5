//! National-scale aggregate reads (issue: aggregates): the real 2025 map (34 provinces, 3,321
//! communes) plus 23 synthetic villages per commune (76,383), counters filled synthetically,
//! then p50/p99 latency over HTTP of the country, a province and the country's children.
//! Ceilings measured in the same run: `/healthz` (a database round trip) and an authenticated
//! single-unit read. Run: `scripts/bench-aggregates.sh` (PostgreSQL; SQLite with `sqlite`).

use hamlet_server::aggregates::tallies::{Count, Metric, Tally};
use hamlet_server::units::import::{ImportOptions, import};
use hamlet_shared::Role;
use hamlet_tests::*;
use std::time::{Duration, Instant};

const VILLAGES_PER_COMMUNE: usize = 23;
const BIRTH_YEARS: [i32; 4] = [1950, 1975, 1995, 2015];
const REQUESTS: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn measure(label: &str, url: &str, token: Option<&str>) -> (f64, f64) {
    let agent = TestApp::agent();
    let call = || {
        let mut req = agent.get(url);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut res = req.call().expect("request");
        assert_eq!(res.status().as_u16(), 200, "{label}");
        res.body_mut().read_to_vec().expect("body");
    };
    for _ in 0..50 {
        call();
    }
    let mut times: Vec<Duration> = (0..REQUESTS)
        .map(|_| {
            let t = Instant::now();
            call();
            t.elapsed()
        })
        .collect();
    times.sort();
    let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
    println!("{label:<38} p50 {p50:7.3} ms   p99 {p99:7.3} ms");
    (p50, p99)
}

fn main() {
    let backend = match std::env::args().nth(1).as_deref() {
        Some("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let db = TestDb::new(backend);
    let pool = db.pool();
    let started = Instant::now();

    // The map: the real provinces and communes, synthetic villages.
    import_units(&pool, "code,name,level,parent_code\nVN,Việt Nam,country,\n");
    let vn = unit_id(&pool, "VN");
    let real = std::fs::read_to_string(repo_root().join("data/vn-admin-units-2025.csv")).expect("units file");
    let mut conn = pool.get().unwrap();
    import(
        &mut conn,
        real.as_bytes(),
        &ImportOptions {
            root_parent: Some(vn),
        },
        |_| {},
    )
    .expect("import");
    let communes: Vec<String> = real
        .lines()
        .skip(1)
        .filter(|l| l.contains(",commune,"))
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    let mut villages = String::from("code,name,level,parent_code\n");
    for c in &communes {
        for v in 0..VILLAGES_PER_COMMUNE {
            villages.push_str(&format!("{c}-{v:02},Thôn {v},village,{c}\n"));
        }
    }
    import(&mut conn, villages.as_bytes(), &ImportOptions::default(), |_| {}).expect("villages");
    println!(
        "map: {} communes, {} villages, imported in {:.1?}",
        communes.len(),
        communes.len() * VILLAGES_PER_COMMUNE,
        started.elapsed()
    );

    // Counters: each village ~120 households, ~480 members over four birth years.
    let t = Instant::now();
    let closure = hamlet_server::db::units::all_closure(&mut conn).unwrap();
    let levels: std::collections::HashMap<String, String> = {
        use diesel::{QueryDsl, RunQueryDsl};
        use hamlet_server::db::schema::units;
        units::table
            .select((units::id, units::level))
            .load::<(String, String)>(&mut *conn)
            .unwrap()
            .into_iter()
            .collect()
    };
    let mut village_tally = Tally::default();
    let mut unit_tally = Tally::default();
    let village_ids: Vec<&String> = levels
        .iter()
        .filter(|(_, l)| l.as_str() == "village")
        .map(|(id, _)| id)
        .collect();
    for (n, v) in village_ids.iter().enumerate() {
        let h = 100 + (n % 40) as i64;
        village_tally.add(
            v,
            Metric::Households,
            0,
            Count {
                yes: h,
                no: 0,
                unknown: 0,
            },
        );
        village_tally.add(
            v,
            Metric::HouseholdSmartphone,
            0,
            Count {
                yes: h * 9 / 10,
                no: h / 20,
                unknown: h / 20,
            },
        );
        village_tally.add(
            v,
            Metric::FixedBroadband,
            0,
            Count {
                yes: h / 3,
                no: h / 2,
                unknown: h / 6,
            },
        );
        for y in BIRTH_YEARS {
            village_tally.add(
                v,
                Metric::Members,
                y,
                Count {
                    yes: h,
                    no: 0,
                    unknown: 0,
                },
            );
            for &m in Metric::MEMBER_TRI {
                village_tally.add(
                    v,
                    m,
                    y,
                    Count {
                        yes: h * 3 / 5,
                        no: h / 3,
                        unknown: h / 15,
                    },
                );
            }
        }
    }
    let mut above: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for r in &closure {
        if r.depth >= 1 {
            above
                .entry(r.descendant_id.as_str())
                .or_default()
                .push(r.ancestor_id.as_str());
        }
    }
    for (k, c) in village_tally.iter() {
        for a in above.get(k.unit).into_iter().flatten() {
            unit_tally.add(a, k.metric, k.birth_year, c);
        }
    }
    hamlet_server::db::tallies::replace_all(&mut conn, &village_tally, &unit_tally).unwrap();
    // A tail of unfolded deltas, as between two folds under load.
    let tail: Tally = {
        let mut d = Tally::default();
        for v in village_ids.iter().take(2000) {
            d.add(
                v,
                Metric::OwnsSmartphone,
                1995,
                Count {
                    yes: 1,
                    no: -1,
                    unknown: 0,
                },
            );
        }
        d
    };
    hamlet_server::db::tallies::add_to_villages(&mut conn, &tail).unwrap();
    if backend == Backend::Postgres {
        // Fresh bulk loads have no planner statistics yet; autovacuum would gather them soon.
        use diesel::RunQueryDsl;
        diesel::sql_query("ANALYZE").execute(&mut *conn).unwrap();
    }
    drop(conn);
    println!(
        "counters: {} village rows, {} unit rows, {} unfolded deltas, written in {:.1?}",
        village_tally.len(),
        unit_tally.len(),
        tail.len(),
        t.elapsed()
    );

    add_user(&pool, "root", "root-password-for-bench", Role::Admin, &["VN"]);
    let province = unit_id(&pool, "01");
    let mut config = test_config(&db.url);
    config.aggregates.fold_interval_secs = 3600; // keep the unfolded tail for the whole run
    let app = TestApp::spawn_with(db, config);
    let token = app
        .login("root", "root-password-for-bench")
        .token()
        .unwrap()
        .to_owned();
    let backend_name = if backend == Backend::Postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("\n{backend_name}, {REQUESTS} sequential requests each, after 50 warm-up requests:");
    let (_, health) = measure(
        "GET /healthz (ceiling: DB round trip)",
        &app.url("/healthz"),
        None,
    );
    let (_, unit) = measure(
        "GET /units/{country} (ceiling: auth+read)",
        &app.url(&format!("/api/v1/units/{vn}")),
        Some(&token),
    );
    let (_, country) = measure(
        "GET /aggregates/{country}",
        &app.url(&format!("/api/v1/aggregates/{vn}")),
        Some(&token),
    );
    let (_, prov) = measure(
        "GET /aggregates/{province}",
        &app.url(&format!("/api/v1/aggregates/{province}")),
        Some(&token),
    );
    let (_, kids) = measure(
        "GET /aggregates/{country}/children",
        &app.url(&format!("/api/v1/aggregates/{vn}/children")),
        Some(&token),
    );
    println!(
        "\np99 ratios to the authenticated-read ceiling: country {:.2}, province {:.2}, children {:.2} (health {:.2})",
        country / unit,
        prov / unit,
        kids / unit,
        health / unit
    );
    println!(
        "target p99 < 10 ms: country {}, province {}",
        if country < 10.0 { "met" } else { "MISSED" },
        if prov < 10.0 { "met" } else { "MISSED" }
    );
}
