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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use sekisho_protocol::{Reason, TerminalId};

use super::Gateway;
use super::connection::Connection;
use super::context::RequestCtx;
use crate::body::{Body, BoxError};

#[derive(Clone, Copy)]
enum Kind {
    Requests = 0,
    Upstream = 1,
}

/// The terminals with a connection open, each with the counts its connections share. The map
/// is touched once per connection, when it opens and closes; a request only counts in and out
/// on its connection's [`Slot`], without a lock.
#[derive(Default)]
pub(super) struct TerminalLoad {
    slots: Mutex<HashMap<String, Weak<Slot>>>,
}

/// What one terminal has in progress, across its connections.
#[derive(Default)]
pub(super) struct Slot {
    counts: [AtomicUsize; 2],
}

/// A connection's hold on its terminal's slot: the map forgets the terminal when the last one
/// goes.
pub(super) struct SlotRef {
    load: Arc<TerminalLoad>,
    key: String,
    slot: Arc<Slot>,
}

/// One counted request; dropping it counts it out.
pub(super) struct LoadPermit {
    slot: Arc<Slot>,
    kind: Kind,
}

impl TerminalLoad {
    /// The slot of the terminal a connection's certificate names (the identity checked against
    /// the registry later, on every request). Connections without one are not counted: all
    /// they get is a refusal page, bounded by `limits.max_connections` and the streams per
    /// connection.
    pub(super) fn join(self: &Arc<Self>, terminal: Option<&TerminalId>) -> Option<SlotRef> {
        let t = terminal?;
        let key = format!("{}/{}", t.facility, t.terminal);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match slots.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(Slot::default());
                slots.insert(key.clone(), Arc::downgrade(&s));
                s
            }
        };
        Some(SlotRef {
            load: self.clone(),
            key,
            slot,
        })
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        let mut slots = self.load.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Under the map's lock no other connection can take a new hold on this slot, so one
        // strong count left (this one) means the terminal has nothing else open. A permit that
        // outlives its connection keeps the slot and its entry: a connection the terminal opens
        // meanwhile shares them, and once the permit is gone the dead entry is replaced by the
        // terminal's next connection (at most one entry per terminal either way).
        if Arc::strong_count(&self.slot) == 1
            && slots
                .get(&self.key)
                .is_some_and(|w| w.as_ptr() == Arc::as_ptr(&self.slot))
        {
            slots.remove(&self.key);
        }
    }
}

impl Slot {
    fn enter(self: &Arc<Self>, kind: Kind, limit: usize) -> Option<LoadPermit> {
        let c = &self.counts[kind as usize];
        // Counted in first, then checked: two requests racing for the last place cannot both
        // pass, and one over the limit counts itself out again.
        if c.fetch_add(1, Ordering::AcqRel) >= limit {
            c.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(LoadPermit {
            slot: self.clone(),
            kind,
        })
    }
}

impl Drop for LoadPermit {
    fn drop(&mut self) {
        self.slot.counts[self.kind as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gateway {
    /// Counts a request in for its terminal, or refuses it.
    pub(super) fn admit_request(&self, conn: &Connection) -> Result<Option<LoadPermit>, Reason> {
        let Some(slot) = &conn.load else {
            return Ok(None);
        };
        match slot
            .slot
            .enter(Kind::Requests, self.cfg.limits.terminal_max_requests)
        {
            Some(p) => Ok(Some(p)),
            None => Err(Reason::TerminalBusy),
        }
    }

    /// Counts a decided request in as holding an upstream connection, or refuses it; the
    /// permit goes with the request to the upstream and with the answer's body back.
    pub(super) fn admit_upstream(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        let Some(slot) = &ctx.conn.load else {
            return Ok(());
        };
        let p = slot
            .slot
            .enter(Kind::Upstream, self.cfg.limits.terminal_max_upstream)
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
    fn counts_per_slot_and_forgets_terminals_without_connections() {
        let load = Arc::new(TerminalLoad::default());
        let a = Arc::new(Slot::default());
        let a1 = a.enter(Kind::Requests, 2).unwrap();
        let a2 = a.enter(Kind::Requests, 2).unwrap();
        assert!(a.enter(Kind::Requests, 2).is_none());
        // A refusal counts itself out again.
        assert_eq!(a.counts[Kind::Requests as usize].load(Ordering::Relaxed), 2);
        // Another terminal, and the other kind, are counted apart.
        let b = Arc::new(Slot::default());
        let b1 = b.enter(Kind::Requests, 2).unwrap();
        let u = a.enter(Kind::Upstream, 1).unwrap();
        assert!(a.enter(Kind::Upstream, 1).is_none());
        drop(a1);
        assert!(a.enter(Kind::Requests, 2).is_some());
        drop((a2, b1, u));
        assert_eq!(a.counts[0].load(Ordering::Relaxed), 0);
        assert_eq!(a.counts[1].load(Ordering::Relaxed), 0);
        // Two connections of one terminal share its slot; the entry goes with the last of
        // them, and another terminal has a slot of its own.
        let (fa, fb) = (
            TerminalId::new("f", "a").unwrap(),
            TerminalId::new("f", "b").unwrap(),
        );
        assert!(load.join(None).is_none());
        let h1 = load.join(Some(&fa)).unwrap();
        let h2 = load.join(Some(&fa)).unwrap();
        let other = load.join(Some(&fb)).unwrap();
        assert!(Arc::ptr_eq(&h1.slot, &h2.slot));
        assert!(!Arc::ptr_eq(&h1.slot, &other.slot));
        let _p = h1.slot.enter(Kind::Requests, 1).unwrap();
        assert!(h2.slot.enter(Kind::Requests, 1).is_none());
        drop((h1, other));
        assert!(load.slots.lock().unwrap().contains_key("f/a"));
        assert!(!load.slots.lock().unwrap().contains_key("f/b"));
        drop(h2);
        // A permit still out keeps the slot and its entry; a connection opened meanwhile
        // shares them.
        let h3 = load.join(Some(&fa)).unwrap();
        assert!(h3.slot.enter(Kind::Requests, 1).is_none());
        drop((_p, h3));
        assert!(load.slots.lock().unwrap().is_empty());
    }
}
