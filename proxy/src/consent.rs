//! The patient's permission at the terminal (R-PAT-2), under `/.sekisho/consent/` on the
//! terminal listener (never forwarded):
//!
//! - `POST /.sekisho/consent/challenge` → `{nonce, to_sign, expires_in}`: a single-use nonce
//!   bound to the sign-in session of the person at this terminal;
//! - `POST /.sekisho/consent/card` `{nonce, certificate, signature}`: the patient's card signed
//!   `to_sign`; the certificate must chain to Sekisho's patient-card CA, the card must be one the
//!   store lists as active for that patient, and the patient must have consented. Then a consent
//!   window opens for that person and patient (`policy.consent_window_minutes`);
//! - `POST /.sekisho/consent/attest` `{patient}`: the lower-assurance mode a deployment may allow
//!   (`policy.allow_attested_consent`): the card's id was read and the signed-in person attests
//!   the patient's presence. The window is recorded as `staff_attested`.
//!
//! Every attempt, opened or refused, is in the audit log (event `consent`). The answers say what
//! went wrong without telling a card holder anything about the patient beyond "not available".

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_ca::patient_card::{PatientCardAnchors, verify_consent_signature, verify_patient_card};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{
    Attestation, CONSENT_ATTEST_PATH, CONSENT_CARD_PATH, CONSENT_CHALLENGE_PATH, CardAnswer,
    Challenge, ConsentBasis, ConsentWindow, consent_to_sign,
};
use sekisho_store::consent::{self as rows, Basis, NewWindow};
use sekisho_store::patients::{self, Consent};
use sekisho_store::{Store, now};
use tracing::{info, warn};

use crate::body::Body;
use crate::config::Config;
use crate::endpoint::{error, json, read_json};
use crate::patients::PatientView;
use crate::sessions::{Session, Sessions};
use crate::signin::{Caller, nonce_hash};

pub struct ConsentDesk {
    cfg: Config,
    store: Store,
    audit: AuditLog,
    sessions: Arc<Sessions>,
    /// Patient facts in memory: a window opened here applies to this replica's next request.
    patients: Arc<PatientView>,
    /// Sekisho's CA directory: `root.crt` + `patient-card-ca.crt` are the cards' anchors.
    ca_dir: PathBuf,
    anchors: ArcSwapOption<PatientCardAnchors>,
}

impl ConsentDesk {
    pub fn new(
        cfg: Config,
        store: Store,
        audit: AuditLog,
        sessions: Arc<Sessions>,
        patients: Arc<PatientView>,
        ca_dir: PathBuf,
    ) -> ConsentDesk {
        ConsentDesk {
            cfg,
            store,
            audit,
            sessions,
            patients,
            ca_dir,
            anchors: ArcSwapOption::empty(),
        }
    }

