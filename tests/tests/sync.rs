//! Sync: push, pull, reconciliation, conflicts — on both backends, over HTTP.

use hamlet_shared::Role;
use hamlet_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PW: &str = "a-good-long-password";

fn setup(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("p1admin", PW, Role::Admin, &["P1"]);
    app.add_user("p1viewer", PW, Role::Viewer, &["P1"]);
    app.add_user("c1team", PW, Role::Enumerator, &["C1"]);
    app.add_user("v1team", PW, Role::Enumerator, &["V1"]);
    app.add_user("v2team", PW, Role::Enumerator, &["V2"]);
    app
}

fn id() -> Uuid {
    Uuid::now_v7()
}

fn by_id(changes: &[Value], id: Uuid) -> Vec<Value> {
    changes
        .iter()
        .filter(|c| c["id"] == id.to_string())
        .cloned()
        .collect()
}

fn push_then_pull(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let (h, m) = (id(), id());
    let results = phone.push_ok(&[
        phone.upsert(
            "household",
            h,
            0,
            json!({ "village_id": app.unit_id("V1"), "head_name": "Hà Văn Thắng", "address": "Xóm Nà Lầu" }),
        ),
        phone.upsert("member", m, 0, member(h, "Hà Thị Lan", 1990, "yes", "no")),
    ]);
    for r in &results {
        assert_eq!(r["status"], "applied", "{r}");
        assert_eq!(r["version"], 1);
        assert_eq!(r["conflicts"], json!([]));
        assert_eq!(r["errors"], json!([]));
    }
    assert_eq!(results[0]["id"], h.to_string());

    let (changes, cursor) = phone.pull_all(None);
    assert_eq!(changes.len(), 2);
    let hh = &by_id(&changes, h)[0];
    assert_eq!(hh["type"], "household");
    assert_eq!(hh["deleted"], false);
    assert_eq!(hh["fields"]["head_name"], "Hà Văn Thắng");
    assert_eq!(
        hh["fields"]["fixed_broadband"], "unknown",
        "optional tri defaults to unknown"
    );
    assert_eq!(hh["fields"]["surveyed_on"], Value::Null);
    let mm = &by_id(&changes, m)[0];
    assert_eq!(mm["fields"]["birth_year"], 1990);
    assert_eq!(mm["fields"]["vneid_level2"], "unknown");
    assert_eq!(mm["fields"].as_object().unwrap().len(), 10, "full record");

    // Nothing new: an empty page, and the cursor stays usable.
    let (status, page) = phone.pull_page(Some(&cursor), 500);
    assert_eq!(status, 200);
    assert_eq!(page["changes"], json!([]));
    assert_eq!(page["has_more"], false);
    // Only the change is sent next time.
    phone.push_ok(&[phone.upsert("member", m, 1, json!({ "owns_smartphone": "no" }))]);
    let (changes, _) = phone.pull_all(Some(&cursor));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["version"], 2);
    assert_eq!(changes[0]["fields"]["owns_smartphone"], "no");

    // Others in scope see it; outside the scope nobody does; viewers may not pull.
    let commune = Phone::login(&app, "c1team", PW);
    assert_eq!(commune.pull_all(None).0.len(), 2);
    let neighbour = Phone::login(&app, "v2team", PW);
    assert!(neighbour.pull_all(None).0.is_empty());
    let viewer = Phone::login(&app, "p1viewer", PW);
    assert_error(&viewer.pull_page(None, 10), 403, "forbidden");
    assert_error(&phone.pull_page(Some("garbage"), 10), 400, "bad_request");
    assert_error(&phone.pull_page(None, 0), 400, "bad_request");
    // The device shows its sync.
    let devices = Api::new(&app.base)
        .with_token(phone.token.clone())
        .devices()
        .unwrap()
        .devices;
    assert!(
        devices
            .iter()
            .find(|d| d.device_id == phone.device)
            .unwrap()
            .last_sync
            .is_some()
    );
    app.assert_consistent();
}

fn lost_response_is_retried_safely(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let h = id();
    let batch = vec![
        phone.upsert("household", h, 0, household(app.unit_id("V1"), "Hoàng Văn Lâm")),
        phone.upsert("member", id(), 0, member(h, "Hoàng Thị Hoa", 1985, "yes", "yes")),
        phone.upsert("member", id(), 0, json!({ "household_id": h, "full_name": "X" })),
    ];
    let first = phone.push_ok(&batch);
    assert_eq!(first[2]["status"], "rejected");
    // The response was lost: the phone sends the same batch again.
    let (status, again) = phone.push(&batch);
    assert_eq!(status, 200);
    assert_eq!(
        again["summary"],
        json!({ "applied": 0, "duplicate": 3, "conflict": 0, "rejected": 0 })
    );
    for (a, b) in first.iter().zip(again["results"].as_array().unwrap()) {
        assert_eq!(b["status"], "duplicate");
        assert_eq!(b["original_status"], a["status"]);
        assert_eq!(
            (&b["id"], &b["version"], &b["errors"]),
            (&a["id"], &a["version"], &a["errors"])
        );
    }
    let (changes, _) = phone.pull_all(None);
    assert_eq!(changes.len(), 2, "nothing applied twice");
    assert!(changes.iter().all(|c| c["version"] == 1));
    // A retry that adds one new mutation: the old ones are duplicates, the new one applies,
    // even though a later id of this device was processed first.
    let late = json!({ "mutation_id": 100, "type": "member", "id": id(), "op": "upsert", "hlc": phone.tick().to_string(),
        "fields": member(h, "Hoàng Văn Sơn", 2015, "no", "no") });
    let out = phone.push_ok(std::slice::from_ref(&late));
    assert_eq!(out[0]["status"], "applied");
    let mut earlier = phone.upsert("member", id(), 0, member(h, "Hoàng Thị Mai", 2001, "yes", "no"));
    earlier["mutation_id"] = json!(50);
    let out = phone.push_ok(&[earlier, late]);
    assert_eq!(
        (out[0]["status"].as_str(), out[1]["status"].as_str()),
        (Some("applied"), Some("duplicate"))
    );
    app.assert_consistent();
}

