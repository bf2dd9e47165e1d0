//! Debian's rsyslogd as a syslog receiver: its own process, config and work directory in a temp
//! dir, listening on loopback (or a socket in that dir), writing what it parsed as JSON lines.
//!
//! Never the machine's rsyslog service, never /dev/log. Killed on Drop.
use std::{
    fs,
    net::{TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde::Deserialize;
use tempfile::TempDir;

use crate::wait;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What rsyslogd listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// imtcp, octet-counted or LF-framed.
    Tcp,
    /// imtcp with the OpenSSL stream driver (RFC 5425), a self-signed cert for 127.0.0.1.
    Tls,
    /// imudp.
    Udp,
    /// imuxsock on a socket in the temp dir (the system socket is off).
    Unix,
}

/// One message as rsyslogd parsed it (RFC 5424 fields).
#[derive(Clone, Debug, Deserialize)]
pub struct SyslogMessage {
    pub pri: String,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
}

impl SyslogMessage {
    /// The event JSON in MSG.
    pub fn event(&self) -> serde_json::Value {
        serde_json::from_str(&self.msg)
            .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {}", self.msg))
    }

    /// A structured-data parameter's value, unescaped (`\"`, `\\`, `\]`).
    pub fn sd_param(&self, name: &str) -> Option<String> {
        let start = self.structured_data.find(&format!(" {name}=\""))? + name.len() + 3;
        let mut value = String::new();
        let mut chars = self.structured_data[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?),
                '"' => return Some(value),
                c => value.push(c),
            }
        }
        None
    }
}

pub struct Rsyslogd {
    dir: TempDir,
    listener: Listener,
    /// `127.0.0.1:PORT`, or the unix socket's path.
    address: String,
    child: Option<Child>,
    /// How many times it was started: each start's readiness probe is told apart by it.
    runs: u32,
}

impl Rsyslogd {
    pub fn start(listener: Listener) -> Rsyslogd {
        let dir = tempfile::Builder::new()
            .prefix("warden-rsyslogd-")
            .tempdir()
            .expect("temp dir");
        let address = match listener {
            Listener::Unix => dir.path().join("log").display().to_string(),
            // imudp cannot report an ephemeral port: take a free one (nothing else on this
            // loopback port races for it in a test).
            Listener::Udp => {
                let probe = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
                probe.local_addr().expect("local address").to_string()
            }
            Listener::Tcp | Listener::Tls => String::new(),
        };
        let mut rsyslogd = Rsyslogd {
            dir,
            listener,
            address,
            child: None,
            runs: 0,
        };
        if listener == Listener::Tls {
            rsyslogd.write_certificate();
        }
        rsyslogd.run();
        rsyslogd
    }

