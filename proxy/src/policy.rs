//! The policy engine the gateway consults: the Cedar policy set of the data dir, reloaded when a
//! file changes, and the facts a decision needs. The policy decision for patient routes: who may do what to which patient, given consent,
//! the care team, the patient card and the person's qualification (R-PAT-*, R-ROLE-*), decided
//! by the Cedar policy set in the data dir (`policies/`), which is re-read when a file changes
//! (an invalid set is refused and the running one stays).
//!
//! Only the entities the request needs are built: the person and the one patient, whose
//! consent, care team and consent windows come from the in-memory [`PatientView`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use arc_swap::ArcSwap;
use sekisho_policies::{
    AdminKind, AdminObject, AuthMethod, Consent, DecisionRequest, PatientResource, PolicyAction,
    PolicyEngine, Principal, RequestContext, Resource,
};
use sekisho_protocol::Reason;
use tracing::{info, warn};

use crate::file_stamps::FileStamps;
use crate::patients::{Grant, PatientView};
use crate::sessions::Session;
use sekisho_store::consent;
use sekisho_store::patients::{Consent as StoredConsent, PatientFacts};

pub struct Authorizer {
    dir: PathBuf,
    engine: ArcSwap<PolicyEngine>,
    stamp: Mutex<FileStamps>,
    /// Whether viewing needs the patient's card (or a consent window) in this network (R-PAT-2).
    require_card: bool,
    /// For how long after the card signed it counts as present (`patient_card_present`).
    card_presence_seconds: u32,
}

/// What a refused patient request lacked, as the person is told (nothing about the patient).
pub struct Refusal {
    pub reason: Reason,
    pub policies: Vec<String>,
}

/// The policy files whose change reloads the set.
fn stamps(dir: &Path) -> FileStamps {
    FileStamps::of_dir(dir, &["cedar", "cedarschema"])
}

impl Authorizer {
    /// Loads the policy set from `dir`; the shipped default set when the directory is absent.
    pub fn load(
        dir: PathBuf,
        require_card: bool,
        card_presence_seconds: u32,
    ) -> Result<Authorizer> {
        let engine = if dir.exists() {
            PolicyEngine::load(&dir)?
        } else {
            warn!(dir = %dir.display(), "no policy directory: using the built-in default policy set");
            PolicyEngine::load(&sekisho_policies::default_policy_dir())
                .or_else(|_| load_embedded())?
        };
        Ok(Authorizer {
            stamp: Mutex::new(stamps(&dir)),
            dir,
            engine: ArcSwap::from_pointee(engine),
            require_card,
            card_presence_seconds,
        })
    }

    /// Re-reads the set when a file changed; a set that does not validate is refused and the
    /// running one stays.
    pub fn reload_if_changed(&self) {
        self.reload(false)
    }

    /// SIGHUP: re-read even if no file time changed.
    pub fn reload_now(&self) {
        self.reload(true)
    }

    fn reload(&self, force: bool) {
        let now = stamps(&self.dir);
        let mut last = self.stamp.lock().expect("stamp lock");
        if (!force && *last == now) || now.is_empty() {
            return;
        }
        *last = now;
        match PolicyEngine::load(&self.dir) {
            Ok(e) => {
                self.engine.store(Arc::new(e));
                info!(dir = %self.dir.display(), "policy set reloaded");
            }
            Err(e) => {
                warn!(dir = %self.dir.display(), "policy set refused, the running one stays: {e}")
            }
        }
    }

