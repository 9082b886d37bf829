//! A real browser for the dashboard's tests: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed by `scripts/ensure-chromium`), each
//! test its own chromedriver and profile. Screenshots go under `target/screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Desktop and phone widths of the screenshots.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

fn binary(name: &str, env: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| name.to_owned())
}

impl Browser {
    /// A new browser at desktop width.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver_bin = binary("chromedriver", "VOXANNE_CHROMEDRIVER");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            // The browser's local time is UTC, so the times a test types are UTC too.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {driver_bin} ({e}): run scripts/ensure-chromium (scripts/test does)"
                )
            });
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": binary("/usr/bin/chromium", "VOXANNE_CHROMIUM"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--mute-audio",
                    "--autoplay-policy=no-user-gesture-required",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            // The driver is on loopback: plain HTTP.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        driver,
                        _profile: profile,
                    }
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not start: {last:?}");
    }

    /// Opens `url` and waits until the page's main heading is not "Loading…".
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
    }

    /// Waits for an element matching `css` whose text contains `text`, and returns its text.
    pub async fn wait_text(&self, css: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for e in elements {
                    if let Ok(t) = e.text().await {
                        if t.contains(text) {
                            return t;
                        }
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                let page = self.client.source().await.unwrap_or_default();
                panic!("no `{css}` with text `{text}` appeared; the page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The heading of the page once it has settled (it has one, and is not loading), read in
    /// one look at the page.
    pub async fn heading(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self
                .client
                .execute(
                    "const h = document.querySelector('main h1');
                     const s = document.querySelector('main [role=status]');
                     return [h ? h.textContent : '', s ? s.textContent : ''];",
                    vec![],
                )
                .await
                .unwrap_or_default();
            let heading = seen[0].as_str().unwrap_or("");
            if !heading.is_empty() && seen[1] != "Loading…" {
                return heading.to_owned();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the page never settled: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    pub async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space(.)='{label}']");
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("button {label}: {e}"))
            .click()
            .await
            .expect("click");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = match self
            .client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css}: {e}; the page:\n{page}")
            }
        };
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    /// Chooses the option of value `value` in the select `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
    }

    /// Sets the value of the input `css` (date and time inputs take no typing reliably).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![css.into(), value.into()],
            )
            .await
            .expect("set value");
    }

    /// All texts of the elements matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.expect("find") {
            out.push(e.text().await.expect("text"));
        }
        out
    }

    /// What the page gets wrong for assistive technology: a form control without a label, a
    /// button or link without text, a chart without a text alternative, not exactly one `h1`.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let found = self
            .client
            .execute(
                "const out = [];
                 for (const el of document.querySelectorAll('input, select, textarea')) {
                   if (el.type === 'hidden') continue;
                   const labelled = el.getAttribute('aria-label') || el.closest('label') ||
                     (el.id && document.querySelector(`label[for='${el.id}']`));
                   if (!labelled) out.push(`unlabelled ${el.tagName} ${el.name || el.id}`);
                 }
                 for (const el of document.querySelectorAll('button, a')) {
                   if (!(el.textContent.trim() || el.getAttribute('aria-label')))
                     out.push(`no text: ${el.outerHTML.slice(0, 80)}`);
                 }
                 for (const el of document.querySelectorAll('svg[role=img]')) {
                   if (!el.getAttribute('aria-label')) out.push('a chart without aria-label');
                 }
                 const h1 = document.querySelectorAll('h1').length;
                 if (h1 !== 1) out.push(`${h1} h1 elements`);
                 if (!document.documentElement.lang) out.push('no lang');
                 return out;",
                vec![],
            )
            .await
            .expect("accessibility check");
        found
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Screenshots the page at desktop and phone width into `target/screenshots/{name}-*.png`,
    /// after checking it for the accessibility problems [`Self::accessibility_problems`] finds.
    pub async fn screenshots(&self, name: &str) {
        let problems = self.accessibility_problems().await;
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        for (width, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.client.set_window_size(w, h).await.expect("resize");
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).expect("write png");
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("resize");
    }

    /// Ends the session (the driver closes its browser) and stops the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }

    /// Runs `script` (an async function body that gets `done` as its last argument) in the page.
    pub async fn run_async(&self, script: &str) -> serde_json::Value {
        self.client
            .execute_async(script, vec![])
            .await
            .expect("script")
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver takes its browser with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