fn bad_records_are_rejected_one_by_one(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let (v1, v2, c1) = (app.unit_id("V1"), app.unit_id("V2"), app.unit_id("C1"));
    let good_h = id();
    let other_phone_clock = format!("2026-11-20T08:15:00.123Z/0001/{}", Uuid::new_v4());
    let mut bad_hlc = phone.upsert("household", id(), 0, household(v1, "A"));
    bad_hlc["hlc"] = json!("yesterday");
    let mut foreign_hlc = phone.upsert("household", id(), 0, household(v1, "A"));
    foreign_hlc["hlc"] = json!(other_phone_clock);
    let mut not_uuid = phone.upsert("household", id(), 0, household(v1, "A"));
    not_uuid["id"] = json!("household-1");
    let mut bad_type = phone.upsert("household", id(), 0, household(v1, "A"));
    bad_type["type"] = json!("cow");
    let mut bad_op = phone.upsert("household", id(), 0, household(v1, "A"));
    bad_op["op"] = json!("merge");
    let mutations = vec![
        phone.upsert("household", good_h, 0, household(v1, "Good")), // 0 ok
        not_uuid,                                                    // 1
        bad_type,                                                    // 2
        bad_op,                                                      // 3
        phone.upsert("household", id(), 0, json!({ "village_id": v1 })), // 4 missing head_name
        phone.upsert(
            "household",
            id(),
            0,
            json!({ "village_id": v1, "head_name": "A", "colour": "red" }),
        ), // 5 unknown field
        phone.upsert("member", id(), 0, member(good_h, "Too Old", 1850, "yes", "no")), // 6 out of range
        phone.upsert("member", id(), 0, member(good_h, "Bad Tri", 1990, "maybe", "no")), // 7 bad tri
        phone.upsert("household", id(), 0, household(v2, "Elsewhere")), // 8 outside scope
        phone.upsert("household", id(), 0, household(c1, "Not a village")), // 9 not a village (and outside)
        bad_hlc,                                                     // 10
        foreign_hlc,                                                 // 11
        phone.delete("member", id(), 0),                             // 12 unknown record
        phone.upsert(
            "member",
            id(),
            0,
            member(good_h, "Good Member", 2000, "no", "unknown"),
        ), // 13 ok
    ];
    // Built out of order above: number them in push order.
    let mutations: Vec<Value> = mutations
        .into_iter()
        .map(|mut m| {
            m["mutation_id"] = json!(phone.next_id());
            m
        })
        .collect();
    let (status, body) = phone.push(&mutations);
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(
        body["summary"],
        json!({ "applied": 2, "duplicate": 0, "conflict": 0, "rejected": 12 })
    );
    let expect = |i: usize, field: Option<&str>, code: &str| {
        let r = &results[i];
        assert_eq!(r["status"], "rejected", "#{i}: {r}");
        assert_eq!(r["version"], Value::Null);
        let errors = r["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["code"] == code && field.is_none_or(|f| e["field"] == f)),
            "#{i} should have {field:?}/{code}: {r}"
        );
    };
    assert_eq!(results[0]["status"], "applied");
    expect(1, Some("id"), "invalid_format");
    assert_eq!(results[1]["id"], "household-1", "the id is echoed as sent");
    expect(2, Some("type"), "invalid_value");
    expect(3, Some("op"), "invalid_value");
    expect(4, Some("head_name"), "required");
    expect(5, Some("colour"), "unknown_field");
    expect(6, Some("birth_year"), "out_of_range");
    expect(7, Some("owns_smartphone"), "invalid_value");
    expect(8, Some("village_id"), "forbidden");
    expect(9, Some("village_id"), "invalid_value");
    expect(10, Some("hlc"), "invalid_format");
    expect(11, Some("hlc"), "invalid_value");
    expect(12, None, "not_found");
    assert_eq!(results[13]["status"], "applied");
    let (changes, _) = phone.pull_all(None);
    assert_eq!(changes.len(), 2, "only the good records exist");
    // A member whose existing household is outside the scope is forbidden.
    let neighbour = Phone::login(&app, "v2team", PW);
    let out = neighbour.push_ok(&[neighbour.upsert(
        "member",
        id(),
        0,
        member(good_h, "Intruder", 1990, "no", "no"),
    )]);
    assert_eq!(out[0]["status"], "rejected");
    assert_eq!(out[0]["errors"][0]["code"], "forbidden");
    // So is editing a household of another village, even without moving it.
    let out =
        neighbour.push_ok(&[neighbour.upsert("household", good_h, 1, json!({ "head_name": "Stolen" }))]);
    assert_eq!(out[0]["errors"][0]["code"], "forbidden");
    app.assert_consistent();
}

