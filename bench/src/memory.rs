//! Memory per idle mTLS connection: RSS of a proxy (VmRSS from `/proc/<pid>/status`, summed
//! over its processes) before and after N connections are opened and left idle. Each connection
//! does a full TLS handshake with the client certificate and one `GET /` (so it is established
//! at the HTTP layer, and the proxy has made whatever per-connection state a request needs),
//! then sits idle. They are opened with bounded concurrency.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;

use crate::load::{self, ClientTls, Mode};
use crate::process::interrupted;

/// VmRSS of the processes `pids`, summed, in KiB (a process that is gone counts 0).
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| vm_rss_kib(p).ok()).sum()
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Connections held open by the benchmark; dropping this closes them all.
pub struct IdleConnections {
    conns: Vec<SendRequest<Empty<Bytes>>>,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Time to open all of them (handshake + one request each).
    pub took: Duration,
}

impl IdleConnections {
    /// Connections whose server has not closed them (yet).
    pub fn still_open(&self) -> usize {
        self.conns.iter().filter(|c| !c.is_closed()).count()
    }

    pub fn opened(&self) -> usize {
        self.conns.len()
    }
}

/// Opens `n` connections to `addr`, at most `concurrency` handshaking at once; each makes a
/// full handshake (no resumption) and one `GET /` that must answer 200, then stays open.
/// Prints progress to stdout every `n / 5` connections.
pub async fn open_idle(
    addr: SocketAddr,
    tls: &ClientTls,
    n: usize,
    concurrency: usize,
    label: &str,
) -> Result<IdleConnections> {
    let config = tls.for_mode(Mode::FullHandshake);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut first_error = None;
    let mut pending = tokio::task::JoinSet::new();
    let mut launched = 0usize;
    let step = (n / 5).max(1);
    let mut next_report = step;
    while conns.len() + (failed as usize) < n {
        if interrupted() {
            bail!("interrupted");
        }
        while launched < n && pending.len() < concurrency.max(1) {
            let config = config.clone();
            pending.spawn(async move {
                let attempt = async {
                    let (mut conn, _) = load::connect(addr, config).await?;
                    let status = load::get(&mut conn, false).await?;
                    if status != StatusCode::OK {
                        bail!("GET / answered {status}");
                    }
                    Ok(conn)
                };
                tokio::time::timeout(load::REQUEST_TIMEOUT, attempt)
                    .await
                    .map_err(|_| anyhow!("handshake + request timed out"))?
            });
            launched += 1;
        }
        let Some(joined) = pending.join_next().await else {
            break;
        };
        match joined.context("connection task panicked")? {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                failed += 1;
                if first_error.is_none() {
                    first_error = Some(format!("{e:#}"));
                }
            }
        }
        let done = conns.len() + failed as usize;
        if done >= next_report && done < n {
            println!(
                "    {label}: {done}/{n} opened ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            next_report += step;
        }
    }
    Ok(IdleConnections {
        conns,
        failed,
        first_error,
        took: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let status = "Name:\tnginx\nVmPeak:\t  1000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
        assert!(rss_kib(&[std::process::id()]) > 0);
    }
}
