//! The patient's consent with their patient card (R-PAT-2): `sekisho-agent consent`.
//!
//! A physician is signed in on this terminal (HPKI card); the patient hands over their Sekisho
//! patient card ([`sekisho_cardreader::patient_card`]), which goes into a second reader (or the same one,
//! after the physician's). Over the terminal's mutual-TLS connection:
//!
//! 1. find the patient card (the named reader, or the first reader whose card selects the
//!    patient-card application: an HPKI card in the other reader is skipped), read the patient
//!    id (EF `0001`) and the certificate (EF `0002`), which must name that patient;
//! 2. `POST /.sekisho/consent/challenge` (no body) → `{nonce, to_sign, expires_in}`;
//! 3. the card signs `to_sign` (ECDSA P-256, SHA-256; no PIN: handing over the card is the
//!    consent). Only a consent challenge is signed: 1 to [`MAX_CONSENT_TO_SIGN`] bytes starting
//!    with [`CONSENT_PREFIX`], so that the card is never a signing oracle for anything else;
//! 4. `POST /.sekisho/consent/card` `{nonce, certificate, signature}` (base64, DER) → the
//!    consent window: `{patient, basis: "patient_card", until, minutes}`.
//!
//! With `--attest` (a lower assurance that a deployment may allow), only the id is read and
//! `POST /.sekisho/consent/attest` `{patient}` → the same answer with `basis:
//! "staff_attested"`: the signed-in physician attests that the patient presented the card.
//!
//! The answer must name the patient the card named, with the basis asked for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;

use sekisho_cardreader::apdu::{CardError, Transport};
use sekisho_cardreader::patient_card::{self, CardIdentity, PatientCard, PatientCardError};
use sekisho_cardreader::pcsc_transport::PcscTransport;
use sekisho_protocol::wire::{
    self, Attestation, CONSENT_PREFIX, CardAnswer, ConsentBasis, ConsentWindow,
};

use crate::error::AgentError;
use crate::text::clean;
use crate::{AgentConfig, Gateway, Summary, blocking, card, format_time};

/// Longest consent challenge the card signs.
pub const MAX_CONSENT_TO_SIGN: usize = 1024;

fn basis_en(basis: ConsentBasis) -> &'static str {
    match basis {
        ConsentBasis::PatientCard => "patient card",
        ConsentBasis::StaffAttested => "staff attestation",
    }
}

fn basis_ja(basis: ConsentBasis) -> &'static str {
    match basis {
        ConsentBasis::PatientCard => "患者カード",
        ConsentBasis::StaffAttested => "職員確認",
    }
}

impl Summary for ConsentWindow {
    /// `Consent window open for patient P until 2026-11-21 15:30 JST (30 min, patient card)`
    fn summary(&self) -> String {
        format!(
            "Consent window open for patient {} until {} ({} min, {})",
            clean(&self.patient, 64),
            format_time(self.until),
            self.minutes,
            basis_en(self.basis)
        )
    }

    /// `患者 P の閲覧同意を受け付けました（2026-11-21 15:30 JST まで、30分、患者カード）`
    fn summary_ja(&self) -> String {
        format!(
            "患者 {} の閲覧同意を受け付けました（{} まで、{}分、{}）",
            clean(&self.patient, 64),
            format_time(self.until),
            self.minutes,
            basis_ja(self.basis)
        )
    }
}

/// Refuses anything but a consent challenge: 1 to [`MAX_CONSENT_TO_SIGN`] bytes starting with
/// [`CONSENT_PREFIX`]. A gateway (or whoever stands in for it) cannot use the patient's card to
/// sign an HPKI login challenge or any other text.
pub fn check_consent_to_sign(to_sign: &[u8]) -> Result<(), AgentError> {
    if to_sign.is_empty() || to_sign.len() > MAX_CONSENT_TO_SIGN {
        return Err(AgentError::NotConsentChallenge(format!(
            "{} bytes; a consent challenge has 1 to {MAX_CONSENT_TO_SIGN}",
            to_sign.len()
        )));
    }
    if !to_sign.starts_with(CONSENT_PREFIX) {
        let first_line = String::from_utf8_lossy(CONSENT_PREFIX);
        return Err(AgentError::NotConsentChallenge(format!(
            "it does not start with {:?}",
            first_line.trim_end()
        )));
    }
    Ok(())
}

/// Checks the gateway's answer against what was asked: the same patient, the same basis.
fn check_answer(
    info: ConsentWindow,
    patient: &str,
    basis: ConsentBasis,
) -> Result<ConsentWindow, AgentError> {
    let protocol = |detail: String| AgentError::Protocol {
        status: Some(200),
        detail,
    };
    if info.patient != patient {
        return Err(protocol(format!(
            "the consent window is for patient {:?}, the card's is {patient:?}",
            clean(&info.patient, 64)
        )));
    }
    if info.basis != basis {
        return Err(protocol(format!(
            "the consent window's basis is {:?}, {:?} was asked for",
            info.basis, basis
        )));
    }
    Ok(info)
}

