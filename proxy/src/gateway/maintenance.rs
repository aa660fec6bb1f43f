//! Phase 4, maintenance: while a maintenance window is in force for the terminal's facility
//! (`sekisho maintenance`, R-OPS-1), requests for the application are refused with a 503 page
//! that gives the expected end — except those of the terminals and people named for the
//! maintenance. After session, so a named person is known; the gateway's own pages (sign-in,
//! the console, notices) stay open.

use sekisho_protocol::Reason;

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    pub(super) fn maintenance(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        let (_, id) = ctx.terminal.ok_or(Reason::NoClientCertificate)?;
        let t = sekisho_store::now();
        // Counted once here for the header on the way up and on the way back.
        ctx.notices_shown = self.notices.count_shown(&id.facility, t);
        let user = ctx.session.as_ref().map(|s| s.user_id.as_str());
        match self.notices.stopping(&id.facility, &id.terminal, user, t) {
            Some(_) => Err(Reason::Maintenance),
            None => Ok(()),
        }
    }
}