    /// `path` is the normalised path, which starts with [`PREFIX`].
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        caller: &Caller<'_>,
        cookie: Option<&str>,
    ) -> Response<Body> {
        let Some(session) = self.session(caller, cookie) else {
            // A card presented with nobody signed in is an attempt too: on the record.
            let r = Reason::NotSignedIn;
            let rec = AuditRecord {
                request_id: caller.request_id.to_string(),
                event: Event::Consent,
                peer: Some(caller.peer.to_string()),
                terminal: Some(caller.terminal.terminal.clone()),
                facility: Some(caller.terminal.facility.clone()),
                cert_serial: Some(caller.serial.to_string()),
                action: Some("consent".into()),
                decision: Decision::Deny,
                reason: r.code().into(),
                ..Default::default()
            };
            if self.audit.append(rec).await.is_err() {
                return error(Reason::AuditUnavailable);
            }
            return error(r);
        };
        match (req.method().clone(), path) {
            (Method::POST, CONSENT_CHALLENGE_PATH) => self.challenge(caller, &session).await,
            (Method::POST, CONSENT_CARD_PATH) => match read_json::<CardAnswer>(req).await {
                Ok(a) => self.card(a, caller, &session).await,
                Err(r) => r,
            },
            (Method::POST, CONSENT_ATTEST_PATH) => match read_json::<Attestation>(req).await {
                Ok(a) => self.attest(a, caller, &session).await,
                Err(r) => r,
            },
            _ => error(Reason::NotFound),
        }
    }

    /// The person at this terminal, by the rule of every other request; one who must change
    /// their password first is not signed in yet.
    fn session(&self, caller: &Caller<'_>, cookie: Option<&str>) -> Option<Arc<Session>> {
        self.sessions
            .for_request(&caller.terminal.terminal, cookie)
            .ok()
            .flatten()
            .filter(|s| !s.must_change_password)
    }

    fn anchors(&self) -> Option<Arc<PatientCardAnchors>> {
        if let Some(a) = self.anchors.load_full() {
            return Some(a);
        }
        // The patient-card CA is made when the first card is issued; until then there is
        // nothing to trust, and each request looks again.
        match PatientCardAnchors::load(&self.ca_dir) {
            Ok(a) => {
                let a = Arc::new(a);
                self.anchors.store(Some(a.clone()));
                Some(a)
            }
            Err(e) => {
                warn!(error = %e, "no patient-card CA: patient cards cannot be used yet");
                None
            }
        }
    }

    async fn challenge(&self, caller: &Caller<'_>, session: &Session) -> Response<Body> {
        let mut nonce = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return error(Reason::Internal);
        }
        let nonce = B64URL.encode(nonce);
        let ttl = i64::from(self.cfg.signin.challenge_seconds.max(10));
        if let Err(e) = rows::insert_challenge(
            &self.store,
            &nonce_hash(&nonce),
            &session.session_id,
            now() + ttl,
        )
        .await
        {
            warn!(error = %e, "cannot store a consent challenge");
            return error(Reason::Internal);
        }
        let to_sign = consent_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &nonce);
        json(
            StatusCode::OK,
            &Challenge {
                to_sign: B64.encode(to_sign),
                nonce,
                expires_in: ttl as u64,
            },
        )
    }

    async fn card(&self, a: CardAnswer, caller: &Caller<'_>, session: &Session) -> Response<Body> {
        let mut rec = record(caller, session, "patient_card");
        let outcome = self.check_card(&a, caller, session, &mut rec).await;
        self.finish(outcome, rec, caller, session, Basis::PatientCard)
            .await
    }

    /// Everything that decides a card-signed consent; Ok is (patient, card serial).
    async fn check_card(
        &self,
        a: &CardAnswer,
        caller: &Caller<'_>,
        session: &Session,
        rec: &mut AuditRecord,
    ) -> Result<(String, Option<String>), Reason> {
        let Some(anchors) = self.anchors() else {
            return Err(Reason::PatientCardNotConfigured);
        };
        let (Ok(cert), Ok(sig)) = (
            B64.decode(a.certificate.as_bytes()),
            B64.decode(a.signature.as_bytes()),
        ) else {
            return Err(Reason::PatientCardInvalid);
        };
        let card =
            verify_patient_card(&anchors, &cert, time::OffsetDateTime::now_utc()).map_err(|e| {
                rec.detail = Some(crate::headers::escape_text(&e.to_string(), 300));
                Reason::PatientCardInvalid
            })?;
        rec.patient = Some(card.patient_id.clone());
        rec.detail = Some(format!("card {}", card.serial_hex));
        // The challenge: issued to this very session, unused, unexpired.
        match rows::consume_challenge(&self.store, &nonce_hash(&a.nonce), &session.session_id).await
        {
            Ok(true) => {}
            Ok(false) => return Err(Reason::ChallengeExpired),
            Err(e) => {
                warn!(error = %e, "cannot check a consent challenge");
                return Err(Reason::Internal);
            }
        }
        let message = consent_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &a.nonce);
        verify_consent_signature(&cert, &message, &sig).map_err(|_| Reason::PatientCardInvalid)?;
        match rows::card(&self.store, &card.serial_hex).await {
            Ok(Some(row)) if row.status == "active" && row.patient_id == card.patient_id => {}
            Ok(_) => return Err(Reason::PatientCardRevoked),
            Err(e) => {
                warn!(error = %e, "cannot read the patient card registry");
                return Err(Reason::Internal);
            }
        }
        self.check_consented(&card.patient_id).await?;
        Ok((card.patient_id, Some(card.serial_hex)))
    }

    async fn attest(
        &self,
        a: Attestation,
        caller: &Caller<'_>,
        session: &Session,
    ) -> Response<Body> {
        let mut rec = record(caller, session, "staff_attested");
        let outcome = async {
            if !self.cfg.policy.allow_attested_consent {
                return Err(Reason::AttestationNotAllowed);
            }
            if !sekisho_protocol::is_valid_patient_id(&a.patient) {
                return Err(Reason::PatientCardInvalid);
            }
            rec.patient = Some(a.patient.clone());
            // The id read must be that of a card the network issued and has not revoked.
            match rows::cards(&self.store, Some(&a.patient)).await {
                Ok(cards) if cards.iter().any(|c| c.status == "active") => {}
                Ok(_) => return Err(Reason::PatientCardRevoked),
                Err(e) => {
                    warn!(error = %e, "cannot read the patient card registry");
                    return Err(Reason::Internal);
                }
            }
            self.check_consented(&a.patient).await?;
            Ok((a.patient.clone(), None))
        }
        .await;
        self.finish(outcome, rec, caller, session, Basis::StaffAttested)
            .await
    }

    async fn check_consented(&self, patient: &str) -> Result<(), Reason> {
        match patients::facts(&self.store, patient).await {
            Ok(Some(f)) if f.consent == Consent::Granted => Ok(()),
            Ok(_) => Err(Reason::PatientUnknownOrNotConsented),
            Err(e) => {
                warn!(error = %e, "cannot read the consent registry");
                Err(Reason::Internal)
            }
        }
    }

    /// Audits the outcome, and opens the window only once the record is durable.
    async fn finish(
        &self,
        outcome: Result<(String, Option<String>), Reason>,
        mut rec: AuditRecord,
        caller: &Caller<'_>,
        session: &Session,
        basis: Basis,
    ) -> Response<Body> {
        let (patient, serial) = match outcome {
            Err(r) => {
                rec.decision = Decision::Deny;
                rec.reason = r.code().into();
                if self.audit.append(rec).await.is_err() {
                    return error(Reason::AuditUnavailable);
                }
                return error(r);
            }
            Ok(v) => v,
        };
        let minutes = self.cfg.policy.consent_window_minutes.max(1);
        let until = now() + i64::from(minutes) * 60;
        let window_id = format!("w-{}", sekisho_protocol::new_request_id());
        rec.decision = Decision::Permit;
        rec.reason = "consent_window_opened".into();
        rec.detail = Some(format!(
            "window {window_id}; basis {}; until {until}{}",
            basis.as_str(),
            serial
                .as_deref()
                .map(|s| format!("; card {s}"))
                .unwrap_or_default()
        ));
        if self.audit.append(rec).await.is_err() {
            return error(Reason::AuditUnavailable);
        }
        let w = NewWindow {
            window_id: &window_id,
            user_id: &session.user_id,
            patient_id: &patient,
            terminal: &caller.terminal.terminal,
            basis,
            card_serial: serial.as_deref(),
            expires_at: until,
        };
        if let Err(e) = rows::open_window(&self.store, &w).await {
            warn!(error = %e, "cannot open a consent window");
            // The log said "opened": say that it did not, so the record matches what happened.
            self.audit.append_nowait(AuditRecord {
                request_id: caller.request_id.to_string(),
                event: Event::Consent,
                terminal: Some(caller.terminal.terminal.clone()),
                user: Some(session.user_id.clone()),
                patient: Some(patient),
                decision: Decision::Deny,
                reason: "consent_window_not_stored".into(),
                detail: Some(format!("window {window_id}")),
                ..Default::default()
            });
            return error(Reason::Internal);
        }
        if let Err(e) = self.patients.refresh(&self.store, &patient).await {
            // The watcher applies it within a poll instead.
            warn!(error = %e, "cannot refresh the patient's facts after opening a window");
        }
        info!(terminal = %caller.terminal.terminal, user = %session.user_id, basis = basis.as_str(), "consent window opened");
        json(
            StatusCode::OK,
            &ConsentWindow {
                patient,
                basis: match basis {
                    Basis::PatientCard => ConsentBasis::PatientCard,
                    Basis::StaffAttested => ConsentBasis::StaffAttested,
                },
                until,
                minutes,
            },
        )
    }
}

fn record(caller: &Caller<'_>, session: &Session, method: &str) -> AuditRecord {
    AuditRecord {
        request_id: caller.request_id.to_string(),
        event: Event::Consent,
        peer: Some(caller.peer.to_string()),
        terminal: Some(caller.terminal.terminal.clone()),
        facility: Some(caller.terminal.facility.clone()),
        cert_serial: Some(caller.serial.to_string()),
        user: Some(session.user_id.clone()),
        qualification: session.qualification.clone(),
        method: Some(method.into()),
        action: Some("consent".into()),
        ..Default::default()
    }
}