/// Where the patient card is: something that can run card commands, each batch in one go (a
/// PC/SC transaction for a real reader).
trait CardAccess: Send + 'static {
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut PatientCard<&mut dyn Transport>) -> Result<R, PatientCardError>,
    ) -> Result<R, PatientCardError>;
}

struct Pcsc(PcscTransport);

impl CardAccess for Pcsc {
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut PatientCard<&mut dyn Transport>) -> Result<R, PatientCardError>,
    ) -> Result<R, PatientCardError> {
        let mut tx = self.0.transaction()?;
        f(&mut PatientCard::new(&mut tx as &mut dyn Transport))
    }
}

struct Direct<T>(T);

impl<T: Transport + Send + 'static> CardAccess for Direct<T> {
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut PatientCard<&mut dyn Transport>) -> Result<R, PatientCardError>,
    ) -> Result<R, PatientCardError> {
        f(&mut PatientCard::new(&mut self.0 as &mut dyn Transport))
    }
}

fn card_error(e: PatientCardError, reader: &str) -> AgentError {
    match e {
        PatientCardError::NotPatientCard => AgentError::NoPatientCard {
            reader: Some(reader.to_string()),
        },
        PatientCardError::NoPatientCard { reader } => AgentError::NoPatientCard { reader },
        PatientCardError::CardRemoved => AgentError::CardRemoved,
        PatientCardError::Card(c) => c.into(),
        other => AgentError::PatientCard(other.to_string()),
    }
}

/// The patient card in `reader`, or in the first reader that holds one.
fn find(reader: Option<&str>) -> Result<(String, PcscTransport), AgentError> {
    let readers = card::list()?;
    if readers.is_empty() {
        return Err(AgentError::NoReader);
    }
    let candidates = match reader {
        Some(name) if !readers.iter().any(|r| r == name) => {
            return Err(AgentError::UnknownReader {
                name: name.to_string(),
                available: readers,
            });
        }
        Some(name) => vec![name.to_string()],
        None => readers,
    };
    patient_card::find_reader(&candidates).map_err(|e| match e {
        PatientCardError::Card(CardError::NoService) => AgentError::NoService,
        other => card_error(other, reader.unwrap_or("any reader")),
    })
}

/// Opens a consent window for the physician signed in on this terminal and the patient whose
/// card is in `reader` (or in the first reader holding a patient card): the card signs the
/// gateway's consent challenge, or, with `attest`, only its id is read and the physician
/// attests (when the deployment allows it).
pub async fn consent(
    cfg: &AgentConfig,
    reader: Option<String>,
    attest: bool,
) -> Result<ConsentWindow, AgentError> {
    let gateway = Gateway::new(cfg)?;
    let (name, transport) = blocking(move || find(reader.as_deref())).await??;
    consent_on(&gateway, Pcsc(transport), name, attest).await
}

/// [`consent`] with the patient card on `transport` (a reader the caller opened, or an
/// in-process virtual card); `reader` names it in messages.
pub async fn consent_with_card<T: Transport + Send + 'static>(
    cfg: &AgentConfig,
    transport: T,
    reader: &str,
    attest: bool,
) -> Result<ConsentWindow, AgentError> {
    let gateway = Gateway::new(cfg)?;
    consent_on(&gateway, Direct(transport), reader.to_string(), attest).await
}

