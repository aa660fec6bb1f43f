//! The Sekisho terminal agent (`sekisho-agent`): runs on a clinic's terminal and does what
//! needs the terminal's cards and keys, talking to the gateway (`proxy/`) over the terminal's
//! mutual-TLS connection (its certificate and key, the deployment's CA) in the
//! `sekisho-protocol` bodies:
//!
//! - **sign-in with the HPKI card** over PC/SC ([`login`], and [`watch`] on every insertion):
//!   1. read the card's **authentication** certificate;
//!   2. `POST /.sekisho/auth/hpki/challenge` → `{nonce, to_sign, expires_in}`;
//!   3. the PIN goes to the card (`VERIFY`), never anywhere else;
//!   4. the card signs `to_sign` (RSASSA-PKCS1-v1_5, SHA-256), only if it is a sign-in
//!      challenge ([`check_login_to_sign`]);
//!   5. `POST /.sekisho/auth/hpki/login` `{nonce, certificate, signature}` → who is signed in;
//! - **sign-out** when the card leaves (`POST /.sekisho/auth/logout`
//!   `{"reason":"card_removed"}`), retried until the gateway has it;
//! - **card presence** while a [`watch`] session lasts: `POST /.sekisho/auth/presence/challenge`,
//!   the card signs it (only a presence challenge, [`check_presence_to_sign`]; no PIN, over the
//!   connection kept since the sign-in), `POST /.sekisho/auth/presence` → when the next proof
//!   is due. The gateway ends a card session whose proofs stop (`signin.card_presence_secs`),
//!   so a session from a one-off [`login`] lasts only that long;
//! - **consent with the patient card** ([`consent`]): the patient's card signs the gateway's
//!   consent challenge (`/.sekisho/consent/…`), which opens a consent window for the
//!   signed-in physician and that patient;
//! - **enrollment** ([`enroll`]): a one-time access code redeemed for the terminal's
//!   certificate, with the key (and the WireGuard key) made here;
//! - **emergency access** ([`emergency_declare`], [`emergency_sign_pending`]): the physician's
//!   card signs a break-glass declaration, after the agent has read its text as hostile input
//!   ([`check_declaration_text`]) and the physician has read it and typed the PIN.
//!
//! Modules: `card` (the HPKI card side of a sign-in, on `sekisho-cardreader`), `signing` (the
//! card's open–PIN–sign steps on blocking threads, shared by every text the card signs),
//! `watch` (the insertion/removal loop), `consent`, `declaration` (the check and the display of
//! a declaration's text) and `emergency` (its flow), `terminal` (the terminal URN of this
//! terminal's certificate), `enroll` and `wireguard` (the tunnel key and the check of the
//! gateway's `wg-quick` file), `http` (the HTTPS client), `pin` (where the PIN comes from; the
//! crate's only unsafe code, for the terminal's echo), `error` and `refusal` (what went wrong,
//! in English and Japanese, with the exit codes of the binary). Card I/O (PC/SC is blocking)
//! runs on blocking threads; the rest is async (tokio).

mod card;
mod consent;
mod declaration;
mod emergency;
mod enroll;
mod error;
mod http;
mod pin;
mod refusal;
mod signing;
mod terminal;
mod text;
mod watch;
mod wireguard;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use serde::{Deserialize, Serialize};

use sekisho_cardreader::hpki::PinState;

use crate::card::CardSession;
use sekisho_protocol::wire::{self, CardAnswer, LogoutAnswer};

pub use consent::{MAX_CONSENT_TO_SIGN, check_consent_to_sign, consent, consent_with_card};
pub use declaration::{
    ExpectedDeclaration, MAX_CLOCK_DIFFERENCE_SECS, MAX_DECLARATION_TO_SIGN,
    MAX_JUSTIFICATION_CHARS, check_declaration_request, check_declaration_state,
    check_declaration_text, describe_declaration, is_valid_declaration_id,
};
pub use emergency::{
    Confirm, EmergencyOutcome, MAX_PENDING, PendingOutcome, TerminalConfirm, emergency_declare,
    emergency_sign_pending,
};
pub use enroll::{EnrollOptions, EnrolledFiles, TerminalKey, enroll, new_terminal_key};
pub use error::{AgentError, gateway_error};
pub use pin::{
    CancelToken, FixedPin, PinRequest, PinSource, StdinPin, TerminalPin, restore_terminal,
};
pub use refusal::Refusal;
pub use sekisho_protocol::Reason;
pub use sekisho_protocol::wire::{
    ConsentBasis, ConsentWindow, Declaration, DeclarationRequest, DeclarationState, SignedIn,
};
pub use text::clean;
pub use watch::{Retry, WatchEvent, WatchHandle, watch};
pub use wireguard::{
    MAX_WG_CONFIG, WG_PRIVATE_KEY_PLACEHOLDER, WireGuardKey, new_wireguard_key, wg_config_with_key,
};

