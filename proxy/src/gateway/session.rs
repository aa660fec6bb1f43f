//! Phase 3, session: the person signed in on this terminal, if any. Every request over the
//! terminal's connections is theirs (one person per terminal at a time); a password session
//! also needs its cookie, and a cookie from another terminal is refused
//! ([`crate::sessions::Sessions::for_request`]).

use http::Request;
use hyper::body::Incoming;
use sekisho_protocol::Reason;

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    pub(super) fn session(
        &self,
        req: &Request<Incoming>,
        ctx: &mut RequestCtx<'_>,
    ) -> Result<(), Reason> {
        let (_, id) = ctx.terminal.ok_or(Reason::NoClientCertificate)?;
        let cookie = crate::signin::session_cookie(req.headers());
        let session = self.sessions.for_request(&id.terminal, cookie.as_deref())?;
        if let Some(s) = &session {
            ctx.record.user = Some(s.user_id.clone());
            ctx.record.qualification = s.qualification.clone();
        }
        ctx.session = session;
        Ok(())
    }
}
