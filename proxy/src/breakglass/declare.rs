//! A declaration's life at the desk: begun, its patient chosen, signed by the physician's card,
//! recorded durably, granted.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sekisho_audit::Decision;
use sekisho_protocol::wire::{
    CardAnswer, ChoosePatient, Declaration, DeclarationRequest, DeclarationState,
};
use sekisho_protocol::{Reason, is_valid_patient_id, new_request_id};
use sekisho_store::break_glass::{self as rows, NewDeclaration, status};
use sekisho_store::now;
use tracing::{info, warn};

use super::EmergencyDesk;
use crate::body::Body;
use crate::endpoint::{error, json, read_json};
use crate::notify::{Notice, kind};
use crate::sessions::Session;
use crate::signin::{Caller, card_id, hpki_refusal, nonce_hash};

/// Longest justification, in characters.
const MAX_JUSTIFICATION: usize = 1000;

impl EmergencyDesk {
    /// `POST /.sekisho/emergency/declarations`.
    pub(super) async fn begin(
        &self,
        req: Request<Incoming>,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let body = match read_json::<DeclarationRequest>(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match self.begin_declaration(&body, session, caller).await {
            Ok(state) => json(StatusCode::CREATED, &state),
            Err(reason) => error(reason),
        }
    }

    /// Begins a declaration (and chooses its patient when one is named); the page uses it too.
    pub(super) async fn begin_declaration(
        &self,
        body: &DeclarationRequest,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<DeclarationState, Reason> {
        let refuse = |reason| async move {
            self.refused(caller, Some(session), reason, None).await;
            Err(reason)
        };
        let Some(category) = self.cfg.break_glass.category(&body.category).cloned() else {
            return refuse(Reason::BreakGlassCategoryUnknown).await;
        };
        // Stored and signed exactly as written; the agent compares it byte for byte.
        let justification = body.justification.as_str();
        if justification.trim().is_empty()
            || justification.chars().count() > MAX_JUSTIFICATION
            || justification
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return refuse(Reason::BreakGlassJustificationInvalid).await;
        }
        let Some(card) = session.card.as_deref() else {
            return refuse(Reason::BreakGlassNotPermitted).await;
        };
        let id = format!("bg-{}", &new_request_id()[..20]);
        let begun = rows::begin(
            &self.store,
            &NewDeclaration {
                id: &id,
                user_id: &session.user_id,
                facility: &session.facility,
                terminal: &caller.terminal.terminal,
                session_id: &session.session_id,
                card,
                category: &category.code,
                justification,
                allows_write: category.allows_write,
                hours: i64::from(category.hours),
                ends_with_session: category.ends_with_session,
                follow_up_required: category.follow_up,
                draft_expires_at: now() + i64::from(self.cfg.break_glass.draft_minutes) * 60,
            },
        )
        .await;
        if let Err(e) = begun {
            warn!(error = %e, "cannot store an emergency declaration");
            return Err(Reason::Internal);
        }
        let mut rec = self.record(caller, Some(session), Some(&id));
        rec.decision = Decision::Permit;
        rec.reason = "break_glass_begun".into();
        rec.detail = Some(format!("category {}", category.code));
        if self.audit.append(rec).await.is_err() {
            return Err(Reason::AuditUnavailable);
        }
        match &body.patient {
            Some(p) => self.choose_patient(&id, p, session, caller).await,
            None => self.declaration_state(&id, session).await,
        }
    }

    /// `POST /.sekisho/emergency/declarations/{id}/patient`.
    pub(super) async fn choose(
        &self,
        req: Request<Incoming>,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let body = match read_json::<ChoosePatient>(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match self
            .choose_patient(id, &body.patient, session, caller)
            .await
        {
            Ok(state) => json(StatusCode::OK, &state),
            Err(reason) => error(reason),
        }
    }

    /// Names the patient and prepares the words the card signs.
    pub(super) async fn choose_patient(
        &self,
        id: &str,
        patient: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<DeclarationState, Reason> {
        if !is_valid_patient_id(patient) {
            self.refused(
                caller,
                Some(session),
                Reason::RoutePatientIdMalformed,
                Some(id),
            )
            .await;
            return Err(Reason::RoutePatientIdMalformed);
        }
        // A declaration is for a patient of the network's registry (found by name if need be);
        // whether they consented is exactly what does not matter here.
        let Some(known) = self.patients.get(patient) else {
            self.refused(
                caller,
                Some(session),
                Reason::BreakGlassPatientUnknown,
                Some(id),
            )
            .await;
            return Err(Reason::BreakGlassPatientUnknown);
        };
        let outside_care_team = !known.facts.care_team_users.contains(&session.user_id)
            && !known.facts.care_team_facilities.contains(&session.facility);
        let mut nonce = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return Err(Reason::Internal);
        }
        let nonce = B64URL.encode(nonce);
        let declared_at = sekisho_audit::format_time(time::OffsetDateTime::now_utc());
        let chosen = rows::choose_patient(
            &self.store,
            id,
            &session.session_id,
            patient,
            outside_care_team,
            &nonce_hash(&nonce),
            &declared_at,
        )
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot choose the patient of a declaration");
            Reason::Internal
        })?;
        if !chosen {
            return Err(self.not_found_or_state(id, session).await);
        }
        let mut state = self.declaration_state(id, session).await?;
        let d = self.words(id, session, caller, &nonce).await?;
        state.to_sign = Some(B64.encode(d.to_sign()));
        state.nonce = Some(nonce);
        Ok(state)
    }

