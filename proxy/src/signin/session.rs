//! Sessions: opened on a successful sign-in (in the store, so every replica sees them, and in
//! this node's view at once), ended on sign-out, card removal, lock or suspension. A password
//! session is carried by the `__Host-sekisho` cookie (Secure, HttpOnly, SameSite=Strict); an
//! HPKI session by the terminal itself. The cookie never reaches the upstream.

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use http::{HeaderValue, Response, StatusCode, header};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::LogoutAnswer;
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::sessions::{self as session_rows, SessionRow};
use sekisho_store::{now, users};
use tracing::warn;

use super::{Caller, SignIn};
use crate::body::Body;
use crate::endpoint::{error, json};
use crate::sessions::{Session, password_change_due};

const COOKIE: &str = "__Host-sekisho=";
/// Ends the password session's cookie in the browser.
pub(super) const CLEAR_COOKIE: &str =
    "__Host-sekisho=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0";

impl SignIn {
    pub(super) async fn open_session(
        &self,
        caller: &Caller<'_>,
        user: &users::UserRow,
        method: &str,
        qualification: Option<String>,
        card: Option<String>,
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
            card: card.clone(),
        };
        let mut tx = self.store.begin_write().await?;
        // The facility once more, in this transaction: a suspension committed since the
        // sign-in checked it refuses the session. On PostgreSQL the row is locked for share,
        // so a suspension waits for this commit and then ends the session with the others;
        // on SQLite this transaction holds the write lock from its start (`begin_write`).
        let lock = match self.store.kind() {
            sekisho_store::DbKind::Postgres => " FOR SHARE",
            sekisho_store::DbKind::Sqlite => "",
        };
        let facility: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT status FROM facilities WHERE facility = $1{lock}"
        )))
        .bind(&user.facility)
        .fetch_optional(&mut *tx)
        .await?;
        if facility.is_some_and(|f| f != "active") {
            tx.rollback().await?;
            anyhow::bail!(
                "facility {} was suspended during the sign-in",
                user.facility
            );
        }
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
            must_change_password: method == "password" && password_change_due(user),
            card,
            live: session_rows::Liveness {
                activity: now(),
                presence: now(),
            },
        };
        self.sessions.put(s.clone());
        Ok(s)
    }

    pub(super) async fn logout(&self, caller: &Caller<'_>, reason: Option<&str>) -> Response<Body> {
        let reason = match reason {
            Some("card_removed") => "card_removed",
            Some("console_idle") => "console_idle",
            _ => "logout",
        };
        let who = self.sessions.for_terminal(&caller.terminal.terminal);
        let ended = async {
            let mut tx = self.store.begin_write().await?;
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
                return error(Reason::Internal);
            }
        };
        // Recorded with nobody signed in too: a sign-out is asked for by something on the
        // terminal, and the log says what was asked, not only what changed.
        self.audit.append_nowait(AuditRecord {
            request_id: caller.request_id.to_string(),
            event: Event::Auth,
            peer: Some(caller.peer.to_string()),
            terminal: Some(caller.terminal.terminal.clone()),
            facility: Some(caller.terminal.facility.clone()),
            user: who.map(|s| s.user_id.clone()),
            decision: Decision::Permit,
            reason: reason.into(),
            detail: Some(if ended {
                "DCM 110114 User Authentication / 110123 Logout".into()
            } else {
                "DCM 110114 User Authentication / 110123 Logout; nobody was signed in".into()
            }),
            ..Default::default()
        });
        json(StatusCode::OK, &LogoutAnswer { ended })
    }

    /// Who is signed in on the terminal. A password session is the holder of its cookie's: to
    /// any other program on the terminal it is only "someone, by password", without the user
    /// id or the expiry.
    pub(super) fn status(&self, caller: &Caller<'_>, cookie: Option<&str>) -> Response<Body> {
        let session = self.sessions.for_terminal(&caller.terminal.terminal);
        // It names the person signed in on the terminal: who asked is on record.
        self.audit.append_nowait(AuditRecord {
            request_id: caller.request_id.to_string(),
            event: Event::Auth,
            peer: Some(caller.peer.to_string()),
            terminal: Some(caller.terminal.terminal.clone()),
            facility: Some(caller.terminal.facility.clone()),
            user: session.as_ref().map(|s| s.user_id.clone()),
            decision: Decision::Permit,
            reason: "status".into(),
            detail: Some(
                if session.is_some() {
                    "asked who is signed in: someone is"
                } else {
                    "asked who is signed in: nobody is"
                }
                .into(),
            ),
            ..Default::default()
        });
        match session {
            Some(s) if s.method == "password" && cookie != Some(s.session_id.as_str()) => json(
                StatusCode::OK,
                &serde_json::json!({ "signed_in": true, "user": null, "method": "password" }),
            ),
            Some(s) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "signed_in": true, "user": s.user_id, "method": s.method,
                    "qualification": s.qualification, "expires_at": s.expires_at,
                }),
            ),
            None => json(
                StatusCode::OK,
                &serde_json::json!({ "signed_in": false, "user": null, "method": null }),
            ),
        }
    }
}

/// The value of the gateway's own session cookie, if the request carries it.
pub fn session_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE).map(str::to_string))
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
                .filter(|kv| !kv.starts_with(COOKIE))
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
