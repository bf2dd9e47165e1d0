//! Sockets that change hands: a Python program that creates a TCP socket in one process and
//! connects it in another (passed over a unix socket with SCM_RIGHTS), or connects it only once
//! its process has been moved to another cgroup.
//!
//! Whoever connects then makes a real TLS chat request on that socket (Python's `ssl` and
//! `http.client`, trusting `SSL_CERT_FILE`) and prints one JSON line with its pid and the answer;
//! a handed-over UDP socket is used for one datagram.

use std::path::{Path, PathBuf};

use crate::client::Client;
use crate::curl::CHAT_BODY;

/// `give UNIX_PATH [udp]`: create a TCP (or UDP) socket, send it to the listener at UNIX_PATH,
/// close it, exit.
/// `take UNIX_PATH HOST`: listen at UNIX_PATH (print `listening`), receive a socket, connect it
/// to HOST:443 and make the chat request on it.
/// `later FIFO HOST`: create a TCP socket, print `created`, wait until FIFO is written, then
/// connect it to HOST:443 and make the chat request on it.
/// `send UNIX_PATH HOST`: listen at UNIX_PATH (print `listening`), receive a UDP socket, send a
/// datagram to HOST:443 with it and print `sent` or `errno N`.
pub const SCRIPT: &str = r#"
import http.client, json, os, socket, ssl, sys

def chat(sock, host, body):
    sock.connect((host, 443))
    tls = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    conn = http.client.HTTPSConnection(host)
    conn.sock = tls
    conn.request("POST", "/v1/chat/completions", body=body, headers={
        "content-type": "application/json", "authorization": "Bearer sk-test"})
    response = conn.getresponse()
    print(json.dumps({"pid": os.getpid(), "status": response.status,
                      "body": json.loads(response.read())}), flush=True)

mode, path = sys.argv[1], sys.argv[2]
if mode == "give":
    kind = socket.SOCK_DGRAM if sys.argv[3:] == ["udp"] else socket.SOCK_STREAM
    sock = socket.socket(socket.AF_INET, kind)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.connect(path)
    socket.send_fds(unix, [b"socket"], [sock.fileno()])
    sock.close()
    unix.close()
    print(json.dumps({"pid": os.getpid()}), flush=True)
elif mode == "take":
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("listening", flush=True)
    unix, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(unix, 16, 1)
    chat(socket.socket(fileno=fds[0]), sys.argv[3], sys.argv[4])
elif mode == "send":
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("listening", flush=True)
    unix, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(unix, 16, 1)
    try:
        socket.socket(fileno=fds[0]).sendto(b"quic?", (sys.argv[3], 443))
        print("sent", flush=True)
    except OSError as error:
        print(f"errno {error.errno}", flush=True)
elif mode == "later":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("created", flush=True)
    with open(path) as fifo:
        fifo.read()
    chat(sock, sys.argv[3], sys.argv[4])
else:
    sys.exit("usage: give UNIX_PATH [udp] | take UNIX_PATH HOST BODY | later FIFO HOST BODY"
             " | send UNIX_PATH HOST")
"#;

/// The line `take` prints once it listens.
pub const LISTENING: &str = "listening";
/// The line `later` prints once its socket exists.
pub const CREATED: &str = "created";

/// The process that creates a socket and hands it over to the one listening at `unix_path`.
pub fn give(python: &Path, unix_path: &Path) -> Client {
    Client::new(argv(python, &["give", &unix_path.display().to_string()]))
}

/// Like [`give`], with a UDP socket.
pub fn give_udp(python: &Path, unix_path: &Path) -> Client {
    Client::new(argv(
        python,
        &["give", &unix_path.display().to_string(), "udp"],
    ))
}

/// The process that receives a UDP socket at `unix_path` and sends a datagram to `ip`:443 on it.
pub fn send(python: &Path, unix_path: &Path, ip: &str) -> Client {
    Client::new(argv(
        python,
        &["send", &unix_path.display().to_string(), ip],
    ))
}

/// The process that receives a socket at `unix_path` and makes the chat request to `host` on it.
pub fn take(python: &Path, unix_path: &Path, host: &str) -> Client {
    Client::new(argv(
        python,
        &["take", &unix_path.display().to_string(), host, CHAT_BODY],
    ))
}

/// The process that creates its socket, then waits for `fifo` before making the chat request.
pub fn later(python: &Path, fifo: &Path, host: &str) -> Client {
    Client::new(argv(
        python,
        &["later", &fifo.display().to_string(), host, CHAT_BODY],
    ))
}

fn argv(python: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = vec![python.display().to_string(), "-c".into(), SCRIPT.into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// A named pipe at `dir/name` (mkfifo), for `later` to wait on.
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .expect("a fifo path without NUL");
    // SAFETY: a NUL-terminated path and a mode.
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(
        made,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    path
}
