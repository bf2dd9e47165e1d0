//! Headless Debian Chromium driven through chromedriver (fantoccini), behind a blocking facade.
//!
//! Network safety: Chromium resolves no name but `localhost` (and names mapped with
//! [`BrowserOptions::map_to_loopback`]), and every destination outside loopback goes to a proxy
//! address that refuses connections. Its profile is a tempdir; the machine's trust store and NSS
//! database are never touched: certificates are trusted by SPKI hash on the command line.
//!
//! ```no_run
//! # use warden_tests::browser::Browser;
//! if !warden_tests::env::require_browser() { return; }
//! let browser = Browser::start("login");
//! browser.goto("http://127.0.0.1:8080/");
//! browser.wait_for("#sign-in", std::time::Duration::from_secs(30));
//! ```

mod launch;
mod sockets;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use crate::{net, wait};

pub use launch::{find_binaries, processes_naming, spki_hash};
pub use sockets::tcp_peers;

/// How long chromedriver and a new Chromium session may take on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// What the browser trusts and resolves, fixed at launch.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// PEM certificates whose key Chromium accepts without a CA (by SPKI hash).
    pub trusted_cert_pems: Vec<String>,
    /// Host names that resolve to these loopback addresses.
    pub map_to_loopback: Vec<(String, IpAddr)>,
}

