//! Phase 7, forward: the permitted request goes to the upstream with hop-by-hop headers and the
//! gateway's session cookie removed, the gateway's own headers set (request id, terminal,
//! facility) and the signed assertion of who asks for what (`assertion.rs`). The body streams
//! through, cut off at the configured limit.
//!
//! Two orders, both keeping the rule that no answer reaches the terminal before its decision
//! record is durable: [`Gateway::forward`] sends once the record is durable (unsafe methods,
//! upgrades, routes with `strict_audit`); [`Gateway::forward_while_recording`] sends a safe
//! request while its record commits and holds the upstream's answer until the record is
//! durable — if it cannot be made durable, the answer is discarded and the terminal gets 503.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use sekisho_audit::{AuditError, Event};
use sekisho_protocol::Reason;
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;
use crate::body::{Body, BoxError};
use crate::headers;
use crate::upstream::ForwardError;

type Sent = Result<Response<Incoming>, ForwardError>;

impl Gateway {
    /// Whether this request may go on while its decision record commits: a safe method, no
    /// upgrade, on a route that does not ask for the strict order — and a store neither known
    /// to be down nor failing its writes (a full disk): then the record cannot be written, so
    /// the upstream is not asked at all.
    pub(super) fn may_overlap(&self, req: &Request<Incoming>, ctx: &RequestCtx<'_>) -> bool {
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        safe && !req.headers().contains_key(http::header::UPGRADE)
            && ctx.route.as_ref().is_some_and(|r| !r.config.strict_audit)
            && !self.audit.store_unreachable()
            && !self.audit.writes_failing()
    }

    /// Forwards a request whose decision record is already durable.
    pub(super) async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: RequestCtx<'_>,
    ) -> Response<Body> {
        let fault = BodyFault::default();
        let (out, upgrade) = match self.upstream_request(req, &ctx, &fault) {
            Ok(x) => x,
            Err(reason) => return self.failed(ctx, reason),
        };
        let waiting = Unanswered::watch(self, ctx);
        let sent = self.send(out, waiting.ctx()).await;
        if sent.is_err()
            && let Some(end) = fault.get()
        {
            return self.body_broke(end, waiting);
        }
        self.answer(sent, waiting.answered(), upgrade)
    }

    /// Forwards a safe request while `durable` (its decision record's commit) completes, and
    /// releases the answer only once it has.
    pub(super) async fn forward_while_recording(
        &self,
        req: Request<Incoming>,
        ctx: RequestCtx<'_>,
        durable: impl Future<Output = Result<u64, AuditError>>,
    ) -> Response<Body> {
        let waiting = Unanswered::watch(self, ctx);
        let fault = BodyFault::default();
        let (recorded, sent) = match self.upstream_request(req, waiting.ctx(), &fault) {
            Ok((out, _)) => {
                let (recorded, sent) = tokio::join!(durable, self.send(out, waiting.ctx()));
                (recorded, Ok(sent))
            }
            Err(reason) => (durable.await, Err(reason)),
        };
        if let Err(e) = recorded {
            let ctx = waiting.answered();
            warn!(request_id = ctx.id, error = %e, "audit append failed; the upstream's answer is withheld");
            return self.withheld(ctx);
        }
        if matches!(sent, Ok(Err(_)))
            && let Some(end) = fault.get()
        {
            return self.body_broke(end, waiting);
        }
        let ctx = waiting.answered();
        match sent {
            Ok(sent) => self.answer(sent, ctx, None),
            Err(reason) => self.failed(ctx, reason),
        }
    }

    /// The request as the upstream gets it, and the client's side of a permitted upgrade.
    fn upstream_request(
        &self,
        mut req: Request<Incoming>,
        ctx: &RequestCtx<'_>,
        fault: &BodyFault,
    ) -> Result<(Request<Body>, Option<OnUpgrade>), Reason> {
        let route = ctx.route.as_ref().ok_or(Reason::RouteNotMapped)?;
        let (_, terminal) = ctx.terminal.ok_or(Reason::NoClientCertificate)?;
        let upgrade = route.config.websocket && req.headers().contains_key(http::header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        crate::signin::strip_session_cookie(&mut parts.headers);
        let jwt = self.assertion(ctx).map_err(|e| {
            warn!(request_id = ctx.id, error = %e, "cannot sign the assertion");
            Reason::AssertionFailed
        })?;
        let h = &mut parts.headers;
        // Terminal and facility ids are restricted to [A-Za-z0-9._-] by the CA, so they are safe here.
        for (name, value) in [
            (&headers::REQUEST_ID, ctx.id.as_str()),
            (&headers::ASSERTION, jwt.as_str()),
            (&headers::TERMINAL, terminal.terminal.as_str()),
            (&headers::FACILITY, terminal.facility.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name.clone(), v);
            }
        }
        crate::notices::mark(h, ctx.notices_shown);
        let max = self.cfg.limits.max_body_bytes as usize;
        let fault = fault.clone();
        let body: Body = Limited::new(body, max)
            .map_err(move |e| -> BoxError {
                fault.note(e.as_ref());
                e
            })
            .boxed();
        Ok((Request::from_parts(parts, body), client_upgrade))
    }

    /// The upstream call failed because the terminal's body did: its fault, not the
    /// upstream's. A terminal that went away gets no page (nobody would read it) and an
    /// outcome record saying so (`Unanswered`).
    fn body_broke(&self, end: BodyEnd, waiting: Unanswered<'_, '_>) -> Response<Body> {
        let reason = match end {
            BodyEnd::Gone => {
                let ctx = waiting.ctx();
                let resp = super::refusal::response(Reason::BadRequest, &ctx.id, ctx.wants_json);
                drop(waiting);
                return resp;
            }
            BodyEnd::TooLarge => Reason::BodyTooLarge,
            BodyEnd::Malformed => Reason::BadRequest,
        };
        self.failed(waiting.answered(), reason)
    }

    async fn send(&self, out: Request<Body>, ctx: &RequestCtx<'_>) -> Sent {
        let path_and_query = ctx.route.as_ref().map_or("/", |r| &r.path_and_query);
        self.upstream.send(out, path_and_query).await
    }

    fn answer(
        &self,
        sent: Sent,
        ctx: RequestCtx<'_>,
        upgrade: Option<OnUpgrade>,
    ) -> Response<Body> {
        match sent {
            Ok(resp) => self.deliver(resp, ctx, upgrade),
            Err(e) => {
                warn!(request_id = ctx.id, error = %e, "forwarding failed");
                self.failed(ctx, e.refusal())
            }
        }
    }
}

