//! Password sign-in for staff without an HPKI card (R-ACCT-2): one generic answer for every
//! failure (the audit record says which it was), and the password change the network's profile
//! asks for at first sign-in and periodically.

use http::{HeaderValue, Response, StatusCode, header};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::{now, users};
use tracing::warn;

use super::pages::{GENERIC_FAILURE, login_form, login_form_to, page, password_form};
use super::{Caller, SignIn, auth_record};
use crate::body::Body;
use crate::endpoint::{error, field};
use crate::password as password_rules;

impl SignIn {
    pub(super) async fn password_login(
        &self,
        form: &[(String, String)],
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let id = field(form, "id").trim().to_string();
        // A failed attempt keeps where the form leads (the console).
        let next = super::pages::next_page(field(form, "next"));
        let pw = zeroize::Zeroizing::new(field(form, "password").to_string());
        // The account as typed (anyone can type any id; a malformed one names no account).
        let named = password_rules::valid_user_id(&id).then_some(id.as_str());
        if let Err(l) = self.pace(caller, named, "password") {
            return l.add_retry_after(page(
                StatusCode::TOO_MANY_REQUESTS,
                &login_form_to(Some(&super::limited_message()), next),
            ));
        }
        if let Some(r) = self.terminal_locked(caller).await {
            return page(r.status(), &login_form_to(Some(r.ja()), next));
        }
        let mut rec = auth_record(caller, "password");
        let user = if password_rules::valid_user_id(&id) {
            users::get(&self.store, &id).await.ok().flatten()
        } else {
            None
        };
        // One answer for every failure; the audit record says which it was.
        let refused = match &user {
            None => Some(Reason::UserUnknown),
            Some(u) if u.password_hash.is_none() => Some(Reason::NoPassword),
            Some(u)
                if !password_rules::verify(&pw, u.password_hash.as_deref().unwrap_or_default()) =>
            {
                Some(Reason::BadPassword)
            }
            Some(u) if u.suspended => Some(Reason::UserSuspended),
            Some(u) if !u.facility_open => Some(Reason::FacilitySuspended),
            Some(u) => match lockouts::get(&self.store, Scope::Account, &u.user_id).await {
                Ok(c) if c.locked_at.is_some() => Some(Reason::AccountLocked),
                Ok(_) => None,
                Err(_) => Some(Reason::Internal),
            },
        };
        rec.user = user.as_ref().map(|u| u.user_id.clone());
        if let Some(reason) = refused {
            // Only a wrong password counts against the account: anyone can type an id.
            let account = user
                .as_ref()
                .filter(|_| reason == Reason::BadPassword)
                .map(|u| u.user_id.clone());
            let delay = self
                .count_failure(caller, account.as_deref(), &mut rec)
                .await;
            rec.decision = Decision::Deny;
            rec.reason = reason.code().into();
            let audited = self.audit.append(rec).await;
            tokio::time::sleep(delay).await;
            if audited.is_err() {
                return error(Reason::AuditUnavailable);
            }
            return page(
                StatusCode::UNAUTHORIZED,
                &login_form_to(Some(GENERIC_FAILURE), next),
            );
        }
        let Some(user) = user else {
            return error(Reason::Internal);
        };
        rec.decision = Decision::Permit;
        rec.reason = "login".into();
        if self.audit.append(rec).await.is_err() {
            return error(Reason::AuditUnavailable);
        }
        match self
            .open_session(caller, &user, "password", None, None)
            .await
        {
            Ok(s) => {
                let must_change = s.must_change_password;
                let mut r = page(StatusCode::SEE_OTHER, "");
                let to = if must_change {
                    "/.sekisho/password"
                } else {
                    super::pages::next_page(field(form, "next")).unwrap_or("/")
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
                    &login_form_to(Some("もう一度お試しください。 / Please try again."), next),
                )
            }
        }
    }

    pub(super) async fn change_password(
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
        if let Err(l) = self.pace(caller, Some(&session.user_id), "password") {
            return l.add_retry_after(page(
                StatusCode::TOO_MANY_REQUESTS,
                &password_form(Some(&super::limited_message())),
            ));
        }
        let Ok(Some(user)) = users::get(&self.store, &session.user_id).await else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                &password_form(Some("もう一度お試しください。 / Please try again.")),
            );
        };
        if !password_rules::verify(current, user.password_hash.as_deref().unwrap_or_default()) {
            let mut rec = auth_record(caller, "password");
            rec.user = Some(user.user_id.clone());
            rec.decision = Decision::Deny;
            rec.reason = Reason::PasswordChangeWrongCurrent.code().into();
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
        let profile: password_rules::Profile = user
            .password_profile
            .as_deref()
            .unwrap_or("jp-mhlw-qa-b")
            .parse()
            .unwrap_or(password_rules::Profile::JpMhlwQaB);
        let mut verdict = profile.check(&user.user_id, new);
        if verdict.is_ok() {
            let history = users::password_history(&self.store, &user.user_id, 5)
                .await
                .unwrap_or_default();
            if history.iter().any(|h| password_rules::verify(new, h)) {
                verdict = Err(password_rules::Weak::Reused);
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
        let hashed = match password_rules::hash(new) {
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
            event: Event::Auth,
            terminal: Some(caller.terminal.terminal.clone()),
            user: Some(user.user_id.clone()),
            decision: Decision::Permit,
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
