//! Emergency access (break-glass, issue 11): the terminal's side of a declaration, signed by
//! the physician's HPKI card (`sekisho-agent emergency`, or a UI such as the watching agent).
//!
//! The physician is signed in on this terminal with the card. Over the terminal's mutual-TLS
//! connection:
//!
//! 1. the agent begins a declaration, `POST /.sekisho/emergency/declarations`
//!    `{category, justification, patient}` → `201` [`DeclarationState`] `awaiting_signature`
//!    with `to_sign` (base64) and `nonce`; or it takes those prepared on the terminal's page,
//!    `GET /.sekisho/emergency/pending` → `[DeclarationState]`;
//! 2. the text is checked as hostile input ([`check_declaration_state`]): this gateway, this
//!    terminal, one exact form, and what the agent asked for when it began it;
//! 3. the physician reads it ([`Confirm`], the text from [`describe_declaration`]) and types
//!    the card's PIN — every time, even while the card still counts the PIN of the sign-in as
//!    verified: a declaration is signed by the person at the terminal, not by a card left in
//!    the reader;
//! 4. the card's authentication key (the sign-in key, whose certificate the gateway knows from
//!    the session) signs exactly those bytes, RSASSA-PKCS1-v1_5 / SHA-256;
//! 5. `POST /.sekisho/emergency/declarations/{id}/signature` `{nonce, certificate, signature}`
//!    → `active` (with `expires_at`, `allows`) or `awaiting_approval` (a second person must
//!    approve first, as for child protection).
//!
//! No declaration is begun while the card is missing, so a physician who forgot to insert it
//! leaves no draft behind.

use std::io::{BufRead, Read, Write};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use sekisho_cardreader::hpki::{Pin, PinState};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{self, CardAnswer, Declaration, DeclarationRequest, DeclarationState};

use crate::card::CardSession;
use crate::declaration::{
    ExpectedDeclaration, check_declaration_request, check_declaration_state, describe_declaration,
    is_valid_declaration_id,
};
use crate::error::AgentError;
use crate::pin::{CancelToken, PinSource};
use crate::refusal::Refusal;
use crate::terminal::terminal_urn;
use crate::text::clean;
use crate::{AgentConfig, Gateway, Summary, blocking, format_time, signing};

/// Most pending declarations taken in one run; a page prepares one at a time.
pub const MAX_PENDING: usize = 32;

/// Shows the physician a declaration the card is about to sign and asks whether to sign it.
/// Called on a blocking thread; may block until answered.
pub trait Confirm: Send + Sync {
    /// `Ok(true)`: sign it. `Ok(false)`: the physician declined.
    fn confirm(&self, declaration: &Declaration) -> Result<bool, AgentError>;
}

/// A closure decides (library callers with their own screen, tests).
impl<F: Fn(&Declaration) -> bool + Send + Sync> Confirm for F {
    fn confirm(&self, declaration: &Declaration) -> Result<bool, AgentError> {
        Ok(self(declaration))
    }
}

/// Shows the declaration on the controlling terminal (`/dev/tty`) and asks `[y/N]`.
#[derive(Debug, Default)]
pub struct TerminalConfirm;

impl Confirm for TerminalConfirm {
    fn confirm(&self, declaration: &Declaration) -> Result<bool, AgentError> {
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|e| {
                AgentError::Usage(format!(
                    "no terminal to ask for confirmation on ({e}); run with --yes to sign without asking"
                ))
            })?;
        let question = format!(
            "\n{}\nカードで署名しますか / Sign it with the card? [y/N]: ",
            describe_declaration(declaration)
        );
        tty.write_all(question.as_bytes())
            .and_then(|()| tty.flush())
            .map_err(|e| AgentError::Usage(format!("cannot ask on the terminal: {e}")))?;
        let mut answer = String::new();
        std::io::BufReader::new(tty)
            .take(64)
            .read_line(&mut answer)
            .map_err(|e| AgentError::Usage(format!("cannot read the answer: {e}")))?;
        Ok(matches!(
            answer.trim().to_lowercase().as_str(),
            "y" | "yes" | "はい"
        ))
    }
}