async fn consent_on<C: CardAccess>(
    gateway: &Gateway,
    mut card: C,
    reader: String,
    attest: bool,
) -> Result<ConsentWindow, AgentError> {
    if attest {
        let patient = blocking(move || {
            card.run(|c| c.patient_id())
                .map_err(|e| card_error(e, &reader))
        })
        .await??;
        let body = Attestation {
            patient: patient.clone(),
        };
        let info: ConsentWindow = gateway
            .client
            .json(Method::POST, wire::CONSENT_ATTEST_PATH, Some(&body))
            .await?;
        return check_answer(info, &patient, ConsentBasis::StaffAttested);
    }

    let (identity, mut card) = {
        let reader = reader.clone();
        blocking(move || {
            let r = card.run(|c| c.identity());
            (r.map_err(|e| card_error(e, &reader)), card)
        })
        .await?
    };
    let CardIdentity {
        patient_id,
        certificate,
    } = identity?;

    let challenge: wire::Challenge = gateway
        .client
        .json::<(), wire::Challenge>(Method::POST, wire::CONSENT_CHALLENGE_PATH, None)
        .await?;
    let to_sign = B64
        .decode(challenge.to_sign.as_bytes())
        .map_err(|e| AgentError::Protocol {
            status: Some(200),
            detail: format!("to_sign is not base64: {e}"),
        })?;
    check_consent_to_sign(&to_sign)?;

    let signature = blocking(move || {
        card.run(|c| c.sign(&to_sign))
            .map_err(|e| card_error(e, &reader))
    })
    .await??;

    let body = CardAnswer {
        nonce: challenge.nonce,
        certificate: B64.encode(&certificate),
        signature: B64.encode(&signature),
    };
    let info: ConsentWindow = gateway
        .client
        .json(Method::POST, wire::CONSENT_CARD_PATH, Some(&body))
        .await?;
    check_answer(info, &patient_id, ConsentBasis::PatientCard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_consent_challenges_are_signed() {
        let ok = b"sekisho-patient-consent:v1\ngateway=gw\nnonce=abc\n";
        assert!(check_consent_to_sign(ok).is_ok());
        assert!(check_consent_to_sign(CONSENT_PREFIX).is_ok());
        let mut longest = CONSENT_PREFIX.to_vec();
        longest.resize(MAX_CONSENT_TO_SIGN, b'x');
        assert!(check_consent_to_sign(&longest).is_ok());
        longest.push(b'x');
        for bad in [
            &b""[..],
            b"sekisho-hpki-login\ngateway=test\nnonce=abc",
            b"sekisho-patient-consent:v1",
            b"sekisho-patient-consent:v2\nnonce=abc",
            b" sekisho-patient-consent:v1\n",
            b"SEKISHO-PATIENT-CONSENT:V1\n",
            &longest,
        ] {
            let e = check_consent_to_sign(bad).unwrap_err();
            assert!(matches!(e, AgentError::NotConsentChallenge(_)), "{bad:?}");
            assert_eq!(e.exit_code(), 6);
            assert!(!e.message_ja().is_empty());
        }
    }

    #[test]
    fn answers_are_parsed_and_checked() {
        let card: ConsentWindow = serde_json::from_str(
            r#"{"patient":"P-0001","basis":"patient_card","until":1795242600,"minutes":30}"#,
        )
        .unwrap();
        assert_eq!(card.basis, ConsentBasis::PatientCard);
        assert_eq!(
            card.summary(),
            "Consent window open for patient P-0001 until 2026-11-21 15:30 JST (30 min, patient card)"
        );
        assert_eq!(
            card.summary_ja(),
            "患者 P-0001 の閲覧同意を受け付けました（2026-11-21 15:30 JST まで、30分、患者カード）"
        );
        assert!(check_answer(card.clone(), "P-0001", ConsentBasis::PatientCard).is_ok());
        assert!(matches!(
            check_answer(card.clone(), "P-0002", ConsentBasis::PatientCard),
            Err(AgentError::Protocol { .. })
        ));
        assert!(matches!(
            check_answer(card, "P-0001", ConsentBasis::StaffAttested),
            Err(AgentError::Protocol { .. })
        ));

        let attested: ConsentWindow = serde_json::from_str(
            r#"{"patient":"P-0001","basis":"staff_attested","until":1795242600,"minutes":10,"extra":1}"#,
        )
        .unwrap();
        assert!(attested.summary().ends_with("(10 min, staff attestation)"));
        assert!(attested.summary_ja().contains("職員確認"));
        // An unknown basis or a missing field is not understood.
        for bad in [
            r#"{"patient":"P","basis":"magic","until":1,"minutes":1}"#,
            r#"{"patient":"P","basis":"patient_card","minutes":1}"#,
            r#"{"patient":"P","basis":"patient_card","until":1,"minutes":-1}"#,
        ] {
            assert!(serde_json::from_str::<ConsentWindow>(bad).is_err(), "{bad}");
        }
        // Control characters from the gateway do not reach the terminal.
        let odd = ConsentWindow {
            patient: "P\u{1b}[31m".into(),
            basis: ConsentBasis::PatientCard,
            until: 0,
            minutes: 1,
        };
        assert!(!odd.summary().contains('\u{1b}'));
    }

    #[test]
    fn card_errors_map_to_agent_errors() {
        let e = card_error(PatientCardError::NotPatientCard, "Virtual PCD 00 00");
        assert!(
            matches!(&e, AgentError::NoPatientCard { reader: Some(r) } if r == "Virtual PCD 00 00")
        );
        assert_eq!(e.exit_code(), 8);
        assert!(e.to_string().contains("Virtual PCD 00 00"), "{e}");
        assert!(e.message_ja().contains("患者カード"));
        let e = card_error(PatientCardError::NoPatientCard { reader: None }, "x");
        assert!(e.to_string().contains("any reader"), "{e}");
        assert_eq!(e.exit_code(), 8);
        let e = card_error(PatientCardError::IdMismatch, "r");
        assert!(matches!(e, AgentError::PatientCard(_)));
        assert_eq!(e.exit_code(), 3);
        assert!(matches!(
            card_error(PatientCardError::CardRemoved, "r"),
            AgentError::CardRemoved
        ));
        assert!(matches!(
            card_error(PatientCardError::Card(CardError::NoService), "r"),
            AgentError::NoService
        ));
    }
}
