//! Signing in on a terminal, under the gateway's own `/.sekisho/` prefix (never forwarded):
//! physicians with their HPKI card through the terminal agent (R-ACCT-4), other staff with ID
//! and password under the network's password profile (R-ACCT-2), sign-out, and status.
//!
//! - [`trust`]: the HPKI trust anchors and CRLs ([`crl_fetch`] keeps fetched CRLs current);
//! - `hpki`: the card's challenge and response: a nonce bound to this terminal's certificate
//!   and this gateway, single use and short-lived, signed by the card's authentication key after
//!   the PIN is entered on the terminal (the PIN never leaves it);
//! - `password`: the password form and the password change;
//! - `lockout`: failures counted per account and per terminal, delays, locks (R-ACCT-5);
//! - `session`: opening and ending sessions, the session cookie;
//! - `presence`: the card's periodic proof that it is still in the reader;
//! - `pages`: the sign-in and password pages.

pub mod crl_fetch;
mod hpki;
mod lockout;
mod pages;
mod password;
mod presence;
mod session;
pub mod trust;

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use sekisho_audit::{AuditLog, AuditRecord, Event};
use sekisho_ca::TerminalId;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{
    CardAnswer, HPKI_CHALLENGE_PATH, HPKI_LOGIN_PATH, LOGOUT_PATH, Logout, PRESENCE_CHALLENGE_PATH,
    PRESENCE_PROOF_PATH, STATUS_PATH,
};
use sekisho_store::Store;

pub(crate) use hpki::{card_id, refusal as hpki_refusal};
pub use session::{session_cookie, strip_session_cookie};
pub use trust::HpkiTrust;

use crate::body::Body;
use crate::config::Config;
use crate::endpoint::{error, read_form, read_json, same_origin};
use crate::sessions::Sessions;
use crate::throttle::{Limited, Scope, Throttle, source_key};
use pages::{ORIGIN_MSG, login_form, login_form_to, page, password_form};

/// The sign-in desk of one gateway.
pub struct SignIn {
    cfg: Config,
    store: Store,
    audit: AuditLog,
    sessions: Arc<Sessions>,
    hpki: Arc<HpkiTrust>,
    throttle: Arc<Throttle>,
}

/// The terminal the request came from, already checked against the registry.
pub struct Caller<'a> {
    pub terminal: &'a TerminalId,
    pub serial: &'a str,
    pub peer: SocketAddr,
    pub request_id: &'a str,
}

impl SignIn {
    pub fn new(
        cfg: Config,
        store: Store,
        audit: AuditLog,
        sessions: Arc<Sessions>,
        hpki: Arc<HpkiTrust>,
        throttle: Arc<Throttle>,
    ) -> SignIn {
        SignIn {
            cfg,
            store,
            audit,
            sessions,
            hpki,
            throttle,
        }
    }

    pub fn hpki(&self) -> &Arc<HpkiTrust> {
        &self.hpki
    }

    /// Ends the terminal's session because the officers' console sat idle too long
    /// (`crate::console`); on record like a sign-out, with reason `console_idle`. `false` when
    /// the session could not be ended.
    pub async fn end_idle(&self, caller: &Caller<'_>) -> bool {
        self.logout(caller, Some("console_idle"))
            .await
            .status()
            .is_success()
    }

