//! Phase 7, forward: the permitted request goes to the upstream with hop-by-hop headers and the
//! gateway's session cookie removed, the gateway's own headers set (request id, terminal,
//! facility) and the signed assertion of who asks for what (`assertion.rs`). The body streams
//! through, cut off at the configured limit.

use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sekisho_protocol::Reason;
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;
use crate::body::{Body, BoxError};
use crate::headers;

impl Gateway {
    pub(super) async fn forward(
        &self,
        mut req: Request<Incoming>,
        ctx: RequestCtx<'_>,
    ) -> Response<Body> {
        let Some(route) = ctx.route.as_ref() else {
            return self.failed(ctx, Reason::RouteNotMapped);
        };
        let upgrade = route.config.websocket && req.headers().contains_key(http::header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        crate::signin::strip_session_cookie(&mut parts.headers);
        let Some((_, terminal)) = ctx.terminal else {
            return self.failed(ctx, Reason::NoClientCertificate);
        };
        let sub = terminal.urn();
        let jwt = match self.signer.sign(&self.claims(&ctx, &sub)) {
            Ok(j) => j,
            Err(e) => {
                warn!(request_id = ctx.id, error = %e, "cannot sign the assertion");
                return self.failed(ctx, Reason::AssertionFailed);
            }
        };
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
        let max = self.cfg.limits.max_body_bytes as usize;
        let body: Body = Limited::new(body, max)
            .map_err(|e| -> BoxError { e })
            .boxed();
        let out = Request::from_parts(parts, body);
        match self.upstream.send(out, &route.path_and_query).await {
            Ok(resp) => self.deliver(resp, ctx, client_upgrade),
            Err(e) => {
                warn!(request_id = ctx.id, error = %e, "forwarding failed");
                self.failed(ctx, e.refusal())
            }
        }
    }
}
