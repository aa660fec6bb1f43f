//! The officers' and secretariat's console under `/.sekisho/console/` (R-LOG-1, R-LOG-4,
//! R-BG-3, R-PAT-6): served on the terminal listener, so only to a registered terminal, and
//! only to a signed-in person whose roles the policy set lets read the audit log or review
//! emergency access (`console.cedar`: `read_audit`, `review_break_glass`,
//! `approve_break_glass`). What each page does is `crate::oversight`'s, shared with the
//! command line; this module is pages.
//!
//! - `dashboard`: what needs attention now;
//! - `search`: the audit log searched, each record with its standing in the Merkle tree;
//! - `history`: a patient's access history, printable and as CSV;
//! - `stats`: requests per person, facility and day;
//! - `breakglass`: the review queue, one declaration, the officer's acts;
//! - `registry`: the secretariat's terminals and people pages;
//! - `patients`: care teams and patient IC cards.
//!
//! Every form carries a token derived from the session (`csrf`), every post must also come
//! from this origin (the gateway's cross-site check), and the session cookie is
//! `SameSite=Strict`. A console left without a request for `[console] idle_seconds` ends the
//! session. Pages are never cached and run no script.

mod breakglass;
mod dashboard;
mod history;
mod layout;
mod network;
mod patients;
mod registry;
mod search;
mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{SHA256, digest};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use sekisho_audit::{AuditLog, AuditRecord, Decision, Event, Verifier};
use sekisho_policies::AdminKind;
use sekisho_protocol::Reason;
use sekisho_store::Store;
use tracing::warn;

use crate::body::Body;
use crate::oversight::Officer;
use crate::policy::{Authorizer, OfficerAct};
use crate::sessions::{Session, Sessions};
use crate::signin::{Caller, SignIn};
use layout::Allowed;

/// The console's pages.
pub const HOME: &str = "/.sekisho/console/";
pub const PREFIX: &str = "/.sekisho/console";
const AUDIT: &str = "/.sekisho/console/audit";
const PATIENT: &str = "/.sekisho/console/patient";
const BREAK_GLASS: &str = "/.sekisho/console/breakglass";
const FINDINGS: &str = "/.sekisho/console/findings";
const TERMINALS: &str = "/.sekisho/console/terminals";
const USERS: &str = "/.sekisho/console/users";
const STATS: &str = "/.sekisho/console/stats";
const PATIENTS: &str = "/.sekisho/console/patients";
const FACILITIES: &str = "/.sekisho/console/facilities";

/// Whether a normalised path is the console's.
pub fn is_console(path: &str) -> bool {
    path == PREFIX || path.starts_with(HOME)
}

pub struct Console {
    cfg: crate::config::Config,
    pin_key: crate::enrollment::PinKey,
    store: Store,
    audit: AuditLog,
    sessions: Arc<Sessions>,
    policy: Arc<Authorizer>,
    signin: Arc<SignIn>,
    /// The checkpoint verifier keys (`<data dir>/audit/checkpoint.pub`).
    verifiers: Vec<Verifier>,
    /// Seconds without a console request after which the session is ended.
    idle_secs: i64,
    /// The last console request of each session on this node (Unix seconds).
    seen: Mutex<HashMap<String, i64>>,
    follow_up_hours: i64,
}

pub struct ConsoleParts {
    pub cfg: crate::config::Config,
    pub pin_key: crate::enrollment::PinKey,
    pub store: Store,
    pub audit: AuditLog,
    pub sessions: Arc<Sessions>,
    pub policy: Arc<Authorizer>,
    pub signin: Arc<SignIn>,
    pub verifiers: Vec<Verifier>,
    pub idle_seconds: u32,
    pub follow_up_hours: u32,
}

/// One console request, once the person is known and allowed in.
struct Visit<'a> {
    who: Officer,
    session: Arc<Session>,
    allowed: Allowed,
    caller: &'a Caller<'a>,
}

impl Visit<'_> {
    /// A record of this console request, before its fields are filled in.
    fn record(&self) -> AuditRecord {
        AuditRecord {
            request_id: self.caller.request_id.to_string(),
            peer: Some(self.caller.peer.to_string()),
            terminal: Some(self.caller.terminal.terminal.clone()),
            facility: Some(self.caller.terminal.facility.clone()),
            cert_serial: Some(self.caller.serial.to_string()),
            user: Some(self.session.user_id.clone()),
            ..Default::default()
        }
    }

    /// The hidden form field every console form carries.
    fn token_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="csrf" value="{}">"#,
            form_token(&self.session)
        )
    }

    fn page(&self, ja: &str, en: &str, here: &str, body: &str) -> Response<Body> {
        layout::respond(
            http::StatusCode::OK,
            layout::page(ja, en, here, &self.session.user_id, self.allowed, body),
        )
    }
}

/// The token a console form must carry: derived from the session id, which the page's
/// reader cannot learn from another site (the cookie is HttpOnly and SameSite=Strict; an HPKI
/// session's id is never sent to the browser but in this token). Any replica derives the same.
fn form_token(s: &Session) -> String {
    let d = digest(
        &SHA256,
        format!("sekisho console form\n{}", s.session_id).as_bytes(),
    );
    hex::encode(&d.as_ref()[..16])
}

