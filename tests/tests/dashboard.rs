//! The web dashboard, driven in Debian's headless Chromium through chromedriver (installed by
//! `scripts/browser-up.sh`): log in, open the country, sort children, drill to a village,
//! download a CSV, resolve a conflict, revoke a device, a viewer's suppressed cells, a form
//! without its CSRF token refused. Plus the cookie and CSRF rules over plain HTTP.
//!
//! With `HAMLET_SCREENSHOTS_DIR` set (see `scripts/screenshots.sh`), the browser test also
//! writes PNGs of the main pages there.

use hamlet_shared::{Role, UnitId};
use hamlet_tests::webdriver::Browser;
use hamlet_tests::*;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const PW: &str = "a-good-long-password";

/// Phones of the seeded teams.
struct Seeded {
    v1: Phone,
    v2: Phone,
    v3: Phone,
    v4: Phone,
    conflict_household: Uuid,
}

fn setup(backend: Backend) -> (TestApp, Seeded) {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    app.add_user("p1viewer", PW, Role::Viewer, &["P1"]);
    app.add_user("v1team", PW, Role::Enumerator, &["V1"]);
    app.add_user("v2team", PW, Role::Enumerator, &["V2"]);
    app.add_user("c2team", PW, Role::Enumerator, &["C2"]);
    app.add_user("v4team", PW, Role::Enumerator, &["V4"]);
    let v1 = Phone::login(&app, "v1team", PW);
    let v1b = Phone::login(&app, "v1team", PW);
    let v2 = Phone::login(&app, "v2team", PW);
    let v3 = Phone::login(&app, "c2team", PW);
    let v4 = Phone::login(&app, "v4team", PW);

    // V1: six households, most people with a smartphone, half the adults with an account.
    let mut batch = Vec::new();
    let first = Uuid::now_v7();
    for n in 0..6 {
        let h = if n == 0 { first } else { Uuid::now_v7() };
        batch.push(v1.upsert(
            "household",
            h,
            0,
            household(app.unit_id("V1"), &format!("Hộ Nà Lầu {n}")),
        ));
        let phone = if n < 5 { "yes" } else { "no" };
        let account = if n % 2 == 0 { "yes" } else { "no" };
        batch.push(v1.upsert(
            "member",
            Uuid::now_v7(),
            0,
            member(h, &format!("Lò Văn Ánh {n}"), 1980, phone, account),
        ));
    }
    v1.push_ok(&batch);
    // V2: two households only (a small cell for viewers), names with diacritics.
    let mut batch = Vec::new();
    for name in ["Hoàng Thị Lụa", "Nông Đức Mạnh"] {
        let h = Uuid::now_v7();
        batch.push(v2.upsert("household", h, 0, household(app.unit_id("V2"), name)));
        batch.push(v2.upsert("member", Uuid::now_v7(), 0, member(h, name, 1990, "yes", "yes")));
    }
    v2.push_ok(&batch);
    // V3 (commune C2): far behind, one smartphone in five.
    let mut batch = Vec::new();
    for n in 0..5 {
        let h = Uuid::now_v7();
        batch.push(v3.upsert(
            "household",
            h,
            0,
            household(app.unit_id("V3"), &format!("Hộ Bản Tấng {n}")),
        ));
        let yes = if n == 0 { "yes" } else { "no" };
        batch.push(v3.upsert(
            "member",
            Uuid::now_v7(),
            0,
            member(h, &format!("Ma Thị Én {n}"), 1975, yes, yes),
        ));
    }
    v3.push_ok(&batch);

    // A conflict in V1: two phones change the same head's name from the same version; the later
    // clock wins, the earlier one is kept for review.
    let early = v1b.upsert("household", first, 1, json!({ "head_name": "Tên Sớm" }));
    std::thread::sleep(Duration::from_millis(5));
    v1.push_ok(&[v1.upsert("household", first, 1, json!({ "head_name": "Tên Muộn" }))]);
    let out = v1b.push_ok(&[early]);
    assert_eq!(out[0]["status"], "conflict", "{out:?}");
    // And another on the address.
    let early = v1b.upsert("household", first, 2, json!({ "address": "Xóm Sớm" }));
    std::thread::sleep(Duration::from_millis(5));
    v1.push_ok(&[v1.upsert("household", first, 2, json!({ "address": "Xóm Muộn" }))]);
    let out = v1b.push_ok(&[early]);
    assert_eq!(out[0]["status"], "conflict", "{out:?}");
    (
        app,
        Seeded {
            v1,
            v2,
            v3,
            v4,
            conflict_household: first,
        },
    )
}

