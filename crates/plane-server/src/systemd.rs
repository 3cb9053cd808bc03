//! The systemd notify protocol, by hand (a datagram to `$NOTIFY_SOCKET`): smaller than a
//! crate for the two messages `serve` sends.
//!
//! `READY=1` goes out once the store is open and the socket listens, so a unit with
//! `Type=notify` is started only when deliveries can be taken; `STOPPING=1` when a
//! shutdown begins, while in-flight requests drain. Without `NOTIFY_SOCKET` (not under
//! systemd) nothing is sent.

use std::io;

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to the socket named by `NOTIFY_SOCKET`.
/// `Ok(false)` when the variable is not set.
///
/// ```
/// # #[cfg(unix)] {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("notify");
/// let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
/// assert!(plane_server::systemd::notify_to(Some(path.as_os_str()), "READY=1").unwrap());
/// let mut buf = [0u8; 64];
/// let n = socket.recv(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"READY=1");
/// assert!(!plane_server::systemd::notify_to(None, "READY=1").unwrap());
/// # }
/// ```
pub fn notify(state: &str) -> io::Result<bool> {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// As [`notify`], to the socket `path` (`@name` for Linux's abstract namespace).
#[cfg(unix)]
pub fn notify_to(path: Option<&std::ffi::OsStr>, state: &str) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::UnixDatagram;

    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    match path.as_bytes().strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &address)?;
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract NOTIFY_SOCKET names exist on Linux only",
            ));
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(true)
}

/// Not on unix: there is no systemd to tell.
#[cfg(not(unix))]
pub fn notify_to(_path: Option<&std::ffi::OsStr>, _state: &str) -> io::Result<bool> {
    Ok(false)
}