fn envelope_errors_refuse_the_whole_request(backend: Backend) {
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let v1 = app.unit_id("V1");
    let post = |body: &Value, token: &str| app.post("/api/v1/sync/push", Some(body), Some(token));
    let one = phone.upsert("household", id(), 0, household(v1, "A"));
    // Another device's id.
    assert_error(
        &post(
            &json!({ "device_id": Uuid::new_v4(), "mutations": [one] }),
            &phone.token,
        ),
        403,
        "forbidden",
    );
    // A viewer.
    let viewer = Phone::login(&app, "p1viewer", PW);
    assert_error(
        &post(
            &json!({ "device_id": viewer.device, "mutations": [] }),
            &viewer.token,
        ),
        403,
        "forbidden",
    );
    // Not an envelope.
    assert_error(
        &post(&json!({ "device_id": "phone-1", "mutations": [] }), &phone.token),
        400,
        "bad_request",
    );
    assert_error(
        &post(
            &json!({ "device_id": phone.device, "mutations": {} }),
            &phone.token,
        ),
        400,
        "bad_request",
    );
    assert_error(&post(&json!([1, 2]), &phone.token), 400, "bad_request");
    // Ids not increasing, missing, not positive.
    let a = phone.upsert("household", id(), 0, household(v1, "A"));
    let b = phone.upsert("household", id(), 0, household(v1, "B"));
    let resp = post(
        &json!({ "device_id": phone.device, "mutations": [b, a] }),
        &phone.token,
    );
    assert_error(&resp, 422, "validation_failed");
    assert_eq!(resp.1["error"]["details"][0]["field"], "mutations[1].mutation_id");
    let mut c = phone.upsert("household", id(), 0, household(v1, "C"));
    c["mutation_id"] = json!(-3);
    assert_error(
        &post(
            &json!({ "device_id": phone.device, "mutations": [c] }),
            &phone.token,
        ),
        422,
        "validation_failed",
    );
    // Too many.
    let many: Vec<Value> = (1..=1001).map(|i| json!({ "mutation_id": i })).collect();
    let resp = post(
        &json!({ "device_id": phone.device, "mutations": many }),
        &phone.token,
    );
    assert_error(&resp, 422, "validation_failed");
    // Nothing of a refused request was applied.
    assert!(phone.pull_all(None).0.is_empty());
    app.assert_consistent();
}

