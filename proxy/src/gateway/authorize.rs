//! Phase 5, authorize: the policy decision. Terminal- and user-level views and writes need
//! nothing more than the route's level; patient routes are decided by the Cedar policy set
//! over consent, care team, patient card and qualification (R-PAT-*, R-ROLE-*) — or, where
//! those refuse, an HPKI physician's emergency grant (R-PAT-4, R-BG-1); admin routes
//! over the facility administered (R-ACCT-8). A route whose level and action leave nothing to
//! decide on is refused, never forwarded. Every store error is a refusal.

use sekisho_policies::{Action, Level};
use sekisho_protocol::{Reason, new_request_id};
use sekisho_store::consent::{self as entries, Entry};
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    pub(super) async fn authorize(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        let route = ctx.route.as_ref().ok_or(Reason::RouteNotMapped)?;
        let action = route.config.action;
        if route.config.level == Level::User && action == Action::Admin {
            let (Some(session), Some((kind, facility))) = (&ctx.session, &route.admin) else {
                return Err(Reason::QualificationNotPermitted);
            };
            let decided = self
                .policy
                .admin(session, *kind, facility, ctx.via_own_tunnel);
            let policies = match &decided {
                Ok(p) => p,
                Err(r) => &r.policies,
            };
            ctx.record.detail = Some(format!(
                "admin facility {facility}; policies {}",
                policies.join(",")
            ));
            return decided.map(|_| ()).map_err(|r| r.reason);
        }
        match (route.config.level, action) {
            // A registered terminal, or a signed-in person, is all these routes ask for.
            (Level::Terminal | Level::User, Action::View | Action::Write) => return Ok(()),
            (Level::Patient, _) => {}
            // Anything else has nothing to decide on (no patient, no admin target): an action
            // the route map lets through without a decision is refused, never forwarded.
            _ => return Err(Reason::RouteActionNotDecidable),
        }
        let (Some(session), Some(patient)) = (ctx.session.clone(), route.patient.clone()) else {
            return Err(Reason::SigninRequired);
        };
        // A confirmation is decided on the gateway's own record of who entered the entry.
        let confirming = match (action, &route.entry_id) {
            (Action::Confirm, Some(id)) => match entries::entry(&self.store, id).await {
                Ok(Some(e)) if e.patient_id == patient => Some(e),
                Ok(_) => {
                    ctx.record.detail = Some(format!("entry {id}"));
                    return Err(Reason::EntryNotFound);
                }
                Err(e) => {
                    warn!(error = %e, "cannot read an entry");
                    return Err(Reason::PolicyUnavailable);
                }
            },
            _ => None,
        };
        let allowed = self.policy.patient(
            &self.patients,
            &session,
            &patient,
            action,
            confirming.as_ref(),
            ctx.via_own_tunnel,
        );
        let allowed = match allowed {
            Ok(a) => a,
            Err(r) => {
                let mut detail = format!("policies {}", r.policies.join(","));
                if let Some(e) = &confirming {
                    detail.push_str(&format!("; entry {} of {}", e.entry_id, e.facility));
                }
                ctx.record.detail = Some(detail);
                return Err(r.reason);
            }
        };
        // HL7 purpose of use: treatment, or break-the-glass under an emergency grant.
        ctx.record.purpose_of_use = Some(
            if allowed.grant.is_some() {
                "BTG"
            } else {
                "TREAT"
            }
            .into(),
        );
        let mut detail = format!(
            "policies {}; consent {}",
            allowed.policies.join(","),
            allowed.consent_basis
        );
        if let Some(g) = &allowed.grant {
            ctx.record.break_glass_id = Some(g.id.clone());
            detail.push_str(&format!("; break-glass {} ({})", g.id, g.category));
        }
        let entry = if action == Action::Enter {
            // The entry gets its id here, recorded before anything is forwarded.
            let entry = Entry {
                entry_id: format!("e-{}", new_request_id()),
                patient_id: patient,
                author: session.user_id.clone(),
                facility: session.facility.clone(),
            };
            if let Err(e) = entries::insert_entry(&self.store, &entry, &ctx.id).await {
                warn!(error = %e, "cannot record an entry");
                return Err(Reason::PolicyUnavailable);
            }
            Some(entry)
        } else {
            confirming
        };
        if let Some(e) = &entry {
            detail.push_str(&format!(
                "; entry {} by {} of {}",
                e.entry_id, e.author, e.facility
            ));
        }
        ctx.record.detail = Some(detail);
        ctx.entry = entry;
        ctx.consent_basis = Some(allowed.consent_basis);
        ctx.grant = allowed.grant;
        Ok(())
    }
}
