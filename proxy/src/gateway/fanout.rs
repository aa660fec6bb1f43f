//! Per-terminal fan-out limits (`limits.terminal_max_requests`, `limits.terminal_max_upstream`):
//! HTTP/2 lets one connection carry 128 streams and a terminal may open many connections, so
//! without a bound per terminal a few unfinished POSTs from one device hold hundreds of
//! upstream connections. Requests are counted per terminal across all its connections; one
//! over a limit is refused at once (`terminal_busy`, 429 with `Retry-After`) rather than queued,
//! since only a runaway or hostile client gets there.
//!
//! The refusal is audited once per burst per connection: the first one writes its record, the
//! following ones on the same connection only count (reported in the connection's closing
//! record, `connection.rs`) until a request of that connection is admitted again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use sekisho_protocol::Reason;

use super::Gateway;
use super::connection::Connection;
use super::context::RequestCtx;
use crate::body::{Body, BoxError};

#[derive(Clone, Copy)]
enum Kind {
    Requests = 0,
    Upstream = 1,
}

/// What each terminal has in progress; an entry exists only while it has something.
#[derive(Default)]
pub(super) struct TerminalLoad {
    counts: Mutex<HashMap<String, [usize; 2]>>,
}

/// One counted request; dropping it counts it out.
pub(super) struct LoadPermit {
    load: Arc<TerminalLoad>,
    key: String,
    kind: Kind,
}

impl TerminalLoad {
    fn enter(self: &Arc<Self>, key: &str, kind: Kind, limit: usize) -> Option<LoadPermit> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts.entry(key.to_string()).or_default();
        if c[kind as usize] >= limit {
            if c == &[0, 0] {
                counts.remove(key);
            }
            return None;
        }
        c[kind as usize] += 1;
        Some(LoadPermit {
            load: self.clone(),
            key: key.to_string(),
            kind,
        })
    }
}

impl Drop for LoadPermit {
    fn drop(&mut self) {
        let mut counts = self.load.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counts.get_mut(&self.key) {
            c[self.kind as usize] -= 1;
            if c == &[0, 0] {
                counts.remove(&self.key);
            }
        }
    }
}

/// The key a terminal is counted under: the identity its certificate names (checked against
/// the registry later, on every request). Connections without one are not counted: all they
/// get is a refusal page, bounded by `limits.max_connections` and the streams per connection.
fn key(conn: &Connection) -> Option<String> {
    conn.terminal()
        .map(|t| format!("{}/{}", t.facility, t.terminal))
}

impl Gateway {
    /// Counts a request in for its terminal, or refuses it.
    pub(super) fn admit_request(&self, conn: &Connection) -> Result<Option<LoadPermit>, Reason> {
        let Some(key) = key(conn) else {
            return Ok(None);
        };
        match self
            .load
            .enter(&key, Kind::Requests, self.cfg.limits.terminal_max_requests)
        {
            Some(p) => Ok(Some(p)),
            None => Err(Reason::TerminalBusy),
        }
    }

    /// Counts a decided request in as holding an upstream connection, or refuses it; the
    /// permit goes with the request to the upstream and with the answer's body back.
    pub(super) fn admit_upstream(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        let Some(key) = key(ctx.conn) else {
            return Ok(());
        };
        let p = self
            .load
            .enter(&key, Kind::Upstream, self.cfg.limits.terminal_max_upstream)
            .ok_or(Reason::TerminalBusy)?;
        ctx.upstream_permit = Some(p);
        ctx.conn.burst_over();
        Ok(())
    }

    /// Refuses a request over a terminal's limit: recorded if it is the first of a burst on
    /// its connection, counted otherwise.
    pub(super) async fn refuse_busy(&self, mut ctx: RequestCtx<'_>) -> Response<Body> {
        if let Some(t) = ctx.conn.terminal() {
            ctx.record.terminal = Some(t.terminal.clone());
            ctx.record.facility = Some(t.facility.clone());
        }
        let mut resp = if ctx.conn.burst_begins() {
            self.refuse(ctx, Reason::TerminalBusy).await
        } else {
            self.refuse_unrecorded(&ctx, Reason::TerminalBusy)
        };
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }
}

/// The answer's body, holding the upstream permit until it has been passed on (or dropped).
pub(super) struct Held {
    pub inner: Body,
    pub _permit: Option<LoadPermit>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_forgets_idle_keys() {
        let load = Arc::new(TerminalLoad::default());
        let a1 = load.enter("f/a", Kind::Requests, 2).unwrap();
        let a2 = load.enter("f/a", Kind::Requests, 2).unwrap();
        assert!(load.enter("f/a", Kind::Requests, 2).is_none());
        // Another terminal, and the other kind, are counted apart.
        let b = load.enter("f/b", Kind::Requests, 2).unwrap();
        let u = load.enter("f/a", Kind::Upstream, 1).unwrap();
        assert!(load.enter("f/a", Kind::Upstream, 1).is_none());
        drop(a1);
        assert!(load.enter("f/a", Kind::Requests, 2).is_some());
        drop((a2, b, u));
        assert!(load.counts.lock().unwrap().is_empty());
        // A refusal for a key with nothing in progress leaves no entry behind.
        assert!(load.enter("f/c", Kind::Requests, 0).is_none());
        assert!(load.counts.lock().unwrap().is_empty());
    }
}