    /// Decides a patient route for the signed-in person. Err: refused, with what was missing.
    /// `entry` is the assistant's entry a `confirm` is about, as the gateway recorded it.
    pub fn patient(
        &self,
        view: &PatientView,
        session: &Session,
        patient: &str,
        route_action: sekisho_policies::Action,
        entry: Option<&consent::Entry>,
        via_tunnel: bool,
    ) -> Result<Allowed, Refusal> {
        let refuse = |reason| Refusal {
            reason,
            policies: Vec::new(),
        };
        let action = match route_action {
            sekisho_policies::Action::View => PolicyAction::View,
            sekisho_policies::Action::Write => PolicyAction::Write,
            sekisho_policies::Action::Enter => PolicyAction::Enter,
            sekisho_policies::Action::Confirm => PolicyAction::Confirm,
            // A route for emergency access only: viewing, under a grant (below).
            sekisho_policies::Action::BreakGlass => PolicyAction::View,
            sekisho_policies::Action::Admin => {
                return Err(refuse(Reason::QualificationNotPermitted));
            }
        };
        if !view.is_current() {
            warn!("the patient facts are stale (the store has not been read recently): refused");
            return Err(refuse(Reason::PolicyUnavailable));
        }
        let now = sekisho_store::now();
        let known = view.get(patient);
        let grant = known
            .as_ref()
            .and_then(|p| p.grant(&session.user_id, session.card.as_deref(), now))
            .cloned();
        let emergency_only = route_action == sekisho_policies::Action::BreakGlass;
        if emergency_only && grant.is_none() {
            return Err(refuse(Reason::BreakGlassRequired));
        }
        let window = known
            .as_ref()
            .and_then(|p| p.window(&session.user_id, now))
            .cloned();
        // An unknown patient looks exactly like one who has not consented.
        let facts = known.map(|p| p.facts).unwrap_or_else(|| PatientFacts {
            patient_id: patient.to_string(),
            consent: StoredConsent::None,
            care_team_users: Vec::new(),
            care_team_facilities: Vec::new(),
        });
        let card_present = window.as_ref().is_some_and(|w| {
            w.basis == consent::Basis::PatientCard
                && w.opened_at + i64::from(self.card_presence_seconds) >= now
        });
        let request = DecisionRequest {
            principal: principal(session),
            action,
            resource: Resource::Patient(PatientResource {
                id: facts.patient_id.clone(),
                consent: match facts.consent {
                    StoredConsent::Granted => Consent::Granted,
                    StoredConsent::Withdrawn => Consent::Withdrawn,
                    StoredConsent::Suspended => Consent::Suspended,
                    StoredConsent::None => Consent::None,
                },
                care_team_users: facts.care_team_users.clone(),
                care_team_facilities: facts.care_team_facilities.clone(),
            }),
            context: RequestContext {
                patient_card_present: card_present,
                consent_window: window.is_some(),
                entry_facility: entry.map(|e| e.facility.clone()),
                ..self.context(session, via_tunnel)
            },
        };
        let engine = self.engine.load();
        let d = engine.decide(&request);
        if !d.errors.is_empty() {
            warn!(errors = ?d.errors, "policy evaluation errors: refused");
        }
        if d.allowed && d.errors.is_empty() && !emergency_only {
            return Ok(Allowed {
                policies: d.reasons,
                consent_basis: window.map_or("registry", |w| w.basis.as_str()),
                grant: None,
            });
        }
        // An emergency grant is asked only when the ordinary rules refuse (or the route is for
        // emergencies only), so an access counts as break-glass exactly when it needed one.
        if let Some(g) = grant.filter(|g| {
            action == PolicyAction::View || (action == PolicyAction::Write && g.allows_write)
        }) {
            let mut emergency = request.clone();
            emergency.context.break_glass = true;
            emergency.context.break_glass_write = g.allows_write;
            let d = engine.decide(&emergency);
            if d.allowed && d.errors.is_empty() {
                return Ok(Allowed {
                    policies: d.reasons,
                    consent_basis: "break_glass",
                    grant: Some(g),
                });
            }
        }
        if emergency_only {
            return Err(Refusal {
                reason: Reason::BreakGlassRequired,
                policies: d.reasons,
            });
        }
        // Say what is missing, in the order a person can act on it.
        let in_team = facts.care_team_users.contains(&session.user_id)
            || facts.care_team_facilities.contains(&session.facility);
        let reason = if facts.consent != StoredConsent::Granted {
            Reason::PatientNoConsent
        } else if !in_team {
            Reason::PatientNotInCareTeam
        } else if self.require_card && action == PolicyAction::View && window.is_none() {
            Reason::PatientCardRequired
        } else if action == PolicyAction::Confirm
            && request.principal.qualification == "physician"
            && entry.is_some_and(|e| e.facility != session.facility)
        {
            Reason::EntryOtherFacility
        } else {
            Reason::QualificationNotPermitted
        };
        Err(Refusal {
            reason,
            policies: d.reasons,
        })
    }

