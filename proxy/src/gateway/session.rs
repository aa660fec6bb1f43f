//! Phase 3, session: the person signed in on this terminal, if any. Every request over the
//! terminal's connections is theirs (one person per terminal at a time); a password session
//! also needs its cookie, and a cookie from another terminal is refused
//! ([`crate::sessions::Sessions::for_request`]). A session past its idle time, or a card
//! session whose card stopped proving its presence, is no one's: the request goes on as
//! signed out (the sweep ends the session on record, `crate::serve::lapse`). A request
//! attributed to a session is its activity.

use http::Request;
use hyper::body::Incoming;
use sekisho_protocol::Reason;
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    pub(super) async fn session(
        &self,
        req: &Request<Incoming>,
        ctx: &mut RequestCtx<'_>,
    ) -> Result<(), Reason> {
        let (_, id) = ctx.terminal.ok_or(Reason::NoClientCertificate)?;
        let cookie = crate::signin::session_cookie(req.headers());
        let mut session = self.sessions.for_request(&id.terminal, cookie.as_deref())?;
        if let Some(s) = &session {
            match self.sessions.lapsed(&self.store, s).await {
                Ok(None) => {
                    if let Some(at) = self.sessions.active(s) {
                        let (store, sid) = (self.store.clone(), s.session_id.clone());
                        let cut = at - self.sessions.limits().idle_secs;
                        // Off the request path; a lost write only makes the session end
                        // sooner (the sweep writes this node's activity again first).
                        tokio::spawn(async move {
                            if let Err(e) =
                                sekisho_store::sessions::touch(&store, &sid, at, cut).await
                            {
                                warn!(error = %e, "cannot record a session's activity");
                            }
                        });
                    }
                }
                Ok(Some(_)) => session = None,
                Err(e) => {
                    warn!(error = %e, "cannot check whether a session lapsed");
                    return Err(Reason::Internal);
                }
            }
        }
        if let Some(s) = &session {
            ctx.record.user = Some(s.user_id.clone());
            ctx.record.qualification = s.qualification.clone();
        }
        ctx.session = session;
        Ok(())
    }
}
