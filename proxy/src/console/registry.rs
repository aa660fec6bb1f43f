//! The secretariat's pages (and a facility administrator's, for their own facility): terminals
//! — list, suspend, resume, one-time enrollment codes — and people — list, add, suspend,
//! resume, unlock with a forced password change, a new temporary password. Who may manage
//! which facility's terminals and people is the policy set's (`admin.cedar`:
//! `manage_terminals`, `manage_users`); the store writes are the command line's
//! (`crate::terminals`, `crate::enrollment`, `crate::oversight::people`), each on record first
//! (`crate::oversight::recorded`). Revoking a terminal stays at the command line.

use std::fmt::Write;

use http::{Response, StatusCode};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_ca::TerminalId;
use sekisho_policies::AdminKind;
use sekisho_protocol::Reason;
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::terminals::{self as term_rows, TerminalStatus};
use sekisho_store::users;

use super::layout::q;
use super::{Console, TERMINALS, USERS, Visit};
use crate::body::Body;
use crate::endpoint::field;
use crate::html::escape;
use crate::oversight::{NotMade, jst, people, recorded};
use crate::terminals::Change;

/// Roles only the secretariat grants: a facility administrator cannot make someone an
/// officer or a member of the secretariat.
const NETWORK_ROLES: [&str; 2] = ["secretariat", "security-officer"];

impl Console {
    /// Whether the person manages `kind` objects of `facility` (the policy set's decision).
    fn manages(&self, v: &Visit<'_>, kind: AdminKind, facility: &str) -> bool {
        self.policy
            .admin(&v.session, kind, facility, v.who.via_tunnel)
            .is_ok()
    }

    /// A registry record of a console act, naming the person acting.
    fn registry_record(&self, v: &Visit<'_>, reason: &str) -> AuditRecord {
        AuditRecord {
            event: Event::Registry,
            actor: Some(v.who.actor()),
            decision: Decision::Permit,
            reason: reason.into(),
            ..v.record()
        }
    }

    /// What a page says after an act that was not made.
    pub(super) fn not_made(&self, v: &Visit<'_>, e: NotMade) -> Response<Body> {
        if e.reason == Reason::Internal || e.reason == Reason::AuditUnavailable {
            tracing::warn!(error = %e.detail, "a console act was not made");
            return super::layout::refusal(e.reason, v.caller.request_id, false);
        }
        let body = format!(
            r#"<p class="msg" id="not-made">{}</p><p><a href="{}">ダッシュボードへ / Back</a></p>"#,
            escape(&e.detail),
            super::HOME
        );
        let mut r = v.page("操作できませんでした", "Not done", "", &body);
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    }

    // ---- terminals ----