fn concurrent_edits_merge_field_by_field(backend: Backend) {
    let app = setup(backend);
    let a = Phone::login(&app, "v1team", PW);
    let b = Phone::login(&app, "c1team", PW);
    let h = id();
    a.push_ok(&[a.upsert("household", h, 0, household(app.unit_id("V1"), "Ma Văn Tùng"))]);
    // Different fields from the same base: both win.
    let r1 = a.push_ok(&[a.upsert("household", h, 1, json!({ "address": "Xóm Trên" }))]);
    let r2 = b.push_ok(&[b.upsert("household", h, 1, json!({ "fixed_broadband": "yes" }))]);
    assert_eq!(
        (r1[0]["status"].as_str(), r2[0]["status"].as_str()),
        (Some("applied"), Some("applied"))
    );
    assert_eq!(r2[0]["conflicts"], json!([]));
    let rec = &a
        .pull_all(None)
        .0
        .into_iter()
        .find(|c| c["id"] == h.to_string())
        .unwrap();
    assert_eq!(
        (
            rec["fields"]["address"].as_str(),
            rec["fields"]["fixed_broadband"].as_str()
        ),
        (Some("Xóm Trên"), Some("yes"))
    );
    let base = rec["version"].as_i64().unwrap();

    // The same field from the same base. The later clock arrives first: the earlier one is a
    // conflict, kept for review, nothing of it applied.
    let early = a.upsert("household", h, base, json!({ "head_name": "Early" }));
    let partial = a.upsert(
        "household",
        h,
        base,
        json!({ "head_name": "Early again", "surveyed_on": "2026-11-01" }),
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    let late = b.upsert(
        "household",
        h,
        base,
        json!({ "head_name": "Late", "address": "Xóm Dưới" }),
    );
    let out = b.push_ok(&[late]);
    assert_eq!(out[0]["status"], "applied");
    let out = a.push_ok(&[early]);
    assert_eq!(out[0]["status"], "conflict");
    assert_eq!(out[0]["conflicts"], json!(["head_name"]));
    assert_eq!(
        out[0]["version"],
        base + 1,
        "the record's version, unchanged by the conflict"
    );
    // Partial loss: applied, with the lost field listed.
    let out = a.push_ok(&[partial]);
    assert_eq!(
        (out[0]["status"].as_str(), &out[0]["conflicts"]),
        (Some("applied"), &json!(["head_name"]))
    );
    let rec = a
        .pull_all(None)
        .0
        .into_iter()
        .find(|c| c["id"] == h.to_string())
        .unwrap();
    assert_eq!(rec["fields"]["head_name"], "Late");
    assert_eq!(rec["fields"]["surveyed_on"], "2026-11-01");

    // The conflicts are listed for the admin: current is the winner, incoming the loser.
    let admin = app.login("p1admin", PW);
    let (status, list) = app.get("/api/v1/conflicts?resolved=false", admin.token());
    assert_eq!(status, 200, "{list}");
    let conflicts = list["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{list}");
    for c in conflicts {
        assert_eq!(
            (c["field"].as_str(), c["current_value"].as_str()),
            (Some("head_name"), Some("Late"))
        );
        assert_eq!(c["record_id"], h.to_string());
        assert_eq!(c["village_id"], app.unit_id("V1").to_string());
        assert_eq!(c["device_id"], a.device.to_string());
        assert_eq!(c["resolved"], false);
        assert!(c["incoming_hlc"].as_str().unwrap() < c["current_hlc"].as_str().unwrap());
    }
    app.assert_consistent();
}

fn later_clock_wins_in_either_arrival_order(backend: Backend) {
    for late_first in [true, false] {
        let app = setup(backend);
        let a = Phone::login(&app, "v1team", PW);
        let b = Phone::login(&app, "c1team", PW);
        let h = id();
        a.push_ok(&[a.upsert("household", h, 0, household(app.unit_id("V1"), "Start"))]);
        let early = a.upsert("household", h, 1, json!({ "head_name": "Early" }));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let late = b.upsert("household", h, 1, json!({ "head_name": "Late" }));
        if late_first {
            b.push_ok(&[late]);
            assert_eq!(a.push_ok(&[early])[0]["status"], "conflict");
        } else {
            a.push_ok(&[early]);
            let out = b.push_ok(&[late]);
            assert_eq!(out[0]["status"], "applied");
            assert_eq!(out[0]["conflicts"], json!([]));
        }
        let rec = a
            .pull_all(None)
            .0
            .into_iter()
            .find(|c| c["id"] == h.to_string())
            .unwrap();
        assert_eq!(rec["fields"]["head_name"], "Late", "late_first={late_first}");
        let admin = app.login("p1admin", PW);
        let (_, list) = app.get("/api/v1/conflicts", admin.token());
        let c = &list["conflicts"][0];
        assert_eq!(
            (c["current_value"].as_str(), c["incoming_value"].as_str()),
            (Some("Late"), Some("Early"))
        );
    }
}

fn deletes_are_tombstones(backend: Backend) {
    let app = setup(backend);
    let a = Phone::login(&app, "v1team", PW);
    let b = Phone::login(&app, "c1team", PW);
    let (h, m) = (id(), id());
    a.push_ok(&[
        a.upsert("household", h, 0, household(app.unit_id("V1"), "Quan Văn Minh")),
        a.upsert("member", m, 0, member(h, "Quan Thị Nga", 1970, "yes", "no")),
    ]);
    let out = a.push_ok(&[a.delete("member", m, 1)]);
    assert_eq!(
        (out[0]["status"].as_str(), out[0]["version"].as_i64()),
        (Some("applied"), Some(2))
    );
    // Deleting again changes nothing.
    assert_eq!(a.push_ok(&[a.delete("member", m, 2)])[0]["version"], 2);
    // An edit from before the delete: conflict, the record stays deleted.
    let out = b.push_ok(&[b.upsert("member", m, 1, json!({ "full_name": "Quan Thị Ngà" }))]);
    assert_eq!(out[0]["status"], "conflict");
    let (changes, _) = b.pull_all(None);
    let tomb = &by_id(&changes, m)[0];
    assert_eq!(tomb["deleted"], true);
    assert_eq!(
        tomb["fields"],
        json!({ "household_id": h }),
        "no personal data in a tombstone"
    );
    // A phone that saw the delete restores the record: its fields over the last ones.
    let out = b.push_ok(&[b.upsert("member", m, 2, json!({ "owns_smartphone": "no" }))]);
    assert_eq!(
        (out[0]["status"].as_str(), out[0]["version"].as_i64()),
        (Some("applied"), Some(3))
    );
    let rec = &by_id(&b.pull_all(None).0, m)[0];
    assert_eq!(rec["deleted"], false);
    assert_eq!(
        (
            rec["fields"]["full_name"].as_str(),
            rec["fields"]["owns_smartphone"].as_str()
        ),
        (Some("Quan Thị Nga"), Some("no"))
    );
    // Versions only go up.
    assert!(rec["version"].as_i64().unwrap() > 2);
    app.assert_consistent();
}

fn members_may_arrive_before_their_household(backend: Backend) {
    let app = setup(backend);
    let a = Phone::login(&app, "v1team", PW);
    let (h, m1, m2) = (id(), id(), id());
    // Member first (same push, before its household) and another in a later push.
    let out = a.push_ok(&[a.upsert("member", m1, 0, member(h, "Triệu Văn Sơn", 1995, "yes", "yes"))]);
    assert_eq!(out[0]["status"], "applied");
    let (seen, cursor) = a.pull_all(None);
    assert!(
        seen.is_empty(),
        "a member without its household is pulled by nobody"
    );
    let out = a.push_ok(&[
        a.upsert("member", m2, 0, member(h, "Triệu Thị Hằng", 1998, "no", "no")),
        a.upsert("household", h, 0, household(app.unit_id("V1"), "Triệu Văn Sơn")),
    ]);
    assert!(out.iter().all(|r| r["status"] == "applied"));
    let (changes, _) = a.pull_all(Some(&cursor));
    let ids: Vec<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for x in [h, m1, m2] {
        assert!(
            ids.contains(&x.to_string().as_str()),
            "{x} attached and pulled: {ids:?}"
        );
    }
    assert_eq!(by_id(&changes, m1)[0]["version"], 2, "attaching is a change");

    // Pushed by someone whose scope does not cover the household's village: a conflict for review.
    let other = Phone::login(&app, "v2team", PW);
    let (h2, m3) = (id(), id());
    other.push_ok(&[other.upsert("member", m3, 0, member(h2, "Nông Văn Lạc", 1980, "yes", "no"))]);
    a.push_ok(&[a.upsert("household", h2, 0, household(app.unit_id("V1"), "Nông Thị Xuân"))]);
    assert!(by_id(&a.pull_all(None).0, m3).is_empty(), "not attached");
    let admin = app.login("p1admin", PW);
    let (_, list) = app.get(
        &format!("/api/v1/conflicts?unit_id={}", app.unit_id("V1")),
        admin.token(),
    );
    let c = list["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["record_id"] == m3.to_string())
        .unwrap()
        .clone();
    assert_eq!(
        (c["field"].as_str(), c["incoming_value"].as_str()),
        (Some("household_id"), Some(h2.to_string().as_str()))
    );
    let (status, resolved) = app.post(
        &format!("/api/v1/conflicts/{}/resolve", c["id"].as_str().unwrap()),
        Some(&json!({ "choose": "incoming" })),
        admin.token(),
    );
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["resolved"], true);
    assert_eq!(
        by_id(&a.pull_all(None).0, m3).len(),
        1,
        "attached by the admin's decision"
    );
    app.assert_consistent();
}

fn a_moved_household_takes_its_members(backend: Backend) {
    let app = setup(backend);
    let commune = Phone::login(&app, "c1team", PW);
    let v1_phone = Phone::login(&app, "v1team", PW);
    let v2_phone = Phone::login(&app, "v2team", PW);
    let (h, m) = (id(), id());
    commune.push_ok(&[
        commune.upsert("household", h, 0, household(app.unit_id("V1"), "Lương Văn Hùng")),
        commune.upsert("member", m, 0, member(h, "Lương Thị Thu", 2000, "yes", "yes")),
    ]);
    let (_, v1_cursor) = v1_phone.pull_all(None);
    let out =
        commune.push_ok(&[commune.upsert("household", h, 1, json!({ "village_id": app.unit_id("V2") }))]);
    assert_eq!(out[0]["status"], "applied");
    // The old village learns both left, without their personal data.
    let (gone, _) = v1_phone.pull_all(Some(&v1_cursor));
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone.iter().all(|c| c["deleted"] == true));
    assert_eq!(
        by_id(&gone, h)[0]["fields"],
        json!({ "village_id": app.unit_id("V2") })
    );
    // The new village gets them whole.
    let (arrived, _) = v2_phone.pull_all(None);
    assert_eq!(arrived.len(), 2);
    assert!(arrived.iter().all(|c| c["deleted"] == false));
    assert_eq!(by_id(&arrived, m)[0]["fields"]["full_name"], "Lương Thị Thu");
    app.assert_consistent();
}

