//! The terminal ↔ gateway protocol: the gateway's own addresses under `/.sekisho/` and on the
//! enrollment listener, the JSON bodies both sides exchange, and the exact texts a card signs.
//!
//! The gateway writes these bodies and the agent reads them (and the other way round), so a
//! field renamed here is renamed on both sides. Readers treat every body from the other side
//! as hostile: bounded, defaulted where the field is optional, never trusted for a decision.

use serde::{Deserialize, Serialize};

/// Everything under this prefix is the gateway's own and never forwarded.
pub const OWN_PREFIX: &str = "/.sekisho/";
/// Notices to users and maintenance windows for the terminal's facility (HTML, or JSON).
pub const NOTICES_PATH: &str = "/.sekisho/notices";

pub const HPKI_CHALLENGE_PATH: &str = "/.sekisho/auth/hpki/challenge";
pub const HPKI_LOGIN_PATH: &str = "/.sekisho/auth/hpki/login";
pub const LOGOUT_PATH: &str = "/.sekisho/auth/logout";
pub const STATUS_PATH: &str = "/.sekisho/auth/status";
/// Card presence: `POST` a challenge, then `POST` the card's signature of it
/// ([`PRESENCE_PROOF_PATH`]); a card session whose proofs stop ends at the gateway.
pub const PRESENCE_CHALLENGE_PATH: &str = "/.sekisho/auth/presence/challenge";
pub const PRESENCE_PROOF_PATH: &str = "/.sekisho/auth/presence";

/// The consent desk's prefix and its addresses (R-PAT-2).
pub const CONSENT_PREFIX_PATH: &str = "/.sekisho/consent/";
pub const CONSENT_CHALLENGE_PATH: &str = "/.sekisho/consent/challenge";
pub const CONSENT_CARD_PATH: &str = "/.sekisho/consent/card";
pub const CONSENT_ATTEST_PATH: &str = "/.sekisho/consent/attest";

/// Emergency access (break-glass, R-BG-1): the page, declarations, the search by name.
pub const EMERGENCY_PREFIX_PATH: &str = "/.sekisho/emergency";
pub const EMERGENCY_DECLARATIONS_PATH: &str = "/.sekisho/emergency/declarations";
pub const EMERGENCY_PENDING_PATH: &str = "/.sekisho/emergency/pending";
pub const EMERGENCY_SEARCH_PATH: &str = "/.sekisho/emergency/search";

/// Enrollment listener: a CSR with the access code and PIN (R-TERM-2).
pub const ENROLL_CSR_PATH: &str = "/enroll/csr";

/// The first line of the text an HPKI card signs to sign in.
pub const HPKI_LOGIN_PREFIX: &[u8] = b"sekisho-hpki-login:v1\n";
/// The first line of the text an HPKI card signs to show it is still in the reader.
pub const HPKI_PRESENCE_PREFIX: &[u8] = b"sekisho-hpki-presence:v1\n";
/// The first line of the text a patient card signs to consent. The agent refuses to have a
/// patient card sign anything else, so the card is no signing oracle.
pub const CONSENT_PREFIX: &[u8] = b"sekisho-patient-consent:v1\n";

/// The first line of the text an HPKI card signs to declare an emergency access. The agent
/// shows the physician the whole text before the card signs it.
pub const BREAK_GLASS_PREFIX: &[u8] = b"sekisho-break-glass:v1\n";

/// The exact bytes an HPKI card signs to sign in: the nonce bound to this gateway and this
/// terminal, so a signature is worth nothing anywhere else.
pub fn hpki_login_to_sign(hostname: &str, terminal_urn: &str, nonce: &str) -> Vec<u8> {
    signed_text(HPKI_LOGIN_PREFIX, hostname, terminal_urn, nonce)
}

/// The exact bytes an HPKI card signs to prove it is still in the terminal's reader: a fresh
/// gateway nonce, bound like a sign-in's but with its own first line, so neither can stand in
/// for the other.
pub fn hpki_presence_to_sign(hostname: &str, terminal_urn: &str, nonce: &str) -> Vec<u8> {
    signed_text(HPKI_PRESENCE_PREFIX, hostname, terminal_urn, nonce)
}

/// The exact bytes a patient card signs to consent; the nonce is bound to the signed-in
/// person's session.
pub fn consent_to_sign(hostname: &str, terminal_urn: &str, nonce: &str) -> Vec<u8> {
    signed_text(CONSENT_PREFIX, hostname, terminal_urn, nonce)
}

/// What a physician declares, in the words the card signs (non-repudiation: the declaration,
/// not only a nonce). One `key: value` per line; the justification is a JSON string, so it
/// stays on its line whatever it contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    pub gateway: String,
    pub terminal: String,
    pub declaration: String,
    pub user: String,
    pub patient: String,
    pub category: String,
    pub justification: String,
    /// RFC 3339 UTC.
    pub declared_at: String,
    pub nonce: String,
}

impl Declaration {
    /// The exact bytes the card signs.
    pub fn to_sign(&self) -> Vec<u8> {
        let mut v = BREAK_GLASS_PREFIX.to_vec();
        let justification =
            serde_json::to_string(&self.justification).expect("a string serialises");
        for (k, val) in [
            ("gateway", self.gateway.as_str()),
            ("terminal", self.terminal.as_str()),
            ("declaration", self.declaration.as_str()),
            ("user", self.user.as_str()),
            ("patient", self.patient.as_str()),
            ("category", self.category.as_str()),
            ("justification", justification.as_str()),
            ("declared-at", self.declared_at.as_str()),
            ("nonce", self.nonce.as_str()),
        ] {
            v.extend_from_slice(format!("{k}: {val}\n").as_bytes());
        }
        v
    }
}

