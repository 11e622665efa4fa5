//! The real `hamlet serve` is killed with SIGKILL at random points of a stream of pushes and
//! restarted, round after round, while two phones keep pushing and retry every batch that got
//! no answer. After every kill the database is checked as the crash left it (`hamlet verify`:
//! every counter equals its recomputation from the records, so nothing was applied by half);
//! at the end every record is stored exactly once and holds what its last acknowledged
//! mutation said.
//!
//! `HAMLET_CRASH_ROUNDS` sets the number of kills (default 3, for CI); `scripts/crash-loop.sh`
//! runs 20.

use hamlet_shared::{Role, UnitId};
use hamlet_tests::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

/// Kills per backend: `HAMLET_CRASH_ROUNDS`, default 3.
fn rounds() -> usize {
    std::env::var("HAMLET_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A random number in `0..max`.
fn random_below(max: u64) -> u64 {
    (Uuid::new_v4().as_u128() as u64) % max.max(1)
}

/// What a phone believes about one of its records after its acknowledged mutations.
#[derive(Debug, Clone)]
struct Known {
    record_type: &'static str,
    version: i64,
    deleted: bool,
    head_name: Option<String>,
    owns_smartphone: Option<&'static str>,
}

/// What the test shares with the phones.
struct Stream {
    base: Mutex<String>,
    stop: AtomicBool,
    /// Pushes sent and not yet answered.
    in_flight: AtomicUsize,
    /// Batches acknowledged, all phones together.
    acknowledged: AtomicUsize,
    /// Pushes that got no answer (the server died under them or was down) and were resent.
    retries: AtomicUsize,
}

/// The mutations of batch `n`: a new household with two members; from the second batch on, a
/// change of the previous household's head and of its first member's smartphone answer; every
/// fourth batch, the delete of a member of the batch before the previous one.
fn batch(
    phone: &Phone,
    village: UnitId,
    n: usize,
    families: &[[Uuid; 3]],
    known: &HashMap<Uuid, Known>,
) -> (Vec<Value>, [Uuid; 3]) {
    let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let mut mutations = vec![
        phone.upsert("household", ids[0], 0, household(village, &format!("Hộ {n}"))),
        phone.upsert("member", ids[1], 0, member(ids[0], "Chủ hộ", 1980, "yes", "yes")),
        phone.upsert("member", ids[2], 0, member(ids[0], "Con", 2012, "no", "no")),
    ];
    if let Some(previous) = n.checked_sub(1).and_then(|i| families.get(i)) {
        let h = &known[&previous[0]];
        mutations.push(phone.upsert(
            "household",
            previous[0],
            h.version,
            json!({ "head_name": format!("Hộ {n} (sửa)") }),
        ));
        let m = &known[&previous[1]];
        let flipped = if m.owns_smartphone == Some("yes") {
            "no"
        } else {
            "yes"
        };
        mutations.push(phone.upsert(
            "member",
            previous[1],
            m.version,
            json!({ "owns_smartphone": flipped }),
        ));
    }
    if n.is_multiple_of(4)
        && let Some(older) = n.checked_sub(2).and_then(|i| families.get(i))
    {
        mutations.push(phone.delete("member", older[2], known[&older[2]].version));
    }
    (mutations, ids)
}

/// Applies an acknowledged batch to what the phone knows.
fn learn(known: &mut HashMap<Uuid, Known>, mutations: &[Value], results: &[Value]) {
    assert_eq!(mutations.len(), results.len());
    for (m, r) in mutations.iter().zip(results) {
        // Applied now, or applied by an attempt whose answer the kill swallowed.
        let applied =
            r["status"] == "applied" || (r["status"] == "duplicate" && r["original_status"] == "applied");
        assert!(applied, "every mutation of the stream applies: {r}");
        assert_eq!(r["id"], m["id"], "{r}");
        let id: Uuid = m["id"].as_str().unwrap().parse().unwrap();
        let version = r["version"].as_i64().expect("version");
        let entry = known.entry(id).or_insert_with(|| Known {
            record_type: if m["type"] == "household" {
                "household"
            } else {
                "member"
            },
            version: 0,
            deleted: false,
            head_name: None,
            owns_smartphone: None,
        });
        assert!(version > entry.version, "a record's version only increases: {r}");
        entry.version = version;
        if m["op"] == "delete" {
            entry.deleted = true;
        }
        let fields = &m["fields"];
        if let Some(name) = fields["head_name"].as_str() {
            entry.head_name = Some(name.to_owned());
        }
        match fields["owns_smartphone"].as_str() {
            Some("yes") => entry.owns_smartphone = Some("yes"),
            Some("no") => entry.owns_smartphone = Some("no"),
            _ => {}
        }
    }
}

/// A phone pushing batch after batch until told to stop, resending each until acknowledged.
fn phone_thread(
    mut phone: Phone,
    village: UnitId,
    stream: Arc<Stream>,
) -> std::thread::JoinHandle<(Phone, HashMap<Uuid, Known>)> {
    std::thread::spawn(move || {
        let mut known = HashMap::new();
        let mut families = Vec::new();
        let mut n = 0;
        while !stream.stop.load(Ordering::SeqCst) {
            let (mutations, ids) = batch(&phone, village, n, &families, &known);
            let give_up = Instant::now() + Duration::from_secs(120);
            loop {
                phone.base = stream.base.lock().unwrap().clone();
                stream.in_flight.fetch_add(1, Ordering::SeqCst);
                let answer = phone.try_push(&mutations);
                stream.in_flight.fetch_sub(1, Ordering::SeqCst);
                match answer {
                    Ok((200, body)) => {
                        learn(
                            &mut known,
                            &mutations,
                            body["results"].as_array().expect("results"),
                        );
                        break;
                    }
                    // The server answers or it is dead: nothing in between.
                    Ok((status, body)) => panic!("push answered {status}: {body}"),
                    Err(_) => {
                        stream.retries.fetch_add(1, Ordering::SeqCst);
                        assert!(Instant::now() < give_up, "a batch was never acknowledged");
                        std::thread::sleep(Duration::from_millis(20 + random_below(30)));
                    }
                }
            }
            families.push(ids);
            stream.acknowledged.fetch_add(1, Ordering::SeqCst);
            n += 1;
        }
        (phone, known)
    })
}

/// `hamlet verify` on the database as the crash left it.
#[track_caller]
fn assert_verify_clean(database_url: &str, when: &str) {
    let out = std::process::Command::new(hamlet_bin())
        .arg("verify")
        .env("HAMLET_DATABASE_URL", database_url)
        .output()
        .expect("run hamlet verify");
    assert!(
        out.status.success(),
        "hamlet verify {when}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn killed_server_loses_nothing_and_applies_nothing_by_half(backend: Backend) {
    let started = Instant::now();
    let db = TestDb::new(backend);
    let pool = db.pool();
    import_units(&pool, SMALL_TREE);
    add_user(&pool, "c1team", PW, Role::Enumerator, &["C1"]);
    let villages = [unit_id(&pool, "V1"), unit_id(&pool, "V2")];

    let mut server = ServerProcess::start(&db.url, &[]);
    let stream = Arc::new(Stream {
        base: Mutex::new(server.base.clone()),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        acknowledged: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
    });
    let phones: Vec<_> = villages
        .iter()
        .map(|v| phone_thread(Phone::login_at(&server.base, "c1team", PW), *v, stream.clone()))
        .collect();

    let rounds = rounds();
    let mut mid_push = 0;
    for round in 0..rounds {
        // Let the restarted server acknowledge something, then kill it at a random moment,
        // most often while a push is being processed.
        let before = stream.acknowledged.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while stream.acknowledged.load(Ordering::SeqCst) < before + 2 + random_below(6) as usize {
            assert!(Instant::now() < deadline, "round {round}: no push acknowledged");
            std::thread::sleep(Duration::from_millis(2));
        }
        if random_below(4) > 0 {
            while stream.in_flight.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        std::thread::sleep(Duration::from_micros(random_below(15_000)));
        mid_push += usize::from(stream.in_flight.load(Ordering::SeqCst) > 0);
        server.signal("KILL");
        server.wait(Duration::from_secs(10)).expect("killed");
        assert_verify_clean(&db.url, &format!("after kill {}", round + 1));
        server = ServerProcess::start(&db.url, &[]);
        *stream.base.lock().unwrap() = server.base.clone();
    }
    let before = stream.acknowledged.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream.acknowledged.load(Ordering::SeqCst) < before + 2 {
        assert!(
            Instant::now() < deadline,
            "no push acknowledged after the last restart"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stream.stop.store(true, Ordering::SeqCst);
    let results: Vec<_> = phones.into_iter().map(|p| p.join().expect("phone")).collect();
    let batches = stream.acknowledged.load(Ordering::SeqCst);
    eprintln!(
        "{backend:?}: {rounds} kills ({mid_push} with a push in flight), {batches} batches, {} resent pushes, {:?}",
        stream.retries.load(Ordering::SeqCst),
        started.elapsed()
    );

    // Every record exactly once, holding its last acknowledged state. (The feed may send an
    // edited record once per change; its last appearance is its current state.)
    let phone = Phone::login_at(&server.base, "c1team", PW);
    let (changes, _) = phone.pull_all(None);
    let mut pulled: HashMap<Uuid, &Value> = HashMap::new();
    for c in &changes {
        pulled.insert(c["id"].as_str().unwrap().parse().unwrap(), c);
    }
    let known: HashMap<Uuid, Known> = results.iter().flat_map(|(_, k)| k.clone()).collect();
    assert_eq!(pulled.len(), known.len(), "every record, and nothing else");
    let mut conn = pool.get().unwrap();
    let live_households = known
        .values()
        .filter(|k| k.record_type == "household" && !k.deleted)
        .count();
    let live_members = known
        .values()
        .filter(|k| k.record_type == "member" && !k.deleted)
        .count();
    let village_ids: Vec<String> = villages.iter().map(ToString::to_string).collect();
    assert_eq!(
        hamlet_server::db::records::count_live(&mut conn, &village_ids).unwrap(),
        (live_households as i64, live_members as i64),
        "the database holds each live record once"
    );
    drop(conn);
    for (id, k) in &known {
        let c = pulled
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged record {id} lost"));
        assert_eq!(c["type"], k.record_type, "{c}");
        assert_eq!(c["version"], k.version, "{c}");
        assert_eq!(c["deleted"], k.deleted, "{c}");
        if !k.deleted {
            if let Some(name) = &k.head_name {
                assert_eq!(&c["fields"]["head_name"], name, "{c}");
            }
            if let Some(answer) = k.owns_smartphone {
                assert_eq!(c["fields"]["owns_smartphone"], answer, "{c}");
            }
        }
    }

    // Every counter equals its recomputation, and the aggregates equal what the phones hold.
    for ((_, known), village) in results.iter().zip(villages) {
        let live = |t: &'static str| known.values().filter(move |k| k.record_type == t && !k.deleted);
        let households = live("household").count();
        let members = live("member").count();
        let smartphones = live("member")
            .filter(|k| k.owns_smartphone == Some("yes"))
            .count();
        let (status, body) = TestApp::agent()
            .get(&format!("{}/api/v1/aggregates/{village}", server.base))
            .header("Authorization", &format!("Bearer {}", phone.token))
            .call()
            .map(|mut r| {
                let status = r.status().as_u16();
                (status, r.body_mut().read_json::<Value>().unwrap_or_default())
            })
            .expect("aggregates");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["households"], households, "{body}");
        assert_eq!(body["members"], members, "{body}");
        let indicator = body["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == "population_with_smartphone")
            .expect("indicator");
        assert_eq!(indicator["numerator"], smartphones, "{indicator}");
        assert_eq!(indicator["denominator"], members, "{indicator}");
    }
    drop(server);
    assert_verify_clean(&db.url, "at the end");
}

backend_tests!(killed_server_loses_nothing_and_applies_nothing_by_half);
