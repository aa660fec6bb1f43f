//! RFC 5424 syslog messages over TLS (RFC 5425), as IHE ATNA's Record Audit Event [ITI-20]
//! sends them: octet-counted frames on one long-lived connection.
//!
//! Syslog over TLS has no acknowledgement: a write that succeeded only put the bytes in a
//! buffer, and a receiver that dies loses what it had not read. So the cursor does not move
//! when a message is written, but when it has been written `confirm_after` ago on a connection
//! that is still up (a receiver that dies with messages unread resets or closes it, and the
//! read side sees that), or when the receiver, after our TLS close_notify and FIN, closes its
//! side too — it has read everything by then. After a broken connection the messages not yet
//! confirmed are sent again: a receiver may see a few twice, told apart by the leaf index in
//! `[meta sequenceId]`; it misses none.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use sekisho_audit::{AuditRecord, Decision};

/// Facility 10 (security/authorization messages), as ATNA asks.
const FACILITY: u8 = 10;

/// The MSGID and APP-NAME of a message of each form.
pub fn msgid(atna: bool) -> &'static str {
    if atna {
        "IHE+RFC-3881"
    } else {
        "sekisho-audit"
    }
}

/// One RFC 5424 message (without the frame's length): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME
/// PROCID MSGID [meta sequenceId="…"] BOM MSG`.
pub fn message(rec: &AuditRecord, idx: u64, host: &str, atna: bool, body: &str) -> String {
    // Notice for what was allowed, warning for a refusal.
    let severity = if rec.decision == Decision::Deny { 4 } else { 5 };
    let mut m = String::with_capacity(body.len() + 128);
    let _ = write!(
        m,
        "<{}>1 {} {} sekisho - {} [meta sequenceId=\"{}\"] \u{FEFF}{}",
        FACILITY * 8 + severity,
        header_field(&rec.time, 128),
        header_field(host, 255),
        msgid(atna),
        // RFC 5424 7.3.1: 1..2147483647; the leaf index, counted from 1 and wrapping.
        idx % 2_147_483_647 + 1,
        body
    );
    m
}

/// A header field: printable US-ASCII without spaces, at most `max` long, or the nil value.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// RFC 5425 framing: the message's length in octets, a space, the message.
pub fn frame(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

pub struct SyslogSink {
    host: String,
    addr: String,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    timeout: Duration,
    confirm_after: Duration,
    conn: Option<Conn>,
}

struct Conn {
    writer: WriteHalf<TlsStream<TcpStream>>,
    /// Fires when the receiver closes or resets the connection.
    closed: oneshot::Receiver<std::io::Result<()>>,
    /// (the record after the last one written, when), oldest first.
    written: VecDeque<(u64, Instant)>,
}

/// Where a syslog destination is and how it is trusted.
pub struct SyslogTarget<'a> {
    /// `HOST:PORT` (RFC 5425's port is 6514).
    pub address: &'a str,
    /// PEM certificates the receiver's certificate must chain to (never the system's roots).
    pub ca_pem: &'a [u8],
    /// A client certificate and key (PEM) for receivers that authenticate senders.
    pub client: Option<(&'a [u8], &'a [u8])>,
}

impl SyslogSink {
    /// `host`: the HOSTNAME field (this gateway's node name).
    pub fn new(
        host: &str,
        t: SyslogTarget<'_>,
        timeout: Duration,
        confirm_after: Duration,
    ) -> Result<SyslogSink> {
        let (name, _port) = t
            .address
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            .with_context(|| format!("syslog address {:?} is not HOST:PORT", t.address))?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a host name or address"))?;
        let roots = sekisho_audit::client::roots(t.ca_pem, "the syslog CA file")?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let cfg = match t.client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .context("the syslog client certificate is not PEM")?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .context("the syslog client key is not a PEM private key")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(SyslogSink {
            host: host.to_string(),
            addr: t.address.to_string(),
            tls: TlsConnector::from(Arc::new(cfg)),
            server_name,
            timeout,
            confirm_after,
            conn: None,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&self) -> Result<Conn> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| anyhow!("connecting to {} timed out", self.addr))?
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = tokio::time::timeout(
            self.timeout,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS with {} timed out", self.addr))?
        .with_context(|| format!("TLS with {} failed", self.addr))?;
        let (mut reader, writer) = tokio::io::split(tls);
        let (tx, closed) = oneshot::channel();
        // A receiver never speaks; reading only finds out when it goes away.
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let r = loop {
                match reader.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(_) => continue,
                    Err(e) => break Err(e),
                }
            };
            let _ = tx.send(r);
        });
        Ok(Conn {
            writer,
            closed,
            written: VecDeque::new(),
        })
    }

    /// Writes the frames of records up to (not including) `next`.
    pub async fn send(&mut self, frames: &[String], next: u64) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected");
        let bytes: String = frames.concat();
        let wrote = tokio::time::timeout(self.timeout, async {
            conn.writer.write_all(bytes.as_bytes()).await?;
            conn.writer.flush().await
        })
        .await;
        match wrote {
            Ok(Ok(())) => {
                conn.written.push_back((next, Instant::now()));
                Ok(())
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e).with_context(|| format!("writing to {} failed", self.addr))
            }
            Err(_) => {
                self.conn = None;
                bail!(
                    "writing to {} timed out (the receiver stopped reading)",
                    self.addr
                )
            }
        }
    }

    /// The record after the last one confirmed since the last call (`None`: nothing new). An
    /// error when the connection broke: what was not confirmed must be sent again.
    pub fn confirmed(&mut self) -> Result<Option<u64>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        match conn.closed.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => {}
            Ok(r) => {
                self.conn = None;
                return Err(match r {
                    Ok(()) => anyhow!("{} closed the connection", self.addr),
                    Err(e) => anyhow!("the connection to {} broke: {e}", self.addr),
                });
            }
            Err(oneshot::error::TryRecvError::Closed) => {
                self.conn = None;
                bail!("the connection to {} broke", self.addr);
            }
        }
        let mut upto = None;
        while let Some(&(next, at)) = conn.written.front() {
            if at.elapsed() < self.confirm_after {
                break;
            }
            upto = Some(next);
            conn.written.pop_front();
        }
        Ok(upto)
    }

    /// Closes the connection in order: close_notify and FIN, then waits (up to `grace`) for
    /// the receiver to close its side, which it does once it has read everything. `Some`: all
    /// that was written is confirmed.
    pub async fn close(&mut self, grace: Duration) -> Option<u64> {
        let mut conn = self.conn.take()?;
        let last = conn.written.back().map(|w| w.0);
        let closed = async {
            conn.writer.shutdown().await.ok()?;
            match tokio::time::timeout(grace, &mut conn.closed).await {
                Ok(Ok(Ok(()))) => Some(()),
                _ => None,
            }
        }
        .await;
        closed.and(last)
    }

    /// Drops the connection (after an error: the next send connects again).
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_the_rfc5424_header_and_a_bom() {
        let rec = AuditRecord {
            time: "2025-04-01T09:30:00.123Z".into(),
            decision: Decision::Deny,
            ..Default::default()
        };
        let m = message(&rec, 41, "gw 1\n", true, "<AuditMessage/>");
        assert_eq!(
            m,
            "<84>1 2025-04-01T09:30:00.123Z gw1 sekisho - IHE+RFC-3881 [meta sequenceId=\"42\"] \u{FEFF}<AuditMessage/>"
        );
        let f = frame(&m);
        let (len, rest) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(
            message(&rec, 2_147_483_647, "", false, "x")
                .split(' ')
                .nth(2),
            Some("-")
        );
    }
}
