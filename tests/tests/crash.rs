//! The real `hamlet serve` is killed with SIGKILL in the middle of a stream of pushes and
//! restarted; the phone retries each unacknowledged batch. Every record ends up stored exactly
//! once, and every acknowledged mutation is there.

use hamlet_shared::Role;
use hamlet_tests::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const PW: &str = "a-good-long-password";
const BATCHES: usize = 60;
const KILLS: usize = 3;

fn jitter_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % max
}

fn killed_server_loses_nothing_and_stores_nothing_twice(backend: Backend) {
    let db = TestDb::new(backend);
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "v1team", PW, Role::Enumerator, &["V1"]);
    let v1 = unit_id(&pool, "V1");

    let mut server = ServerProcess::start(&db.url, &[]);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let mut phone = Phone::login_at(&server.base, "v1team", PW);
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let pusher = {
        let (base, finished) = (base.clone(), finished.clone());
        std::thread::spawn(move || {
            let mut households = Vec::new();
            let mut retries = 0;
            for _ in 0..BATCHES {
                let h = Uuid::now_v7();
                households.push(h);
                let batch: Vec<Value> = vec![
                    phone.upsert("household", h, 0, household(v1, "Killed")),
                    phone.upsert("member", Uuid::now_v7(), 0, member(h, "A", 1990, "yes", "no")),
                    phone.upsert("member", Uuid::now_v7(), 0, member(h, "B", 2012, "no", "no")),
                ];
                loop {
                    phone.base = base.lock().unwrap().clone();
                    match phone.try_push(&batch) {
                        Ok((200, body)) => {
                            for r in body["results"].as_array().unwrap() {
                                assert!(r["status"] == "applied" || r["status"] == "duplicate", "{r}");
                            }
                            break;
                        }
                        _ => {
                            retries += 1;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
            (phone, households, retries)
        })
    };

    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(100 + jitter_ms(300)));
        if finished.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        server.signal("KILL");
        server.wait(Duration::from_secs(10)).expect("killed");
        server = ServerProcess::start(&db.url, &[]);
        *base.lock().unwrap() = server.base.clone();
    }
    let (mut phone, households, retries) = pusher.join().unwrap();
    eprintln!("{BATCHES} batches, {retries} retries");

    phone.base = server.base.clone();
    let (changes, _) = phone.pull_all(None);
    let mut ids: Vec<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), total, "pull repeats nothing in a fresh walk");
    assert_eq!(total, BATCHES * 3, "every household and member exactly once");
    for h in &households {
        assert!(ids.contains(&h.to_string().as_str()), "household {h} lost");
    }
    // The database agrees: no duplicates, nothing half-applied.
    let mut conn = pool.get().unwrap();
    let (stored_households, stored_members) =
        hamlet_server::db::records::count_live(&mut conn, &[v1.to_string()]).unwrap();
    assert_eq!(
        (stored_households, stored_members),
        (BATCHES as i64, 2 * BATCHES as i64)
    );
    let out = std::process::Command::new(hamlet_bin())
        .arg("verify")
        .env("HAMLET_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

backend_tests!(killed_server_loses_nothing_and_stores_nothing_twice);