/// A challenge this close to its end is fetched again before signing.
const CHALLENGE_MARGIN: Duration = Duration::from_secs(10);
/// Largest sign-in `to_sign` accepted from the gateway.
pub const MAX_TO_SIGN: usize = 4096;

/// How to reach the gateway as this terminal, and which reader to use.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `https://HOST:PORT` of the gateway's terminal listener.
    pub gateway: String,
    /// The terminal's certificate (PEM; may carry its chain).
    pub cert: PathBuf,
    /// The terminal's private key (PEM).
    pub key: PathBuf,
    /// The deployment's CA certificate(s) (PEM): the only trust for the gateway.
    pub ca: PathBuf,
    /// The reader to use; `None`: the first reader that holds an HPKI card.
    pub reader: Option<String>,
}

/// How the terminal shows the gateway's answers (the protocol's types): one line each, the
/// gateway's text cleaned of control characters.
pub trait Summary {
    /// The line in English.
    fn summary(&self) -> String;
    /// The line in Japanese.
    fn summary_ja(&self) -> String;
}

impl Summary for SignedIn {
    /// `YAMADA TARO (yamada.taro) — Medical Doctor, until 2026-11-20 18:30 JST`
    fn summary(&self) -> String {
        let mut s = format!("{} ({})", clean(&self.name, 120), clean(&self.user, 120));
        if let Some(q) = &self.qualification {
            s.push_str(&format!(" — {}", clean(q, 80)));
        }
        s.push_str(&format!(", until {}", format_time(self.expires_at)));
        s
    }

    /// `YAMADA TARO（yamada.taro）— Medical Doctor、2026-11-20 18:30 JST まで`
    fn summary_ja(&self) -> String {
        let mut s = format!("{}（{}）", clean(&self.name, 120), clean(&self.user, 120));
        if let Some(q) = &self.qualification {
            s.push_str(&format!("— {}", clean(q, 80)));
        }
        s.push_str(&format!("、{} まで", format_time(self.expires_at)));
        s
    }
}

/// The gateway's view of this terminal's session. The gateway writes fewer fields when no one
/// is signed in, so this is the agent's tolerant reading rather than a shared body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Status {
    pub signed_in: bool,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `hpki` or `password`.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub qualification: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Why a session is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutReason {
    CardRemoved,
    Logout,
}

impl LogoutReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LogoutReason::CardRemoved => "card_removed",
            LogoutReason::Logout => "logout",
        }
    }
}

/// `2026-11-20 18:30 JST`: the networks this serves are in Japan.
pub fn format_time(unix: i64) -> String {
    let jst = time::UtcOffset::from_hms(9, 0, 0).expect("valid offset");
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => {
            let t = t.to_offset(jst);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} JST",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => format!("@{unix}"),
    }
}

/// A sign-in challenge and when it came: its `expires_in` counts from then.
struct FetchedChallenge {
    challenge: wire::Challenge,
    at: Instant,
}

impl FetchedChallenge {
    fn nearly_expired(&self) -> bool {
        let life = Duration::from_secs(self.challenge.expires_in.max(1));
        self.at.elapsed() + CHALLENGE_MARGIN >= life
    }
}

/// The terminal's connection settings to the gateway, with the files loaded.
#[derive(Clone)]
pub(crate) struct Gateway {
    client: http::HttpsClient,
}

impl Gateway {
    pub(crate) fn new(cfg: &AgentConfig) -> Result<Gateway, AgentError> {
        let endpoint = http::Endpoint::parse(&cfg.gateway)?;
        let tls = http::tls_config(&cfg.ca, Some((&cfg.cert, &cfg.key)))?;
        Ok(Gateway {
            client: http::HttpsClient::new(endpoint, tls),
        })
    }

    async fn challenge(&self) -> Result<FetchedChallenge, AgentError> {
        let challenge = self
            .client
            .json::<(), wire::Challenge>(Method::POST, wire::HPKI_CHALLENGE_PATH, None)
            .await?;
        Ok(FetchedChallenge {
            challenge,
            at: Instant::now(),
        })
    }

    pub(crate) async fn login(&self, signed: &SignedChallenge) -> Result<SignedIn, AgentError> {
        let body = CardAnswer {
            nonce: signed.nonce.clone(),
            certificate: B64.encode(&signed.certificate),
            signature: B64.encode(&signed.signature),
        };
        self.client
            .json(Method::POST, wire::HPKI_LOGIN_PATH, Some(&body))
            .await
    }