    /// Whether the signed-in person may declare an emergency access (R-PAT-4, R-BG-1): the
    /// policy set's `break_glass` action (by default: a physician signed in with HPKI).
    pub fn declare(&self, session: &Session, via_tunnel: bool) -> Result<Vec<String>, Refusal> {
        let request = DecisionRequest {
            principal: principal(session),
            action: PolicyAction::BreakGlass,
            // The patient is not known yet (it may be found by name); the rules for declaring
            // are about who declares.
            resource: Resource::Patient(PatientResource {
                id: "-".into(),
                consent: Consent::None,
                care_team_users: Vec::new(),
                care_team_facilities: Vec::new(),
            }),
            context: self.context(session, via_tunnel),
        };
        let d = self.engine.load().decide(&request);
        if d.allowed && d.errors.is_empty() {
            return Ok(d.reasons);
        }
        Err(Refusal {
            reason: Reason::BreakGlassNotPermitted,
            policies: d.reasons,
        })
    }

    /// Decides an admin route: managing `kind` objects of `facility` (R-ACCT-8).
    pub fn admin(
        &self,
        session: &Session,
        kind: AdminKind,
        facility: &str,
        via_tunnel: bool,
    ) -> Result<Vec<String>, Refusal> {
        let action = match kind {
            AdminKind::User => PolicyAction::ManageUsers,
            AdminKind::Terminal => PolicyAction::ManageTerminals,
            // The console's objects are decided by `officer`.
            AdminKind::Audit | AdminKind::BreakGlass => {
                return Err(Refusal {
                    reason: Reason::QualificationNotPermitted,
                    policies: Vec::new(),
                });
            }
        };
        let d = self.decide_admin_object(session, action, kind, facility, via_tunnel);
        if d.allowed && d.errors.is_empty() {
            return Ok(d.reasons);
        }
        let administers = session
            .roles
            .iter()
            .any(|r| r == "facility-admin" || r == "secretariat");
        Err(Refusal {
            reason: if administers && facility != session.facility {
                Reason::AdminOtherFacility
            } else {
                Reason::QualificationNotPermitted
            },
            policies: d.reasons,
        })
    }

    /// Decides an act of the officers' console, or the same act at the command line
    /// (`console.cedar`): reading the audit log, reviewing or approving an emergency
    /// declaration. `facility` is the declaring physician's for a declaration.
    pub fn officer(
        &self,
        session: &Session,
        act: OfficerAct,
        facility: &str,
        via_tunnel: bool,
    ) -> Result<Vec<String>, Refusal> {
        let (action, kind) = match act {
            OfficerAct::ReadAudit => (PolicyAction::ReadAudit, AdminKind::Audit),
            OfficerAct::ReviewBreakGlass => (PolicyAction::ReviewBreakGlass, AdminKind::BreakGlass),
            OfficerAct::ApproveBreakGlass => {
                (PolicyAction::ApproveBreakGlass, AdminKind::BreakGlass)
            }
            OfficerAct::ActOnFindings => (PolicyAction::ActOnFindings, AdminKind::Audit),
        };
        let d = self.decide_admin_object(session, action, kind, facility, via_tunnel);
        if d.allowed && d.errors.is_empty() {
            return Ok(d.reasons);
        }
        Err(Refusal {
            reason: Reason::ConsoleNotPermitted,
            policies: d.reasons,
        })
    }

    /// The decision for `action` on the administered object of `kind` and `facility`.
    fn decide_admin_object(
        &self,
        session: &Session,
        action: PolicyAction,
        kind: AdminKind,
        facility: &str,
        via_tunnel: bool,
    ) -> sekisho_policies::Decision {
        self.engine.load().decide(&DecisionRequest {
            principal: principal(session),
            action,
            resource: Resource::Admin(AdminObject {
                id: format!("{}:{facility}", kind.as_str()),
                kind,
                facility: facility.to_string(),
            }),
            context: self.context(session, via_tunnel),
        })
    }

    /// The context every decision shares; patient facts are filled in by the caller.
    fn context(&self, session: &Session, via_tunnel: bool) -> RequestContext {
        RequestContext {
            auth_method: if session.method == "hpki" {
                AuthMethod::Hpki
            } else {
                AuthMethod::Password
            },
            patient_card_present: false,
            consent_window: false,
            // Set only for a second decision under an emergency grant (`patient`).
            break_glass: false,
            break_glass_write: false,
            tunnel: via_tunnel,
            hour: local_hour(),
            network_requires_card: self.require_card,
            entry_facility: None,
        }
    }
}

