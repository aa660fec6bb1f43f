//! Phase 8, outcome: what became of a permitted request. The upstream's answer goes back with
//! hop-by-hop headers removed, the request id, the number of notices shown to the terminal's
//! facility (`sekisho-notices`), the entry id an assistant's entry got, and
//! `no-store` on patient routes (R-OPS-3); its status is recorded in an outcome record (not
//! awaited: the decision record is already durable). A permitted request that could not be
//! completed gets a page, never an upstream response.

use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use sekisho_audit::Event;
use sekisho_policies::{Action, Level};
use sekisho_protocol::Reason;

use super::Gateway;
use super::context::RequestCtx;
use crate::body::{Body, BoxError};
use crate::headers;

impl Gateway {
    pub(super) fn deliver(
        &self,
        mut resp: Response<Incoming>,
        mut ctx: RequestCtx<'_>,
        client_upgrade: Option<OnUpgrade>,
    ) -> Response<Body> {
        let permit = ctx.upstream_permit.take();
        let status = resp.status();
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let owner = super::websocket::Owner {
                serial: ctx.record.cert_serial.clone(),
                terminal: ctx.record.terminal.clone().unwrap_or_default(),
                facility: ctx.record.facility.clone().unwrap_or_default(),
                session: ctx
                    .session
                    .as_ref()
                    .map(|s| (s.session_id.clone(), s.user_id.clone())),
            };
            self.splice(client_upgrade, upstream_upgrade, owner, ctx.id.clone());
        }
        headers::strip_hop_by_hop(
            resp.headers_mut(),
            status == StatusCode::SWITCHING_PROTOCOLS,
        );
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&ctx.id) {
            h.insert(headers::REQUEST_ID.clone(), v);
        }
        crate::notices::mark(h, ctx.notices_shown);
        let route = ctx.route.as_ref().map(|r| r.config);
        // The entry id the gateway gave an assistant's entry, so the terminal can name it.
        if let Some(e) = ctx
            .entry
            .as_ref()
            .filter(|_| route.is_some_and(|r| r.action == Action::Enter))
            && let Ok(v) = HeaderValue::from_str(&e.entry_id)
        {
            h.insert(headers::ENTRY_ID.clone(), v);
        }
        if route.is_some_and(|r| r.level == Level::Patient) {
            // R-OPS-3: patient data is not kept on the terminal.
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        let seconds = ctx.seconds();
        let mut outcome = ctx.record;
        outcome.event = Event::Outcome;
        outcome.time = String::new();
        outcome.upstream_status = Some(status.as_u16());
        self.audit.append_nowait(outcome);
        self.metrics.request("permit", "ok", seconds);
        // The upstream connection is in use until the answer's body has been passed on.
        resp.map(|b| {
            super::fanout::Held {
                inner: b.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
                _permit: permit,
            }
            .boxed()
        })
    }

    /// A permitted request that could not be completed: the outcome is audited, the person
    /// gets a page, never an upstream response.
    pub(super) fn failed(&self, ctx: RequestCtx<'_>, reason: Reason) -> Response<Body> {
        let resp = super::refusal::response(reason, &ctx.id, ctx.wants_json);
        self.metrics.request("error", reason.code(), ctx.seconds());
        let mut outcome = ctx.record;
        outcome.event = Event::Outcome;
        outcome.time = String::new();
        outcome.reason = reason.code().into();
        outcome.upstream_status = Some(resp.status().as_u16());
        self.audit.append_nowait(outcome);
        resp
    }
}
