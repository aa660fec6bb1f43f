//! Emergency access in the console (R-BG-3, R-PAT-4): the queue of declarations to review and
//! grants running, one declaration with every record made under it, and the officer's acts —
//! the review's finding, the second person's approval or refusal, ending a grant early — made
//! by `crate::oversight::break_glass`, as at the command line.

use std::fmt::Write;

use http::Response;
use sekisho_audit::search::{Filter, search};
use sekisho_protocol::Reason;
use sekisho_store::break_glass::{self as rows, Declaration, FINDINGS, status};
use sekisho_store::now;

use super::{AUDIT, BREAK_GLASS, Console, Visit, layout::q};
use crate::body::Body;
use crate::endpoint::field;
use crate::html::escape;
use crate::oversight::break_glass::{Act, act};
use crate::oversight::jst;

impl Console {
    pub(super) async fn break_glass_queue(&self, v: &Visit<'_>) -> Response<Body> {
        let list = match rows::needing_attention(&self.store).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list emergency declarations");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        let t = now();
        let mut out = String::from(
            "<p>署名された緊急時アクセスの宣言のうち、未確認のもの・有効なもの・承認待ちのもの(新しい順)。<br><span class=\"en\">Signed emergency declarations not reviewed yet, running, or waiting for approval, newest first.</span></p>",
        );
        if list.is_empty() {
            out.push_str(
                r#"<p id="queue-empty">確認が必要な宣言はありません。 / Nothing to review.</p>"#,
            );
        } else {
            out.push_str(r#"<table id="queue"><tr><th>宣言 / declaration</th><th>状態 / status</th><th>宣言日時 / declared (JST)</th><th>医師 / physician</th><th>患者 / patient</th><th>区分 / category</th><th>期限 / until</th><th>担当外 / outside care team</th><th>同意記録 / follow-up</th><th>確認 / review</th></tr>"#);
            for d in &list {
                write!(
                    out,
                    r#"<tr><td class="mono"><a href="{BREAK_GLASS}/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    q(&d.id),
                    escape(&d.id),
                    status_text(&d.status),
                    d.declared_at.map(jst).unwrap_or_default(),
                    escape(&d.user_id),
                    escape(d.patient_id.as_deref().unwrap_or("-")),
                    escape(&d.category),
                    d.expires_at.map(jst).unwrap_or_default(),
                    match d.outside_care_team {
                        Some(true) => r#"<span class="bad">はい / yes</span>"#,
                        Some(false) => "いいえ / no",
                        None => "-",
                    },
                    follow_up(d, t, self.follow_up_hours),
                    d.review_finding
                        .as_deref()
                        .map(escape)
                        .unwrap_or_else(|| r#"<span class="bad">未確認 / unreviewed</span>"#.into()),
                )
                .ok();
            }
            out.push_str("</table>");
        }
        v.page(
            "緊急時アクセスの確認",
            "Emergency access review",
            "breakglass",
            &out,
        )
    }

    /// One declaration; `done` is what the last act did, or why it was not made.
    pub(super) async fn declaration(
        &self,
        v: &Visit<'_>,
        id: &str,
        done: Option<Result<&str, (Reason, String)>>,
    ) -> Response<Body> {
        let d = match rows::get(&self.store, id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return super::layout::refusal(
                    Reason::BreakGlassDeclarationNotFound,
                    v.caller.request_id,
                    false,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a declaration");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        // Reading what was done under it is reading the audit log: on record first.
        if let Err(r) = self
            .on_record(
                v,
                "break_glass_view",
                format!("declaration {}", crate::headers::escape_text(id, 64)),
            )
            .await
        {
            return super::layout::refusal(r, v.caller.request_id, false);
        }
        let mut out = String::new();
        match done {
            Some(Ok(code)) => {
                if let Some(what) = done_text(code) {
                    write!(out, r#"<p class="done" id="done">{what}</p>"#).ok();
                }
            }
            Some(Err((reason, detail))) => {
                write!(
                    out,
                    r#"<p class="msg" id="not-made">{}<br><span class="en">{}</span></p>"#,
                    escape(reason.ja()),
                    escape(&detail)
                )
                .ok();
            }
            None => {}
        }
        let category = d.category.clone();
        let t = now();
        write!(
            out,
            r#"<table id="declaration">
<tr><th>宣言 / declaration</th><td class="mono">{}</td></tr>
<tr><th>状態 / status</th><td id="status">{}</td></tr>
<tr><th>医師 / physician</th><td>{} ({}) · 端末 / terminal {}</td></tr>
<tr><th>患者 / patient</th><td>{}</td></tr>
<tr><th>区分 / category</th><td>{}</td></tr>
<tr><th>理由 / justification</th><td style="white-space:pre-wrap">{}</td></tr>
<tr><th>宣言日時 / declared</th><td>{}</td></tr>
<tr><th>許可期間 / grant</th><td>{} → {}{}</td></tr>
<tr><th>担当外 / outside care team</th><td>{}</td></tr>
<tr><th>同意記録 / follow-up</th><td>{}</td></tr>
<tr><th>承認 / approval</th><td>{}</td></tr>
<tr><th>終了 / ended</th><td>{}</td></tr>
<tr><th>確認 / review</th><td id="review">{}</td></tr></table>"#,
            escape(&d.id),
            status_text(&d.status),
            escape(&d.user_id),
            escape(&d.facility),
            escape(&d.terminal),
            escape(d.patient_id.as_deref().unwrap_or("-")),
            escape(&category),
            escape(&d.justification),
            d.declared_at
                .map(jst)
                .unwrap_or_else(|| "(未署名 / not signed)".into()),
            d.starts_at.map(jst).unwrap_or_else(|| "-".into()),
            d.expires_at.map(jst).unwrap_or_else(|| "-".into()),
            if d.allows_write {
                " (閲覧・記入 / view and write)"
            } else {
                " (閲覧 / view)"
            },
            d.outside_care_team
                .map_or("-", |o| if o { "はい / yes" } else { "いいえ / no" }),
            follow_up(&d, t, self.follow_up_hours),
            escape(d.approved_by.as_deref().unwrap_or("-")),
            d.ended_at
                .map(|at| format!(
                    "{} · {} · {}",
                    jst(at),
                    escape(d.ended_by.as_deref().unwrap_or("?")),
                    escape(d.end_reason.as_deref().unwrap_or(""))
                ))
                .unwrap_or_else(|| "-".into()),
            match (&d.review_finding, &d.reviewed_by) {
                (Some(f), Some(by)) => format!(
                    "{} · {} · {}: {}",
                    escape(f),
                    escape(by),
                    d.reviewed_at.map(jst).unwrap_or_default(),
                    escape(d.review_comment.as_deref().unwrap_or(""))
                ),
                _ => r#"<span class="bad">未確認 / unreviewed</span>"#.into(),
            }
        )
        .ok();
        self.act_forms(v, &d, &mut out);
        // Every record made under the declaration, newest first.
        let filter = Filter {
            break_glass_id: Some(d.id.clone()),
            ..Filter::default()
        };
        self.audit.caught_up(super::search::CAUGHT_UP).await;
        match search(&self.store, &filter, None, 500, None).await {
            Ok(page) => {
                write!(
                    out,
                    r#"<h2>この宣言での記録 <span class="en">/ Records under this declaration</span> ({})</h2><p><a href="{AUDIT}?bg={}">監査ログで見る / in the audit log search</a></p>
<table id="records"><tr><th>時刻 / time (JST)</th><th>種別 / event</th><th>判定 / decision</th><th>理由 / reason</th><th>利用者 / person</th><th>要求 / request</th><th>応答 / upstream</th></tr>"#,
                    page.rows.len(),
                    q(&d.id)
                )
                .ok();
                for f in &page.rows {
                    let r = &f.record;
                    write!(
                        out,
                        r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="mono">{} {}</td><td>{}</td></tr>"#,
                        escape(&crate::oversight::jst_time(&r.time)),
                        r.event.as_str(),
                        r.decision.as_str(),
                        escape(&r.reason),
                        escape(r.user.as_deref().unwrap_or("")),
                        escape(r.method.as_deref().unwrap_or("")),
                        escape(r.path.as_deref().unwrap_or("")),
                        r.upstream_status.map(|s| s.to_string()).unwrap_or_default()
                    )
                    .ok();
                }
                out.push_str("</table>");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the records under a declaration");
                out.push_str(
                    r#"<p class="msg">記録を読めませんでした / The records could not be read.</p>"#,
                );
            }
        }
        v.page(
            "緊急時アクセスの宣言",
            "Emergency declaration",
            "breakglass",
            &out,
        )
    }

    /// The forms for what this person may do to this declaration now.
    fn act_forms(&self, v: &Visit<'_>, d: &Declaration, out: &mut String) {
        if d.user_id == v.session.user_id {
            out.push_str(r#"<p class="msg">ご自身の宣言は確認・承認できません。 / You cannot review or approve your own declaration.</p>"#);
            return;
        }
        let action = format!("{BREAK_GLASS}/{}", q(&d.id));
        let token = v.token_field();
        if v.allowed.approve && d.status == status::AWAITING_APPROVAL {
            write!(
                out,
                r#"<h2>承認 <span class="en">/ Approval</span></h2><form method="post" action="{action}" id="approve">{token}
<button type="submit" name="op" value="approve">承認する(いま開始) / Approve (starts now)</button> <button type="submit" name="op" value="reject">承認しない / Reject</button></form>"#
            )
            .ok();
        }
        if v.allowed.review && d.grants_at(now()) {
            write!(
                out,
                r#"<h2>早期終了 <span class="en">/ End now</span></h2><form method="post" action="{action}" id="end">{token}<input type="hidden" name="op" value="end">
<label>終了の理由 / reason <input name="reason" required maxlength="300"></label><button type="submit">終了する / End the grant</button></form>"#
            )
            .ok();
        }
        if v.allowed.review && d.declared_at.is_some() {
            let options: String = FINDINGS
                .iter()
                .map(|f| format!(r#"<option value="{f}">{}</option>"#, finding_text(f)))
                .collect();
            write!(
                out,
                r#"<h2>確認の結果 <span class="en">/ Review finding</span></h2><form method="post" action="{action}" id="review-form">{token}<input type="hidden" name="op" value="review">
<label>判断 / finding <select name="finding">{options}</select></label>
<label>所見 / comment <textarea name="comment" rows="3" maxlength="500"></textarea></label>
<button type="submit">記録する / Record</button></form>"#
            )
            .ok();
        }
    }

    /// `POST /.sekisho/console/breakglass/ID` (token already checked).
    pub(super) async fn break_glass_act(
        &self,
        v: &Visit<'_>,
        id: &str,
        form: &[(String, String)],
    ) -> Response<Body> {
        let comment = field(form, "comment").replace("\r\n", "\n");
        let a = match field(form, "op") {
            "review" => Act::Review {
                finding: field(form, "finding"),
                comment: &comment,
            },
            "approve" => Act::Approve,
            "reject" => Act::Reject,
            "end" => Act::End {
                reason: field(form, "reason"),
            },
            _ => return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
        };
        let code = field(form, "op").to_string();
        match act(
            &self.store,
            &self.audit,
            &self.policy,
            &v.who,
            id,
            a,
            v.record(),
        )
        .await
        {
            // Then a GET of the page: a reload does not post the act again.
            Ok(_) => super::layout::see_other(&format!("{BREAK_GLASS}/{}?done={code}", q(id))),
            // Not theirs to do: on record, and nothing of the declaration is shown.
            Err(e)
                if matches!(
                    e.reason,
                    Reason::ConsoleNotPermitted | Reason::BreakGlassOwnDeclaration
                ) =>
            {
                self.refused(v, e.reason, &format!("{BREAK_GLASS}/{id}"))
                    .await
            }
            Err(e) => {
                let detail = if e.reason == Reason::Internal {
                    tracing::warn!(error = %e.detail, "an officer's act failed");
                    String::new()
                } else {
                    e.detail
                };
                let mut r = self.declaration(v, id, Some(Err((e.reason, detail)))).await;
                *r.status_mut() = e.reason.status();
                r
            }
        }
    }
}

/// What the page says after an act (`?done=` names the act, never free text).
fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "review" => "確認の結果を記録しました。 / The finding is recorded.",
        "approve" => "承認しました。アクセスはいま始まります。 / Approved: the grant starts now.",
        "reject" => "承認しませんでした。 / Rejected.",
        "end" => {
            "終了しました。すべてのゲートウェイが1秒以内に次の要求を拒否します。 / Ended: every gateway refuses its next request within a second."
        }
        _ => return None,
    })
}

fn status_text(s: &str) -> String {
    let ja = match s {
        status::CHOOSE_PATIENT => "患者選択中",
        status::AWAITING_SIGNATURE => "署名待ち",
        status::AWAITING_APPROVAL => "承認待ち",
        status::ACTIVE => "有効",
        status::ENDED => "終了",
        status::EXPIRED => "期限切れ",
        status::REJECTED => "不承認",
        _ => "",
    };
    format!("{ja} / {}", escape(s))
}

fn finding_text(f: &str) -> &'static str {
    match f {
        "justified" => "妥当 / justified",
        "not_justified" => "妥当でない / not justified",
        "follow_up_needed" => "要追跡 / follow-up needed",
        _ => "?",
    }
}

fn follow_up(d: &Declaration, at: i64, after_hours: i64) -> String {
    match (&d.follow_up_kind, d.follow_up_required) {
        (Some(k), _) => format!("記録済 / recorded ({})", escape(k)),
        (None, false) => "不要 / not required".into(),
        (None, true) if d.follow_up_overdue(at, after_hours) => {
            r#"<span class="bad">期限超過 / OVERDUE</span>"#.into()
        }
        (None, true) => "必要 / required".into(),
    }
}