    /// The words of a declaration awaiting its signature, rebuilt from the store. A draft
    /// belongs to a session, and a session to one terminal: the caller's.
    async fn words(
        &self,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
        nonce: &str,
    ) -> Result<Declaration, Reason> {
        let d = self.owned(id, session).await?;
        let (Some(patient), Some(at)) = (d.patient_id, d.declared_at_text) else {
            return Err(Reason::BreakGlassDeclarationState);
        };
        if d.terminal != caller.terminal.terminal {
            return Err(Reason::BreakGlassDeclarationNotFound);
        }
        Ok(Declaration {
            gateway: self.cfg.hostname.clone(),
            terminal: caller.terminal.urn(),
            declaration: d.id,
            user: d.user_id,
            patient,
            category: d.category,
            justification: d.justification,
            declared_at: at,
            nonce: nonce.to_string(),
        })
    }

    /// `POST /.sekisho/emergency/declarations/{id}/signature`: the card's signature over the
    /// words. The declaration record is durable before the grant can be used: the row moves to
    /// `active` in a transaction that commits only after the record is on disk.
    pub(super) async fn sign(
        &self,
        req: Request<Incoming>,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let answer = match read_json::<CardAnswer>(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match self.signed(&answer, id, session, caller).await {
            Ok(state) => json(StatusCode::OK, &state),
            Err(reason) => {
                self.refused(caller, Some(session), reason, Some(id)).await;
                error(reason)
            }
        }
    }

    async fn signed(
        &self,
        answer: &CardAnswer,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<DeclarationState, Reason> {
        let d = self.owned(id, session).await?;
        if d.status != status::AWAITING_SIGNATURE
            || d.nonce_hash.as_deref() != Some(&nonce_hash(&answer.nonce))
        {
            return Err(Reason::BreakGlassDeclarationState);
        }
        let verifier = self.hpki.verifier().ok_or(Reason::HpkiNotConfigured)?;
        let (Ok(cert), Ok(sig)) = (
            B64.decode(answer.certificate.trim()),
            B64.decode(answer.signature.trim()),
        ) else {
            return Err(Reason::BreakGlassSignatureInvalid);
        };
        if cert.len() > 16 * 1024 || sig.len() > 1024 {
            return Err(Reason::BreakGlassSignatureInvalid);
        }
        // Verified like sign-in: chain, validity, policy, key usage, revocation now.
        let card = verifier.verify_now(&cert).map_err(|e| hpki_refusal(&e))?;
        if Some(card_id(&card)) != session.card || card_id(&card) != d.card {
            return Err(Reason::BreakGlassCardMismatch);
        }
        let words = self.words(id, session, caller, &answer.nonce).await?;
        let to_sign = words.to_sign();
        card.verify_signature(&to_sign, &sig)
            .map_err(|_| Reason::BreakGlassSignatureInvalid)?;
        let category = self.cfg.break_glass.category(&d.category).cloned();
        let needs_approval = category.as_ref().is_some_and(|c| c.approval);
        // The declaration on record first (strict order, whatever the audit design allows
        // for routine reads); only then does the grant exist. The record is durable before the
        // transaction that moves the row begins: appended while that transaction is open, it
        // would wait on SQLite for the write lock the transaction holds until the audit batch
        // times out, and no declaration could ever be made there. The checks above already
        // refused a replayed or stale signature; a twin sent at the same moment loses the
        // guarded update below and its record is followed by `break_glass_not_stored`.
        let mut rec = self.record(caller, Some(session), Some(id));
        rec.patient = words.patient.clone().into();
        rec.decision = Decision::Permit;
        rec.reason = if needs_approval {
            "break_glass_declared_awaiting_approval"
        } else {
            "break_glass_declared"
        }
        .into();
        rec.purpose_of_use = Some("BTG".into());
        rec.detail = Some(format!(
            "category {}; {}; signature sha256 {}; outside care team {}",
            d.category,
            category.as_ref().map_or(String::new(), |c| format!(
                "{} h, write {}",
                c.hours, c.allows_write
            )),
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sig)),
            d.outside_care_team.unwrap_or(false),
        ));
        if let Err(e) = self.audit.append(rec).await {
            warn!(error = %e, "the declaration could not be recorded: no grant");
            return Err(Reason::AuditUnavailable);
        }
        let stored = async {
            let mut tx = self.store.begin_write().await?;
            let moved = rows::signed(
                &mut tx,
                id,
                &session.session_id,
                d.nonce_hash.as_deref().unwrap_or_default(),
                &String::from_utf8_lossy(&to_sign),
                &answer.certificate,
                &answer.signature,
                needs_approval,
            )
            .await?;
            if !moved {
                return anyhow::Ok(false);
            }
            // The officers' notice commits with the grant (or neither does).
            self.notifier
                .enqueue_in(
                    &mut tx,
                    declared_notice(&d, &words, category.as_ref(), needs_approval),
                )
                .await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        if !matches!(stored, Ok(true)) {
            let reason = match stored {
                // Signed twice at once: the first one won.
                Ok(_) => Reason::BreakGlassDeclarationState,
                Err(e) => {
                    warn!(error = %e, "a recorded declaration could not be stored: no grant");
                    Reason::Internal
                }
            };
            let mut rec = self.record(caller, Some(session), Some(id));
            rec.decision = Decision::Deny;
            rec.reason = "break_glass_not_stored".into();
            self.audit.append_nowait(rec);
            return Err(reason);
        }
        self.notifier.wake();
        info!(declaration = id, user = %session.user_id, category = %d.category, "emergency access declared");
        // This replica applies the grant at once; the others within a poll.
        if let Err(e) = self.patients.refresh(&self.store, &words.patient).await {
            warn!(error = %e, "cannot refresh the patient after a declaration");
        }
        self.declaration_state(id, session).await
    }

    /// `GET /.sekisho/emergency/pending`: this session's declarations awaiting the card, with
    /// the words to sign (a fresh nonce each time, so only the newest words can be signed).
    pub(super) async fn pending(&self, session: &Session, caller: &Caller<'_>) -> Response<Body> {
        let drafts = match rows::list(&self.store, &[status::AWAITING_SIGNATURE], None, 20).await {
            Ok(d) => d,
            Err(_) => return error(Reason::Internal),
        };
        let mut out = Vec::new();
        for d in drafts
            .into_iter()
            .filter(|d| d.session_id == session.session_id && d.draft_expires_at > now())
        {
            let Some(patient) = d.patient_id.clone() else {
                continue;
            };
            match self.renew_words(&d.id, &patient, session, caller).await {
                Ok(state) => out.push(state),
                Err(reason) => return error(reason),
            }
        }
        json(StatusCode::OK, &out)
    }

    /// New words (a new nonce) for a declaration already awaiting its signature.
    async fn renew_words(
        &self,
        id: &str,
        patient: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<DeclarationState, Reason> {
        let d = self.owned(id, session).await?;
        let mut nonce = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return Err(Reason::Internal);
        }
        let nonce = B64URL.encode(nonce);
        let ok = rows::choose_patient(
            &self.store,
            id,
            &session.session_id,
            patient,
            d.outside_care_team.unwrap_or(false),
            &nonce_hash(&nonce),
            d.declared_at_text.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(|_| Reason::Internal)?;
        if !ok {
            return Err(Reason::BreakGlassDeclarationState);
        }
        let mut state = self.declaration_state(id, session).await?;
        state.to_sign = Some(B64.encode(self.words(id, session, caller, &nonce).await?.to_sign()));
        state.nonce = Some(nonce);
        Ok(state)
    }

    /// `GET /.sekisho/emergency/declarations/{id}`.
    pub(super) async fn state(&self, id: &str, session: &Session) -> Response<Body> {
        match self.declaration_state(id, session).await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(r) => error(r),
        }
    }

    pub(super) async fn declaration_state(
        &self,
        id: &str,
        session: &Session,
    ) -> Result<DeclarationState, Reason> {
        let d = self.owned(id, session).await?;
        Ok(DeclarationState {
            status: d.status.clone(),
            patient: d.patient_id.clone(),
            category: d.category.clone(),
            to_sign: None,
            nonce: None,
            expires_at: d.expires_at,
            allows: Some(if d.allows_write { "view,write" } else { "view" }.into()),
            id: d.id,
        })
    }

    /// The declaration, if it is this physician's (drafts: this session's).
    pub(super) async fn owned(
        &self,
        id: &str,
        session: &Session,
    ) -> Result<rows::Declaration, Reason> {
        let d = rows::get(&self.store, id).await.map_err(|e| {
            warn!(error = %e, "cannot read a declaration");
            Reason::Internal
        })?;
        match d {
            Some(d)
                if d.user_id == session.user_id
                    && (d.declared_at.is_some() || d.session_id == session.session_id)
                    && (d.declared_at.is_some() || d.draft_expires_at > now()) =>
            {
                Ok(d)
            }
            _ => Err(Reason::BreakGlassDeclarationNotFound),
        }
    }

    async fn not_found_or_state(&self, id: &str, session: &Session) -> Reason {
        match self.owned(id, session).await {
            Ok(_) => Reason::BreakGlassDeclarationState,
            Err(r) => r,
        }
    }
}

/// What the officers are told of a declaration: ids, category, time box — never the patient's
/// name or anything of the record.
fn declared_notice(
    d: &rows::Declaration,
    words: &Declaration,
    category: Option<&super::Category>,
    needs_approval: bool,
) -> Notice {
    let (cat_ja, cat_en, hours) = category
        .map_or((d.category.as_str(), d.category.as_str(), 0), |c| {
            (c.name_ja.as_str(), c.name_en.as_str(), c.hours)
        });
    let approval_ja = if needs_approval {
        "（承認待ち：承認されるまで閲覧できません）"
    } else {
        ""
    };
    let approval_en = if needs_approval {
        " (waiting for approval: no access until then)"
    } else {
        ""
    };
    Notice {
        kind: kind::BREAK_GLASS_DECLARED.into(),
        subject_ja: format!("緊急時アクセスの宣言 {}{approval_ja}", d.id),
        subject_en: format!("Emergency access declared: {}{approval_en}", d.id),
        text: format!(
            "医師 {user}（{facility}）が患者 {patient} について緊急時アクセスを宣言しました。\n区分: {cat_ja}、{hours}時間{approval_ja}\n端末: {terminal}\n確認: sekisho breakglass show --id {id}\n\n\
             Physician {user} ({facility}) declared an emergency access for patient {patient}.\nCategory: {cat_en}, {hours} h{approval_en}\nTerminal: {terminal}\nReview: sekisho breakglass show --id {id}\n",
            user = d.user_id,
            facility = d.facility,
            patient = words.patient,
            terminal = d.terminal,
            id = d.id,
        ),
        data: serde_json::json!({
            "declaration": d.id, "user": d.user_id, "facility": d.facility,
            "patient": words.patient, "category": d.category, "terminal": d.terminal,
            "declared_at": words.declared_at, "hours": hours, "awaiting_approval": needs_approval,
            "outside_care_team": d.outside_care_team,
        }),
    }
}