/// A declaration the card signed, and the gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyOutcome {
    /// What the card signed.
    pub declaration: Declaration,
    /// The gateway's state after the signature: `active` or `awaiting_approval`.
    pub state: DeclarationState,
}

impl EmergencyOutcome {
    /// Access is granted now (rather than waiting for a second person's approval).
    pub fn is_active(&self) -> bool {
        self.state.status == "active"
    }
}

fn allows_en(allows: Option<&str>) -> String {
    match allows {
        None | Some("view") => "view".into(),
        Some("view,write") => "view and write".into(),
        Some(other) => clean(other, 40),
    }
}

fn allows_ja(allows: Option<&str>) -> String {
    match allows {
        None | Some("view") => "閲覧".into(),
        Some("view,write") => "閲覧・記載".into(),
        Some(other) => clean(other, 40),
    }
}

impl Summary for EmergencyOutcome {
    /// `Emergency access active for patient P-0001 until 2026-12-04 15:00 JST (view; declaration bg-1)`
    fn summary(&self) -> String {
        let d = &self.declaration;
        match self.state.expires_at {
            Some(until) if self.is_active() => format!(
                "Emergency access active for patient {} until {} ({}; declaration {})",
                d.patient,
                format_time(until),
                allows_en(self.state.allows.as_deref()),
                d.declaration
            ),
            _ => format!(
                "Emergency declaration {} for patient {} signed; access starts when a second person approves it",
                d.declaration, d.patient
            ),
        }
    }

    /// `患者 P-0001 の緊急時アクセスが有効です（2026-12-04 15:00 JST まで、閲覧、宣言 bg-1）`
    fn summary_ja(&self) -> String {
        let d = &self.declaration;
        match self.state.expires_at {
            Some(until) if self.is_active() => format!(
                "患者 {} の緊急時アクセスが有効です（{} まで、{}、宣言 {}）",
                d.patient,
                format_time(until),
                allows_ja(self.state.allows.as_deref()),
                d.declaration
            ),
            _ => format!(
                "患者 {} の緊急時アクセスの宣言（{}）に署名しました。承認者が承認するとアクセスできます。",
                d.patient, d.declaration
            ),
        }
    }
}

/// One pending declaration's result in [`emergency_sign_pending`].
#[derive(Debug)]
pub struct PendingOutcome {
    /// The declaration id as the gateway listed it (cleaned).
    pub id: String,
    pub result: Result<EmergencyOutcome, AgentError>,
}