fn screenshot(browser: &mut Browser, name: &str) {
    if let Ok(dir) = std::env::var("HAMLET_SCREENSHOTS_DIR") {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        browser.execute("window.scrollTo(0, 0)", json!([]));
        std::fs::write(&path, browser.screenshot()).expect("write screenshot");
    }
}

fn log_in(browser: &mut Browser, app: &TestApp, user: &str) {
    browser.goto(&app.url("/dashboard"));
    assert!(browser.url().ends_with("/dashboard/login"), "{}", browser.url());
    let u = browser.find("#username");
    browser.type_into(&u, user);
    let p = browser.find("#password");
    browser.type_into(&p, PW);
    let submit = browser.find("#login-submit");
    browser.click_nav(&submit);
}

/// Names of the children table's rows, top to bottom.
fn child_rows(browser: &mut Browser) -> Vec<String> {
    browser
        .find_all("#children-table tbody tr th a")
        .iter()
        .map(|e| browser.text(e))
        .collect()
}

fn push_status(phone: &Phone, village: UnitId) -> u16 {
    phone
        .push(&[phone.upsert("household", Uuid::now_v7(), 0, household(village, "Kiểm tra"))])
        .0
}

fn dashboard_in_a_browser(backend: Backend) {
    let started = std::time::Instant::now();
    let (app, seeded) = setup(backend);
    let vn = app.unit_id("VN");
    let p1 = app.unit_id("P1");
    let mut browser = Browser::start(1280, 1400);

    // Log in: Vietnamese by default, keyboard reaches the skip link first.
    browser.goto(&app.url("/dashboard/login"));
    screenshot(&mut browser, "login");
    assert_eq!(
        browser.execute("return document.documentElement.lang", json!([])),
        "vi"
    );
    browser.keys("\u{E004}");
    assert_eq!(
        browser.execute("return document.activeElement.className", json!([])),
        "skip"
    );
    let labels = browser.execute(
        "return [...document.querySelectorAll('input:not([type=hidden])')].every(i => i.labels.length > 0)",
        json!([]),
    );
    assert_eq!(labels, true, "every input has a label");
    log_in(&mut browser, &app, "root");
    browser.wait_url(&format!("/dashboard/units/{vn}"), Duration::from_secs(10));
    let cookies = browser.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "hamlet_session")
        .expect("session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["secure"], false, "plain HTTP on the loopback: {session}");

    // The country: counts, a bar per indicator, target lines at 80%.
    let h1 = browser.find("h1");
    assert!(browser.text(&h1).contains("Việt Nam"));
    let households = browser.find("#households");
    assert_eq!(browser.text(&households), "13");
    assert_eq!(browser.find_all("#indicators tbody tr").len(), 9);
    assert_eq!(browser.find_all("#indicators svg.bar").len(), 9);
    assert_eq!(
        browser.find_all("#indicators line.target").len(),
        3,
        "three national targets"
    );
    let target = browser.find("#indicators tr[data-key=population_with_smartphone] line.target");
    assert_eq!(
        browser.attribute(&target, "x1").as_deref(),
        Some("128.0"),
        "80% of 160 px"
    );
    assert!(browser.source().contains("Mục tiêu 80,0"));

    // Drill to the province, sort its children by smartphones: the commune behind comes first.
    let link = browser.find(&format!("#children-table tr[data-unit=\"{p1}\"] a"));
    browser.click_nav(&link);
    assert!(browser.url().ends_with(&format!("/dashboard/units/{p1}")));
    assert_eq!(
        child_rows(&mut browser),
        ["Huyện Na Hang", "Xã Thượng Lâm"],
        "by name"
    );
    let sort = browser.find("a.sortlink[data-sort=population_with_smartphone]");
    browser.click_nav(&sort);
    assert_eq!(
        child_rows(&mut browser),
        ["Xã Thượng Lâm", "Huyện Na Hang"],
        "furthest behind first"
    );
    let th = browser.find("#children-table th[aria-sort]");
    assert_eq!(browser.attribute(&th, "aria-sort").as_deref(), Some("ascending"));
    screenshot(&mut browser, "overview");
    let sort = browser.find("a.sortlink[data-sort=population_with_smartphone]");
    browser.click_nav(&sort);
    assert_eq!(
        child_rows(&mut browser),
        ["Huyện Na Hang", "Xã Thượng Lâm"],
        "descending"
    );
    // The same sort from the form, by keyboard-reachable controls.
    browser.goto(&app.url(&format!(
        "/dashboard/units/{p1}?sort=adults_with_transaction_account&dir=asc"
    )));
    assert_eq!(child_rows(&mut browser), ["Xã Thượng Lâm", "Huyện Na Hang"]);

    // Down to a village through the table links; the breadcrumb shows the whole path.
    for name in ["Huyện Na Hang", "Xã Nà Hang", "Thôn Nà Lầu"] {
        let links = browser.find_all("#children-table tbody a.child");
        let mut found = None;
        for l in links {
            if browser.text(&l) == name {
                found = Some(l);
            }
        }
        let l = found.unwrap_or_else(|| panic!("no child {name}"));
        browser.click_nav(&l);
    }
    assert!(
        browser
            .url()
            .ends_with(&format!("/dashboard/units/{}", app.unit_id("V1")))
    );
    let crumbs: Vec<String> = browser
        .find_all(".crumbs li")
        .iter()
        .map(|e| browser.text(e))
        .collect();
    assert_eq!(
        crumbs
            .iter()
            .map(|c| c.trim_start_matches('›').trim())
            .collect::<Vec<_>>(),
        [
            "Việt Nam",
            "Tỉnh Tuyên Quang",
            "Huyện Na Hang",
            "Xã Nà Hang",
            "Thôn Nà Lầu"
        ]
    );
    let households = browser.find("#households");
    assert_eq!(browser.text(&households), "6");
    assert!(
        browser.find_all("#children-table").is_empty(),
        "a village has no children"
    );

    // CSV download of the current unit.
    browser.goto(&app.url(&format!("/dashboard/units/{p1}")));
    let csv_button = browser.find("#export-csv");
    browser.click(&csv_button);
    let path = browser.wait_download(".csv", Duration::from_secs(20));
    let text = std::fs::read_to_string(&path).expect("CSV is UTF-8");
    assert!(
        text.starts_with("unit_id,code,name,level,path,households,members,"),
        "{text}"
    );
    let v1_row = text.lines().find(|l| l.contains(",V1,")).expect("a row for V1");
    assert!(
        v1_row.contains("Thôn Nà Lầu") && v1_row.contains(",6,6,"),
        "{v1_row}"
    );

    // Conflicts: side by side, take the incoming value.
    browser.goto(&app.url(&format!("/dashboard/units/{vn}/conflicts")));
    assert_eq!(browser.find_all("article.conflict").len(), 2);
    let current = browser.find("article[data-field=head_name] .value.current");
    assert_eq!(browser.text(&current), "Tên Muộn");
    let incoming = browser.find("article[data-field=head_name] .value.incoming");
    assert_eq!(browser.text(&incoming), "Tên Sớm");
    screenshot(&mut browser, "conflicts");
    let take = browser.find("article[data-field=head_name] button.take");
    browser.click_nav(&take);
    assert!(browser.url().contains("done=resolved"), "{}", browser.url());
    assert_eq!(browser.find_all("article.conflict").len(), 1);
    // The address gets a value of the admin's own.
    let other = browser.find("article[data-field=address] input[name=value]");
    browser.type_into(&other, "Xóm Giữa");
    let set = browser.find("article[data-field=address] button.set");
    browser.click_nav(&set);
    assert!(browser.find_all("article.conflict").is_empty());
    let (changes, _) = seeded.v1.pull_all(None);
    let head = changes
        .iter()
        .find(|c| c["id"] == seeded.conflict_household.to_string())
        .expect("household pulled");
    assert_eq!(
        head["fields"]["head_name"], "Tên Sớm",
        "the resolution is a new version phones pull"
    );
    assert_eq!(head["fields"]["address"], "Xóm Giữa");

    // Team activity: the V4 phone never synced, so V4 is highlighted; revoke the V2 phone.
    browser.goto(&app.url(&format!("/dashboard/units/{vn}/activity?days=7")));
    let stale = browser.find("#stale-villages");
    let stale_text = browser.text(&stale);
    assert!(stale_text.contains("Bản Nà Mỏ"), "{stale_text}");
    assert!(
        !stale_text.contains("Thôn Nà Lầu"),
        "V1 synced today: {stale_text}"
    );
    let v4_row = browser.find(&format!("#devices tr[data-device=\"{}\"]", seeded.v4.device));
    assert_eq!(browser.attribute(&v4_row, "class").as_deref(), Some("stale"));
    assert_eq!(
        browser.find_all("#devices tr.stale").len(),
        1,
        "only phones are expected to sync, not the admin's browser"
    );
    screenshot(&mut browser, "activity");
    assert_eq!(push_status(&seeded.v2, app.unit_id("V2")), 200);
    let revoke = browser.find(&format!(
        "#devices tr[data-device=\"{}\"] button",
        seeded.v2.device
    ));
    browser.click_nav(&revoke);
    assert!(browser.url().contains("done=revoked"), "{}", browser.url());
    let row = browser.find(&format!("#devices tr[data-device=\"{}\"]", seeded.v2.device));
    assert!(browser.text(&row).contains("Đã thu hồi"));
    assert_eq!(push_status(&seeded.v2, app.unit_id("V2")), 401, "revoked at once");

    // A form posted without its CSRF token is refused with an HTML 403, and nothing happens.
    let action = format!("/dashboard/units/{vn}/devices/{}/revoke", seeded.v3.device);
    browser.execute_nav(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
         document.body.appendChild(f); f.submit();",
        json!([action]),
    );
    let message = browser.wait_find("#error-message", Duration::from_secs(10));
    assert!(browser.text(&message).contains("Biểu mẫu"), "the CSRF page");
    assert_eq!(push_status(&seeded.v3, app.unit_id("V3")), 200, "not revoked");
    // The same with a token of another form's shape but wrong value.
    browser.goto(&app.url(&format!("/dashboard/units/{vn}/activity")));
    browser.execute_nav(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
         const i = document.createElement('input'); i.name = 'csrf'; i.value = 'forged'; f.appendChild(i); \
         document.body.appendChild(f); f.submit();",
        json!([action]),
    );
    browser.wait_find("#error-message", Duration::from_secs(10));
    assert_eq!(
        push_status(&seeded.v3, app.unit_id("V3")),
        200,
        "still not revoked"
    );

    // English on request, remembered; then log out.
    browser.goto(&app.url(&format!("/dashboard/units/{vn}?lang=en")));
    assert!(browser.source().contains("Households"));
    browser.goto(&app.url(&format!("/dashboard/units/{vn}")));
    assert!(
        browser.source().contains("Adults with a transaction account"),
        "the choice is kept"
    );
    let logout = browser.find(".who button");
    browser.click_nav(&logout);
    assert!(browser.url().ends_with("/dashboard/login"));
    browser.goto(&app.url(&format!("/dashboard/units/{vn}")));
    assert!(browser.url().ends_with("/dashboard/login"), "the session ended");

    // A viewer: small cells suppressed like the API, no personal data, no admin pages.
    browser.goto(&app.url("/dashboard/login?lang=vi"));
    log_in(&mut browser, &app, "p1viewer");
    browser.wait_url(&format!("/dashboard/units/{p1}"), Duration::from_secs(10));
    let crumb_links = browser.find_all(".crumbs a");
    assert!(
        crumb_links.is_empty(),
        "the country is outside the viewer's scope"
    );
    assert!(
        browser.find_all(".nav a").len() == 1,
        "only the overview for a viewer"
    );
    let v2 = app.unit_id("V2");
    browser.goto(&app.url(&format!("/dashboard/units/{v2}")));
    assert_eq!(browser.find_all("#suppressed-note").len(), 1);
    let ratios: Vec<String> = browser
        .find_all("#indicators td.ratio")
        .iter()
        .map(|e| browser.text(e))
        .collect();
    assert!(ratios.iter().all(|r| r == "Ẩn (ô nhỏ)"), "{ratios:?}");
    assert!(
        browser.find_all("#indicators svg.bar").is_empty(),
        "no bars for a suppressed cell"
    );
    let (_, api) = app.get(
        &format!("/api/v1/aggregates/{v2}"),
        app.login("p1viewer", PW).token(),
    );
    assert_eq!(api["suppressed"], true, "the API agrees");
    let source = browser.source();
    for personal in ["Hoàng Thị Lụa", "Nông Đức Mạnh"] {
        assert!(
            !source.contains(personal),
            "personal data {personal} on the viewer's page"
        );
    }
    screenshot(&mut browser, "viewer-village");
    // The C1 children table shows V2 suppressed and V1 with its figures.
    browser.goto(&app.url(&format!("/dashboard/units/{}", app.unit_id("C1"))));
    let v2_cells = browser.find(&format!(
        "#children-table tr[data-unit=\"{v2}\"] td[data-key=population_with_smartphone]"
    ));
    assert_eq!(browser.text(&v2_cells), "Ẩn (ô nhỏ)");
    let v1_cells = browser.find(&format!(
        "#children-table tr[data-unit=\"{}\"] td[data-key=population_with_smartphone]",
        app.unit_id("V1")
    ));
    assert_eq!(browser.text(&v1_cells).replace('\u{a0}', " "), "83,3 %");
    for (path, why) in [
        (
            format!("/dashboard/units/{p1}/conflicts"),
            "conflicts are for admins",
        ),
        (
            format!("/dashboard/units/{p1}/activity"),
            "devices are for admins",
        ),
        (format!("/dashboard/units/{vn}"), "outside the scope"),
    ] {
        browser.goto(&app.url(&path));
        let m = browser.find("#error-message");
        assert_eq!(browser.text(&m), "Bạn không có quyền xem trang này.", "{why}");
    }
    let source = browser.source();
    assert!(!source.contains("Tên Sớm") && !source.contains("Lò Văn Ánh"));

    // On a phone-sized screen the overview still fits: the tables scroll, the page does not.
    browser.set_size(390, 844);
    browser.goto(&app.url(&format!("/dashboard/units/{p1}")));
    let overflow = browser.execute(
        "const w = window.innerWidth; const wide = [...document.querySelectorAll('body *')] \
         .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > w + 1) \
         .map(e => e.tagName + '.' + e.className); \
         return document.documentElement.scrollWidth <= w + 1 || wide.join(' ');",
        json!([]),
    );
    assert_eq!(overflow, true, "no horizontal page scroll on a phone");
    screenshot(&mut browser, "phone");
    eprintln!("dashboard browser test took {:?}", started.elapsed());
}

