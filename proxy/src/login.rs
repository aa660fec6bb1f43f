//! Sign-in endpoints on the terminal listener, under the gateway's own `/.sekisho/auth/`
//! prefix (never forwarded): the HPKI challenge and response (R-ACCT-4), sign-out, and status.
//!
//! HPKI: the agent asks for a challenge (a nonce bound to this terminal's certificate and this
//! gateway, single use, short-lived), the card's authentication key signs it after the PIN is
//! entered on the terminal (the PIN never leaves it), and the gateway checks the signature, the
//! certificate (chain, validity, policy, key usage, CRLs), maps it to an account and opens a
//! session for that terminal. Failures count per account and per terminal (R-ACCT-5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwapOption;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sekisho_ca::TerminalId;
use sekisho_ca::hpki::{HpkiError, HpkiTrustConfig, HpkiVerifier};
use sekisho_protocol::wire::hpki_login_to_sign;
use serde::Deserialize;
use tracing::{info, warn};

use crate::body::{Body, full};
use crate::config::{Config, Hpki as HpkiConfig};
use crate::sessions::{Session, Sessions};
use sekisho_audit::{AuditLog, AuditRecord};
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::sessions::{self as session_rows, SessionRow};
use sekisho_store::{Store, now, users};

pub const PREFIX: &str = "/.sekisho/";

/// HPKI trust, re-read when one of its files changes (a new CRL is dropped in place).
pub struct HpkiTrust {
    cfg: Option<HpkiConfig>,
    data_dir: PathBuf,
    verifier: ArcSwapOption<HpkiVerifier>,
    stamp: std::sync::Mutex<Vec<Option<SystemTime>>>,
    last_error: std::sync::Mutex<String>,
}

impl HpkiTrust {
    pub fn load(cfg: Option<HpkiConfig>, data_dir: PathBuf) -> Result<HpkiTrust> {
        let t = HpkiTrust {
            cfg,
            data_dir,
            verifier: ArcSwapOption::empty(),
            stamp: Default::default(),
            last_error: Default::default(),
        };
        // Unreadable trust turns HPKI sign-in off (it answers `hpki_not_configured`) rather
        // than stopping the gateway; it is retried whenever the files change.
        if let Err(e) = t.reload_if_changed() {
            warn!("{e:#}: HPKI card sign-in is off until this is fixed");
        }
        Ok(t)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .cfg
            .iter()
            .flat_map(|c| c.anchors.iter().chain(&c.intermediates).chain(&c.crls))
            .map(|p| self.data_dir.join(p))
            .collect();
        files.extend(self.cached_crls());
        files
    }

    /// Where the CRL fetched from `url` is kept.
    pub fn cache_path(&self, url: &str) -> PathBuf {
        let h = hex::encode(&digest(&SHA256, url.as_bytes()).as_ref()[..12]);
        self.data_dir
            .join("hpki-crl-cache")
            .join(format!("{h}.crl"))
    }

    fn cached_crls(&self) -> Vec<PathBuf> {
        self.cfg
            .iter()
            .flat_map(|c| &c.crl_urls)
            .map(|u| self.cache_path(u))
            .filter(|p| p.exists())
            .collect()
    }

    pub fn crl_urls(&self) -> (Vec<String>, u32) {
        self.cfg
            .as_ref()
            .map(|c| (c.crl_urls.clone(), c.crl_refresh_minutes.max(1)))
            .unwrap_or_default()
    }