    /// Where a sink sends: `127.0.0.1:PORT` or the socket path.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The PEM certificate the TLS listener presents (its own CA).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Kills rsyslogd: the receiver is down until [`Rsyslogd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.listener == Listener::Unix {
            let _ = fs::remove_file(&self.address);
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Every message received so far (the output file is appended, across restarts too).
    pub fn messages(&self) -> Vec<SyslogMessage> {
        let text = fs::read_to_string(self.output()).unwrap_or_default();
        text.lines()
            .filter(|line| line.ends_with('}'))
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("rsyslog line {line}: {e}"))
            })
            .filter(|message: &SyslogMessage| message.msgid != "ready-probe")
            .collect()
    }

    /// Waits until `check` holds for the messages received so far.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[SyslogMessage]) -> bool,
    ) -> Vec<SyslogMessage> {
        wait::until(&format!("rsyslogd to receive {what}"), timeout, || {
            let messages = self.messages();
            check(&messages).then_some(messages)
        })
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("messages.jsonl")
    }

    fn write_certificate(&self) {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("self-signed certificate");
        fs::write(self.ca_file(), certified.cert.pem()).expect("cert.pem");
        fs::write(
            self.dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .expect("key.pem");
    }

    fn run(&mut self) {
        self.runs += 1;
        let dir = self.dir.path();
        let work = dir.join("work");
        fs::create_dir_all(&work).expect("work dir");
        let port_file = dir.join("tcp.port");
        let _ = fs::remove_file(&port_file);
        let config = dir.join("rsyslog.conf");
        fs::write(&config, self.config(&work, &port_file)).expect("rsyslog.conf");
        let log = fs::File::create(dir.join("rsyslogd.log")).expect("rsyslogd.log");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect(
                "rsyslogd (apt-get install rsyslog rsyslog-openssl; cargo xtask test installs it)",
            );
        self.child = Some(child);
        self.wait_ready(&port_file);
    }

    fn wait_ready(&mut self, port_file: &Path) {
        match self.listener {
            Listener::Tcp | Listener::Tls => {
                if self.address.is_empty() {
                    let port = wait::until("rsyslogd's TCP port file", READY_TIMEOUT, || {
                        self.check_alive();
                        fs::read_to_string(port_file)
                            .ok()
                            .and_then(|text| text.trim().parse::<u16>().ok())
                    });
                    self.address = format!("127.0.0.1:{port}");
                }
                wait::until("rsyslogd to accept on TCP", READY_TIMEOUT, || {
                    self.check_alive();
                    TcpStream::connect(&self.address).ok()
                });
            }
            Listener::Udp | Listener::Unix => {
                // Datagrams say nothing about a listener: probe until one is written out.
                let probe = format!("<14>1 - - probe - ready-probe - ready-{}", self.runs);
                let output = self.output();
                let expected = format!("\"ready-{}\"", self.runs);
                let seen = || {
                    fs::read_to_string(&output)
                        .unwrap_or_default()
                        .contains(&expected)
                };
                wait::until("rsyslogd to write a probe datagram", READY_TIMEOUT, || {
                    self.check_alive();
                    self.send_probe(&probe);
                    seen().then_some(())
                });
            }
        }
    }

    fn send_probe(&self, probe: &str) {
        match self.listener {
            Listener::Udp => {
                if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
                    let _ = socket.send_to(probe.as_bytes(), &self.address);
                }
            }
            Listener::Unix => {
                if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
                    let _ = socket.send_to(probe.as_bytes(), &self.address);
                }
            }
            Listener::Tcp | Listener::Tls => {}
        }
    }

    fn check_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default();
                panic!("rsyslogd exited ({status}): {log}");
            }
        }
    }

    fn config(&self, work: &Path, port_file: &Path) -> String {
        let dir = self.dir.path().display();
        let output = self.output();
        let mut conf = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"256k\")\n{TEMPLATE}\n\
             ruleset(name=\"warden\") {{ action(type=\"omfile\" file=\"{output}\" template=\"wardenJson\") }}\n",
            work = work.display(),
            output = output.display(),
        );
        let port = self
            .address
            .rsplit_once(':')
            .map_or("0", |(_, port)| port)
            .to_owned();
        let listen = match self.listener {
            Listener::Tcp => format!(
                "module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" \
                 listenPortFileName=\"{}\" ruleset=\"warden\")\n",
                port_file.display()
            ),
            Listener::Tls => format!(
                "global(DefaultNetstreamDriverCAFile=\"{dir}/cert.pem\" \
                 DefaultNetstreamDriverCertFile=\"{dir}/cert.pem\" \
                 DefaultNetstreamDriverKeyFile=\"{dir}/key.pem\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"anon\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" \
                 listenPortFileName=\"{}\" ruleset=\"warden\")\n",
                port_file.display()
            ),
            Listener::Udp => format!(
                "module(load=\"imudp\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"warden\")\n"
            ),
            // The special parser expects the local legacy format and the socket's own clock stamps
            // messages by default; Warden sends RFC 5424 with its own timestamps.
            Listener::Unix => format!(
                "module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{}\" UseSpecialParser=\"off\" \
                 IgnoreTimestamp=\"off\" ParseHostname=\"on\" RateLimit.Interval=\"0\" ruleset=\"warden\")\n",
                self.address
            ),
        };
        conf.push_str(&listen);
        conf
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Each RFC 5424 field as a JSON string, one message a line.
const TEMPLATE: &str = r#"template(name="wardenJson" type="list") {
  constant(value="{")
  property(outname="pri" name="pri" format="jsonf")
  constant(value=",")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  constant(value=",")
  property(outname="hostname" name="hostname" format="jsonf")
  constant(value=",")
  property(outname="app_name" name="app-name" format="jsonf")
  constant(value=",")
  property(outname="procid" name="procid" format="jsonf")
  constant(value=",")
  property(outname="msgid" name="msgid" format="jsonf")
  constant(value=",")
  property(outname="structured_data" name="structured-data" format="jsonf")
  constant(value=",")
  property(outname="msg" name="msg" format="jsonf")
  constant(value="}\n")
}"#;