/// Cookie attributes, CSRF and login throttling over plain HTTP (no browser).
fn cookies_csrf_and_throttling(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.import_units(SMALL_TREE);
    app.add_user("root", PW, Role::Admin, &["VN"]);
    // Redirects are looked at, not followed.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let set_cookies = |res: &ureq::http::Response<ureq::Body>| -> Vec<String> {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let cookie_value = |cookies: &[String], name: &str| -> String {
        cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(|c| c[name.len() + 1..].to_owned())
            .unwrap_or_else(|| panic!("no {name} in {cookies:?}"))
    };
    // The login page sets the login nonce; its form carries the matching token.
    let mut page = agent.get(&app.url("/dashboard/login")).call().unwrap();
    assert_eq!(page.status(), 200);
    let cookies = set_cookies(&page);
    let nonce = cookie_value(&cookies, "hamlet_login");
    assert!(cookies[0].contains("HttpOnly") && cookies[0].contains("SameSite=Strict"));
    assert!(!cookies[0].contains("Secure"), "{cookies:?}");
    let body = page.body_mut().read_to_string().unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf field")
        .to_owned();

    // Behind a trusted TLS proxy (the loopback is trusted by default) cookies are Secure.
    let proxied = agent
        .get(&app.url("/dashboard/login"))
        .header("X-Forwarded-Proto", "https")
        .call()
        .unwrap();
    assert!(
        set_cookies(&proxied)[0].contains("Secure"),
        "{:?}",
        set_cookies(&proxied)
    );

    let post = |form: &str, cookie: &str| {
        agent
            .post(&app.url("/dashboard/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Cookie", cookie)
            .send(form.to_owned())
            .unwrap()
    };
    // Without the token, or with the token but not the cookie: 403, an HTML page.
    let mut res = post(
        &format!("username=root&password={PW}"),
        &format!("hamlet_login={nonce}"),
    );
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(res.body_mut().read_to_string().unwrap().contains("<html"));
    let res = post(&format!("username=root&password={PW}&csrf={csrf}"), "");
    assert_eq!(res.status(), 403);

    // Wrong password: 401 with the form again; the same throttle as the API.
    let res = post(
        &format!("username=root&password=wrong-password&csrf={csrf}"),
        &format!("hamlet_login={nonce}"),
    );
    assert_eq!(res.status(), 401);

    let res = post(
        &format!("username=root&password={PW}&csrf={csrf}"),
        &format!("hamlet_login={nonce}"),
    );
    assert_eq!(res.status(), 303);
    let cookies = set_cookies(&res);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("hamlet_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let session_value = cookie_value(&cookies, "hamlet_session");
    let cookie = format!("hamlet_session={session_value}");
    let get = |path: &str, cookie: &str| agent.get(&app.url(path)).header("Cookie", cookie).call().unwrap();
    let vn = app.unit_id("VN");
    assert_eq!(get(&format!("/dashboard/units/{vn}"), &cookie).status(), 200);
    // Bad ids and unknown pages are HTML 404s, not JSON and not 500s.
    let mut res = get("/dashboard/units/not-a-uuid", &cookie);
    assert_eq!(res.status(), 404);
    assert!(res.body_mut().read_to_string().unwrap().contains("error-message"));
    assert_eq!(
        get(&format!("/dashboard/units/{}", Uuid::now_v7()), &cookie).status(),
        404
    );
    assert_eq!(get("/dashboard/nothing-here", &cookie).status(), 404);
    assert_eq!(
        get(&format!("/dashboard/units/{vn}/export?format=pdf"), &cookie).status(),
        400
    );
    // A tampered cookie is no session.
    let tampered = format!("hamlet_session={}x", session_value);
    assert_eq!(get(&format!("/dashboard/units/{vn}"), &tampered).status(), 303);
    // A POST with the session but no token: 403.
    let res = agent
        .post(&app.url("/dashboard/logout"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Cookie", &cookie)
        .send("")
        .unwrap();
    assert_eq!(res.status(), 403);

    // Revoking the browser's device through the API ends the dashboard session at once.
    let root = app.login("root", PW);
    let (_, devices) = app.get("/api/v1/devices", root.token());
    let web = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Web dashboard")
        .expect("the browser's device")["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app.post(&format!("/api/v1/devices/{web}/revoke"), None, root.token());
    assert_eq!(status, 204);
    let res = get(&format!("/dashboard/units/{vn}"), &cookie);
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dashboard/login");

    // Throttling: after the per-user limit, the login form answers 429 with Retry-After.
    let mut last = 0;
    for _ in 0..6 {
        let res = post(
            &format!("username=root&password=wrong-password&csrf={csrf}"),
            &format!("hamlet_login={nonce}"),
        );
        last = res.status().as_u16();
        if last == 429 {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(last, 429);

    // A user with two scope units chooses between them; the login page sends them on.
    app.add_user("twoview", PW, Role::Viewer, &["P1", "P2"]);
    let res = post(
        &format!("username=twoview&password={PW}&csrf={csrf}"),
        &format!("hamlet_login={nonce}"),
    );
    assert_eq!(res.status(), 303);
    let cookie = format!(
        "hamlet_session={}",
        cookie_value(&set_cookies(&res), "hamlet_session")
    );
    let mut res = get("/dashboard", &cookie);
    assert_eq!(res.status(), 200);
    let body = res.body_mut().read_to_string().unwrap();
    assert!(
        body.contains("Tỉnh Tuyên Quang") && body.contains("Tỉnh Cao Bằng"),
        "{body}"
    );
    let res = get("/dashboard/login", &cookie);
    assert_eq!(res.status(), 303, "already signed in");
}

backend_tests!(dashboard_in_a_browser, cookies_csrf_and_throttling);