fn conflicts_are_resolved_as_new_versions(backend: Backend) {
    let app = setup(backend);
    let a = Phone::login(&app, "v1team", PW);
    let b = Phone::login(&app, "c1team", PW);
    let h = id();
    a.push_ok(&[a.upsert("household", h, 0, household(app.unit_id("V1"), "Start"))]);
    let make_conflict = |a: &Phone, b: &Phone, base: i64, n: usize| {
        let early = a.upsert("household", h, base, json!({ "address": format!("early {n}") }));
        std::thread::sleep(std::time::Duration::from_millis(3));
        b.push_ok(&[b.upsert("household", h, base, json!({ "address": format!("late {n}") }))]);
        a.push_ok(&[early]);
    };
    make_conflict(&a, &b, 1, 1);
    let admin = app.login("p1admin", PW);
    let token = admin.token().unwrap().to_owned();
    let conflict_id = |n: usize| {
        let (_, list) = app.get("/api/v1/conflicts?resolved=false", Some(&token));
        list["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["incoming_value"] == format!("early {n}"))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let record = |p: &Phone| by_id(&p.pull_all(None).0, h)[0].clone();
    let v = record(&a)["version"].as_i64().unwrap();

    let c1 = conflict_id(1);
    let path = format!("/api/v1/conflicts/{c1}/resolve");
    // Only admins in scope; a bad choice or value is refused.
    assert_error(
        &app.post(&path, Some(&json!({ "choose": "incoming" })), Some(&a.token)),
        403,
        "forbidden",
    );
    assert_error(
        &app.post(&path, Some(&json!({ "choose": "value" })), Some(&token)),
        422,
        "validation_failed",
    );
    assert_error(
        &app.post(&path, Some(&json!({ "choose": "maybe" })), Some(&token)),
        400,
        "bad_request",
    );
    assert_error(
        &app.post(
            "/api/v1/conflicts/nope/resolve",
            Some(&json!({ "choose": "current" })),
            Some(&token),
        ),
        404,
        "not_found",
    );
    // Choosing current changes no field but is a new version.
    let (status, body) = app.post(&path, Some(&json!({ "choose": "current" })), Some(&token));
    assert_eq!(status, 200, "{body}");
    let rec = record(&a);
    assert_eq!(
        (rec["version"].as_i64(), rec["fields"]["address"].as_str()),
        (Some(v + 1), Some("late 1"))
    );
    assert_error(
        &app.post(&path, Some(&json!({ "choose": "current" })), Some(&token)),
        409,
        "conflict",
    );

    make_conflict(&a, &b, v + 1, 2);
    let (status, _) = app.post(
        &format!("/api/v1/conflicts/{}/resolve", conflict_id(2)),
        Some(&json!({ "choose": "incoming" })),
        Some(&token),
    );
    assert_eq!(status, 200);
    assert_eq!(record(&a)["fields"]["address"], "early 2");

    let v = record(&a)["version"].as_i64().unwrap();
    make_conflict(&a, &b, v, 3);
    let path = format!("/api/v1/conflicts/{}/resolve", conflict_id(3));
    assert_error(
        &app.post(
            &path,
            Some(&json!({ "choose": "value", "value": "" })),
            Some(&token),
        ),
        422,
        "validation_failed",
    );
    let (status, _) = app.post(
        &path,
        Some(&json!({ "choose": "value", "value": "  Xóm Giữa " })),
        Some(&token),
    );
    assert_eq!(status, 200);
    assert_eq!(record(&a)["fields"]["address"], "Xóm Giữa");
    let (_, list) = app.get("/api/v1/conflicts?resolved=true", Some(&token));
    assert_eq!(list["conflicts"].as_array().unwrap().len(), 3);
    let (_, list) = app.get("/api/v1/conflicts?resolved=false", Some(&token));
    assert!(list["conflicts"].as_array().unwrap().is_empty());
    assert_error(
        &app.get(
            &format!("/api/v1/conflicts?unit_id={}", app.unit_id("P2")),
            Some(&token),
        ),
        403,
        "forbidden",
    );
    assert_error(&app.get("/api/v1/conflicts", Some(&a.token)), 403, "forbidden");
    app.assert_consistent();
}

fn clocks_far_ahead_are_clamped(backend: Backend) {
    let app = setup(backend);
    let a = Phone::login(&app, "v1team", PW);
    let b = Phone::login(&app, "c1team", PW);
    let h = id();
    a.push_ok(&[a.upsert("household", h, 0, household(app.unit_id("V1"), "Start"))]);
    // A phone whose clock is a year ahead edits first...
    let mut ahead = a.upsert("household", h, 1, json!({ "head_name": "From the future" }));
    ahead["hlc"] = json!(format!("2027-12-01T00:00:00.000Z/0000/{}", a.device));
    a.push_ok(&[ahead]);
    // ...then, seconds (not a year) later, a concurrent edit from the same base wins.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut late = b.upsert("household", h, 1, json!({ "head_name": "Now" }));
    let skew_later = hamlet_shared::Hlc::new(b.tick().wall_ms + 301_000, 0, b.device);
    late["hlc"] = json!(skew_later.to_string());
    let out = b.push_ok(&[late]);
    assert_eq!(out[0]["status"], "applied", "{out:?}");
    assert_eq!(by_id(&a.pull_all(None).0, h)[0]["fields"]["head_name"], "Now");
    app.assert_consistent();
}

fn gzip_request_bodies_are_accepted(backend: Backend) {
    use std::io::Write;
    let app = setup(backend);
    let phone = Phone::login(&app, "v1team", PW);
    let body = json!({ "device_id": phone.device, "mutations": [phone.upsert("household", id(), 0, household(app.unit_id("V1"), "Nén"))] });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let res = TestApp::agent()
        .post(&app.url("/api/v1/sync/push"))
        .header("Authorization", &format!("Bearer {}", phone.token))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .send(&gz.finish().unwrap()[..])
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// A push's changes sit in the feed as one row per village and record type; pages may end
/// inside such a row, and walking them still gives every record exactly once, in order.
fn pages_may_end_inside_one_push(backend: Backend) {
    let app = setup(backend);
    let v1 = app.unit_id("V1");
    let phone = Phone::login(&app, "v1team", PW);
    let households: Vec<Uuid> = (0..7).map(|_| id()).collect();
    let members: Vec<Uuid> = (0..3).map(|_| id()).collect();
    let mut mutations: Vec<Value> = households
        .iter()
        .map(|&h| phone.upsert("household", h, 0, household(v1, "Nhà")))
        .collect();
    // The same record twice in one push is listed (and pulled) once.
    mutations.push(phone.upsert("household", households[1], 0, json!({ "head_name": "Nhà Hai" })));
    mutations.extend(members.iter().map(|&m| {
        phone.upsert(
            "member",
            m,
            0,
            member(households[0], "Lò Văn Pọm", 1988, "yes", "yes"),
        )
    }));
    phone.push_ok(&mutations);

    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let (status, page) = phone.pull_page(cursor.as_deref(), 3);
        assert_eq!(status, 200, "{page}");
        let changes = page["changes"].as_array().unwrap();
        sizes.push((changes.len(), page["has_more"] == true));
        seen.extend(changes.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        cursor = Some(page["cursor"].as_str().unwrap().to_owned());
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(sizes, [(3, true), (3, true), (3, true), (1, false)]);
    let expected: Vec<String> = households.iter().chain(&members).map(Uuid::to_string).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "each record once: {seen:?}");
    assert_eq!(
        seen[..7].iter().collect::<std::collections::BTreeSet<_>>().len(),
        7
    );
    assert!(
        seen[7..].iter().all(|m| expected[7..].contains(m)),
        "members after households"
    );
    let first = phone.pull_all(None).0;
    let renamed = &by_id(&first, households[1])[0];
    assert_eq!(renamed["fields"]["head_name"], "Nhà Hai");

    // Only what changes next, from the last cursor, one record per page.
    let newer = id();
    phone.push_ok(&[
        phone.upsert("household", households[2], 1, json!({ "head_name": "Nhà Ba" })),
        phone.upsert("household", newer, 0, household(v1, "Nhà Mới")),
    ]);
    let (status, page) = phone.pull_page(cursor.as_deref(), 1);
    assert_eq!(status, 200);
    assert_eq!(page["changes"][0]["id"], households[2].to_string());
    assert_eq!(page["has_more"], true);
    let (_, last) = phone.pull_page(page["cursor"].as_str(), 1);
    assert_eq!(last["changes"][0]["id"], newer.to_string());
    assert_eq!(last["has_more"], false);
    let (_, empty) = phone.pull_page(last["cursor"].as_str(), 1);
    assert_eq!(empty["changes"], json!([]));
    app.assert_consistent();
}

/// Databases made before the compact sync format: their idempotency answers, unfolded counter
/// deltas and change feed rows are carried over by the migrations (000005 compact sync, 000006
/// deltas grouped by metric), and back by their down steps.
fn old_rows_survive_the_compact_sync_migration(backend: Backend) {
    use diesel::connection::SimpleConnection;
    use diesel::{QueryableByName, RunQueryDsl, sql_types::Text};
    use diesel_migrations::MigrationHarness;
    use hamlet_server::db::{self, DbConn};
    #[derive(QueryableByName)]
    struct One {
        #[diesel(sql_type = Text)]
        v: String,
    }
    fn texts(conn: &mut DbConn, sql: &str) -> Vec<String> {
        hamlet_server::per_backend!(conn, |c| diesel::sql_query(sql).load::<One>(c))
            .unwrap()
            .into_iter()
            .map(|o| o.v)
            .collect()
    }
    fn step(conn: &mut DbConn, up: bool) {
        let (pg, lite) = (db::PG_MIGRATIONS, db::SQLITE_MIGRATIONS);
        match (conn, up) {
            (DbConn::Pg(c), true) => drop(c.run_next_migration(pg).unwrap()),
            (DbConn::Pg(c), false) => drop(c.revert_last_migration(pg).unwrap()),
            (DbConn::Sqlite(c), true) => drop(c.run_next_migration(lite).unwrap()),
            (DbConn::Sqlite(c), false) => drop(c.revert_last_migration(lite).unwrap()),
        }
    }
    let test_db = TestDb::new(backend);
    let pool = test_db.pool();
    let mut conn = pool.get().unwrap();
    // Back to before 000005 (the two newest migrations).
    step(&mut conn, false);
    step(&mut conn, false);
    let village = "01000000-0000-7000-8000-000000000001";
    let record = "01000000-0000-7000-8000-0000000000aa";
    hamlet_server::per_backend!(&mut *conn, |c| c.batch_execute(&format!(
        "INSERT INTO sync_mutations VALUES
           ('dev', 1, 'household', '{record}', 'applied', 1, '{{\"id\":\"{record}\",\"conflicts\":[],\"errors\":[]}}', 5),
           ('dev', 2, 'member', 'x', 'rejected', NULL, '{{\"id\":null,\"conflicts\":[],\"errors\":[{{\"field\":\"id\",\"code\":\"invalid_value\",\"message\":\"bad\"}}]}}', 5);
         INSERT INTO tally_deltas (village_id, metric, birth_year, yes, no, unknown) VALUES
           ('{village}', 'households', 0, 1, 0, 0),
           ('{village}', 'owns_smartphone', 1990, 1, 0, 0),
           ('{village}', 'owns_smartphone', 1990, 0, 1, 0);
         INSERT INTO sync_changes (village_id, record_type, record_id, version, created_us) VALUES
           ('{village}', 'household', '{record}', 1, 5);"
    )))
    .unwrap();

    step(&mut conn, true);
    step(&mut conn, true);
    // Deltas grouped by metric, each metric named once.
    let grouped: Value =
        serde_json::from_str(&texts(&mut conn, "SELECT counts AS v FROM tally_deltas")[0]).unwrap();
    let mut years = grouped["owns_smartphone"].as_array().unwrap().clone();
    years.sort_by_key(|k| k.to_string());
    assert_eq!(years, [json!([1990, 0, 1, 0]), json!([1990, 1, 0, 0])]);
    assert_eq!(grouped["households"], json!([[0, 1, 0, 0]]));
    let results = texts(
        &mut conn,
        "SELECT results AS v FROM sync_batches ORDER BY last_mutation_id",
    );
    let results: Vec<Value> = results.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0],
        json!([{ "m": 1, "s": "applied", "v": 1, "o": { "id": record, "conflicts": [], "errors": [] } }])
    );
    assert_eq!(results[1][0]["s"], "rejected");
    assert_eq!(results[1][0]["v"], Value::Null);
    assert_eq!(results[1][0]["o"]["errors"][0]["code"], "invalid_value");
    let counted = db::tallies::all_villages(&mut conn).unwrap();
    let count = |metric: &str, year: i32| {
        counted
            .iter()
            .find(|(k, _)| k.unit == village && k.metric.as_str() == metric && k.birth_year == year)
            .map(|(_, c)| (c.yes, c.no, c.unknown))
    };
    assert_eq!(count("households", 0), Some((1, 0, 0)));
    assert_eq!(count("owns_smartphone", 1990), Some((1, 1, 0)));
    assert_eq!(
        texts(&mut conn, "SELECT record_ids AS v FROM sync_changes"),
        [record]
    );

    // A delta this binary writes reads back, and the down step of 000006 returns it to the list
    // form 000005's reads and down step know.
    use hamlet_server::aggregates::tallies::{Count, Metric, Tally, TallyKey};
    let mut delta = Tally::default();
    let metric = Metric::parse("vneid_level2").unwrap();
    delta.add(
        village,
        metric,
        2001,
        Count {
            yes: 2,
            no: 0,
            unknown: 1,
        },
    );
    db::tallies::add_to_villages(&mut conn, &delta).unwrap();
    let before = db::tallies::all_villages(&mut conn).unwrap();
    let key = TallyKey {
        unit: village,
        metric,
        birth_year: 2001,
    };
    assert_eq!(
        before.get(key),
        Count {
            yes: 2,
            no: 0,
            unknown: 1
        }
    );
    step(&mut conn, false);
    for counts in texts(&mut conn, "SELECT counts AS v FROM tally_deltas") {
        assert!(counts.trim_start().starts_with("[["), "{counts}");
    }
    assert_eq!(db::tallies::all_villages(&mut conn).unwrap(), before);
    // And back: one row per mutation, per counter key and per record again.
    step(&mut conn, false);
    let outcomes = texts(
        &mut conn,
        "SELECT outcome AS v FROM sync_mutations ORDER BY mutation_id",
    );
    let first: Value = serde_json::from_str(&outcomes[0]).unwrap();
    assert_eq!(first["id"], record);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(texts(&mut conn, "SELECT metric AS v FROM tally_deltas").len(), 4);
    assert_eq!(
        texts(&mut conn, "SELECT record_id AS v FROM sync_changes"),
        [record]
    );
    step(&mut conn, true);
    step(&mut conn, true);
    assert_eq!(db::tallies::all_villages(&mut conn).unwrap(), before);
}

backend_tests!(
    push_then_pull,
    old_rows_survive_the_compact_sync_migration,
    pages_may_end_inside_one_push,
    lost_response_is_retried_safely,
    bad_records_are_rejected_one_by_one,
    envelope_errors_refuse_the_whole_request,
    concurrent_edits_merge_field_by_field,
    later_clock_wins_in_either_arrival_order,
    deletes_are_tombstones,
    members_may_arrive_before_their_household,
    a_moved_household_takes_its_members,
    conflicts_are_resolved_as_new_versions,
    clocks_far_ahead_are_clamped,
    gzip_request_bodies_are_accepted,
    pulls_are_complete_while_others_push,
    concurrent_writers_wait_instead_of_failing,
    the_load_generator_finds_what_it_sent,
);

/// `hamlet-load`, small: its own commune, replayed batches, members before their household,
/// deletes, concurrent edits, pulls, and the check of every pulled record and aggregate (exit 0
/// only when every number matches), with the raw ceiling measured on the same database.
fn the_load_generator_finds_what_it_sent(backend: Backend) {
    let app = setup(backend);
    let out = std::process::Command::new(hamlet_load_bin())
        .args(["--server", &app.base, "--admin", "p1admin", "--parent"])
        .arg(app.unit_id("P1").to_string())
        .args([
            "--devices",
            "4",
            "--villages",
            "2",
            "--households",
            "60",
            "--batch",
            "25",
        ])
        .args([
            "--duplicates",
            "0.3",
            "--out-of-order",
            "0.3",
            "--conflicts",
            "0.2",
            "--deletes",
            "0.05",
        ])
        .args(["--quiet", "--settle-secs", "0", "--database-url", &app.db.url])
        .env("HAMLET_LOAD_PASSWORD", PW)
        .output()
        .expect("hamlet-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("check: every pulled record and every aggregate"),
        "{stdout}"
    );
    assert!(
        stdout.contains("of the INSERT ... ON CONFLICT ceiling"),
        "{stdout}"
    );
    assert!(stdout.contains("conflicts listed for review"), "{stdout}");
    app.assert_consistent();
}

/// Pulls running while other phones push see every record, none skipped.
fn pulls_are_complete_while_others_push(backend: Backend) {
    let app = setup(backend);
    let v1 = app.unit_id("V1");
    let reader = Phone::login(&app, "c1team", PW);
    let pushers: Vec<Phone> = ["v1team", "c1team"]
        .iter()
        .map(|u| Phone::login(&app, u, PW))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (pushed, seen) = std::thread::scope(|s| {
        let workers: Vec<_> = pushers
            .into_iter()
            .map(|p| {
                s.spawn(move || {
                    let mut ids = Vec::new();
                    for _ in 0..15 {
                        let batch: Vec<Value> = (0..4)
                            .map(|_| {
                                let h = id();
                                ids.push(h);
                                p.upsert("household", h, 0, household(v1, "Concurrent"))
                            })
                            .collect();
                        assert!(p.push_ok(&batch).iter().all(|r| r["status"] == "applied"));
                    }
                    ids
                })
            })
            .collect();
        let done = &done;
        let reading = s.spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let (changes, next) = reader.pull_all(cursor.as_deref());
                seen.extend(changes.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
                cursor = Some(next);
                if finished {
                    return seen;
                }
            }
        });
        let pushed: Vec<Uuid> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (pushed, reading.join().unwrap())
    });
    assert_eq!(pushed.len(), 120);
    let missing: Vec<_> = pushed.iter().filter(|h| !seen.contains(&h.to_string())).collect();
    assert!(
        missing.is_empty(),
        "pulls skipped {} records: {missing:?}",
        missing.len()
    );
    app.assert_consistent();
}

