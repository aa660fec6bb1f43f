//! HPKI card sign-in (R-ACCT-4): the agent asks for a challenge, the card's authentication key
//! signs it after the PIN is entered on the terminal, and the gateway checks the signature, the
//! certificate (chain, validity, policy, key usage, CRLs), maps it to an account and opens a
//! session for that terminal. Failures count per account and per terminal (R-ACCT-5).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use http::{Response, StatusCode};
use sekisho_audit::{AuditRecord, Decision};
use sekisho_ca::hpki::{HpkiError, HpkiIdentity, HpkiVerifier};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{CardAnswer, Challenge, SignedIn, hpki_login_to_sign};
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::sessions as session_rows;
use sekisho_store::{now, users};
use tracing::{info, warn};

use super::{Caller, SignIn, auth_record, nonce_hash};
use crate::body::Body;
use crate::endpoint::{error, json};

impl SignIn {
    pub(super) async fn challenge(&self, caller: &Caller<'_>) -> Response<Body> {
        if self.hpki.verifier().is_none() {
            return error(Reason::HpkiNotConfigured);
        }
        if let Some(r) = self.terminal_locked(caller).await {
            return error(r);
        }
        self.card_challenge(caller, nonce_hash, hpki_login_to_sign, "login")
            .await
    }

    /// A card's answer to a challenge of [`SignIn::card_challenge`]: its certificate and
    /// signature decoded and bounded, and the challenge (kept as `hash` of its nonce) spent:
    /// single use, unexpired, this terminal's certificate. What is left to check is the
    /// certificate and the signature.
    pub(super) async fn take_card_answer(
        &self,
        body: &CardAnswer,
        caller: &Caller<'_>,
        hash: fn(&str) -> String,
    ) -> Result<(Vec<u8>, Vec<u8>), Reason> {
        let (Ok(cert), Ok(sig)) = (
            B64.decode(body.certificate.trim()),
            B64.decode(body.signature.trim()),
        ) else {
            return Err(Reason::HpkiMalformed);
        };
        if cert.len() > 16 * 1024 || sig.len() > 1024 || body.nonce.len() > 128 {
            return Err(Reason::HpkiMalformed);
        }
        let consumed = async {
            let mut tx = self.store.begin_write().await?;
            let ok = session_rows::consume_challenge(
                &mut tx,
                &hash(&body.nonce),
                &caller.terminal.terminal,
                caller.serial,
            )
            .await?;
            tx.commit().await?;
            anyhow::Ok(ok)
        }
        .await;
        match consumed {
            Ok(true) => Ok((cert, sig)),
            Ok(false) => Err(Reason::ChallengeInvalid),
            Err(e) => {
                warn!(error = %e, "cannot check a card challenge");
                Err(Reason::Internal)
            }
        }
    }

