//! A small synchronous W3C WebDriver client over `ureq`, enough to drive Debian's Chromium
//! headless through `chromedriver` (installed by `scripts/browser-up.sh`). No async runtime and
//! no browser download: it starts `/usr/bin/chromedriver` on a free loopback port.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the browser and its driver are expected (Debian's `chromium` and `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
    _downloads: tempfile::TempDir,
}

/// One element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width`×`height`.
    pub fn start(width: u32, height: u32) -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "{CHROMIUM} and {CHROMEDRIVER} are missing: run scripts/browser-up.sh (scripts/test.sh does)"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("downloads dir");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                    "intl.accept_languages": "vi,en",
                },
            },
        } } });
        let mut res = agent
            .post(&format!("{base}/session"))
            .send_json(&caps)
            .expect("new session");
        let body: Value = res.body_mut().read_json().expect("session JSON");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"))
            .to_owned();
        let mut browser = Self {
            driver,
            base,
            session,
            agent,
            downloads: downloads.path().to_owned(),
            _profile: profile,
            _downloads: downloads,
        };
        // Headless Chromium downloads only when told where to.
        let dir = browser.downloads.display().to_string();
        let _ = browser.try_cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Browser.setDownloadBehavior", "params": { "behavior": "allow", "downloadPath": dir } }),
        );
        browser.set_size(width, height);
        browser
    }

    fn try_cmd(&mut self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let res = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(&body),
        };
        let mut res = res.map_err(|e| json!({ "transport": e.to_string() }))?;
        let ok = res.status().is_success();
        let v: Value = res.body_mut().read_json().unwrap_or(Value::Null);
        if ok { Ok(v["value"].clone()) } else { Err(v) }
    }

    #[track_caller]
    fn cmd(&mut self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body.clone())
            .unwrap_or_else(|e| panic!("webdriver {method} {path} {body}: {e}"))
    }

    pub fn set_size(&mut self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        );
    }

    pub fn goto(&mut self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&mut self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the current URL ends with `suffix` (a redirect chain may still be running);
    /// returns the URL.
    pub fn wait_url(&mut self, suffix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.url();
            if url.ends_with(suffix) {
                return url;
            }
            assert!(Instant::now() < deadline, "URL {url} does not end with {suffix}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn title(&mut self) -> String {
        self.cmd("GET", "/title", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub fn source(&mut self) -> String {
        self.cmd("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn find(&mut self, css: &str) -> Element {
        let v = self
            .try_cmd(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .unwrap_or_else(|e| {
                let url = self.url();
                panic!("no element {css} on {url}: {e}")
            });
        Element(v[ELEMENT_KEY].as_str().expect("element id").to_owned())
    }

    /// Waits until an element matches (e.g. after a navigation the driver does not wait for).
    pub fn wait_find(&mut self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(Instant::now() < deadline, "no element {css} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find_all(&mut self, css: &str) -> Vec<Element> {
        let v = self.cmd(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|s| Element(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn click(&mut self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}));
    }

    /// Clicks something that loads a new page (a link, a form's button) and waits until the
    /// new page has loaded: the driver's own wait does not always cover a form's redirects.
    pub fn click_nav(&mut self, e: &Element) {
        self.execute("window.__hamlet_old_page = true", Value::Null);
        self.click(e);
        self.wait_new_page();
    }

    /// Waits until the page marked by `click_nav` (or `submit_nav`) is replaced and loaded.
    fn wait_new_page(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let loaded = self
                .try_cmd(
                    "POST",
                    "/execute/sync",
                    json!({ "script": "return !window.__hamlet_old_page && document.readyState === 'complete'", "args": [] }),
                )
                .is_ok_and(|v| v == true);
            if loaded {
                return;
            }
            assert!(Instant::now() < deadline, "no new page after a click");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a script that navigates (e.g. submits a form) and waits for the new page.
    pub fn execute_nav(&mut self, script: &str, args: Value) {
        self.execute("window.__hamlet_old_page = true", Value::Null);
        self.execute(script, args);
        self.wait_new_page();
    }

    pub fn type_into(&mut self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), json!({}));
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        );
    }

    pub fn text(&mut self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn attribute(&mut self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), Value::Null)
            .as_str()
            .map(str::to_owned)
    }

    /// Sends keys to whatever has focus (e.g. "\u{E004}" is Tab, "\u{E007}" Enter).
    pub fn keys(&mut self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({ "type": "keyDown", "value": c.to_string() }),
                    json!({ "type": "keyUp", "value": c.to_string() }),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            json!({ "actions": [ { "type": "key", "id": "keyboard", "actions": actions } ] }),
        );
    }

    /// Runs a script in the page and returns its value.
    pub fn execute(&mut self, script: &str, args: Value) -> Value {
        let args = if args.is_null() { json!([]) } else { args };
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Every cookie of the current page, HttpOnly ones included.
    pub fn cookies(&mut self) -> Vec<Value> {
        self.cmd("GET", "/cookie", Value::Null)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 PNG"))
            .expect("PNG")
    }

    /// Waits for a downloaded file whose name ends with `suffix`; returns its path.
    pub fn wait_download(&self, suffix: &str, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(dir) = std::fs::read_dir(&self.downloads) {
                for entry in dir.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(suffix) {
                        return entry.path();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {suffix} download in {}",
                self.downloads.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_cmd("DELETE", "", Value::Null);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