/// A headless Chromium session; chromedriver and Chromium are killed and reaped on drop.
pub struct Browser {
    name: String,
    runtime: Runtime,
    client: Option<Client>,
    options: BrowserOptions,
    chromium: PathBuf,
    driver_url: String,
    dead_proxy: SocketAddr,
    driver: launch::DriverGuard,
    profile: TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// A browser with no extra trust. `name` prefixes its screenshots and panics. Panics when
    /// chromium or chromedriver is missing: check [`crate::env::require_browser`] first.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, BrowserOptions::default())
    }

    pub fn start_with(name: &str, options: BrowserOptions) -> Self {
        let (chromium, chromedriver) = find_binaries().expect(
            "chromium and chromedriver are not installed (call env::require_browser first)",
        );
        let profile = tempfile::Builder::new()
            .prefix("warden-chromium-")
            .tempdir()
            .expect("creating Chromium's profile directory");
        let port = net::free_dual_stack_port();
        let driver = launch::DriverGuard::spawn(
            &chromedriver,
            port,
            &profile.path().join("chromedriver.log"),
            profile.path(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("building the browser's runtime");
        let mut browser = Self {
            name: name.to_owned(),
            runtime,
            client: None,
            options,
            chromium,
            driver_url: format!("http://127.0.0.1:{port}"),
            dead_proxy: net::refusing_address(),
            driver,
            profile,
        };
        browser.open_session();
        browser
    }

    /// Trusts the key of `cert_pem` from now on (Chromium takes it at launch: the session restarts,
    /// so cookies and the current page are lost).
    pub fn trust_cert(&mut self, cert_pem: &str) {
        self.options.trusted_cert_pems.push(cert_pem.to_owned());
        self.close_session();
        self.open_session();
    }

    fn open_session(&mut self) {
        let spki: Vec<String> = self
            .options
            .trusted_cert_pems
            .iter()
            .map(|pem| spki_hash(pem))
            .collect();
        let args = launch::chromium_args(
            self.profile.path(),
            self.dead_proxy,
            &spki,
            &self.options.map_to_loopback,
        );
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": self.chromium, "args": args }),
        );
        let deadline = Instant::now() + START_DEADLINE;
        let client = loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            match self.runtime.block_on(builder.connect(&self.driver_url)) {
                Ok(client) => break client,
                Err(error) if Instant::now() < deadline => {
                    // chromedriver not listening yet.
                    let _ = error;
                    std::thread::sleep(POLL);
                }
                Err(error) => panic!(
                    "{}: no Chromium session from chromedriver at {} within {START_DEADLINE:?}: \
                     {error}; chromedriver log:\n{}",
                    self.name,
                    self.driver_url,
                    self.driver_log()
                ),
            }
        };
        self.client = Some(client);
    }

    fn close_session(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .map(|log| {
                log.lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|e| format!("(unreadable: {e})"))
    }

    /// The fantoccini client, for what the facade lacks (drive it with [`Self::block_on`]).
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser session is open")
    }

    /// Runs a future (e.g. of [`Self::client`]) on the browser's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        future: impl Future<Output = Result<T, E>>,
    ) -> T {
        match self.block_on(future) {
            Ok(value) => value,
            Err(error) => {
                let shot = self.try_screenshot(&format!("{}-failed", self.name));
                panic!(
                    "{}: {what}: {error} (at {}; screenshot {shot:?})",
                    self.name,
                    self.try_current_url()
                );
            }
        }
    }

    pub fn goto(&self, url: &str) {
        self.run(&format!("goto {url}"), self.client().goto(url));
    }

    /// Navigates to `url`; a page that cannot load is an `Err` naming Chromium's error
    /// (e.g. `net::ERR_PROXY_CONNECTION_FAILED`).
    pub fn try_goto(&self, url: &str) -> Result<(), String> {
        self.block_on(self.client().goto(url))
            .map_err(|e| e.to_string())
    }

    /// The URL the page is at now.
    pub fn current_url(&self) -> String {
        self.run("current_url", self.client().current_url())
            .to_string()
    }

    fn try_current_url(&self) -> String {
        self.client
            .as_ref()
            .and_then(|c| self.block_on(c.current_url()).ok())
            .map(|u| u.to_string())
            .unwrap_or_else(|| "?".to_owned())
    }

    /// Polls until an element matches `css`; on timeout saves a screenshot and panics with the URL.
    pub fn wait_for(&self, css: &str, deadline: Duration) {
        let found = wait::within(deadline, || {
            self.block_on(self.client().find(Locator::Css(css))).ok()
        });
        if found.is_none() {
            let shot = self.try_screenshot(&format!("{}-wait-for", self.name));
            panic!(
                "{}: no element matches {css:?} after {deadline:?} (at {}; screenshot {shot:?})",
                self.name,
                self.try_current_url()
            );
        }
    }

    fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.run(
            &format!("find {css:?}"),
            self.client().find(Locator::Css(css)),
        )
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.run(&format!("click {css:?}"), element.click());
    }

    /// Replaces the text of the input matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.run(&format!("clear {css:?}"), element.clear());
        self.run(&format!("type into {css:?}"), element.send_keys(text));
    }

    /// The rendered text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.run(&format!("text of {css:?}"), element.text())
    }

    /// Runs `js` in the page (`return …` gives a value back).
    pub fn execute(&self, js: &str) -> Value {
        self.run("execute", self.client().execute(js, Vec::new()))
    }

    /// Saves a PNG of the viewport as `target/test-artifacts/console/NAME.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.try_screenshot(name)
            .unwrap_or_else(|e| panic!("{}: screenshot {name}: {e}", self.name))
    }

    fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let client = self.client.as_ref().ok_or("no session")?;
        let png = self
            .block_on(client.screenshot())
            .map_err(|e| e.to_string())?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Names every Chromium process of this browser on its command line (its profile directory):
    /// after drop, [`processes_naming`] of it is empty.
    pub fn process_marker(&self) -> String {
        self.driver.marker().to_owned()
    }

    /// The TCP peers of every live Chromium process of this browser (for network-safety checks).
    pub fn tcp_peers(&self) -> Vec<SocketAddr> {
        tcp_peers(&self.driver.browser_pids())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.close_session();
        // The DriverGuard field then kills chromedriver and any Chromium left.
    }
}

/// `target/test-artifacts/console`: CARGO_TARGET_DIR, else the target dir holding this test binary
/// (`target/debug/deps/NAME-HASH`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| std::env::temp_dir().join("warden-target"));
    target.join("test-artifacts").join("console")
}
