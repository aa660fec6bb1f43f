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

use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use sekisho_audit::AuditError;
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
        let (out, upgrade) = match self.upstream_request(req, &ctx) {
            Ok(x) => x,
            Err(reason) => return self.failed(ctx, reason),
        };
        let sent = self.send(out, &ctx).await;
        self.answer(sent, ctx, upgrade)
    }

    /// Forwards a safe request while `durable` (its decision record's commit) completes, and
    /// releases the answer only once it has.
    pub(super) async fn forward_while_recording(
        &self,
        req: Request<Incoming>,
        ctx: RequestCtx<'_>,
        durable: impl Future<Output = Result<u64, AuditError>>,
    ) -> Response<Body> {
        let (recorded, sent) = match self.upstream_request(req, &ctx) {
            Ok((out, _)) => {
                let (recorded, sent) = tokio::join!(durable, self.send(out, &ctx));
                (recorded, Ok(sent))
            }
            Err(reason) => (durable.await, Err(reason)),
        };
        if let Err(e) = recorded {
            warn!(request_id = ctx.id, error = %e, "audit append failed; the upstream's answer is withheld");
            return self.withheld(ctx);
        }
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
            ("sekisho-request-id", ctx.id.as_str()),
            ("sekisho-assertion", jwt.as_str()),
            ("sekisho-terminal", terminal.terminal.as_str()),
            ("sekisho-facility", terminal.facility.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        crate::notices::mark(h, ctx.notices_shown);
        let max = self.cfg.limits.max_body_bytes as usize;
        let body: Body = Limited::new(body, max)
            .map_err(|e| -> BoxError { e })
            .boxed();
        Ok((Request::from_parts(parts, body), client_upgrade))
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
