//! Emergency access — the 緊急時・災害時ボタン (break-glass: R-PAT-4, R-BG-1..3) — at the
//! terminal, under `/.sekisho/emergency` (never forwarded).
//!
//! A physician signed in with the HPKI card begins a declaration: a reason category (from
//! `[break_glass]`, see [`crate::config::break_glass`]) and a justification, with the patient, or finds the patient
//! by name first (a search that exists only under a declaration in progress, limited and
//! audited: `search.rs`). The gateway then states the declaration in words (patient, category,
//! justification, time, terminal, gateway: `sekisho_protocol::wire::Declaration`) and the
//! physician's card signs exactly those words through `sekisho-agent emergency`; the signature
//! is verified like sign-in — chain, revocation, authentication policy — and must come from the
//! card the physician signed in with (`declare.rs`). The declaration record is durable in the
//! audit log before the grant takes effect; the grant then covers that physician, with that
//! card, and that patient until it expires, and a child-protection declaration waits for a
//! second person's approval. Officers are told (`crate::notify` channels) and review every
//! declaration (`sekisho breakglass`). The physician records the patient's permission
//! afterwards where the category asks for it (`follow_up.rs`). `page.rs` is the page.

mod declare;
mod follow_up;
mod page;
mod search;

use std::path::PathBuf;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{
    EMERGENCY_DECLARATIONS_PATH, EMERGENCY_PENDING_PATH,
    EMERGENCY_PREFIX_PATH as EMERGENCY_PAGE_PATH, EMERGENCY_SEARCH_PATH,
};
use sekisho_store::Store;

pub use crate::config::break_glass::{BreakGlassConfig, Category};

use crate::body::Body;
use crate::config::Config;
use crate::endpoint::error;
use crate::notify::Notifier;
use crate::patients::PatientView;
use crate::policy::Authorizer;
use crate::sessions::{Session, Sessions};
use crate::signin::{Caller, HpkiTrust};

/// The emergency desk of one gateway.
pub struct EmergencyDesk {
    cfg: Config,
    store: Store,
    audit: AuditLog,
    sessions: Arc<Sessions>,
    patients: Arc<PatientView>,
    policy: Arc<Authorizer>,
    hpki: Arc<HpkiTrust>,
    /// The officers' channels: every declaration is told at once (R-BG-3).
    notifier: Arc<Notifier>,
    /// Where follow-up evidence (a signature image, a scan) is kept: `<data dir>/break-glass`.
    evidence_dir: PathBuf,
}

/// What the desk is built from.
pub struct DeskParts {
    pub cfg: Config,
    pub store: Store,
    pub audit: AuditLog,
    pub sessions: Arc<Sessions>,
    pub patients: Arc<PatientView>,
    pub policy: Arc<Authorizer>,
    pub hpki: Arc<HpkiTrust>,
    pub notifier: Arc<Notifier>,
    pub evidence_dir: PathBuf,
}

impl EmergencyDesk {
    pub fn new(p: DeskParts) -> EmergencyDesk {
        EmergencyDesk {
            cfg: p.cfg,
            store: p.store,
            audit: p.audit,
            sessions: p.sessions,
            patients: p.patients,
            policy: p.policy,
            hpki: p.hpki,
            notifier: p.notifier,
            evidence_dir: p.evidence_dir,
        }
    }

    /// `path` is the normalised path, under `/.sekisho/emergency`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        caller: &Caller<'_>,
        cookie: Option<&str>,
        via_own_tunnel: bool,
    ) -> Response<Body> {
        // The page answers in HTML, everything else (the agent, applications) in JSON.
        let json = path != EMERGENCY_PAGE_PATH;
        // Who may declare is the policy's to say (bg1-declare-hpki-physician); the page says
        // why not to everyone else.
        let session = match self.declarer(caller, cookie, via_own_tunnel) {
            Ok(s) => s,
            Err((reason, who)) => {
                self.refused(caller, who.as_deref(), reason, None).await;
                return if json {
                    error(reason)
                } else {
                    page::refused(reason, caller.request_id)
                };
            }
        };
        let rest = path
            .strip_prefix(EMERGENCY_DECLARATIONS_PATH)
            .map(|r| r.trim_start_matches('/'));
        match (req.method().clone(), path, rest) {
            (Method::GET, EMERGENCY_PAGE_PATH, _) => self.page(&session, caller).await,
            (Method::POST, EMERGENCY_PAGE_PATH, _) => self.page_post(req, &session, caller).await,
            (Method::POST, _, Some("")) => self.begin(req, &session, caller).await,
            (Method::GET, EMERGENCY_PENDING_PATH, _) => self.pending(&session, caller).await,
            (Method::GET, EMERGENCY_SEARCH_PATH, _) => self.search(&req, &session, caller).await,
            (method, _, Some(rest)) => {
                let (id, step) = rest.split_once('/').unwrap_or((rest, ""));
                match (method, step) {
                    (Method::GET, "") => self.state(id, &session).await,
                    (Method::POST, "patient") => self.choose(req, id, &session, caller).await,
                    (Method::POST, "signature") => self.sign(req, id, &session, caller).await,
                    (Method::POST, "follow-up") => self.follow_up(req, id, &session, caller).await,
                    _ => error(Reason::NotFound),
                }
            }
            _ => error(Reason::NotFound),
        }
    }

    /// The signed-in person, if the policy lets them declare. A refusal names the person
    /// when someone is signed in, so the record of the attempt says who it was.
    fn declarer(
        &self,
        caller: &Caller<'_>,
        cookie: Option<&str>,
        via_own_tunnel: bool,
    ) -> Result<Arc<Session>, (Reason, Option<Arc<Session>>)> {
        let session = self
            .sessions
            .for_request(&caller.terminal.terminal, cookie)
            .map_err(|r| (r, None))?
            .filter(|s| !s.must_change_password)
            .ok_or((Reason::BreakGlassNotPermitted, None))?;
        match self.policy.declare(&session, via_own_tunnel) {
            Ok(_) => Ok(session),
            Err(r) => Err((r.reason, Some(session))),
        }
    }

    /// A break-glass record, before its outcome is known.
    fn record(
        &self,
        caller: &Caller<'_>,
        session: Option<&Session>,
        id: Option<&str>,
    ) -> AuditRecord {
        AuditRecord {
            request_id: caller.request_id.to_string(),
            event: Event::BreakGlass,
            peer: Some(caller.peer.to_string()),
            terminal: Some(caller.terminal.terminal.clone()),
            facility: Some(caller.terminal.facility.clone()),
            cert_serial: Some(caller.serial.to_string()),
            user: session.map(|s| s.user_id.clone()),
            qualification: session.and_then(|s| s.qualification.clone()),
            action: Some("break_glass".into()),
            break_glass_id: id.map(str::to_string),
            ..Default::default()
        }
    }

    /// Records a refused step; the refusal is answered whatever the log says (it changes
    /// nothing).
    async fn refused(
        &self,
        caller: &Caller<'_>,
        session: Option<&Session>,
        reason: Reason,
        id: Option<&str>,
    ) {
        let mut rec = self.record(caller, session, id);
        rec.decision = Decision::Deny;
        rec.reason = reason.code().into();
        if let Err(e) = self.audit.append(rec).await {
            tracing::warn!(error = %e, "cannot record a refused emergency step");
        }
    }
}