    /// `path` is the normalised path, which starts with `/.sekisho/`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        match (req.method().clone(), path) {
            (Method::POST, HPKI_CHALLENGE_PATH) => self.challenge(caller).await,
            (Method::POST, HPKI_LOGIN_PATH) => match read_json::<CardAnswer>(req).await {
                Ok(body) => self.hpki_login(body, caller).await,
                Err(r) => r,
            },
            (Method::POST, PRESENCE_CHALLENGE_PATH) => self.presence_challenge(caller).await,
            (Method::POST, PRESENCE_PROOF_PATH) => match read_json::<CardAnswer>(req).await {
                Ok(body) => self.presence_proof(body, caller).await,
                Err(r) => r,
            },
            (Method::POST, LOGOUT_PATH) => {
                let reason = read_json::<Logout>(req).await.ok().and_then(|l| l.reason);
                self.logout(caller, reason.as_deref()).await
            }
            (Method::GET, STATUS_PATH) => {
                let cookie = session_cookie(req.headers());
                self.status(caller, cookie.as_deref())
            }
            (Method::GET, "/.sekisho/login") => {
                let next = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .find(|(k, _)| k == "next")
                    .and_then(|(_, v)| pages::next_page(&v));
                page(StatusCode::OK, &login_form_to(None, next))
            }
            (Method::POST, "/.sekisho/login") => {
                if !same_origin(&req, &self.cfg.hostname) {
                    return page(StatusCode::FORBIDDEN, &login_form(Some(ORIGIN_MSG)));
                }
                match read_form(req).await {
                    Ok(f) => self.password_login(&f, caller).await,
                    Err(r) => r,
                }
            }
            (Method::GET, "/.sekisho/password") => page(StatusCode::OK, &password_form(None)),
            (Method::POST, "/.sekisho/password") => {
                if !same_origin(&req, &self.cfg.hostname) {
                    return page(StatusCode::FORBIDDEN, &password_form(Some(ORIGIN_MSG)));
                }
                let cookie = session_cookie(req.headers());
                match read_form(req).await {
                    Ok(f) => self.change_password(&f, cookie.as_deref(), caller).await,
                    Err(r) => r,
                }
            }
            (Method::POST, "/.sekisho/logout") => {
                // The console's "sign in as someone else" comes back to the console.
                let next = read_form(req)
                    .await
                    .ok()
                    .and_then(|f| pages::next_page(crate::endpoint::field(&f, "next")));
                let mut r = self.logout(caller, Some("logout")).await;
                *r.status_mut() = StatusCode::SEE_OTHER;
                let h = r.headers_mut();
                h.insert(
                    header::LOCATION,
                    match next {
                        Some(n) => HeaderValue::from_str(&format!("/.sekisho/login?next={n}"))
                            .unwrap_or(HeaderValue::from_static("/.sekisho/login")),
                        None => HeaderValue::from_static("/.sekisho/login"),
                    },
                );
                h.insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(session::CLEAR_COOKIE),
                );
                r
            }
            _ => error(Reason::NotFound),
        }
    }
}

impl SignIn {
    /// The sign-in rate limits (`[rate_limits]`): the source address, the terminal and, when
    /// the attempt names one, the account. The first refusal of a burst goes on record.
    fn pace(
        &self,
        caller: &Caller<'_>,
        account: Option<&str>,
        method: &str,
    ) -> Result<(), Limited> {
        let t = &self.throttle;
        let r = t
            .check(Scope::SigninSource, &source_key(caller.peer.ip()))
            .and_then(|()| t.check(Scope::SigninTerminal, &caller.terminal.terminal))
            .and_then(|()| account.map_or(Ok(()), |a| t.check(Scope::SigninAccount, a)));
        self.on_record(r, caller, account, method)
    }

    /// Only the account's limit, for when the attempt names its account late (an HPKI card's
    /// certificate), after [`SignIn::pace`] has counted it for the source and the terminal.
    fn pace_account(
        &self,
        caller: &Caller<'_>,
        account: &str,
        method: &str,
    ) -> Result<(), Limited> {
        let r = self.throttle.check(Scope::SigninAccount, account);
        self.on_record(r, caller, Some(account), method)
    }

    fn on_record(
        &self,
        r: Result<(), Limited>,
        caller: &Caller<'_>,
        account: Option<&str>,
        method: &str,
    ) -> Result<(), Limited> {
        r.inspect_err(|l| {
            if l.first {
                let mut rec = l.record(Event::Auth, Some(caller.peer.to_string()));
                rec.request_id = caller.request_id.to_string();
                rec.terminal = Some(caller.terminal.terminal.clone());
                rec.facility = Some(caller.terminal.facility.clone());
                rec.cert_serial = Some(caller.serial.to_string());
                rec.method = Some(method.into());
                rec.user = account
                    .filter(|_| l.scope == Scope::SigninAccount)
                    .map(str::to_string);
                self.audit.append_nowait(rec);
            }
        })
    }
}

/// What a sign-in page says when a rate limit refused the attempt.
fn limited_message() -> String {
    format!(
        "{} / {}",
        Reason::RateLimited.ja(),
        Reason::RateLimited.en()
    )
}

/// How single-use nonces (sign-in and consent challenges) are kept in the store: hashed, so a
/// copy of the database cannot answer a pending challenge.
pub(crate) fn nonce_hash(s: &str) -> String {
    hex::encode(digest(&SHA256, s.as_bytes()))
}

/// A sign-in attempt's audit record; decision and reason are filled in once known.
fn auth_record(caller: &Caller<'_>, method: &str) -> AuditRecord {
    AuditRecord {
        request_id: caller.request_id.to_string(),
        event: Event::Auth,
        peer: Some(caller.peer.to_string()),
        terminal: Some(caller.terminal.terminal.clone()),
        facility: Some(caller.terminal.facility.clone()),
        cert_serial: Some(caller.serial.to_string()),
        method: Some(method.into()),
        // DICOM audit: User Authentication (110114), Login (110122).
        detail: Some("DCM 110114 User Authentication / 110122 Login".into()),
        ..Default::default()
    }
}