    pub(crate) async fn logout(&self, reason: LogoutReason) -> Result<bool, AgentError> {
        let body = wire::Logout {
            reason: Some(reason.as_str().to_string()),
        };
        let a: LogoutAnswer = self
            .client
            .json(Method::POST, wire::LOGOUT_PATH, Some(&body))
            .await?;
        Ok(a.ended)
    }

    pub(crate) async fn status(&self) -> Result<Status, AgentError> {
        self.client
            .json::<(), Status>(Method::GET, wire::STATUS_PATH, None)
            .await
    }
}

/// A challenge signed by the card, ready to be sent.
pub(crate) struct SignedChallenge {
    nonce: String,
    certificate: Vec<u8>,
    signature: Vec<u8>,
    /// The connection the card signed over. `watch` keeps it for the session: the card keeps
    /// its PIN verified while it stays connected (it resets when the last program lets go),
    /// which is what lets it prove its presence without the PIN again.
    pub(crate) card: Option<CardSession>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AgentError::Internal("the card thread failed".into()))
}

/// Refuses anything but a sign-in challenge: 1 to [`MAX_TO_SIGN`] bytes starting with
/// [`wire::HPKI_LOGIN_PREFIX`]. The authentication key also signs emergency declarations
/// (non-repudiation): a gateway (or whoever stands in for it) must not get one signed as if it
/// were a sign-in, so the card is no signing oracle for sign-in either.
pub fn check_login_to_sign(to_sign: &[u8]) -> Result<(), AgentError> {
    if to_sign.is_empty() || to_sign.len() > MAX_TO_SIGN {
        return Err(AgentError::NotLoginChallenge(format!(
            "{} bytes; a sign-in challenge has 1 to {MAX_TO_SIGN}",
            to_sign.len()
        )));
    }
    if !to_sign.starts_with(wire::HPKI_LOGIN_PREFIX) {
        let first_line = String::from_utf8_lossy(wire::HPKI_LOGIN_PREFIX);
        return Err(AgentError::NotLoginChallenge(format!(
            "it does not start with {:?}",
            first_line.trim_end()
        )));
    }
    Ok(())
}

/// Steps 1–4: the card's certificate, a challenge, the PIN to the card, the signature.
pub(crate) async fn sign_challenge(
    gateway: &Gateway,
    reader: Option<String>,
    pins: Arc<dyn PinSource>,
    cancel: &CancelToken,
) -> Result<SignedChallenge, AgentError> {
    let (session, state) = signing::open(reader).await?;
    // The gateway first: no PIN is asked for while it cannot be reached.
    let mut challenge = gateway.challenge().await?;
    let pin = if state == PinState::Verified {
        None
    } else {
        Some(Arc::new(
            signing::ask_pin(pins, &session, state, cancel).await?,
        ))
    };
    if cancel.is_cancelled() {
        return Err(AgentError::CardRemoved);
    }
    if challenge.nearly_expired() {
        challenge = gateway.challenge().await?;
    }
    let to_sign = B64
        .decode(challenge.challenge.to_sign.as_bytes())
        .map_err(|e| AgentError::Protocol {
            status: Some(200),
            detail: format!("to_sign is not base64: {e}"),
        })?;
    check_login_to_sign(&to_sign)?;
    let (session, signature) = signing::sign(session, pin, to_sign).await?;
    let signature = signature?;
    if cancel.is_cancelled() {
        return Err(AgentError::CardRemoved);
    }
    Ok(SignedChallenge {
        nonce: challenge.challenge.nonce,
        certificate: session.certificate.clone(),
        signature,
        card: Some(session),
    })
}

/// The card proves to the gateway that it is still in the reader: it signs a fresh presence
/// challenge over the connection kept since the sign-in (no PIN: the card still has it
/// verified). The connection comes back unless the card is gone.
pub(crate) async fn prove_presence(
    gateway: &Gateway,
    card: CardSession,
) -> (
    Option<CardSession>,
    Result<wire::PresenceAnswer, AgentError>,
) {
    let challenge = match gateway
        .client
        .json::<(), wire::Challenge>(Method::POST, wire::PRESENCE_CHALLENGE_PATH, None)
        .await
    {
        Ok(c) => c,
        Err(e) => return (Some(card), Err(e)),
    };
    let to_sign = match B64.decode(challenge.to_sign.as_bytes()) {
        Ok(t) => t,
        Err(e) => {
            let e = AgentError::Protocol {
                status: Some(200),
                detail: format!("to_sign is not base64: {e}"),
            };
            return (Some(card), Err(e));
        }
    };
    if let Err(e) = check_presence_to_sign(&to_sign) {
        return (Some(card), Err(e));
    }
    let (card, signature) = match signing::sign(card, None, to_sign).await {
        Ok((card, Ok(sig))) => (card, sig),
        Ok((_, Err(e))) | Err(e) => return (None, Err(e)),
    };
    let body = CardAnswer {
        nonce: challenge.nonce,
        certificate: B64.encode(&card.certificate),
        signature: B64.encode(&signature),
    };
    let answer = gateway
        .client
        .json(Method::POST, wire::PRESENCE_PROOF_PATH, Some(&body))
        .await;
    (Some(card), answer)
}

