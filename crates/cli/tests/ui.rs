//! The live page in a real browser: headless Chromium, driven over
//! WebDriver by Debian's chromedriver, against `tenure dev`. A lock taken
//! through the API shows with its holder and token; its release shows
//! within a second, pushed to the page without a reload.
//!
//! Without Chromium and chromedriver (`apt-get install chromium
//! chromium-driver`) the test says so and passes, unless
//! `TENURE_REQUIRE_BROWSER` is set, as `.ci/run` sets it.

mod common;

use common::runner::until;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser session: chromedriver, and the Chromium it started.
struct Browser {
    driver: Child,
    url: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("TENURE_REQUIRE_BROWSER").is_none(),
                "TENURE_REQUIRE_BROWSER is set, but {CHROMIUM} or {CHROMEDRIVER} is missing"
            );
            eprintln!("chromium or chromedriver not found (apt-get install chromium chromium-driver): the page is not tested in a browser");
            return None;
        }
        let port = free_ports(1)[0];
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut browser = Browser {
            driver,
            url,
            session: String::new(),
            _profile: profile,
        };
        until(Duration::from_secs(20), "chromedriver to listen", || {
            get(&format!("{}/status", browser.url)).body["value"]["ready"] == true
        });
        // Headless, and quiet: this machine's network is closed, and a
        // browser that calls home retries its refused connections.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=420,900",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let created = post(
            &format!("{}/session", browser.url),
            &capabilities.to_string(),
        );
        browser.session = created.body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created:?}"))
            .to_string();
        Some(browser)
    }

    fn command(&self, what: &str) -> String {
        format!("{}/session/{}/{what}", self.url, self.session)
    }

    fn open(&self, page: &str) {
        let r = post(&self.command("url"), &json!({ "url": page }).to_string());
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// Run `script` in the page; what it returns.
    fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] }).to_string();
        let r = post(&self.command("execute/sync"), &body);
        assert_eq!(r.status, 200, "{r:?}");
        r.body["value"].clone()
    }

    /// The page's DOM as it stands, as `--dump-dom` prints it.
    fn dom(&self) -> String {
        let r = get(&self.command("source"));
        r.body["value"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Ends the session, and the browser with it.
            delete(&format!("{}/session/{}", self.url, self.session));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The lock `name` as the page shows it: state, holder and token.
fn shown(browser: &Browser, name: &str) -> Value {
    browser.run(&format!(
        r#"const el = document.querySelector('[data-testid=lock][data-name="{name}"]');
        if (!el) return null;
        const f = (id) => el.querySelector(`[data-testid=${{id}}]`).textContent;
        return {{ state: f("state"), holder: f("holder"), token: f("token") }};"#
    ))
}

#[test]
fn the_page_shows_a_lock_and_its_release_without_a_reload() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dev = Dev::start(&[]);
    let lock = format!("{}/v1/locks/nightly", dev.url());
    let granted = acquire_when_ready(&lock, "cron-1", 30_000);
    let t = token(&granted);

    let page = get(&format!("{}/ui", dev.url()));
    assert_eq!(page.status, 200);
    browser.open(&format!("{}/ui", dev.url()));
    until(Duration::from_secs(10), "the page to show the lock", || {
        shown(&browser, "nightly")["holder"] == "cron-1"
    });
    let held = shown(&browser, "nightly");
    assert_eq!(held["state"], "held", "{held}");
    assert_eq!(held["token"], t.to_string(), "{held}");
    let dom = browser.dom();
    assert!(
        dom.contains(r#"data-name="nightly""#) && dom.contains("cron-1"),
        "{dom}"
    );
    let members = browser.run("return document.querySelectorAll('[data-testid=member]').length;");
    assert_eq!(members, 3, "the cluster panel lists every node");

    assert_eq!(release_granted(&lock, &granted).status, 204);
    let released = Instant::now();
    until(
        Duration::from_secs(5),
        "the page to show the release",
        || shown(&browser, "nightly")["state"] == "free",
    );
    let took = released.elapsed();
    eprintln!("the release showed on the page {took:?} after its answer");
    assert!(
        took < Duration::from_secs(1),
        "the release showed after {took:?}"
    );
    let changes = browser.run(
        r#"return [...document.querySelectorAll('[data-name="nightly"] [data-testid=change]')].map((c) => c.textContent);"#,
    );
    let first = changes[0].as_str().unwrap_or_default();
    assert!(first.contains("released token 1 of cron-1"), "{changes}");
}

/// With tokens on, the page takes one from its address (never sent to
/// the node as such) and streams with it.
#[test]
fn the_page_streams_with_a_token_from_its_address() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "viewer-token-0123456789 read *\nlocker-token-0123456789 lock *\n",
    )
    .expect("write tokens");
    let dev = Dev::start(&["--tokens", tokens.to_str().expect("utf-8")]);
    let lock = format!("{}/v1/locks/guarded", dev.url());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    until(
        Duration::from_secs(20),
        "a grant with the lock token",
        || {
            agent
                .put(&lock)
                .header("authorization", "Bearer locker-token-0123456789")
                .send(r#"{"holder":"cron-2","ttl_ms":30000}"#)
                .is_ok_and(|r| r.status() == 201)
        },
    );
    browser.open(&format!("{}/ui#token=viewer-token-0123456789", dev.url()));
    until(Duration::from_secs(10), "the page to show the lock", || {
        shown(&browser, "guarded")["holder"] == "cron-2"
    });
    // Another path than before, so that the browser loads the page again.
    browser.open(&format!("{}/ui/#token=wrong-token-0123456789", dev.url()));
    until(
        Duration::from_secs(10),
        "the page to say the token was refused",
        || {
            browser.run("return document.querySelector('[data-testid=live]').textContent;")
                == "token refused (401)"
        },
    );
}

#[test]
fn the_page_and_its_files_carry_a_strict_content_security_policy() {
    let dev = Dev::start(&[]);
    for path in ["/ui", "/ui/app.js", "/ui/style.css"] {
        let r = ureq_head(&format!("{}{path}", dev.url()));
        assert!(r.contains("default-src 'none'"), "{path}: {r}");
        assert!(r.contains("script-src 'self'"), "{path}: {r}");
    }
}

/// The response head of `url`, as text.
fn ureq_head(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let r = agent.get(url).call().expect("GET");
    r.headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
        .collect()
}