    /// A challenge for the terminal's card: a single-use nonce, bound to the terminal's
    /// certificate, kept in the store only as `hash` of it (sign-in and presence nonces share
    /// the table under hashes of their own), and the text the card is to sign over it
    /// (`to_sign`: each use has its own first line, so no signature serves another).
    pub(super) async fn card_challenge(
        &self,
        caller: &Caller<'_>,
        hash: fn(&str) -> String,
        to_sign: fn(&str, &str, &str) -> Vec<u8>,
        purpose: &'static str,
    ) -> Response<Body> {
        let mut nonce = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return error(Reason::Internal);
        }
        let nonce = B64URL.encode(nonce);
        let ttl = i64::from(self.cfg.signin.challenge_seconds.max(10));
        if let Err(e) = session_rows::insert_challenge(
            &self.store,
            &hash(&nonce),
            &caller.terminal.terminal,
            caller.serial,
            now() + ttl,
        )
        .await
        {
            warn!(error = %e, purpose, "cannot store a card challenge");
            return error(Reason::Internal);
        }
        let to_sign = to_sign(&self.cfg.hostname, &caller.terminal.urn(), &nonce);
        json(
            StatusCode::OK,
            &Challenge {
                to_sign: B64.encode(to_sign),
                nonce,
                expires_in: ttl as u64,
            },
        )
    }

    pub(super) async fn hpki_login(&self, body: CardAnswer, caller: &Caller<'_>) -> Response<Body> {
        let Some(verifier) = self.hpki.verifier() else {
            return error(Reason::HpkiNotConfigured);
        };
        if let Err(l) = self.pace(caller, None, "hpki") {
            return l.add_retry_after(error(Reason::RateLimited));
        }
        if let Some(r) = self.terminal_locked(caller).await {
            return error(r);
        }
        let mut rec = auth_record(caller, "hpki");
        let mut limited = None;
        let outcome = self
            .check_hpki(&verifier, &body, caller, &mut rec, &mut limited)
            .await;
        // The account's limit: neither a failure to count nor a record of its own (its burst
        // has one).
        if let Some(l) = limited {
            return l.add_retry_after(error(Reason::RateLimited));
        }
        match outcome {
            Err((r, account)) => {
                // Count the failure against the terminal, and the account when we know it.
                let delay = self
                    .count_failure(caller, account.as_deref(), &mut rec)
                    .await;
                rec.decision = Decision::Deny;
                rec.reason = r.code().into();
                let audited = self.audit.append(rec).await;
                tokio::time::sleep(delay).await;
                if audited.is_err() {
                    return error(Reason::AuditUnavailable);
                }
                error(r)
            }
            Ok((user, qualification, card)) => {
                rec.decision = Decision::Permit;
                rec.reason = "login".into();
                if self.audit.append(rec).await.is_err() {
                    return error(Reason::AuditUnavailable);
                }
                match self
                    .open_session(caller, &user, "hpki", qualification.clone(), Some(card))
                    .await
                {
                    Ok(s) => {
                        info!(terminal = %caller.terminal.terminal, user = %user.user_id, "signed in with an HPKI card");
                        json(
                            StatusCode::OK,
                            &SignedIn {
                                user: user.user_id,
                                name: user.name,
                                qualification,
                                expires_at: s.expires_at,
                            },
                        )
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot open a session");
                        error(Reason::Internal)
                    }
                }
            }
        }
    }

    /// Everything that decides an HPKI sign-in. The error carries the account id when the
    /// certificate was good enough to name one.
    async fn check_hpki(
        &self,
        verifier: &HpkiVerifier,
        body: &CardAnswer,
        caller: &Caller<'_>,
        rec: &mut AuditRecord,
        limited: &mut Option<crate::throttle::Limited>,
    ) -> Result<(users::UserRow, Option<String>, String), (Reason, Option<String>)> {
        let (cert, sig) = self
            .take_card_answer(body, caller, nonce_hash)
            .await
            .map_err(|r| (r, None))?;
        let id = verifier
            .verify_now(&cert)
            .map_err(|e| (refusal(&e), None))?;
        let is = id.issuer_serial();
        let account = users::by_hpki(
            &self.store,
            &is.issuer,
            &is.serial_hex,
            id.holder_id.as_deref(),
        )
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot look up the account of a card");
            e
        })
        .map_err(|_| (Reason::Internal, None))?;
        let Some(user) = account else {
            return Err((Reason::UserUnknown, None));
        };
        // The account is known once its card's certificate is: its limit before the signature.
        if let Err(l) = self.pace_account(caller, &user.user_id, "hpki") {
            *limited = Some(l);
            return Err((Reason::RateLimited, None));
        }
        rec.user = Some(user.user_id.clone());
        let qualification = id.qualification().map(|q| q.as_str().to_string());
        rec.qualification = qualification.clone();
        id.verify_signature(
            &hpki_login_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &body.nonce),
            &sig,
        )
        .map_err(|e| (refusal(&e), Some(user.user_id.clone())))?;
        if user.suspended {
            return Err((Reason::UserSuspended, Some(user.user_id.clone())));
        }
        if !user.facility_open {
            return Err((Reason::FacilitySuspended, Some(user.user_id.clone())));
        }
        match lockouts::get(&self.store, Scope::Account, &user.user_id).await {
            Ok(c) if c.locked_at.is_some() => return Err((Reason::AccountLocked, None)),
            Ok(_) => {}
            Err(_) => return Err((Reason::Internal, None)),
        }
        Ok((user, qualification, card_id(&id)))
    }
}

/// How a card is named in sessions and break-glass grants: its certificate's issuer and serial.
pub(crate) fn card_id(id: &HpkiIdentity) -> String {
    let is = id.issuer_serial();
    format!("{}|{}", is.issuer, is.serial_hex)
}

/// What the person is told about a card the verifier refused.
pub(crate) fn refusal(e: &HpkiError) -> Reason {
    match e {
        HpkiError::Expired { .. } => Reason::HpkiExpired,
        HpkiError::NotYetValid { .. } => Reason::HpkiNotYetValid,
        HpkiError::Revoked => Reason::HpkiRevoked,
        HpkiError::RevocationUnknown(_) | HpkiError::CrlExpired { .. } => {
            Reason::HpkiRevocationUnknown
        }
        HpkiError::SignatureCertificate => Reason::HpkiSignatureCertificate,
        HpkiError::BadSignature => Reason::HpkiBadSignature,
        HpkiError::Untrusted(_) => Reason::HpkiUntrusted,
        HpkiError::WrongPolicy(_) | HpkiError::WrongKeyUsage(_) => Reason::HpkiWrongProfile,
        _ => Reason::HpkiMalformed,
    }
}