/// Refuses anything but a presence challenge (as [`check_login_to_sign`] does for sign-in).
pub fn check_presence_to_sign(to_sign: &[u8]) -> Result<(), AgentError> {
    if to_sign.is_empty() || to_sign.len() > MAX_TO_SIGN {
        return Err(AgentError::NotLoginChallenge(format!(
            "{} bytes; a presence challenge has 1 to {MAX_TO_SIGN}",
            to_sign.len()
        )));
    }
    if !to_sign.starts_with(wire::HPKI_PRESENCE_PREFIX) {
        return Err(AgentError::NotLoginChallenge(
            "it does not start with \"sekisho-hpki-presence:v1\"".into(),
        ));
    }
    Ok(())
}

/// Signs in with the card and `pin` (for callers that have the PIN already, such as tests).
pub async fn login(cfg: &AgentConfig, pin: &str) -> Result<SignedIn, AgentError> {
    login_with(cfg, Arc::new(FixedPin::new(pin))).await
}

/// Signs in with the card, asking `pins` for the PIN once the card and the gateway are known to
/// be there (and not at all if the card's PIN is still verified from earlier in this card
/// session).
pub async fn login_with(
    cfg: &AgentConfig,
    pins: Arc<dyn PinSource>,
) -> Result<SignedIn, AgentError> {
    let gateway = Gateway::new(cfg)?;
    let signed = sign_challenge(&gateway, cfg.reader.clone(), pins, &CancelToken::new()).await?;
    gateway.login(&signed).await
}

/// Ends this terminal's session; `true` if there was one.
pub async fn logout(cfg: &AgentConfig, reason: LogoutReason) -> Result<bool, AgentError> {
    Gateway::new(cfg)?.logout(reason).await
}

/// The gateway's view of this terminal's session.
pub async fn status(cfg: &AgentConfig) -> Result<Status, AgentError> {
    Gateway::new(cfg)?.status().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_presence_challenges_are_signed_for_presence() {
        let ok = wire::hpki_presence_to_sign("gw", "urn:sekisho:terminal:f:t", "n");
        assert!(check_presence_to_sign(&ok).is_ok());
        let login = wire::hpki_login_to_sign("gw", "urn:sekisho:terminal:f:t", "n");
        assert!(check_presence_to_sign(&login).is_err());
        assert!(check_login_to_sign(&ok).is_err());
        assert!(check_presence_to_sign(b"").is_err());
    }

    #[test]
    fn only_sign_in_challenges_are_signed_for_sign_in() {
        let ok = wire::hpki_login_to_sign("gw", "urn:sekisho:terminal:f:t", "n");
        assert!(check_login_to_sign(&ok).is_ok());
        let mut longest = wire::HPKI_LOGIN_PREFIX.to_vec();
        longest.resize(MAX_TO_SIGN, b'x');
        assert!(check_login_to_sign(&longest).is_ok());
        longest.push(b'x');
        let declaration = wire::Declaration {
            gateway: "gw".into(),
            terminal: "urn:sekisho:terminal:f:t".into(),
            declaration: "d".into(),
            user: "u".into(),
            patient: "P1".into(),
            category: "unconscious".into(),
            justification: "j".into(),
            declared_at: "2026-12-04T02:00:00Z".into(),
            nonce: "n".into(),
        }
        .to_sign();
        for bad in [
            &b""[..],
            &declaration,
            &wire::consent_to_sign("gw", "urn:sekisho:terminal:f:t", "n"),
            b"sekisho-hpki-login\ngateway=test\nnonce=abc",
            b"sekisho-hpki-login:v2\n",
            b"SEKISHO-HPKI-LOGIN:V1\n",
            &longest,
        ] {
            let e = check_login_to_sign(bad).unwrap_err();
            assert!(matches!(e, AgentError::NotLoginChallenge(_)), "{bad:?}");
            assert_eq!(e.exit_code(), 6);
            assert!(e.message_ja().contains("ログイン要求"));
        }
    }
}
