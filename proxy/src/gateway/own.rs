//! The gateway's own endpoints under `/.sekisho/` (sign-in, consent, emergency access, the
//! officers' console, notices):
//! recognised on the
//! normalised path so that no spelling of it (`//.sekisho`, `/x/../.sekisho`) can reach the route
//! map or the upstream, and answered here once the terminal is identified.

use http::{Request, Response};
use hyper::body::Incoming;
use sekisho_protocol::wire::{
    CONSENT_PREFIX_PATH, EMERGENCY_PREFIX_PATH, NOTICES_PATH, OWN_PREFIX,
};

use super::Gateway;
use super::context::RequestCtx;
use crate::body::Body;
use crate::signin::Caller;

/// Whether a normalised path is the gateway's own.
pub(super) fn is_own(path: &str) -> bool {
    path.starts_with(OWN_PREFIX)
}

impl Gateway {
    pub(super) async fn own_endpoint(
        &self,
        req: Request<Incoming>,
        path: &str,
        mut ctx: RequestCtx<'_>,
    ) -> Response<Body> {
        let (serial, terminal) = match self.identify(&mut ctx) {
            Ok(t) => t,
            Err(reason) => return self.refuse(ctx, reason).await,
        };
        // One Host; sign-in, sign-out, consent and emergency posts only from the gateway's own
        // pages.
        if let Err(reason) = self.host(&req).and_then(|()| self.cross_site(&req)) {
            return self.refuse(ctx, reason).await;
        }
        let caller = Caller {
            terminal,
            serial,
            peer: ctx.conn.peer,
            request_id: &ctx.id,
        };
        if path == NOTICES_PATH {
            // Notices are for everyone at a registered terminal, signed in or not.
            let shown = self
                .notices
                .shown(&caller.terminal.facility, sekisho_store::now());
            let json = super::refusal::wants_json(req.headers())
                || req.uri().query() == Some("format=json");
            crate::notices::page(&shown, json)
        } else if crate::console::is_console(path) {
            let cookie = crate::signin::session_cookie(req.headers());
            self.console
                .handle(req, path, &caller, cookie.as_deref(), ctx.via_own_tunnel)
                .await
        } else if path == EMERGENCY_PREFIX_PATH
            || path.starts_with(&format!("{EMERGENCY_PREFIX_PATH}/"))
        {
            let cookie = crate::signin::session_cookie(req.headers());
            self.emergency
                .handle(req, path, &caller, cookie.as_deref(), ctx.via_own_tunnel)
                .await
        } else if path.starts_with(CONSENT_PREFIX_PATH) {
            let cookie = crate::signin::session_cookie(req.headers());
            self.consent
                .handle(req, path, &caller, cookie.as_deref())
                .await
        } else {
            self.signin.handle(req, path, &caller).await
        }
    }
}
