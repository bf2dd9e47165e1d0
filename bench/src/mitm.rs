//! mitmproxy (`mitmdump` from PyPI) in reverse-proxy mode in front of the fake upstream, as a guard
//! that stops it on Drop.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams SSE responses through instead of buffering them whole (mitmproxy's default), as anyone
/// intercepting a model's streamed output with mitmproxy has to.
const STREAM_SSE_ADDON: &str = r#"
def responseheaders(flow):
    if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
        flow.response.stream = True
"#;

/// A running mitmdump. Dropping it kills it.
pub struct Mitmproxy {
    child: Child,
    listen: SocketAddr,
    dir: TempDir,
}

impl Mitmproxy {
    /// Starts `mitmdump` listening on `listen` and forwarding to `upstream` over TLS, trusting
    /// `upstream_ca` for it.
    pub fn start(
        mitmdump: &Path,
        listen: SocketAddr,
        upstream: SocketAddr,
        upstream_ca: &Path,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating mitmproxy's tempdir")?;
        let addon = dir.path().join("stream_sse.py");
        std::fs::write(&addon, STREAM_SSE_ADDON)?;
        let log = File::create(dir.path().join("mitmdump.log"))?;
        let child = Command::new(mitmdump)
            .arg("--mode")
            .arg(format!("reverse:https://{upstream}"))
            .args(["--listen-host", &listen.ip().to_string()])
            .args(["--listen-port", &listen.port().to_string()])
            .args(["--set", &format!("confdir={}", dir.path().display())])
            .args([
                "--set",
                &format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()),
            ])
            .args(["--set", "keep_host_header=true"])
            .args(["--set", "flow_detail=0"])
            .arg("--quiet")
            .arg("-s")
            .arg(&addon)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", mitmdump.display()))?;
        let mut proxy = Self { child, listen, dir };
        proxy.wait_until_ready()?;
        Ok(proxy)
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mitmdump exited ({status}) before it listened:\n{}",
                    self.log()
                );
            }
            if self.ca_file().is_file() && TcpStream::connect(self.listen).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "mitmdump did not listen on {} within {READY_TIMEOUT:?}:\n{}",
            self.listen,
            self.log()
        )
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CA mitmproxy signs its leaf certificates with (created in its confdir on first start).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("mitmproxy-ca-cert.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mitmdump.log")).unwrap_or_default()
    }
}

impl Drop for Mitmproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
