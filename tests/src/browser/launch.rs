//! Starting chromedriver and a locked-down headless Chromium: binaries, flags, the process guard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Debian's real binary; /usr/bin/chromium is a shell wrapper around it.
const DEBIAN_CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// The Chromium binary and chromedriver, if both are installed.
pub fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = Some(PathBuf::from(DEBIAN_CHROMIUM))
        .filter(|p| p.is_file())
        .or_else(|| find_on_path("chromium"))?;
    Some((chromium, find_on_path("chromedriver")?))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in `cert_pem`: what
/// `--ignore-certificate-errors-spki-list` takes.
pub fn spki_hash(cert_pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap_or_else(|e| panic!("spki_hash: not a PEM certificate: {e}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .unwrap_or_else(|e| panic!("spki_hash: cannot parse the certificate: {e}"));
    STANDARD.encode(digest::digest(
        &digest::SHA256,
        cert.tbs_certificate.subject_pki.raw,
    ))
}

/// Chromium's command line: headless, a private profile, nothing phoning home, no name resolving
/// (except `localhost` and `loopback_names`), and every non-loopback destination sent to a proxy
/// that refuses connections, so that not even an IP literal leaves the machine.
pub fn chromium_args(
    profile: &Path,
    dead_proxy: std::net::SocketAddr,
    trusted_spki: &[String],
    loopback_names: &[(String, std::net::IpAddr)],
) -> Vec<String> {
    let mut resolver_rules: Vec<String> = loopback_names
        .iter()
        .map(|(name, ip)| {
            assert!(ip.is_loopback(), "{name} must map to loopback, not {ip}");
            match ip {
                std::net::IpAddr::V6(v6) => format!("MAP {name} [{v6}]"),
                std::net::IpAddr::V4(v4) => format!("MAP {name} {v4}"),
            }
        })
        .collect();
    // `MAP *` also catches IP literals, so loopback ones are excluded. The pattern `127.*` also
    // matches names like `127.example.com`: those are not in the proxy bypass list (its
    // 127.0.0.0/8 matches literals only), so they go to the dead proxy and fail there.
    for rule in [
        "MAP * ~NOTFOUND",
        "EXCLUDE localhost",
        "EXCLUDE 127.*",
        "EXCLUDE ::1",
    ] {
        resolver_rules.push(rule.to_owned());
    }
    let mut bypass = vec!["127.0.0.0/8", "[::1]", "localhost"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    bypass.extend(loopback_names.iter().map(|(name, _)| name.clone()));

    let mut args: Vec<String> = [
        "--headless=new",
        // Tests run as root, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--metrics-recording-only",
        "--safebrowsing-disable-auto-update",
        "--disable-quic",
        "--password-store=basic",
        "--use-mock-keychain",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,\
         AutofillServerCommunication,CertificateTransparencyComponentUpdater,\
         InterestFeedContentSuggestions,SafeBrowsingEnhancedProtection,NetworkTimeServiceQuerying,\
         PrivacySandboxSettings4,AcceptCHFrame,HttpsUpgrades",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!(
        "--host-resolver-rules={}",
        resolver_rules.join(", ")
    ));
    args.push(format!("--proxy-server=http://{dead_proxy}"));
    args.push(format!("--proxy-bypass-list={}", bypass.join(";")));
    if !trusted_spki.is_empty() {
        args.push(format!(
            "--ignore-certificate-errors-spki-list={}",
            trusted_spki.join(",")
        ));
    }
    args
}

/// chromedriver and every Chromium it started; killed and reaped on drop.
#[derive(Debug)]
pub struct DriverGuard {
    child: Child,
    /// The profile directory: every Chromium process of this browser has it on its command line.
    marker: String,
}

impl DriverGuard {
    /// Spawns chromedriver on `127.0.0.1:port`, logging to `log` (in its own process group).
    pub fn spawn(chromedriver: &Path, port: u16, log: &Path, marker: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", chromedriver.display()));
        Self {
            child,
            marker: marker.display().to_string(),
        }
    }

    /// The pids of the live processes (Chromium's) whose command line names this browser's profile.
    pub fn browser_pids(&self) -> Vec<i32> {
        processes_naming(&self.marker)
    }

    /// What every process of this browser has on its command line (the profile path).
    pub fn marker(&self) -> &str {
        &self.marker
    }
}

/// Live processes whose command line contains `marker` (a zombie's is empty: never matches).
pub fn processes_naming(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .collect()
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the group chromedriver leads; no memory involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        // Chromium processes that left the group (or outlived chromedriver) are found by profile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pids = self.browser_pids();
            if pids.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: as above, for one pid that runs this browser's profile.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn the_spki_hash_is_of_the_public_key_not_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let one = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let two = rcgen::CertificateParams::new(vec!["b.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(spki_hash(&one.pem()), spki_hash(&two.pem()));
        let expected = STANDARD.encode(digest::digest(
            &digest::SHA256,
            &key.subject_public_key_info(),
        ));
        assert_eq!(spki_hash(&one.pem()), expected);
        let other = rcgen::KeyPair::generate().unwrap();
        let three = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&other)
            .unwrap();
        assert_ne!(spki_hash(&one.pem()), spki_hash(&three.pem()));
    }

    #[test]
    fn names_resolve_nowhere_and_other_destinations_go_to_the_dead_proxy() {
        let args = chromium_args(
            Path::new("/tmp/p"),
            "127.0.0.9:9".parse().unwrap(),
            &["abc=".into()],
            &[("console.test".into(), "127.0.0.1".parse().unwrap())],
        );
        let rules = args
            .iter()
            .find(|a| a.starts_with("--host-resolver-rules="))
            .unwrap();
        assert_eq!(
            rules,
            "--host-resolver-rules=MAP console.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost, \
             EXCLUDE 127.*, EXCLUDE ::1"
        );
        assert!(args.contains(&"--proxy-server=http://127.0.0.9:9".to_owned()));
        assert!(args.contains(&"--ignore-certificate-errors-spki-list=abc=".to_owned()));
        assert!(args.contains(&"--headless=new".to_owned()));
    }
}