/// PostgreSQL hands out change sequence numbers at insert time, so a transaction that commits
/// late has a smaller number than one that committed before it. A pull between the two commits
/// must not move its cursor past the late one, nor tell the phone it has everything.
#[test]
fn postgres_pull_never_skips_a_change_committed_late() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let app = setup(Backend::Postgres);
    let v1 = app.unit_id("V1");
    let phone = Phone::login(&app, "v1team", PW);
    let (_, start) = phone.pull_all(None);

    // A writer that opens its transaction, writes a household and its change, and waits.
    let held = id();
    let mut slow = PgConnection::establish(&app.db.url).unwrap();
    diesel::sql_query("BEGIN").execute(&mut slow).unwrap();
    diesel::sql_query(format!(
        "INSERT INTO households (id, village_id, head_name, fixed_broadband, version, clocks, created_us, updated_us) \
         VALUES ('{held}', '{v1}', 'Slow', 'unknown', 1, '{{}}', 0, 0)"
    ))
    .execute(&mut slow)
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO sync_changes (village_id, record_type, record_ids, created_us) VALUES ('{v1}', 'household', '{held}', 0)"
    ))
    .execute(&mut slow)
    .unwrap();

    // Meanwhile a push commits (a later sequence number), and the phone pulls.
    let fast = id();
    phone.push_ok(&[phone.upsert("household", fast, 0, household(v1, "Fast"))]);
    let (status, page) = phone.pull_page(Some(&start), 500);
    assert_eq!(status, 200, "{page}");
    let first: Vec<Value> = page["changes"].as_array().cloned().unwrap_or_default();
    assert!(by_id(&first, held).is_empty(), "uncommitted work is invisible");
    assert_eq!(
        page["has_more"], true,
        "the fast change waits behind the open transaction: the phone must come back"
    );
    let cursor = page["cursor"].as_str().unwrap().to_owned();

    diesel::sql_query("COMMIT").execute(&mut slow).unwrap();
    let (second, _) = phone.pull_all(Some(&cursor));
    let all: Vec<Value> = first.into_iter().chain(second).collect();
    assert_eq!(
        by_id(&all, held).len(),
        1,
        "the late commit is pulled, not skipped"
    );
    assert_eq!(by_id(&all, fast).len(), 1);
}

/// Logins, refreshes and pushes from many phones at once all succeed: writers wait for each
/// other instead of failing (on SQLite, a deferred read-then-write transaction would get
/// SQLITE_BUSY at once when another connection wrote in between).
fn concurrent_writers_wait_instead_of_failing(backend: Backend) {
    let app = setup(backend);
    let v1 = app.unit_id("V1");
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for round in 0..4 {
                    let phone = Phone::login(&app, "v1team", PW);
                    let pair = app.api.refresh(&phone.refresh).expect("refresh");
                    assert!(!pair.access_token.is_empty());
                    let h = id();
                    let out = phone.push_ok(&[
                        phone.upsert("household", h, 0, household(v1, &format!("Round {round}"))),
                        phone.upsert("member", id(), 0, member(h, "M", 1990, "yes", "no")),
                    ]);
                    assert!(out.iter().all(|r| r["status"] == "applied"), "{out:?}");
                }
            });
        }
    });
    let reader = Phone::login(&app, "v1team", PW);
    assert_eq!(reader.pull_all(None).0.len(), 6 * 4 * 2);
    app.assert_consistent();
}
