//! `serve` under systemd's `Type=notify`, through a fake `NOTIFY_SOCKET`: `READY=1` only
//! once the socket listens (a request right after it is answered), `STOPPING=1` when a
//! SIGTERM starts the drain, then exit 0.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_says_ready_once_it_listens_and_stopping_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    // Generous: a first start on a busy machine; the assertion is on what arrives.
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify)
        .env("PLANE_WEBHOOK_SECRET", "fake-webhook-secret")
        .env("PLANE_DATABASE_URL", dir.path().join("plane.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    assert_eq!(next_message(&socket), "READY=1");
    // Ready means listening: the first request, sent right now, is answered.
    let health = std::net::TcpStream::connect(("127.0.0.1", port)).map(|mut s| {
        use std::io::{Read as _, Write as _};
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    assert!(health.unwrap().starts_with("HTTP/1.1 200"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(next_message(&socket), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}