fn signed_text(prefix: &[u8], hostname: &str, terminal_urn: &str, nonce: &str) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(format!("{hostname}\n{terminal_urn}\n{nonce}\n").as_bytes());
    v
}

/// A challenge: `to_sign` (base64) is what the card signs, `nonce` names it in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    pub to_sign: String,
    /// Seconds until the challenge expires.
    #[serde(default)]
    pub expires_in: u64,
}

/// A card's answer to a challenge: its certificate and its signature (base64, DER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardAnswer {
    pub nonce: String,
    pub certificate: String,
    pub signature: String,
}

/// The answer to a presence proof: when the next one is due. The session ends at the gateway
/// `ends_in` seconds after this proof unless another arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAnswer {
    pub next_in: u64,
    pub ends_in: u64,
}

/// `POST /.sekisho/auth/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    /// `card_removed` or `logout`; anything else counts as `logout`.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutAnswer {
    pub ended: bool,
}

/// Who the gateway signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub user: String,
    pub name: String,
    /// From the card's hcRole, e.g. `Medical Doctor`; `None` for staff without a licence.
    #[serde(default)]
    pub qualification: Option<String>,
    /// Unix time at which the session ends at the latest.
    pub expires_at: i64,
}

/// `POST /.sekisho/consent/attest`: the signed-in person attests the patient is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub patient: String,
}

/// What a consent window rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentBasis {
    /// The patient card signed the gateway's challenge.
    PatientCard,
    /// The card's id was read and the signed-in person attested the patient's presence.
    StaffAttested,
}

impl ConsentBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentBasis::PatientCard => "patient_card",
            ConsentBasis::StaffAttested => "staff_attested",
        }
    }
}

/// The consent window the gateway opened for the signed-in person and this patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentWindow {
    pub patient: String,
    pub basis: ConsentBasis,
    /// Unix time at which the window closes.
    pub until: i64,
    /// Its length in minutes.
    pub minutes: u32,
}

/// `POST /enroll/csr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrRequest {
    pub code: String,
    pub pin: String,
    /// PEM or base64 DER.
    pub csr: String,
    /// The terminal's WireGuard public key (base64), made on the terminal.
    #[serde(default)]
    pub wg_public_key: Option<String>,
}

/// `POST /.sekisho/emergency/declarations`: a physician begins a declaration. Without a
/// patient, the declaration waits for one to be found by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarationRequest {
    pub category: String,
    pub justification: String,
    #[serde(default)]
    pub patient: Option<String>,
}

/// `POST /.sekisho/emergency/declarations/{id}/patient`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoosePatient {
    pub patient: String,
}

/// A declaration as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationState {
    pub id: String,
    /// `choose_patient`, `awaiting_signature`, `awaiting_approval`, `active`, `ended`,
    /// `expired`, `rejected`.
    pub status: String,
    #[serde(default)]
    pub patient: Option<String>,
    pub category: String,
    /// What the card must sign (base64), while the status is `awaiting_signature`.
    #[serde(default)]
    pub to_sign: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    /// Unix time the grant ends, once it is known.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// `view`, or `view,write`.
    #[serde(default)]
    pub allows: Option<String>,
}

/// One patient found by name under a declaration in progress: only what a physician needs to
/// pick the right person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientMatch {
    pub patient: String,
    pub name: String,
    #[serde(default)]
    pub kana: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub sex: Option<String>,
}

/// Any refusal as JSON: the [`crate::Reason`] code and its texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub message_en: String,
    #[serde(default)]
    pub message_ja: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_texts_are_bound_to_gateway_terminal_and_nonce() {
        assert_eq!(
            hpki_login_to_sign("gw.example.jp", "urn:sekisho:terminal:f:t", "n1"),
            b"sekisho-hpki-login:v1\ngw.example.jp\nurn:sekisho:terminal:f:t\nn1\n"
        );
        assert_eq!(
            consent_to_sign("gw", "urn:sekisho:terminal:f:t", "n"),
            b"sekisho-patient-consent:v1\ngw\nurn:sekisho:terminal:f:t\nn\n"
        );
        assert!(!hpki_login_to_sign("a", "b", "c").starts_with(CONSENT_PREFIX));
        assert!(!hpki_presence_to_sign("a", "b", "c").starts_with(HPKI_LOGIN_PREFIX));
        assert!(!hpki_login_to_sign("a", "b", "c").starts_with(HPKI_PRESENCE_PREFIX));
    }

    #[test]
    fn bodies_keep_their_field_order() {
        let s = SignedIn {
            user: "u".into(),
            name: "n".into(),
            qualification: None,
            expires_at: 5,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"user":"u","name":"n","qualification":null,"expires_at":5}"#
        );
        let w = ConsentWindow {
            patient: "P1".into(),
            basis: ConsentBasis::PatientCard,
            until: 9,
            minutes: 30,
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"patient":"P1","basis":"patient_card","until":9,"minutes":30}"#
        );
        assert!(
            serde_json::from_str::<CardAnswer>(
                r#"{"nonce":"n","certificate":"c","signature":"s","x":1}"#
            )
            .is_err()
        );
    }
}
