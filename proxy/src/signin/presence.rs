//! Card presence (`docs/signin.md`, "Sessions that end"): while a card session lasts, the agent
//! has the card sign a fresh gateway challenge every third of `signin.card_presence_secs`; a
//! session whose proofs stop (card gone, agent killed, terminal off the network) ends at the
//! gateway (`heartbeat_missed`, `crate::serve::lapse`). The proof is the card's: a signature
//! by the key of the very certificate the session was opened with, over a single-use nonce
//! bound to this terminal and this gateway, with a first line of its own so that neither a
//! sign-in nor a declaration can be passed off as one. The card signs without its PIN being
//! typed again because the agent keeps its connection to the card from the sign-in on (the
//! card forgets the PIN when it is reset or powered off, i.e. taken out).
//!
//! Proofs are not audited one by one; a proof that shows another card, or a signature that
//! does not verify, ends the session at once (`card_absent`; a certificate now refused, e.g.
//! revoked: `card_refused`), and that is on record. A proof whose revocation cannot be
//! checked (CRL out of date) is refused without ending anything: the presence limit bounds it.

use http::{Response, StatusCode};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{CardAnswer, PresenceAnswer, hpki_presence_to_sign};
use sekisho_store::now;
use sekisho_store::sessions as session_rows;
use tracing::warn;

use super::{Caller, SignIn, card_id, nonce_hash};
use crate::body::Body;
use crate::endpoint::{error, json};
use crate::sessions::Session;

/// Presence nonces share the sign-in challenges' table, under a hash of their own.
fn presence_hash(nonce: &str) -> String {
    nonce_hash(&format!("presence\n{nonce}"))
}

impl SignIn {
    /// The terminal's card session, if it has one.
    fn card_session(&self, caller: &Caller<'_>) -> Option<std::sync::Arc<Session>> {
        self.sessions
            .for_terminal(&caller.terminal.terminal)
            .filter(|s| s.method == "hpki")
    }

    pub(super) async fn presence_challenge(&self, caller: &Caller<'_>) -> Response<Body> {
        if self.card_session(caller).is_none() {
            return error(Reason::NotSignedIn);
        }
        self.card_challenge(caller, presence_hash, hpki_presence_to_sign, "presence")
            .await
    }

    pub(super) async fn presence_proof(
        &self,
        body: CardAnswer,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let Some(verifier) = self.hpki.verifier() else {
            return error(Reason::HpkiNotConfigured);
        };
        let Some(session) = self.card_session(caller) else {
            return error(Reason::NotSignedIn);
        };
        let (cert, sig) = match self.take_card_answer(&body, caller, presence_hash).await {
            Ok(answer) => answer,
            Err(r) => return error(r),
        };
        let id = match verifier.verify_now(&cert) {
            Ok(id) => id,
            // Revocation cannot be checked now (CRL out of date): the proof does not count,
            // but a CRL late by a few seconds does not end every card session at once; if it
            // stays so, the sessions end when their presence runs out.
            Err(e) if super::hpki_refusal(&e) == Reason::HpkiRevocationUnknown => {
                return error(Reason::HpkiRevocationUnknown);
            }
            Err(e) => {
                return self
                    .end_on_proof(caller, &session, "card_refused", super::hpki_refusal(&e))
                    .await;
            }
        };
        if session.card.as_deref() != Some(card_id(&id).as_str()) {
            return self
                .end_on_proof(
                    caller,
                    &session,
                    "card_absent",
                    Reason::PresenceCardMismatch,
                )
                .await;
        }
        let to_sign =
            hpki_presence_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &body.nonce);
        if id.verify_signature(&to_sign, &sig).is_err() {
            return self
                .end_on_proof(caller, &session, "card_absent", Reason::HpkiBadSignature)
                .await;
        }
        let limit = i64::from(self.cfg.signin.card_presence_secs);
        let at = now();
        let recorded = async {
            let mut tx = self.store.begin_write().await?;
            let ok =
                session_rows::record_presence(&mut tx, &session.session_id, at - limit).await?;
            tx.commit().await?;
            anyhow::Ok(ok)
        }
        .await;
        match recorded {
            Ok(true) => {
                self.sessions.present(&session.session_id, at);
                json(
                    StatusCode::OK,
                    &PresenceAnswer {
                        next_in: (limit / 3).max(1) as u64,
                        ends_in: limit as u64,
                    },
                )
            }
            // Ended meanwhile, or the card was missing too long already: a late proof does
            // not bring a session back.
            Ok(false) => error(Reason::NotSignedIn),
            Err(e) => {
                warn!(error = %e, "cannot record a presence proof");
                error(Reason::Internal)
            }
        }
    }

    /// A proof that shows the session's card is not there: the session ends now, on record.
    async fn end_on_proof(
        &self,
        caller: &Caller<'_>,
        session: &Session,
        why: &str,
        refusal: Reason,
    ) -> Response<Body> {
        let ended = async {
            let mut tx = self.store.begin_write().await?;
            let n = session_rows::end_by_id(&mut tx, &session.session_id, why).await?;
            tx.commit().await?;
            anyhow::Ok(n)
        }
        .await;
        self.sessions
            .remove_session(&caller.terminal.terminal, &session.session_id);
        match ended {
            Ok(n) if n > 0 => {
                let rec = AuditRecord {
                    request_id: caller.request_id.to_string(),
                    event: Event::Auth,
                    peer: Some(caller.peer.to_string()),
                    terminal: Some(caller.terminal.terminal.clone()),
                    facility: Some(caller.terminal.facility.clone()),
                    cert_serial: Some(caller.serial.to_string()),
                    user: Some(session.user_id.clone()),
                    decision: Decision::Deny,
                    reason: why.into(),
                    detail: Some(format!(
                        "DCM 110114 User Authentication / 110123 Logout; presence proof: {}",
                        refusal.code()
                    )),
                    ..Default::default()
                };
                if self.audit.append(rec).await.is_err() {
                    return error(Reason::AuditUnavailable);
                }
                error(refusal)
            }
            Ok(_) => error(refusal),
            Err(e) => {
                warn!(error = %e, "cannot end a session");
                error(Reason::Internal)
            }
        }
    }
}
