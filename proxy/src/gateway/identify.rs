//! Phase 2, identify: the registered, active terminal behind the connection (R-TERM-1). The
//! certificate passed TLS verification; here its serial must be in the registry, active, with
//! the same ids, and — with a required tunnel — arrive through that terminal's own tunnel.
//! Checked on every request, so a suspension or revocation since the handshake (or a resumed
//! TLS session) counts at once (R-TERM-4).

use sekisho_protocol::{Reason, TerminalId};

use super::Gateway;
use super::connection::Identity;
use super::context::RequestCtx;

impl Gateway {
    pub(super) fn identify<'a>(
        &self,
        ctx: &mut RequestCtx<'a>,
    ) -> Result<(&'a str, &'a TerminalId), Reason> {
        let conn = ctx.conn;
        let (serial, id) = match &conn.identity {
            Identity::None => return Err(Reason::NoClientCertificate),
            Identity::Invalid { .. } => return Err(Reason::TerminalIdentityInvalid),
            Identity::Terminal { serial, id } => (serial.as_str(), id),
        };
        ctx.record.terminal = Some(id.terminal.clone());
        ctx.record.facility = Some(id.facility.clone());
        let state = self.registry.check(serial).map_err(|r| r.refusal())?;
        if state.terminal != id.terminal || state.facility != id.facility {
            return Err(Reason::TerminalIdentityMismatch);
        }
        // The certificate must be that of the terminal whose tunnel the connection uses,
        // checked on every request: a peer removed since the handshake no longer counts.
        if let Some(t) = self.tunnel.as_ref().filter(|t| t.required) {
            match t.terminal(conn.peer, conn.local) {
                None => return Err(Reason::TunnelRequired),
                Some(owner) if owner != id.terminal => return Err(Reason::TunnelTerminalMismatch),
                Some(_) => {}
            }
        }
        // Through the tunnel of this very terminal, not just any peer's (the policy's `tunnel`).
        ctx.via_own_tunnel = conn.tunnel_owner.as_deref() == Some(id.terminal.as_str());
        ctx.terminal = Some((serial, id));
        Ok((serial, id))
    }
}