/// A permitted request on its way to the upstream, holding its context until the answer. If
/// its future is dropped before then (an HTTP/2 stream reset, a closed connection), the
/// terminal went away: an outcome record says so — for the first few per connection; the rest
/// are counted in the connection's closing record. It holds the context itself, not a copy of
/// the record: a copy for the rare abort was a dozen allocations on every request.
struct Unanswered<'g, 'c> {
    gw: &'g Gateway,
    ctx: Option<RequestCtx<'c>>,
}

impl<'g, 'c> Unanswered<'g, 'c> {
    fn watch(gw: &'g Gateway, ctx: RequestCtx<'c>) -> Self {
        Unanswered { gw, ctx: Some(ctx) }
    }

    fn ctx(&self) -> &RequestCtx<'c> {
        self.ctx.as_ref().expect("held until answered")
    }

    /// The answer is here (or the request failed otherwise): the context goes back.
    fn answered(mut self) -> RequestCtx<'c> {
        self.ctx.take().expect("held until answered")
    }
}

impl Drop for Unanswered<'_, '_> {
    fn drop(&mut self) {
        let Some(ctx) = self.ctx.take() else {
            return;
        };
        self.gw
            .metrics
            .request("aborted", "client_went_away", ctx.seconds());
        if ctx.conn.aborted_one() {
            let mut rec = ctx.record;
            rec.event = Event::Outcome;
            rec.time = String::new();
            rec.reason = "client_went_away".into();
            rec.detail = Some("the terminal went away before the answer".into());
            self.gw.audit.append_nowait(rec);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyEnd {
    /// Past `limits.max_body_bytes`.
    TooLarge,
    /// Bad chunk framing, an HTTP/2 DATA length other than its `content-length`, a stream
    /// error the gateway raised.
    Malformed,
    /// The connection closed or the stream was cancelled.
    Gone,
}

/// How the terminal's request body ended short, noted while the upstream reads it.
#[derive(Clone, Default)]
struct BodyFault(Arc<OnceLock<BodyEnd>>);

impl BodyFault {
    fn note(&self, e: &(dyn std::error::Error + 'static)) {
        let _ = self.0.set(body_end(e));
    }

    fn get(&self) -> Option<BodyEnd> {
        self.0.get().copied()
    }
}

fn body_end(e: &(dyn std::error::Error + 'static)) -> BodyEnd {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<LengthLimitError>() {
            return BodyEnd::TooLarge;
        }
        if let Some(h) = err.downcast_ref::<h2::Error>() {
            let cancelled = h.is_remote()
                && matches!(h.reason(), Some(h2::Reason::CANCEL | h2::Reason::NO_ERROR));
            return if cancelled || h.is_io() {
                BodyEnd::Gone
            } else {
                BodyEnd::Malformed
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        {
            return BodyEnd::Malformed;
        }
        cur = err.source();
    }
    BodyEnd::Gone
}