    /// Rebuilds the verifier when a file changed; a broken set is refused and the last good
    /// verifier stays (its CRLs still expire, so stale trust fails closed).
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(cfg) = &self.cfg else {
            return Ok(false);
        };
        let stamps: Vec<_> = self
            .files()
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect();
        if *self.stamp.lock().expect("stamp lock") == stamps && self.verifier.load().is_some() {
            return Ok(false);
        }
        let read = |ps: &[PathBuf]| -> Result<Vec<Vec<u8>>> {
            ps.iter()
                .map(|p| {
                    let p = self.data_dir.join(p);
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
                })
                .collect()
        };
        let trust = HpkiTrustConfig {
            anchors: read(&cfg.anchors)?,
            intermediates: read(&cfg.intermediates)?,
            crls: {
                let mut crls = read(&cfg.crls)?;
                crls.extend(read(&self.cached_crls())?);
                crls
            },
            ..Default::default()
        };
        let v = HpkiVerifier::new(&trust)
            .map_err(|e| anyhow::anyhow!("HPKI trust is not usable: {e}"))?;
        self.verifier.store(Some(Arc::new(v)));
        *self.stamp.lock().expect("stamp lock") = stamps;
        Ok(true)
    }

    /// `reload_if_changed` for the watcher: a problem is logged once, not every poll.
    pub fn reload_logged(&self) {
        let mut last = self.last_error.lock().expect("error lock");
        match self.reload_if_changed() {
            Ok(true) => {
                info!("HPKI trust (re)loaded");
                last.clear();
            }
            Ok(false) => {}
            Err(e) => {
                let msg = format!("{e:#}");
                if *last != msg {
                    warn!("{msg}; the last good HPKI trust stays");
                    *last = msg;
                }
            }
        }
    }

    fn verifier(&self) -> Option<Arc<HpkiVerifier>> {
        self.verifier.load_full()
    }

    /// Checks a card certificate now (for registering a card to an account).
    pub fn verify(&self, der: &[u8]) -> Result<sekisho_ca::hpki::HpkiIdentity> {
        let v = self
            .verifier()
            .context("no [hpki] trust is configured in sekisho.toml")?;
        v.verify_now(der).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

pub struct Login {
    pub cfg: Config,
    pub store: Store,
    pub audit: AuditLog,
    pub sessions: Arc<Sessions>,
    pub hpki: HpkiTrust,
}

/// The terminal the request came from, already checked against the registry.
pub struct Caller<'a> {
    pub terminal: &'a TerminalId,
    pub serial: &'a str,
    pub peer: SocketAddr,
    pub request_id: &'a str,
}

#[derive(Deserialize)]
struct HpkiLogin {
    nonce: String,
    certificate: String,
    signature: String,
}

#[derive(Deserialize)]
struct Logout {
    #[serde(default)]
    reason: Option<String>,
}

/// A refusal with the code the agent maps to a message.
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) en: &'static str,
    pub(crate) ja: &'static str,
}

pub(crate) fn refused(
    status: StatusCode,
    code: &'static str,
    en: &'static str,
    ja: &'static str,
) -> Refused {
    Refused {
        status,
        code,
        en,
        ja,
    }
}

fn hpki_refusal(e: &HpkiError) -> Refused {
    use StatusCode as S;
    match e {
        HpkiError::Expired { .. } => refused(
            S::FORBIDDEN,
            "hpki_expired",
            "The card's certificate has expired.",
            "カードの証明書の有効期限が切れています。",
        ),
        HpkiError::NotYetValid { .. } => refused(
            S::FORBIDDEN,
            "hpki_not_yet_valid",
            "The card's certificate is not valid yet.",
            "カードの証明書はまだ有効ではありません。",
        ),
        HpkiError::Revoked => refused(
            S::FORBIDDEN,
            "hpki_revoked",
            "The card's certificate has been revoked.",
            "カードの証明書は失効しています。",
        ),
        HpkiError::RevocationUnknown(_) | HpkiError::CrlExpired { .. } => refused(
            S::SERVICE_UNAVAILABLE,
            "hpki_revocation_unknown",
            "The card's revocation status cannot be checked now; tell the secretariat.",
            "カードの失効状態を確認できません。事務局にお知らせください。",
        ),
        HpkiError::SignatureCertificate => refused(
            S::FORBIDDEN,
            "hpki_signature_certificate",
            "That is the card's signature certificate; sign-in uses the authentication one.",
            "署名用証明書ではログインできません（認証用を使います）。",
        ),
        HpkiError::BadSignature => refused(
            S::UNAUTHORIZED,
            "hpki_bad_signature",
            "The card's signature does not match its certificate.",
            "カードの署名が証明書と一致しません。",
        ),
        HpkiError::Untrusted(_) => refused(
            S::FORBIDDEN,
            "hpki_untrusted",
            "The card was not issued by a trusted HPKI authority.",
            "信頼されたHPKI認証局のカードではありません。",
        ),
        HpkiError::WrongPolicy(_) | HpkiError::WrongKeyUsage(_) => refused(
            S::FORBIDDEN,
            "hpki_wrong_profile",
            "This certificate is not an HPKI authentication certificate.",
            "HPKI認証用の証明書ではありません。",
        ),
        _ => refused(
            S::BAD_REQUEST,
            "hpki_malformed",
            "The card's certificate could not be read.",
            "カードの証明書を読み取れません。",
        ),
    }
}