/// Checks the gateway's answer to the signature: the same declaration, now active with an
/// end, or waiting for approval.
fn check_outcome(
    declaration: Declaration,
    state: DeclarationState,
) -> Result<EmergencyOutcome, AgentError> {
    let protocol = |detail: String| AgentError::Protocol {
        status: Some(200),
        detail,
    };
    if state.id != declaration.declaration {
        return Err(protocol(format!(
            "the answer is about declaration {:?}, not {:?}",
            clean(&state.id, 80),
            declaration.declaration
        )));
    }
    if state
        .patient
        .as_deref()
        .is_some_and(|p| p != declaration.patient)
    {
        return Err(protocol("the answer names another patient".into()));
    }
    match state.status.as_str() {
        "active" if state.expires_at.is_some() => {}
        "active" => return Err(protocol("the grant is active but has no end".into())),
        "awaiting_approval" => {}
        other => {
            return Err(protocol(format!(
                "the declaration is {:?} after the signature",
                clean(other, 40)
            )));
        }
    }
    Ok(EmergencyOutcome { declaration, state })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This terminal and its gateway, as the texts must name them.
struct Here {
    gateway: Gateway,
    host: String,
    terminal: String,
}

impl Here {
    fn new(cfg: &AgentConfig) -> Result<Here, AgentError> {
        let gateway = Gateway::new(cfg)?;
        let host = gateway.client.endpoint().host().to_string();
        Ok(Here {
            gateway,
            host,
            terminal: terminal_urn(&cfg.cert)?,
        })
    }

    fn expected<'a>(&'a self, request: Option<&'a DeclarationRequest>) -> ExpectedDeclaration<'a> {
        ExpectedDeclaration {
            gateway: &self.host,
            terminal: &self.terminal,
            request,
            now: now(),
        }
    }
}

/// The card for one run: one card session, the PIN asked once and verified before each
/// signature.
struct Signer {
    session: Option<CardSession>,
    pin_state: PinState,
    pin: Option<Arc<Pin>>,
    pins: Arc<dyn PinSource>,
    confirm: Arc<dyn Confirm>,
}

impl Signer {
    async fn open(
        cfg: &AgentConfig,
        pins: Arc<dyn PinSource>,
        confirm: Arc<dyn Confirm>,
    ) -> Result<Signer, AgentError> {
        let (session, pin_state) = signing::open(cfg.reader.clone()).await?;
        Ok(Signer {
            session: Some(session),
            pin_state,
            pin: None,
            pins,
            confirm,
        })
    }

    /// Steps 3 to 5 for a checked declaration.
    async fn sign(
        &mut self,
        here: &Here,
        declaration: Declaration,
        to_sign: Vec<u8>,
    ) -> Result<EmergencyOutcome, AgentError> {
        let confirm = Arc::clone(&self.confirm);
        let shown = declaration.clone();
        if !blocking(move || confirm.confirm(&shown)).await?? {
            return Err(AgentError::Declined);
        }
        let session = self
            .session
            .take()
            .ok_or_else(|| AgentError::Internal("the card session was lost".into()))?;
        let pin = match &self.pin {
            Some(pin) => Arc::clone(pin),
            None => {
                let asked = signing::ask_pin(
                    Arc::clone(&self.pins),
                    &session,
                    self.pin_state,
                    &CancelToken::new(),
                )
                .await;
                let pin = match asked {
                    Ok(pin) => Arc::new(pin),
                    Err(e) => {
                        self.session = Some(session);
                        return Err(e);
                    }
                };
                self.pin = Some(Arc::clone(&pin));
                pin
            }
        };
        let (session, signature) = signing::sign(session, Some(pin), to_sign).await?;
        let certificate = B64.encode(&session.certificate);
        self.session = Some(session);
        let signature = match signature {
            Ok(s) => s,
            Err(e) => {
                // A wrong PIN is not tried again on the next declaration.
                self.pin = None;
                return Err(e);
            }
        };
        let body = CardAnswer {
            nonce: declaration.nonce.clone(),
            certificate,
            signature: B64.encode(&signature),
        };
        let path = format!(
            "{}/{}/signature",
            wire::EMERGENCY_DECLARATIONS_PATH,
            declaration.declaration
        );
        let state: DeclarationState = here
            .gateway
            .client
            .json(Method::POST, &path, Some(&body))
            .await?;
        check_outcome(declaration, state)
    }
}

/// Declares an emergency access: begins the declaration at the gateway for `request`'s
/// patient, checks the text, shows it to the physician (`confirm`), asks `pins` for the PIN,
/// has the card sign it and sends the signature.
pub async fn emergency_declare(
    cfg: &AgentConfig,
    request: &DeclarationRequest,
    pins: Arc<dyn PinSource>,
    confirm: Arc<dyn Confirm>,
) -> Result<EmergencyOutcome, AgentError> {
    check_declaration_request(request)?;
    let here = Here::new(cfg)?;
    // The card first: no declaration is begun while it is missing or locked.
    let mut signer = Signer::open(cfg, pins, confirm).await?;
    let state: DeclarationState = here
        .gateway
        .client
        .json(
            Method::POST,
            wire::EMERGENCY_DECLARATIONS_PATH,
            Some(request),
        )
        .await?;
    let (declaration, to_sign) = check_declaration_state(&state, &here.expected(Some(request)))?;
    signer.sign(&here, declaration, to_sign).await
}

/// Signs the declarations prepared on this terminal's page that wait for the signed-in
/// physician's card (only the one with id `only`, when given), each checked, shown and
/// confirmed on its own; the PIN is asked once. A refused or declined declaration does not
/// stop the others; a card or PIN failure stops the run. Nothing pending: an empty list.
pub async fn emergency_sign_pending(
    cfg: &AgentConfig,
    only: Option<&str>,
    pins: Arc<dyn PinSource>,
    confirm: Arc<dyn Confirm>,
) -> Result<Vec<PendingOutcome>, AgentError> {
    if let Some(id) = only
        && !is_valid_declaration_id(id)
    {
        return Err(AgentError::Usage(format!(
            "--declaration {:?} is not a declaration id",
            clean(id, 80)
        )));
    }
    let here = Here::new(cfg)?;
    let mut pending: Vec<DeclarationState> = here
        .gateway
        .client
        .json::<(), _>(Method::GET, wire::EMERGENCY_PENDING_PATH, None)
        .await?;
    if pending.len() > MAX_PENDING {
        return Err(AgentError::Protocol {
            status: Some(200),
            detail: format!(
                "{} pending declarations; at most {MAX_PENDING} are taken",
                pending.len()
            ),
        });
    }
    if let Some(id) = only {
        pending.retain(|s| s.id == id);
        if pending.is_empty() {
            let reason = Reason::BreakGlassDeclarationNotFound;
            return Err(AgentError::Refused(Refusal {
                status: reason.status().as_u16(),
                reason: Some(reason),
                code: reason.code().to_string(),
                message_en: reason.en().to_string(),
                message_ja: reason.ja().to_string(),
            }));
        }
    }
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let mut signer = Signer::open(cfg, pins, confirm).await?;
    let mut results = Vec::with_capacity(pending.len());
    for state in pending {
        let result = match check_declaration_state(&state, &here.expected(None)) {
            Ok((declaration, to_sign)) => signer.sign(&here, declaration, to_sign).await,
            Err(e) => Err(e),
        };
        // The card or its PIN failed: the next declaration would fail the same way.
        let stop = result
            .as_ref()
            .is_err_and(|e| matches!(e.exit_code(), 3 | 4));
        results.push(PendingOutcome {
            id: clean(&state.id, 80),
            result,
        });
        if stop {
            break;
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration() -> Declaration {
        Declaration {
            gateway: "gw".into(),
            terminal: "urn:sekisho:terminal:F:T".into(),
            declaration: "bg-1".into(),
            user: "yamada.taro".into(),
            patient: "P-0001".into(),
            category: "unconscious".into(),
            justification: "j".into(),
            declared_at: "2026-12-04T02:00:00Z".into(),
            nonce: "n".into(),
        }
    }

    fn answer(json: &str) -> DeclarationState {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn outcomes_are_checked_and_told() {
        let active = check_outcome(
            declaration(),
            answer(
                r#"{"id":"bg-1","status":"active","patient":"P-0001","category":"unconscious","expires_at":1796364000,"allows":"view"}"#,
            ),
        )
        .unwrap();
        assert!(active.is_active());
        assert_eq!(
            active.summary(),
            "Emergency access active for patient P-0001 until 2026-12-04 15:00 JST (view; declaration bg-1)"
        );
        assert_eq!(
            active.summary_ja(),
            "患者 P-0001 の緊急時アクセスが有効です（2026-12-04 15:00 JST まで、閲覧、宣言 bg-1）"
        );
        let waiting = check_outcome(
            declaration(),
            answer(r#"{"id":"bg-1","status":"awaiting_approval","category":"child_protection"}"#),
        )
        .unwrap();
        assert!(!waiting.is_active());
        assert!(waiting.summary().contains("second person approves"));
        assert!(waiting.summary_ja().contains("承認"));
        let write = check_outcome(
            declaration(),
            answer(
                r#"{"id":"bg-1","status":"active","category":"c","expires_at":1,"allows":"view,write"}"#,
            ),
        )
        .unwrap();
        assert!(write.summary().contains("view and write"));
        assert!(write.summary_ja().contains("閲覧・記載"));

        for bad in [
            r#"{"id":"bg-2","status":"active","category":"c","expires_at":1}"#,
            r#"{"id":"bg-1","status":"active","category":"c"}"#,
            r#"{"id":"bg-1","status":"awaiting_signature","category":"c"}"#,
            r#"{"id":"bg-1","status":"rejected","category":"c"}"#,
            r#"{"id":"bg-1","status":"active","patient":"P-0002","category":"c","expires_at":1}"#,
        ] {
            let e = check_outcome(declaration(), answer(bad)).unwrap_err();
            assert!(matches!(e, AgentError::Protocol { .. }), "{bad}: {e:?}");
        }
    }
}
