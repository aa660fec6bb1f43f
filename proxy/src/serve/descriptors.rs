//! File descriptors: every terminal connection holds a socket, and usually one to the upstream
//! beside it, so `limits.max_connections` is only reachable when RLIMIT_NOFILE allows about
//! twice as many descriptors. Like nginx's `worker_rlimit_nofile`, `serve` raises its soft
//! limit to what the configuration needs (never above the hard limit, never lowering it) and
//! says at start what it got. The systemd unit sets the hard limit (`LimitNOFILE=`): under its
//! `SystemCallFilter=~@resources` the gateway could not raise it itself.

use tracing::{info, warn};

/// Descriptors beside the terminal connections: listeners, the store's pool, the audit
/// writer, log and key files, the management and enrollment listeners' clients.
const RESERVE: u64 = 1024;

/// What `max_connections` terminal connections need.
pub fn wanted(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVE)
}

/// RLIMIT_NOFILE as it stands after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE towards `wanted(max_connections)`, up to the hard limit, and
/// logs the outcome: a warning with the figures when the limit stays below what the
/// configuration needs (connections past it fail at accept, counted in `/metrics`).
pub fn raise(max_connections: usize) -> Option<Nofile> {
    let want = wanted(max_connections);
    let got = match raise_soft(want) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot read or raise RLIMIT_NOFILE");
            return None;
        }
    };
    if got.soft < want {
        warn!(
            soft = got.soft,
            hard = got.hard,
            wanted = want,
            max_connections,
            "RLIMIT_NOFILE is below what limits.max_connections needs (about two descriptors a \
             connection): raise LimitNOFILE= in the unit, or lower max_connections"
        );
    } else {
        info!(soft = got.soft, hard = got.hard, "file descriptor limit");
    }
    Some(got)
}

fn raise_soft(want: u64) -> std::io::Result<Nofile> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // `None` is "unlimited".
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let mut soft = lim.current.unwrap_or(u64::MAX);
    let target = want.min(hard);
    if soft < target {
        // At most the hard limit: no privilege needed.
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: lim.maximum,
            },
        )?;
        soft = target;
    }
    Ok(Nofile { soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_a_connection_and_a_reserve() {
        assert_eq!(wanted(0), RESERVE);
        assert_eq!(wanted(16_384), 33_792);
        assert_eq!(wanted(usize::MAX), u64::MAX);
    }

    #[test]
    fn the_soft_limit_rises_to_the_hard_one_and_never_falls() {
        let before = raise_soft(0).expect("getrlimit");
        // Asking for less changes nothing.
        assert_eq!(raise_soft(before.soft.saturating_sub(1)).unwrap(), before);
        // Asking for more than the hard limit stops at it.
        let after = raise_soft(u64::MAX).expect("setrlimit within the hard limit");
        assert_eq!(after.hard, before.hard);
        assert_eq!(after.soft, before.hard);
    }
}