impl Login {
    /// `path` is the normalised path, which starts with [`PREFIX`].
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        path: &str,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        match (req.method().clone(), path) {
            (Method::POST, "/.sekisho/auth/hpki/challenge") => self.challenge(caller).await,
            (Method::POST, "/.sekisho/auth/hpki/login") => {
                match read_json::<HpkiLogin>(req).await {
                    Ok(body) => self.hpki_login(body, caller).await,
                    Err(r) => r,
                }
            }
            (Method::POST, "/.sekisho/auth/logout") => {
                let reason = read_json::<Logout>(req).await.ok().and_then(|l| l.reason);
                self.logout(caller, reason.as_deref()).await
            }
            (Method::GET, "/.sekisho/auth/status") => self.status(caller),
            (Method::GET, "/.sekisho/login") => page(StatusCode::OK, &login_form(None)),
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
                let mut r = self.logout(caller, Some("logout")).await;
                *r.status_mut() = StatusCode::SEE_OTHER;
                let h = r.headers_mut();
                h.insert(
                    header::LOCATION,
                    HeaderValue::from_static("/.sekisho/login"),
                );
                h.insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "__Host-sekisho=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
                    ),
                );
                r
            }
            _ => error(&refused(
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found.",
                "見つかりません。",
            )),
        }
    }

    async fn challenge(&self, caller: &Caller<'_>) -> Response<Body> {
        if self.hpki.verifier().is_none() {
            return error(&not_configured());
        }
        if let Some(r) = self.terminal_locked(caller).await {
            return error(&r);
        }
        let mut nonce = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return error(&try_again());
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
            warn!(error = %e, "cannot store a login challenge");
            return error(&try_again());
        }
        json(
            StatusCode::OK,
            serde_json::json!({
                "nonce": nonce,
                "to_sign": B64.encode(hpki_login_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &nonce)),
                "expires_in": ttl,
            }),
        )
    }

    async fn hpki_login(&self, body: HpkiLogin, caller: &Caller<'_>) -> Response<Body> {
        let Some(verifier) = self.hpki.verifier() else {
            return error(&not_configured());
        };
        if let Some(r) = self.terminal_locked(caller).await {
            return error(&r);
        }
        let mut rec = auth_record(caller, "hpki");
        let outcome = self.check_hpki(&verifier, &body, caller, &mut rec).await;
        match outcome {
            Err((r, account)) => {
                // Count the failure against the terminal, and the account when we know it.
                let delay = self
                    .count_failure(caller, account.as_deref(), &mut rec)
                    .await;
                rec.decision = sekisho_audit::Decision::Deny;
                rec.reason = r.code.into();
                let audited = self.audit.append(rec).await;
                tokio::time::sleep(delay).await;
                if audited.is_err() {
                    return error(&audit_unavailable());
                }
                error(&r)
            }
            Ok((user, qualification)) => {
                rec.decision = sekisho_audit::Decision::Permit;
                rec.reason = "login".into();
                if self.audit.append(rec).await.is_err() {
                    return error(&audit_unavailable());
                }
                match self
                    .open_session(caller, &user, "hpki", qualification.clone())
                    .await
                {
                    Ok(s) => {
                        info!(terminal = %caller.terminal.terminal, user = %user.user_id, "signed in with an HPKI card");
                        json(
                            StatusCode::OK,
                            serde_json::json!({
                                "user": user.user_id, "name": user.name, "qualification": qualification, "expires_at": s.expires_at,
                            }),
                        )
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot open a session");
                        error(&refused(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "internal",
                            "Sign-in failed on the gateway; try again.",
                            "ゲートウェイでログインに失敗しました。もう一度お試しください。",
                        ))
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
        body: &HpkiLogin,
        caller: &Caller<'_>,
        rec: &mut AuditRecord,
    ) -> Result<(users::UserRow, Option<String>), (Refused, Option<String>)> {
        let bad = |code, en, ja| (refused(StatusCode::BAD_REQUEST, code, en, ja), None);
        let cert = B64.decode(body.certificate.trim()).map_err(|_| {
            bad(
                "hpki_malformed",
                "The certificate is not base64.",
                "証明書の形式が正しくありません。",
            )
        })?;
        let sig = B64.decode(body.signature.trim()).map_err(|_| {
            bad(
                "hpki_malformed",
                "The signature is not base64.",
                "署名の形式が正しくありません。",
            )
        })?;
        if cert.len() > 16 * 1024 || sig.len() > 1024 || body.nonce.len() > 128 {
            return Err(bad(
                "hpki_malformed",
                "The sign-in request is too large.",
                "ログイン要求が大きすぎます。",
            ));
        }
        // The challenge first: single use, unexpired, this terminal's certificate.
        let consumed = async {
            let mut tx = self.store.pool().begin().await?;
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
            Ok(true) => {}
            Ok(false) => {
                return Err((
                    refused(
                        StatusCode::UNAUTHORIZED,
                        "challenge_invalid",
                        "The sign-in challenge is unknown, used, expired or another terminal's; try again.",
                        "ログイン要求の有効期限が切れています。もう一度お試しください。",
                    ),
                    None,
                ));
            }
            Err(e) => {
                warn!(error = %e, "cannot check a login challenge");
                return Err((try_again(), None));
            }
        }
        let id = verifier
            .verify_now(&cert)
            .map_err(|e| (hpki_refusal(&e), None))?;
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
        .map_err(|_| (try_again(), None))?;
        let Some(user) = account else {
            return Err((
                refused(
                    StatusCode::FORBIDDEN,
                    "user_unknown",
                    "This card is not registered to an account; ask the facility administrator.",
                    "このカードはアカウントに登録されていません。施設管理者にお問い合わせください。",
                ),
                None,
            ));
        };
        rec.user = Some(user.user_id.clone());
        let qualification = id.qualification().map(|q| q.as_str().to_string());
        rec.qualification = qualification.clone();
        id.verify_signature(
            &hpki_login_to_sign(&self.cfg.hostname, &caller.terminal.urn(), &body.nonce),
            &sig,
        )
        .map_err(|e| (hpki_refusal(&e), Some(user.user_id.clone())))?;
        if user.suspended {
            return Err((
                refused(
                    StatusCode::FORBIDDEN,
                    "user_suspended",
                    "This account is suspended; contact the secretariat.",
                    "このアカウントは停止されています。事務局にお問い合わせください。",
                ),
                Some(user.user_id.clone()),
            ));
        }
        match lockouts::get(&self.store, Scope::Account, &user.user_id).await {
            Ok(c) if c.locked_at.is_some() => {
                return Err((
                    refused(
                        StatusCode::LOCKED,
                        "account_locked",
                        "This account is locked after repeated failures; the secretariat can unlock it.",
                        "ログインの失敗が続いたためロックされています。事務局に解除を依頼してください。",
                    ),
                    None,
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err((try_again(), None));
            }
        }
        Ok((user, qualification))
    }

    async fn terminal_locked(&self, caller: &Caller<'_>) -> Option<Refused> {
        // A lock that cannot be read is not "no lock": refuse until the store answers.
        let c = match lockouts::get(&self.store, Scope::Terminal, &caller.terminal.terminal).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read the terminal's lockout");
                return Some(try_again());
            }
        };
        let locked_at = c.locked_at?;
        if now() - locked_at >= i64::from(self.cfg.signin.terminal_lock_minutes) * 60 {
            // A terminal's lock lapses by itself; an account's does not.
            let _ = lockouts::unlock(&self.store, Scope::Terminal, &caller.terminal.terminal).await;
            return None;
        }
        Some(refused(
            StatusCode::TOO_MANY_REQUESTS,
            "terminal_locked",
            "Too many failed sign-ins from this terminal; wait and try again.",
            "この端末からのログイン失敗が多すぎます。しばらくしてからお試しください。",
        ))
    }

    /// Counts a failure; returns how long to wait before answering (doubling per failure, to
    /// slow guessing without locking anyone out sooner).
    async fn count_failure(
        &self,
        caller: &Caller<'_>,
        account: Option<&str>,
        rec: &mut AuditRecord,
    ) -> Duration {
        let s = &self.cfg.signin;
        let t = lockouts::record_failure(
            &self.store,
            Scope::Terminal,
            &caller.terminal.terminal,
            i64::from(s.terminal_max_failures.max(1)),
        )
        .await;
        let mut failures = t.as_ref().map(|c| c.failures).unwrap_or(1);
        if let Some(user) = account
            && let Ok(c) = lockouts::record_failure(
                &self.store,
                Scope::Account,
                user,
                i64::from(s.max_failures.max(1)),
            )
            .await
        {
            failures = failures.max(c.failures);
            if c.locked_at.is_some() && c.failures == i64::from(s.max_failures.max(1)) {
                rec.detail = Some(format!(
                    "{}; account locked",
                    rec.detail.clone().unwrap_or_default()
                ));
                // A locked account is signed out everywhere, like a suspended one.
                if let Err(e) = self.end_sessions(user).await {
                    warn!(error = %e, user, "cannot end the sessions of a locked account");
                }
            }
        }
        Duration::from_millis((250u64 << (failures.clamp(1, 5) - 1) as u32).min(4000))
    }

    async fn end_sessions(&self, user: &str) -> Result<u64> {
        let mut tx = self.store.pool().begin().await?;
        let n = session_rows::end_for_user(&mut tx, user, "account_locked").await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn open_session(
        &self,
        caller: &Caller<'_>,
        user: &users::UserRow,
        method: &str,
        qualification: Option<String>,
    ) -> Result<Session> {
        let mut id = [0u8; 24];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let session_id = B64URL.encode(id);
        let expires_at = now() + i64::from(self.cfg.signin.session_hours.max(1)) * 3600;
        let row = SessionRow {
            session_id: session_id.clone(),
            terminal: caller.terminal.terminal.clone(),
            user_id: user.user_id.clone(),
            method: method.into(),
            qualification: qualification.clone(),
            absolute_expires_at: expires_at,
        };
        let mut tx = self.store.pool().begin().await?;
        session_rows::open(&mut tx, &row).await?;
        users::touch_login(&mut tx, &user.user_id).await?;
        tx.commit().await?;
        let _ = lockouts::clear_failures(&self.store, Scope::Account, &user.user_id).await;
        let _ =
            lockouts::clear_failures(&self.store, Scope::Terminal, &caller.terminal.terminal).await;
        let s = Session {
            session_id,
            terminal: row.terminal,
            user_id: row.user_id,
            facility: user.facility.clone(),
            roles: user.roles.clone(),
            method: row.method,
            qualification,
            expires_at,
            must_change_password: method == "password"
                && crate::sessions::password_change_due(user),
        };
        self.sessions.put(s.clone());
        Ok(s)
    }

    async fn logout(&self, caller: &Caller<'_>, reason: Option<&str>) -> Response<Body> {
        let reason = match reason {
            Some("card_removed") => "card_removed",
            _ => "logout",
        };
        let who = self.sessions.for_terminal(&caller.terminal.terminal);
        let ended = async {
            let mut tx = self.store.pool().begin().await?;
            let n =
                session_rows::end_for_terminal(&mut tx, &caller.terminal.terminal, reason).await?;
            tx.commit().await?;
            anyhow::Ok(n)
        }
        .await;
        self.sessions.remove(&caller.terminal.terminal);
        let ended = match ended {
            Ok(n) => n > 0,
            Err(e) => {
                warn!(error = %e, "cannot end a session");
                return error(&try_again());
            }
        };
        if ended {
            self.audit.append_nowait(AuditRecord {
                request_id: caller.request_id.to_string(),
                event: sekisho_audit::Event::Auth,
                peer: Some(caller.peer.to_string()),
                terminal: Some(caller.terminal.terminal.clone()),
                facility: Some(caller.terminal.facility.clone()),
                user: who.map(|s| s.user_id.clone()),
                decision: sekisho_audit::Decision::Permit,
                reason: reason.into(),
                detail: Some("DCM 110114 User Authentication / 110123 Logout".into()),
                ..Default::default()
            });
        }
        json(StatusCode::OK, serde_json::json!({ "ended": ended }))
    }

    fn status(&self, caller: &Caller<'_>) -> Response<Body> {
        match self.sessions.for_terminal(&caller.terminal.terminal) {
            Some(s) => json(
                StatusCode::OK,
                serde_json::json!({
                    "signed_in": true, "user": s.user_id, "method": s.method,
                    "qualification": s.qualification, "expires_at": s.expires_at,
                }),
            ),
            None => json(
                StatusCode::OK,
                serde_json::json!({ "signed_in": false, "user": null, "method": null }),
            ),
        }
    }
}

const ORIGIN_MSG: &str = "この画面から操作してください。 / Please use this page.";
const GENERIC_FAILURE: &str = "IDまたはパスワードが正しくありません。続く場合は事務局にお問い合わせください。 / The ID or password is not correct. If this keeps happening, contact the secretariat.";

impl Login {
    async fn password_login(
        &self,
        form: &[(String, String)],
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let id = field(form, "id").trim().to_string();
        let pw = zeroize::Zeroizing::new(field(form, "password").to_string());
        if let Some(r) = self.terminal_locked(caller).await {
            return page(r.status, &login_form(Some(r.ja)));
        }
        let mut rec = auth_record(caller, "password");
        let user = if crate::password::valid_user_id(&id) {
            users::get(&self.store, &id).await.ok().flatten()
        } else {
            None
        };
        // One answer for every failure; the audit record says which it was.
        let reason = match &user {
            None => "user_unknown",
            Some(u) if u.password_hash.is_none() => "no_password",
            Some(u)
                if !crate::password::verify(
                    &pw,
                    u.password_hash.as_deref().unwrap_or_default(),
                ) =>
            {
                "bad_password"
            }
            Some(u) if u.suspended => "user_suspended",
            Some(u) => match lockouts::get(&self.store, Scope::Account, &u.user_id).await {
                Ok(c) if c.locked_at.is_some() => "account_locked",
                Ok(_) => "login",
                Err(_) => "internal",
            },
        };
        rec.user = user.as_ref().map(|u| u.user_id.clone());
        if reason != "login" {
            let account = user
                .as_ref()
                .filter(|_| reason == "bad_password")
                .map(|u| u.user_id.clone());
            let delay = self
                .count_failure(caller, account.as_deref(), &mut rec)
                .await;
            rec.decision = sekisho_audit::Decision::Deny;
            rec.reason = reason.into();
            let audited = self.audit.append(rec).await;
            tokio::time::sleep(delay).await;
            if audited.is_err() {
                return error(&audit_unavailable());
            }
            return page(StatusCode::UNAUTHORIZED, &login_form(Some(GENERIC_FAILURE)));
        }
        let user = user.expect("checked above");
        rec.decision = sekisho_audit::Decision::Permit;
        rec.reason = "login".into();
        if self.audit.append(rec).await.is_err() {
            return error(&audit_unavailable());
        }
        match self.open_session(caller, &user, "password", None).await {
            Ok(s) => {
                let must_change = s.must_change_password;
                let mut r = page(StatusCode::SEE_OTHER, "");
                let to = if must_change {
                    "/.sekisho/password"
                } else {
                    "/"
                };
                let h = r.headers_mut();
                h.insert(header::LOCATION, HeaderValue::from_static(to));
                let max_age = s.expires_at - now();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "__Host-sekisho={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
                    s.session_id
                )) {
                    h.insert(header::SET_COOKIE, v);
                }
                r
            }
            Err(e) => {
                warn!(error = %e, "cannot open a session");
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &login_form(Some("もう一度お試しください。 / Please try again.")),
                )
            }
        }
    }

    async fn change_password(
        &self,
        form: &[(String, String)],
        cookie: Option<&str>,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let session = cookie
            .and_then(|c| self.sessions.by_id(c))
            .filter(|s| s.terminal == caller.terminal.terminal && s.method == "password");
        let Some(session) = session else {
            return page(
                StatusCode::UNAUTHORIZED,
                &login_form(Some("サインインしてください。 / Please sign in.")),
            );
        };
        let (current, new, confirm) = (
            field(form, "current"),
            field(form, "new"),
            field(form, "confirm"),
        );
        let Ok(Some(user)) = users::get(&self.store, &session.user_id).await else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                &password_form(Some("もう一度お試しください。 / Please try again.")),
            );
        };
        if !crate::password::verify(current, user.password_hash.as_deref().unwrap_or_default()) {
            let mut rec = auth_record(caller, "password");
            rec.user = Some(user.user_id.clone());
            rec.decision = sekisho_audit::Decision::Deny;
            rec.reason = "password_change_wrong_current".into();
            let delay = self
                .count_failure(caller, Some(&user.user_id), &mut rec)
                .await;
            let audited = self.audit.append(rec).await;
            tokio::time::sleep(delay).await;
            if audited.is_err() {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &password_form(Some("もう一度お試しください。 / Please try again.")),
                );
            }
            return page(
                StatusCode::UNAUTHORIZED,
                &password_form(Some(
                    "現在のパスワードが正しくありません。 / The current password is not correct.",
                )),
            );
        }
        if new != confirm {
            return page(
                StatusCode::BAD_REQUEST,
                &password_form(Some(
                    "新しいパスワードが一致しません。 / The new passwords do not match.",
                )),
            );
        }
        let profile: crate::password::Profile = user
            .password_profile
            .as_deref()
            .unwrap_or("jp-mhlw-qa-b")
            .parse()
            .unwrap_or(crate::password::Profile::JpMhlwQaB);
        let mut verdict = profile.check(&user.user_id, new);
        if verdict.is_ok() {
            let history = users::password_history(&self.store, &user.user_id, 5)
                .await
                .unwrap_or_default();
            if history.iter().any(|h| crate::password::verify(new, h)) {
                verdict = Err(crate::password::Weak::Reused);
            }
        }
        if let Err(w) = verdict {
            return page(
                StatusCode::BAD_REQUEST,
                &password_form(Some(&format!(
                    "新しいパスワードは使えません / The new password cannot be used: {w}"
                ))),
            );
        }
        let hashed = match crate::password::hash(new) {
            Ok(h) => h,
            Err(_) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &password_form(Some("もう一度お試しください。 / Please try again.")),
                );
            }
        };
        if users::set_password(&self.store, &user.user_id, &hashed, profile.as_str(), false)
            .await
            .is_err()
        {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                &password_form(Some("もう一度お試しください。 / Please try again.")),
            );
        }
        let mut s = (*session).clone();
        s.must_change_password = false;
        self.sessions.put(s);
        self.audit.append_nowait(AuditRecord {
            request_id: caller.request_id.to_string(),
            event: sekisho_audit::Event::Auth,
            terminal: Some(caller.terminal.terminal.clone()),
            user: Some(user.user_id.clone()),
            decision: sekisho_audit::Decision::Permit,
            reason: "password_changed".into(),
            detail: Some("DCM 110136 Security Roles Changed".into()),
            ..Default::default()
        });
        let mut r = page(StatusCode::SEE_OTHER, "");
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        r
    }
}

