//! systemd's readiness and watchdog protocol (`sd_notify`, `Type=notify` in
//! `deploy/systemd/sekisho.service`): `READY=1` once every listener accepts, `WATCHDOG=1` from
//! the watcher's loop — so a gateway whose background loop (registry, CRL, sessions) stalls is
//! restarted — and `STOPPING=1` when it shuts down. Without `NOTIFY_SOCKET` (not under
//! systemd) nothing is sent. A datagram on a Unix socket; no library needed.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` to systemd, if it asked for notifications. Failures are logged, never fatal:
/// the gateway serves the same either way.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): systemd's usual choice.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

/// Half of the watchdog interval systemd set (`WATCHDOG_USEC`), if it set one for this
/// process.
pub fn watchdog_every() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