    pub(super) async fn terminals_page(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
    ) -> Response<Body> {
        let list = match term_rows::list(&self.store).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list terminals");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        let mut out = String::new();
        if let Some(done) = super::param(query, "done").and_then(done_text) {
            write!(out, r#"<p class="done" id="done">{done}</p>"#).ok();
        }
        out.push_str(r#"<table id="terminals"><tr><th>施設 / facility</th><th>端末 / terminal</th><th>状態 / status</th><th>証明書 / certificates</th><th>期限 / expires</th><th>操作 / act</th></tr>"#);
        for t in list
            .iter()
            .filter(|t| self.manages(v, AdminKind::Terminal, &t.facility))
        {
            let act = match t.status {
                TerminalStatus::Active => ("suspend", "利用停止 / Suspend"),
                TerminalStatus::Suspended => ("resume", "再開 / Resume"),
                TerminalStatus::Revoked => ("", ""),
            };
            let form = if act.0.is_empty() {
                "-".to_string()
            } else {
                format!(
                    r#"<form method="post" action="{TERMINALS}/{}">{}<button name="op" value="{}">{}</button></form>"#,
                    q(&t.terminal),
                    v.token_field(),
                    act.0,
                    act.1
                )
            };
            write!(
                out,
                r#"<tr id="terminal-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{form}</td></tr>"#,
                escape(&t.terminal),
                escape(&t.facility),
                escape(&t.terminal),
                t.status.as_str(),
                t.active_certs,
                t.latest_not_after.map(|x| jst(x)[..10].to_string()).unwrap_or_default(),
            )
            .ok();
        }
        out.push_str("</table>");
        write!(
            out,
            r#"<h2>登録用アクセスコードの発行 <span class="en">/ A one-time enrollment code</span></h2>
<form method="post" action="{TERMINALS}" id="enroll-code">{}<input type="hidden" name="op" value="enroll_code">
<label>施設 / facility <input name="facility" value="{}" required maxlength="64"></label>
<label>端末名 / terminal <input name="terminal" required maxlength="64"></label>
<button type="submit">発行 / Issue</button></form>
<p class="en">失効(証明書の取り消し)はコマンドラインで行います: <code>sekisho terminal revoke</code> / Revoking a terminal is done at the command line.</p>"#,
            v.token_field(),
            escape(&v.session.facility)
        )
        .ok();
        v.page("端末", "Terminals", "terminals", &out)
    }

    /// `POST /.sekisho/console/terminals[/T]` (token checked).
    pub(super) async fn terminal_act(
        &self,
        v: &Visit<'_>,
        terminal: Option<&str>,
        form: &[(String, String)],
    ) -> Response<Body> {
        match (terminal, field(form, "op")) {
            (None, "enroll_code") => self.enroll_code(v, form).await,
            (Some(t), op @ ("suspend" | "resume")) => {
                let found = term_rows::list(&self.store)
                    .await
                    .ok()
                    .and_then(|l| l.into_iter().find(|x| x.terminal == t));
                let Some(found) = found else {
                    return super::layout::refusal(Reason::NotFound, v.caller.request_id, false);
                };
                if !self.manages(v, AdminKind::Terminal, &found.facility) {
                    return self
                        .refused(v, Reason::AdminOtherFacility, &format!("{TERMINALS}/{t}"))
                        .await;
                }
                let (change, reason) = if op == "suspend" {
                    (Change::Suspend, "terminal_suspended")
                } else {
                    (Change::Resume, "terminal_resumed")
                };
                let rec = AuditRecord {
                    terminal: Some(found.terminal.clone()),
                    facility: Some(found.facility.clone()),
                    ..self.registry_record(v, reason)
                };
                let ca_cfg = self.cfg.ca.clone();
                match recorded(
                    &self.audit,
                    rec,
                    crate::terminals::change_status(&self.store, None, &ca_cfg, t, change),
                )
                .await
                {
                    Ok(_) => super::layout::see_other(&format!("{TERMINALS}?done={op}")),
                    Err(e) => self.not_made(v, e),
                }
            }
            _ => super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
        }
    }

    async fn enroll_code(&self, v: &Visit<'_>, form: &[(String, String)]) -> Response<Body> {
        let (facility, terminal) = (
            field(form, "facility").trim(),
            field(form, "terminal").trim(),
        );
        let Ok(id) = TerminalId::new(facility, terminal) else {
            return self.not_made(
                v,
                NotMade::new(
                    Reason::BadRequest,
                    "施設と端末名は英数字と . _ - です / facility and terminal: letters, digits, '.', '_', '-'",
                ),
            );
        };
        if !self.manages(v, AdminKind::Terminal, facility) {
            return self.refused(v, Reason::AdminOtherFacility, TERMINALS).await;
        }
        let rec = AuditRecord {
            terminal: Some(id.terminal.clone()),
            facility: Some(id.facility.clone()),
            detail: Some("one-time access code".into()),
            ..self.registry_record(v, "enroll_code_issued")
        };
        match recorded(
            &self.audit,
            rec,
            crate::enrollment::issue_code(&self.store, &self.cfg, &self.pin_key, &id),
        )
        .await
        {
            Ok(code) => {
                let body = format!(
                    r#"<p>端末 <strong>{}</strong>({})の登録用アクセスコードです。この画面は一度だけ表示されます。<br><span class="en">The one-time enrollment code for terminal {} ({}). It is shown once.</span></p>
<table id="code"><tr><th>コード / code</th><td class="mono">{}</td></tr><tr><th>PIN</th><td class="mono">{}</td></tr><tr><th>有効期限 / valid until</th><td>{} (JST)</td></tr></table>
<p>登録ページ / enrollment page: <code>https://{}:{}/</code></p><p><a href="{TERMINALS}">端末一覧へ / Back to terminals</a></p>"#,
                    escape(&id.terminal),
                    escape(&id.facility),
                    escape(&id.terminal),
                    escape(&id.facility),
                    escape(&code.code),
                    escape(&code.pin),
                    jst(code.expires_at),
                    escape(&self.cfg.hostname),
                    self.cfg.listen.enroll.port()
                );
                v.page("アクセスコード", "Enrollment code", "terminals", &body)
            }
            Err(e) => self.not_made(v, e),
        }
    }

    // ---- people ----

    pub(super) async fn users_page(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
    ) -> Response<Body> {
        let (list, locked) = match async {
            anyhow::Ok((
                users::list(&self.store).await?,
                lockouts::locked(&self.store, Scope::Account).await?,
            ))
        }
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list people");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        let mut out = String::new();
        if let Some(done) = super::param(query, "done").and_then(done_text) {
            write!(out, r#"<p class="done" id="done">{done}</p>"#).ok();
        }
        out.push_str(r#"<table id="users"><tr><th>ID</th><th>氏名 / name</th><th>施設 / facility</th><th>役割 / roles</th><th>状態 / status</th><th>HPKI</th><th>最終サインイン / last sign-in</th><th>操作 / act</th></tr>"#);
        for u in list
            .iter()
            .filter(|u| self.manages(v, AdminKind::User, &u.facility))
        {
            let is_locked = locked.iter().any(|(id, _)| *id == u.user_id);
            let status = match (u.suspended, is_locked) {
                (true, _) => "利用停止 / suspended",
                (false, true) => "ロック中 / locked",
                _ => "有効 / active",
            };
            let mut acts = vec![if u.suspended {
                ("resume", "再開 / Resume")
            } else {
                ("suspend", "利用停止 / Suspend")
            }];
            if is_locked {
                acts.push(("unlock", "ロック解除 / Unlock"));
            }
            if u.password_profile.is_some() {
                acts.push(("password", "仮パスワード発行 / New temporary password"));
            }
            let buttons: String = acts
                .iter()
                .map(|(op, label)| format!(r#"<button name="op" value="{op}">{label}</button> "#))
                .collect();
            write!(
                out,
                r#"<tr id="user-{}"><td class="mono">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{status}</td><td>{}</td><td>{}</td><td><form method="post" action="{USERS}/{}">{}{buttons}</form></td></tr>"#,
                escape(&u.user_id),
                escape(&u.user_id),
                escape(&u.name),
                escape(&u.facility),
                escape(&u.roles.join(", ")),
                if u.hpki_serial.is_some() || u.hpki_holder_id.is_some() { "✓" } else { "-" },
                u.last_login_at.map(jst).unwrap_or_default(),
                q(&u.user_id),
                v.token_field(),
            )
            .ok();
        }
        out.push_str("</table>");
        let roles: String = people::ROLES
            .iter()
            .filter(|r| {
                !NETWORK_ROLES.contains(r) || v.session.roles.iter().any(|x| x == "secretariat")
            })
            .map(|r| format!(r#"<label style="display:inline"><input type="checkbox" name="role" value="{r}" style="width:auto"> {r}</label> "#))
            .collect();
        write!(
            out,
            r#"<h2>利用者の登録 <span class="en">/ Add a person</span></h2>
<form method="post" action="{USERS}" id="add-user" class="filters">{}<input type="hidden" name="op" value="add">
<label>ID(10文字以上の英数字) / ID <input name="id" required minlength="10" maxlength="64" autocomplete="off"></label>
<label>氏名 / name <input name="name" required maxlength="64" autocomplete="off"></label>
<label>施設 / facility <input name="facility" value="{}" required maxlength="64"></label>
<label>パスワードの規則 / password profile <select name="profile"><option value="">なし(HPKIカードのみ) / none (HPKI card only)</option><option selected>jp-mhlw-qa-b</option><option>jp-mhlw-qa-a</option><option>jp-mhlw-qa-c</option><option>nist-800-63b-4</option></select></label>
<div style="grid-column:1/-1">役割 / roles: {roles}</div>
<div><button type="submit">登録 / Add</button></div></form>
<p class="en">HPKIカードの登録はコマンドラインで行います(カードの証明書を検証するため): <code>sekisho user add --hpki-cert</code> / A person's HPKI card is registered at the command line, which verifies the card's certificate.</p>"#,
            v.token_field(),
            escape(&v.session.facility)
        )
        .ok();
        v.page("利用者", "People", "users", &out)
    }

    /// `POST /.sekisho/console/users[/ID]` (token checked).
    pub(super) async fn user_act(
        &self,
        v: &Visit<'_>,
        user: Option<&str>,
        form: &[(String, String)],
    ) -> Response<Body> {
        let Some(id) = user else {
            return match field(form, "op") {
                "add" => self.add_user(v, form).await,
                _ => super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
            };
        };
        let Ok(Some(u)) = users::get(&self.store, id).await else {
            return super::layout::refusal(Reason::NotFound, v.caller.request_id, false);
        };
        if !self.manages(v, AdminKind::User, &u.facility) {
            return self
                .refused(v, Reason::AdminOtherFacility, &format!("{USERS}/{id}"))
                .await;
        }
        if u.user_id == v.session.user_id {
            return self.not_made(
                v,
                NotMade::new(
                    Reason::BadRequest,
                    "ご自身のアカウントはここでは変更できません / Your own account is changed by someone else",
                ),
            );
        }
        let op = field(form, "op");
        let reason = match op {
            "suspend" => "user_suspended",
            "resume" => "user_resumed",
            "unlock" => "account_unlocked",
            "password" => "password_reset",
            _ => return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
        };
        let rec = AuditRecord {
            user: Some(u.user_id.clone()),
            facility: Some(u.facility.clone()),
            ..self.registry_record(v, reason)
        };
        let store = &self.store;
        let made = match op {
            "suspend" | "resume" => recorded(
                &self.audit,
                rec,
                people::set_suspended(store, id, op == "suspend"),
            )
            .await
            .map(|()| None),
            "unlock" => recorded(&self.audit, rec, people::unlock(store, id))
                .await
                .map(|()| None),
            _ => {
                let profile = u
                    .password_profile
                    .as_deref()
                    .and_then(|p| p.parse::<crate::password::Profile>().ok())
                    .unwrap_or(crate::password::Profile::JpMhlwQaB);
                recorded(
                    &self.audit,
                    rec,
                    people::set_temporary_password(store, id, profile),
                )
                .await
                .map(Some)
            }
        };
        match made {
            Ok(None) => super::layout::see_other(&format!("{USERS}?done={op}")),
            Ok(Some(t)) => self.temporary_password_page(v, id, &t),
            Err(e) => self.not_made(v, e),
        }
    }

    async fn add_user(&self, v: &Visit<'_>, form: &[(String, String)]) -> Response<Body> {
        let (id, name, facility) = (
            field(form, "id").trim(),
            field(form, "name").trim(),
            field(form, "facility").trim(),
        );
        let roles: Vec<String> = form
            .iter()
            .filter(|(k, _)| k == "role")
            .map(|(_, r)| r.clone())
            .collect();
        if let Err(e) = people::check(id, name, facility, &roles) {
            return self.not_made(v, NotMade::new(Reason::BadRequest, e.to_string()));
        }
        if !self.manages(v, AdminKind::User, facility) {
            return self.refused(v, Reason::AdminOtherFacility, USERS).await;
        }
        if roles.iter().any(|r| NETWORK_ROLES.contains(&r.as_str()))
            && !v.session.roles.iter().any(|r| r == "secretariat")
        {
            return self
                .refused(v, Reason::QualificationNotPermitted, USERS)
                .await;
        }
        let profile = match field(form, "profile") {
            "" => None,
            p => match p.parse::<crate::password::Profile>() {
                Ok(p) => Some(p),
                Err(e) => return self.not_made(v, NotMade::new(Reason::BadRequest, e)),
            },
        };
        let rec = AuditRecord {
            user: Some(id.to_string()),
            facility: Some(facility.to_string()),
            detail: Some(format!("roles {}", roles.join(","))),
            ..self.registry_record(v, "user_added")
        };
        let made = recorded(
            &self.audit,
            rec,
            people::add(
                &self.store,
                &people::NewPerson {
                    id,
                    name,
                    facility,
                    roles: &roles,
                    profile,
                    hpki_issuer: None,
                    hpki_serial: None,
                    hpki_holder_id: None,
                },
            ),
        )
        .await;
        match made {
            Ok(Some(t)) => self.temporary_password_page(v, id, &t),
            Ok(None) => super::layout::see_other(&format!("{USERS}?done=add")),
            Err(e) => self.not_made(v, e),
        }
    }

    /// A temporary password, shown once (the page is never cached).
    fn temporary_password_page(&self, v: &Visit<'_>, id: &str, t: &str) -> Response<Body> {
        let body = format!(
            r#"<p><strong>{}</strong> の仮パスワードです。本人に直接渡してください。最初のサインインで変更が必要です。この画面は一度だけ表示されます。<br><span class="en">The temporary password for {}. Hand it over in person; it must be changed at the first sign-in. It is shown once.</span></p>
<p class="mono" id="temporary" style="font-size:1.4rem">{}</p><p><a href="{USERS}">利用者一覧へ / Back to people</a></p>"#,
            escape(id),
            escape(id),
            escape(t)
        );
        v.page("仮パスワード", "Temporary password", "users", &body)
    }
}

/// What a page says after an act (`?done=` names the act).
fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "suspend" => {
            "利用を停止しました。すべてのゲートウェイで1秒以内に反映されます。 / Suspended: every gateway applies it within a second."
        }
        "resume" => "再開しました。 / Resumed.",
        "unlock" => {
            "ロックを解除しました。次のサインインでパスワードの変更が必要です。 / Unlocked; the password must be changed at the next sign-in."
        }
        "add" => "登録しました。 / Added.",
        _ => return None,
    })
}