/// What an officer or the secretariat does in the console (or at the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficerAct {
    ReadAudit,
    ReviewBreakGlass,
    ApproveBreakGlass,
    ActOnFindings,
}

/// A permitted patient request: the deciding policies and what the patient's permission rests
/// on ("registry", or the consent window's "patient_card" / "staff_attested").
pub struct Allowed {
    pub policies: Vec<String>,
    pub consent_basis: &'static str,
    /// The emergency grant the access rests on, when the ordinary rules would have refused.
    pub grant: Option<Grant>,
}

fn principal(session: &Session) -> Principal {
    Principal {
        id: session.user_id.clone(),
        qualification: qualification(session),
        facility: session.facility.clone(),
        roles: session.roles.clone(),
    }
}

fn load_embedded() -> Result<PolicyEngine> {
    let dir = tempfile::tempdir()?;
    write_default_policies(dir.path())?;
    Ok(PolicyEngine::load(dir.path())?)
}

/// Writes the shipped default policy set (and its decision tables) into `dir`.
pub fn write_default_policies(dir: &Path) -> Result<()> {
    for (name, text) in sekisho_policies::default_policy_files() {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, text)?;
    }
    Ok(())
}

/// The qualification the policies see: the card's hcRole when there is one, else the
/// registry's roles.
fn qualification(s: &Session) -> String {
    use sekisho_ca::hpki::Qualification as Q;
    let from_card = match s.qualification.as_deref().map(Q::from_free_text) {
        Some(Q::MedicalDoctor) => Some("physician"),
        Some(Q::Dentist) => Some("dentist"),
        Some(Q::Pharmacist) => Some("pharmacist"),
        Some(Q::Nurse | Q::PublicHealthNurse | Q::Midwife) => Some("nurse"),
        _ => None,
    };
    if let Some(q) = from_card {
        return q.to_string();
    }
    const QUALIFICATIONS: &[&str] = &[
        "physician",
        "dentist",
        "pharmacist",
        "nurse",
        "care-manager",
        "helper",
        "clerk",
    ];
    s.roles
        .iter()
        .find(|r| QUALIFICATIONS.contains(&r.as_str()))
        .cloned()
        .unwrap_or_default()
}

/// Japan has one time zone and no daylight saving: UTC+9.
fn local_hour() -> u8 {
    ((time::OffsetDateTime::now_utc().hour() as u32 + 9) % 24) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(card: Option<&str>, roles: &[&str]) -> Session {
        Session {
            session_id: "s".into(),
            terminal: "t1".into(),
            user_id: "u".into(),
            facility: "f1".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            method: if card.is_some() { "hpki" } else { "password" }.into(),
            qualification: card.map(str::to_string),
            expires_at: i64::MAX,
            must_change_password: false,
            card: None,
            live: Default::default(),
        }
    }

    #[test]
    fn the_card_decides_the_qualification_over_the_registry() {
        // R-ROLE-1 / R-ACCT-4: a pharmacist's card registered as a physician acts as a
        // pharmacist; the registry speaks only when the card names no qualification.
        assert_eq!(
            qualification(&session(Some("Pharmacist"), &["physician"])),
            "pharmacist"
        );
        assert_eq!(
            qualification(&session(Some("Medical Doctor"), &["clerk"])),
            "physician"
        );
        assert_eq!(
            qualification(&session(Some("ＭＥＤＩＣＡＬ　ＤＯＣＴＯＲ"), &[])),
            "physician"
        );
        assert_eq!(qualification(&session(Some("Midwife"), &[])), "nurse");
        assert_eq!(
            qualification(&session(Some("Director of Clinic"), &["physician"])),
            "physician"
        );
        assert_eq!(qualification(&session(Some("Assistant Nurse"), &[])), "");
        // Registry roles: the first qualification among them; administrative roles are none.
        assert_eq!(
            qualification(&session(None, &["facility-admin", "nurse"])),
            "nurse"
        );
        assert_eq!(
            qualification(&session(None, &["facility-admin", "secretariat"])),
            ""
        );
    }
}
