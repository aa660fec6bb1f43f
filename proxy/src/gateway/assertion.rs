//! The claims of the signed assertion the upstream receives with a permitted request: who asks
//! (terminal, person, qualification, how they signed in), for what (route, action, patient) and
//! on what grounds (purpose of use, consent basis, the assistant's entry, the facility
//! administered). The signer and its key are [`crate::assertion`].

use crate::assertion::{Claims, LIFETIME_SECS};

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    /// `sub` is the terminal's URN.
    pub(super) fn claims<'a>(&'a self, ctx: &'a RequestCtx<'_>, sub: &'a str) -> Claims<'a> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let terminal = ctx.terminal.map(|(_, t)| t);
        let route = ctx.route.as_ref();
        let session = ctx.session.as_deref();
        let entry = ctx.entry.as_ref();
        Claims {
            iss: self.signer.issuer(),
            aud: self.signer.audience(),
            iat: now,
            nbf: now - 5,
            exp: now + LIFETIME_SECS,
            jti: &ctx.id,
            sub,
            terminal: terminal.map_or("", |t| t.terminal.as_str()),
            facility: terminal.map_or("", |t| t.facility.as_str()),
            patient: route.and_then(|r| r.patient.as_deref()),
            user: session.map(|s| s.user_id.as_str()),
            user_facility: session.map(|s| s.facility.as_str()),
            qualification: session.and_then(|s| s.qualification.as_deref()),
            auth_method: session.map(|s| s.method.as_str()),
            purpose_of_use: ctx.consent_basis.map(|_| "TREAT"),
            consent_basis: ctx.consent_basis,
            entry: entry.map(|e| e.entry_id.as_str()),
            entry_author: entry.map(|e| e.author.as_str()),
            entry_facility: entry.map(|e| e.facility.as_str()),
            admin_facility: route
                .and_then(|r| r.admin.as_ref())
                .map(|(_, f)| f.as_str()),
            action: route.map_or("", |r| r.config.action.as_str()),
            route: route.map_or("", |r| r.config.name()),
        }
    }
}