/// The value of the gateway's own session cookie, if the request carries it.
pub fn session_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix("__Host-sekisho=")
                .map(str::to_string)
        })
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// Removes the gateway's session cookie before a request goes upstream: the upstream gets the
/// signed assertion, never a credential it could replay.
pub fn strip_session_cookie(headers: &mut http::HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .filter(|kv| !kv.starts_with("__Host-sekisho="))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// A form post must come from this gateway's own page (when the browser says where from).
fn same_origin(req: &Request<Incoming>, hostname: &str) -> bool {
    match req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(o) => o
            .strip_prefix("https://")
            .map(|h| h.split(':').next() == Some(hostname) || h.starts_with("localhost"))
            .unwrap_or(false),
    }
}

async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<Body>> {
    match Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(b) => Ok(form_urlencoded::parse(&b.to_bytes()).into_owned().collect()),
        Err(_) => Err(error(&refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "The request is too large.",
            "要求が大きすぎます。",
        ))),
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE_HEAD: &str = r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sekisho</title>
<style>body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.7}label{display:block;margin-top:1rem}input{font-size:1.1rem;padding:.3rem;width:100%;box-sizing:border-box}button{margin-top:1.5rem;font-size:1.1rem;padding:.4rem 1.5rem}.msg{color:#b03a2e}.en{color:#555}</style></head><body>"#;

fn login_form(msg: Option<&str>) -> String {
    // autocomplete=off: browsers must not keep IDs or passwords (R-ACCT-3).
    format!(
        r#"{PAGE_HEAD}<h1>サインイン <span class="en">/ Sign in</span></h1>{}
<p>HPKIカードをお持ちの方は、端末のカードリーダーに挿入してください。<br><span class="en">With an HPKI card, insert it into this terminal's reader instead.</span></p>
<form method="post" action="/.sekisho/login" autocomplete="off">
<label>ID <input name="id" required autocomplete="off" autocapitalize="off" spellcheck="false"></label>
<label>パスワード / Password <input name="password" type="password" required autocomplete="off"></label>
<button type="submit">サインイン / Sign in</button></form></body></html>"#,
        msg.map(|m| format!(r#"<p class="msg">{}</p>"#, html_escape(m)))
            .unwrap_or_default()
    )
}

fn password_form(msg: Option<&str>) -> String {
    format!(
        r#"{PAGE_HEAD}<h1>パスワードの変更 <span class="en">/ Change password</span></h1>{}
<form method="post" action="/.sekisho/password" autocomplete="off">
<label>現在のパスワード / Current password <input name="current" type="password" required autocomplete="off"></label>
<label>新しいパスワード / New password <input name="new" type="password" required autocomplete="off"></label>
<label>もう一度 / Again <input name="confirm" type="password" required autocomplete="off"></label>
<button type="submit">変更 / Change</button></form></body></html>"#,
        msg.map(|m| format!(r#"<p class="msg">{}</p>"#, html_escape(m)))
            .unwrap_or_default()
    )
}

fn page(status: StatusCode, html: &str) -> Response<Body> {
    let mut r = Response::new(full(html.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

pub(crate) fn hash(s: &str) -> String {
    hex::encode(digest(&SHA256, s.as_bytes()))
}

fn not_configured() -> Refused {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "hpki_not_configured",
        "HPKI card sign-in is not set up on this gateway.",
        "このゲートウェイではHPKIカードのログインは設定されていません。",
    )
}

pub(crate) fn try_again() -> Refused {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "internal",
        "Try again.",
        "もう一度お試しください。",
    )
}

/// A sign-in attempt's audit record; decision and reason are filled in once known.
fn auth_record(caller: &Caller<'_>, method: &str) -> AuditRecord {
    AuditRecord {
        request_id: caller.request_id.to_string(),
        event: sekisho_audit::Event::Auth,
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

pub(crate) fn audit_unavailable() -> Refused {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "The access record could not be saved; try again shortly.",
        "アクセス記録を保存できません。しばらくしてから再度お試しください。",
    )
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let body: Bytes = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(error(&refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The request is too large.",
                "要求が大きすぎます。",
            )));
        }
    };
    serde_json::from_slice(&body).map_err(|_| {
        error(&refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "The request is malformed.",
            "要求の形式が正しくありません。",
        ))
    })
}

pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn error(r: &Refused) -> Response<Body> {
    json(
        r.status,
        serde_json::json!({ "error": r.code, "message_en": r.en, "message_ja": r.ja }),
    )
}
