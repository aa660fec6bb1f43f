//! The officers' acts on emergency declarations (R-BG-3, R-PAT-4): record the review's
//! finding, approve or refuse a declaration that waits for a second person, end a grant early.
//! Never by the physician who declared it; on record before the change.

use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_store::Store;
use sekisho_store::break_glass::{self as rows, Declaration, status};

use super::{NotMade, Officer, recorded_as};
use crate::headers::escape_text;
use crate::policy::{Authorizer, OfficerAct};

/// What the officer does to a declaration.
#[derive(Clone, Copy, Debug)]
pub enum Act<'a> {
    /// `finding` is one of [`rows::FINDINGS`].
    Review {
        finding: &'a str,
        comment: &'a str,
    },
    Approve,
    Reject,
    End {
        reason: &'a str,
    },
}

impl Act<'_> {
    /// The audit record's reason code when the act is made.
    fn code(&self) -> &'static str {
        match self {
            Act::Review { .. } => "break_glass_reviewed",
            Act::Approve => "break_glass_approved",
            Act::Reject => "break_glass_rejected",
            Act::End { .. } => "break_glass_ended",
        }
    }

    fn policy_act(&self) -> OfficerAct {
        match self {
            Act::Review { .. } | Act::End { .. } => OfficerAct::ReviewBreakGlass,
            Act::Approve | Act::Reject => OfficerAct::ApproveBreakGlass,
        }
    }
}

/// Makes `act` on declaration `id` as `who`; `base` carries what the caller knows of where the
/// act came from (request id, terminal, peer). Returns the declaration as it is afterwards.
pub async fn act(
    store: &Store,
    audit: &AuditLog,
    policy: &Authorizer,
    who: &Officer,
    id: &str,
    act: Act<'_>,
    base: AuditRecord,
) -> Result<Declaration, NotMade> {
    let internal = |e: anyhow::Error| NotMade::new(Reason::Internal, e.to_string());
    let d = rows::get(store, id)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            NotMade::new(
                Reason::BreakGlassDeclarationNotFound,
                format!("no declaration {id:?} (see `sekisho breakglass list`)"),
            )
        })?;
    who.may(policy, act.policy_act(), &d.facility)
        .map_err(|r| {
            NotMade::new(
                r,
                format!(
                    "{} may not do this ({}); see the policy set's console.cedar",
                    who.user_id(),
                    act.policy_act_name()
                ),
            )
        })?;
    if who.user_id() == d.user_id {
        return Err(NotMade::new(
            Reason::BreakGlassOwnDeclaration,
            format!(
                "{} declared {id}: the review and the approval are someone else's",
                d.user_id
            ),
        ));
    }
    let detail = match act {
        Act::Review { finding, comment } => {
            if d.declared_at.is_none() {
                return Err(NotMade::new(
                    Reason::BreakGlassDeclarationState,
                    format!("{id} was never signed: there is nothing to review"),
                ));
            }
            if !rows::FINDINGS.contains(&finding) {
                return Err(NotMade::new(
                    Reason::BadRequest,
                    format!("the finding must be one of {}", rows::FINDINGS.join(", ")),
                ));
            }
            format!("finding {finding}; {}", escape_text(comment, 500))
        }
        Act::Approve | Act::Reject if d.status != status::AWAITING_APPROVAL => {
            return Err(NotMade::new(
                Reason::BreakGlassDeclarationState,
                format!("{id} is {}, not waiting for approval", d.status),
            ));
        }
        Act::Approve => "approved: the grant starts now".into(),
        Act::Reject => "rejected".into(),
        Act::End { reason } => {
            if reason.trim().is_empty() {
                return Err(NotMade::new(
                    Reason::BadRequest,
                    "say why the grant is ended".to_string(),
                ));
            }
            format!("ended: {}", escape_text(reason, 300))
        }
    };
    let rec = AuditRecord {
        event: Event::BreakGlass,
        user: Some(who.user_id().to_string()),
        patient: d.patient_id.clone(),
        break_glass_id: Some(d.id.clone()),
        action: Some("break_glass".into()),
        decision: Decision::Permit,
        reason: act.code().into(),
        detail: Some(format!(
            "{detail}; by {}; declared by {}",
            who.actor(),
            d.user_id
        )),
        ..base
    };
    let by = who.user_id();
    recorded_as(audit, rec, "break_glass_act_not_made", async {
        let changed = match act {
            Act::Review { finding, comment } => rows::review(store, id, by, finding, comment).await,
            Act::Approve => rows::decide_approval(store, id, by, true).await,
            Act::Reject => rows::decide_approval(store, id, by, false).await,
            Act::End { reason } => rows::end(store, id, by, reason).await,
        };
        match changed {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotMade::new(
                Reason::BreakGlassDeclarationState,
                format!("{id} could not be changed (its state changed meanwhile?)"),
            )
            .into()),
            Err(e) => Err(internal(e).into()),
        }
    })
    .await?;
    rows::get(store, id)
        .await
        .map_err(internal)?
        .ok_or_else(|| NotMade::new(Reason::Internal, format!("{id} vanished")))
}

impl Act<'_> {
    fn policy_act_name(&self) -> &'static str {
        match self.policy_act() {
            OfficerAct::ReviewBreakGlass => "review_break_glass",
            OfficerAct::ApproveBreakGlass => "approve_break_glass",
            OfficerAct::ReadAudit => "read_audit",
            OfficerAct::ActOnFindings => "act_on_findings",
        }
    }
}