impl Console {
    pub fn new(p: ConsoleParts) -> Console {
        Console {
            cfg: p.cfg,
            pin_key: p.pin_key,
            store: p.store,
            audit: p.audit,
            sessions: p.sessions,
            policy: p.policy,
            signin: p.signin,
            verifiers: p.verifiers,
            idle_secs: i64::from(p.idle_seconds.max(1)),
            seen: Mutex::new(HashMap::new()),
            follow_up_hours: i64::from(p.follow_up_hours),
        }
    }

    /// `path` is the normalised path, under `/.sekisho/console`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        caller: &Caller<'_>,
        cookie: Option<&str>,
        via_tunnel: bool,
    ) -> Response<Body> {
        // Only pages the person opens: not a script's fetch, not an embedded resource, not
        // another site's doing (the application is served from the same origin).
        if !navigation(req.headers()) {
            return layout::refusal(Reason::CrossSiteRequest, caller.request_id, false);
        }
        let session = match self.sessions.for_request(&caller.terminal.terminal, cookie) {
            Err(r) => return layout::refusal(r, caller.request_id, false),
            Ok(None) => {
                return layout::see_other(&format!("/.sekisho/login?next={HOME}"));
            }
            Ok(Some(s)) if s.must_change_password => {
                return layout::see_other("/.sekisho/password");
            }
            Ok(Some(s)) => s,
        };
        if self.idle(&session) {
            // Refused until the session is really ended; then forgotten here.
            if self.signin.end_idle(caller).await {
                self.forget(&session);
            }
            return layout::refusal(Reason::ConsoleIdle, caller.request_id, true);
        }
        let who = Officer::signed_in(&session, via_tunnel);
        let may = |act| who.may(&self.policy, act, "network").is_ok();
        let allowed = Allowed {
            read_audit: may(OfficerAct::ReadAudit),
            review: may(OfficerAct::ReviewBreakGlass),
            approve: may(OfficerAct::ApproveBreakGlass),
            findings: may(OfficerAct::ActOnFindings),
            manage: [AdminKind::Terminal, AdminKind::User].into_iter().any(|k| {
                self.policy
                    .admin(&session, k, &session.facility, via_tunnel)
                    .is_ok()
            }),
            patients: self
                .policy
                .admin(&session, AdminKind::User, patients::NETWORK, via_tunnel)
                .is_ok(),
        };
        let visit = Visit {
            who,
            session,
            allowed,
            caller,
        };
        if !(allowed.read_audit || allowed.review || allowed.approve || allowed.manage) {
            return self
                .refused(&visit, Reason::ConsoleNotPermitted, path)
                .await;
        }
        if path == PREFIX {
            return layout::see_other(HOME);
        }
        let need = |ok: bool| ok.then_some(()).ok_or(Reason::ConsoleNotPermitted);
        let declaration = path
            .strip_prefix(BREAK_GLASS)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        let method = req.method().clone();
        if method == Method::POST {
            let finding = path
                .strip_prefix(FINDINGS)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|id| !id.is_empty() && !id.contains('/'));
            let registry = [TERMINALS, USERS, PATIENTS, FACILITIES]
                .into_iter()
                .find_map(|base| {
                    let rest = path.strip_prefix(base)?;
                    match rest.strip_prefix('/') {
                        None if rest.is_empty() => Some((base, None)),
                        Some(id) if !id.is_empty() && !id.contains('/') => Some((base, Some(id))),
                        _ => None,
                    }
                });
            // Who may post where, before the form is read.
            let allowed_here = match (finding, declaration, registry) {
                (Some(_), _, _) => need(allowed.findings),
                (_, Some(_), _) => need(allowed.review || allowed.approve),
                (_, _, Some((PATIENTS | FACILITIES, _))) => need(allowed.patients),
                (_, _, Some(_)) => need(allowed.manage),
                _ => return layout::refusal(Reason::NotFound, caller.request_id, false),
            };
            if let Err(r) = allowed_here {
                return self.refused(&visit, r, path).await;
            }
            // Forms: bounded, and only with this session's token.
            let form = match crate::endpoint::read_form(req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            let token = crate::endpoint::field(&form, "csrf");
            let expected = form_token(&visit.session);
            if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
                return self.refused(&visit, Reason::ConsoleFormExpired, path).await;
            }
            return match (finding, declaration, registry) {
                (Some(id), _, _) => self.finding_act(&visit, id, &form).await,
                (_, Some(id), _) => self.break_glass_act(&visit, id, &form).await,
                (_, _, Some((TERMINALS, t))) => self.terminal_act(&visit, t, &form).await,
                (_, _, Some((PATIENTS, Some(p)))) => self.patient_act(&visit, p, &form).await,
                (_, _, Some((FACILITIES, f))) => self.network_act(&visit, f, &form).await,
                (_, _, Some((PATIENTS, None))) => {
                    layout::refusal(Reason::NotFound, caller.request_id, false)
                }
                (_, _, Some((_, u))) => self.user_act(&visit, u, &form).await,
                _ => layout::refusal(Reason::NotFound, caller.request_id, false),
            };
        }
        if method != Method::GET && method != Method::HEAD {
            return layout::refusal(Reason::NotFound, caller.request_id, false);
        }
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let answer = match (path, declaration) {
            // The dashboard shows what the audit log says; someone who may only approve or
            // review goes to the queue.
            (HOME, _) if !allowed.read_audit && (allowed.review || allowed.approve) => {
                Ok(layout::see_other(BREAK_GLASS))
            }
            (HOME, _) if !allowed.read_audit => Ok(layout::see_other(TERMINALS)),
            (TERMINALS, _) => match need(allowed.manage) {
                Ok(()) => Ok(self.terminals_page(&visit, &query).await),
                Err(r) => Err(r),
            },
            (PATIENTS, _) => match need(allowed.patients) {
                Ok(()) => Ok(self.patients_page(&visit, &query).await),
                Err(r) => Err(r),
            },
            (FACILITIES, _) => match need(allowed.patients) {
                Ok(()) => Ok(self.network_page(&visit, &query).await),
                Err(r) => Err(r),
            },
            (USERS, _) => match need(allowed.manage) {
                Ok(()) => Ok(self.users_page(&visit, &query).await),
                Err(r) => Err(r),
            },
            (HOME, _) => Ok(self.dashboard(&visit).await),
            (AUDIT, _) => match need(allowed.read_audit) {
                Ok(()) => Ok(self.search(&visit, &query).await),
                Err(r) => Err(r),
            },
            (STATS, _) => match need(allowed.read_audit) {
                Ok(()) => Ok(self.stats(&visit, &query).await),
                Err(r) => Err(r),
            },
            (PATIENT, _) => match need(allowed.read_audit) {
                Ok(()) => Ok(self.history(&visit, &query).await),
                Err(r) => Err(r),
            },
            (BREAK_GLASS, _) => match need(allowed.review || allowed.approve) {
                Ok(()) => Ok(self.break_glass_queue(&visit).await),
                Err(r) => Err(r),
            },
            (_, Some(id)) => match need(allowed.review || allowed.approve) {
                Ok(()) => {
                    let done = param(&query, "done");
                    Ok(self.declaration(&visit, id, done.map(Ok)).await)
                }
                Err(r) => Err(r),
            },
            _ => return layout::refusal(Reason::NotFound, caller.request_id, false),
        };
        match answer {
            Ok(r) => r,
            Err(reason) => self.refused(&visit, reason, path).await,
        }
    }

    /// Whether this session's last console request is longer ago than the idle time. A
    /// session that is not idle is marked as seen now; an idle one is not (it stays idle until
    /// it is ended and forgotten).
    fn idle(&self, s: &Session) -> bool {
        let now = sekisho_store::now();
        let mut seen = self.seen.lock().expect("console seen lock");
        if seen.len() > 4096 {
            // Sessions that ended are forgotten; an idle one that still exists is kept.
            seen.retain(|id, _| self.sessions.by_id(id).is_some());
        }
        if seen
            .get(&s.session_id)
            .is_some_and(|t| now - *t > self.idle_secs)
        {
            return true;
        }
        seen.insert(s.session_id.clone(), now);
        false
    }

    fn forget(&self, s: &Session) {
        self.seen
            .lock()
            .expect("console seen lock")
            .remove(&s.session_id);
    }

    /// A console request refused: on record (who tried what), then the page.
    async fn refused(&self, v: &Visit<'_>, reason: Reason, path: &str) -> Response<Body> {
        let rec = AuditRecord {
            event: Event::Report,
            action: Some("console".into()),
            path: Some(crate::headers::escape_text(path, 200)),
            decision: Decision::Deny,
            reason: reason.code().into(),
            ..v.record()
        };
        if let Err(e) = self.audit.append(rec).await {
            warn!(error = %e, "cannot record a refused console request");
        }
        layout::refusal(reason, v.caller.request_id, false)
    }

    /// A record of a console read (a search, a report) before anything is shown; `Err` when it
    /// cannot be written, and then nothing is shown.
    async fn on_record(&self, v: &Visit<'_>, action: &str, detail: String) -> Result<(), Reason> {
        let rec = AuditRecord {
            event: Event::Report,
            action: Some(action.into()),
            decision: Decision::Permit,
            reason: "ok".into(),
            detail: Some(detail),
            ..v.record()
        };
        self.audit
            .append(rec)
            .await
            .map(|_| ())
            .map_err(|_| Reason::AuditUnavailable)
    }
}

/// Whether the browser says this request is a page the person opens (or says nothing, as
/// curl and the agent do): `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`, and from
/// this origin or typed in.
fn navigation(h: &http::HeaderMap) -> bool {
    let is = |name: &str, ok: &[&str]| {
        h.get(name)
            .map(|v| ok.iter().any(|o| v.as_bytes() == o.as_bytes()))
            .unwrap_or(true)
    };
    is("sec-fetch-mode", &["navigate"])
        && is("sec-fetch-dest", &["document"])
        && is("sec-fetch-site", &["same-origin", "none"])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A query parameter, trimmed; `None` when absent or empty.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
