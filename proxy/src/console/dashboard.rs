//! The dashboard: what needs an officer's or the secretariat's attention now — emergency
//! declarations to review and grants running, locked and suspended accounts, terminals by
//! status, refusals by reason over the last day, and whether the audit log is sound.

use std::collections::BTreeMap;
use std::fmt::Write;

use http::Response;
use sekisho_store::break_glass::{self as bg, status};
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::{now, terminals, users};
use sqlx::Row;

use super::{BREAK_GLASS, Console, Visit, layout::q};
use crate::body::Body;
use crate::html::escape;
use crate::oversight::jst;

impl Console {
    pub(super) async fn dashboard(&self, v: &Visit<'_>) -> Response<Body> {
        match self.dashboard_body(v).await {
            Ok(body) => v.page("ダッシュボード", "Dashboard", "home", &body),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the console dashboard");
                super::layout::refusal(
                    sekisho_protocol::Reason::Internal,
                    v.caller.request_id,
                    false,
                )
            }
        }
    }

    async fn dashboard_body(&self, v: &Visit<'_>) -> anyhow::Result<String> {
        let t = now();
        let mut out = String::from(r#"<div class="grid">"#);

        // Emergency access (R-BG-3).
        let attention = bg::needing_attention(&self.store).await?;
        let unreviewed = attention
            .iter()
            .filter(|d| d.review_finding.is_none())
            .count();
        let waiting = attention
            .iter()
            .filter(|d| d.status == status::AWAITING_APPROVAL)
            .count();
        let active: Vec<_> = attention.iter().filter(|d| d.grants_at(t)).collect();
        let overdue = attention
            .iter()
            .filter(|d| d.follow_up_overdue(t, self.follow_up_hours))
            .count();
        let link = |n: usize, text: &str| {
            if v.allowed.review || v.allowed.approve {
                format!(r#"<a href="{BREAK_GLASS}">{text}</a>"#)
            } else {
                let _ = n;
                text.to_string()
            }
        };
        write!(
            out,
            r#"<div class="card{}"><div>{}</div><div class="n" id="bg-unreviewed">{unreviewed}</div><div>承認待ち / awaiting approval: <span id="bg-waiting">{waiting}</span> · 同意記録の期限超過 / follow-up overdue: {overdue}</div></div>"#,
            if unreviewed + waiting > 0 {
                " attn"
            } else {
                ""
            },
            link(
                unreviewed,
                "未確認の緊急時アクセス / Emergency access to review"
            ),
        )?;
        write!(
            out,
            r#"<div class="card"><div>有効な緊急時アクセス / Active emergency grants</div><div class="n" id="bg-active">{}</div><div>{}</div></div>"#,
            active.len(),
            active
                .iter()
                .map(|d| format!(
                    "{} → {} ({} まで / until)",
                    escape(&d.user_id),
                    escape(d.patient_id.as_deref().unwrap_or("-")),
                    d.expires_at.map(jst).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("<br>")
        )?;

        // Accounts (R-ACCT-5, R-LOG-3).
        let locked = lockouts::locked(&self.store, Scope::Account).await?;
        let locked_terminals = lockouts::locked(&self.store, Scope::Terminal).await?;
        let suspended: Vec<_> = users::list(&self.store)
            .await?
            .into_iter()
            .filter(|u| u.suspended)
            .map(|u| u.user_id)
            .collect();
        write!(
            out,
            r#"<div class="card{}"><div>ロック中のアカウント / Locked accounts</div><div class="n" id="locked">{}</div><div>{}</div><div>ロック中の端末 / locked terminals: {}</div></div>"#,
            if locked.is_empty() { "" } else { " attn" },
            locked.len(),
            locked
                .iter()
                .map(|(u, at)| format!("{} ({})", escape(u), jst(*at)))
                .collect::<Vec<_>>()
                .join("<br>"),
            locked_terminals
                .iter()
                .map(|(u, _)| escape(u))
                .collect::<Vec<_>>()
                .join(", "),
        )?;
        write!(
            out,
            r#"<div class="card"><div>利用停止中の利用者 / Suspended users</div><div class="n">{}</div><div>{}</div></div>"#,
            suspended.len(),
            suspended
                .iter()
                .map(|u| escape(u))
                .collect::<Vec<_>>()
                .join(", ")
        )?;

        // Terminals (R-TERM-*).
        let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
        let terms = terminals::list(&self.store).await?;
        for term in &terms {
            *by_status.entry(term.status.as_str()).or_default() += 1;
        }
        write!(
            out,
            r#"<div class="card"><div>端末 / Terminals</div><div class="n">{}</div><div>{}</div></div>"#,
            terms.len(),
            by_status
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(" · ")
        )?;

        // The audit log's health.
        // The head first: a batch that commits in between only makes the checkpoint newer.
        let (records, head_at): (i64, i64) =
            sqlx::query("SELECT tree_size, updated_at FROM audit_head WHERE id = 1")
                .fetch_one(self.store.pool())
                .await
                .map(|r| (r.get(0), r.get(1)))?;
        let cp = sekisho_audit::search::latest_checkpoint(&self.store, &self.verifiers).await?;
        let health = match &cp {
            Some(c) if c.signature_valid && c.tree_size >= records => format!(
                r#"<span class="ok" id="audit-health">正常 / sound</span>: 最新の署名付きチェックポイントがすべての記録を含みます / the latest signed checkpoint covers every record ({} 前 / ago)"#,
                age(t - c.created_at)
            ),
            Some(c) if !c.signature_valid => format!(
                r#"<span class="bad" id="audit-health">要確認 / check</span>: 最新のチェックポイント(記録 {} 件、ノード {})の署名をこのノードの鍵で確認できません / the latest checkpoint's signature does not verify with this node's keys — run <code>sekisho audit verify</code>"#,
                c.tree_size,
                escape(&c.node)
            ),
            Some(c) => format!(
                r#"<span class="bad" id="audit-health">要確認 / check</span>: チェックポイントは {} 件まで、記録は {records} 件 / the checkpoint covers {} of {records} records"#,
                c.tree_size, c.tree_size
            ),
            None => r#"<span id="audit-health">記録なし / no records yet</span>"#.to_string(),
        };
        // The last run of `sekisho audit verify`, as it recorded itself.
        let last_verify: Option<String> = sqlx::query_scalar(
            "SELECT record FROM audit_records WHERE event = 'report'
               AND reason IN ('audit_verified', 'audit_verify_failed')
             ORDER BY idx DESC LIMIT 1",
        )
        .fetch_optional(self.store.pool())
        .await?;
        let last_verify = match last_verify
            .and_then(|r| serde_json::from_str::<sekisho_audit::AuditRecord>(&r).ok())
        {
            Some(r) if r.reason == "audit_verified" => format!(
                r#"<span class="ok" id="last-verify">{} 正常 / OK</span> ({})"#,
                escape(&crate::oversight::jst_time(&r.time)),
                escape(r.detail.as_deref().unwrap_or(""))
            ),
            Some(r) => format!(
                r#"<span class="bad" id="last-verify">{} 問題あり / FAILED</span> ({})"#,
                escape(&crate::oversight::jst_time(&r.time)),
                escape(r.detail.as_deref().unwrap_or(""))
            ),
            None => r#"<span class="bad" id="last-verify">未実施 / never run</span>: <code>sekisho audit verify</code>"#.into(),
        };
        let exports = self.exports_html(records, t).await?;
        write!(
            out,
            r#"<div class="card"><div>監査ログ / Audit log</div><div class="n">{records}</div><div>{health}</div><div>最終書き込み / last write: {}</div><div>最終検証 / last <code>audit verify</code>: {last_verify}</div>{exports}</div>"#,
            if head_at > 0 {
                jst(head_at)
            } else {
                "-".into()
            }
        )?;
        out.push_str("</div>");

        // Refusals by reason over the last 24 hours.
        let since_ms = (t - 86_400) * 1000;
        let rows = sekisho_audit::search::refusals_by_reason(&self.store, since_ms).await?;
        out.push_str(r#"<h2>過去24時間の拒否(理由別) <span class="en">/ Refusals by reason, last 24 hours</span></h2>"#);
        if rows.is_empty() {
            out.push_str("<p>なし / None.</p>");
        } else {
            out.push_str(
                r#"<table id="refusals"><tr><th>理由 / reason</th><th>件数 / count</th></tr>"#,
            );
            for (reason, n) in &rows {
                let text = sekisho_protocol::Reason::from_code(reason)
                    .map(|x| format!(" — {}", escape(x.ja())))
                    .unwrap_or_default();
                let cell = if v.allowed.read_audit {
                    format!(
                        r#"<a href="{}?decision=deny&amp;reason={}&amp;from_hours=24">{}</a>{text}"#,
                        super::AUDIT,
                        q(reason),
                        escape(reason)
                    )
                } else {
                    format!("{}{text}", escape(reason))
                };
                write!(out, "<tr><td>{cell}</td><td>{n}</td></tr>")?;
            }
            out.push_str("</table>");
        }

        // Findings of the anomaly rules (R-LOG-3), with what an officer may do about each.
        let findings = sekisho_store::anomaly::open(&self.store).await?;
        out.push_str(r#"<h2>要確認の利用(検知ルール) <span class="en">/ Use that needs a look (anomaly rules)</span></h2>"#);
        if findings.is_empty() {
            out.push_str(
                r#"<p id="no-findings">未対応の検知はありません。 / No open findings.</p>"#,
            );
        } else {
            out.push_str(r#"<table id="findings"><tr><th>検知 / found (JST)</th><th>ルール / rule</th><th>利用者 / person</th><th>施設 / facility</th><th>内容 / what</th><th>対応 / act</th></tr>"#);
            for f in &findings {
                let acts = if v.allowed.findings && f.user_id != v.session.user_id {
                    format!(
                        r#"<form method="post" action="{}/{}" class="finding">{}<input name="note" placeholder="所見 / note" maxlength="300">
<button name="op" value="dismiss">問題なし / Dismiss</button> <button name="op" value="suspend_user">利用者を停止 / Suspend the person</button> <button name="op" value="suspend_facility">施設を停止 / Suspend the facility</button></form>"#,
                        super::FINDINGS,
                        q(&f.id),
                        v.token_field()
                    )
                } else {
                    "-".to_string()
                };
                write!(
                    out,
                    r#"<tr id="finding-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{acts}</td></tr>"#,
                    escape(&f.id),
                    jst(f.created_at),
                    escape(&f.rule),
                    escape(&f.user_id),
                    escape(f.facility.as_deref().unwrap_or("-")),
                    escape(&f.detail),
                )?;
            }
            out.push_str("</table>");
        }
        Ok(out)
    }
}

/// "3分" / "2時間" style ages.
/// A destination that has records to send and has sent nothing for this long is flagged.
const EXPORT_STALE_SECS: i64 = 600;

impl Console {
    /// Where each `[[audit.export]]` destination is: how many records it has not got, and when
    /// it last got some; flagged when it is behind and has got nothing for ten minutes.
    async fn exports_html(&self, records: i64, now: i64) -> anyhow::Result<String> {
        if self.cfg.audit.exports.is_empty() {
            return Ok(String::new());
        }
        let cursors = sekisho_store::export_cursors::list(&self.store).await?;
        let mut items = String::new();
        for e in &self.cfg.audit.exports {
            let c = cursors.iter().find(|c| c.destination == e.name);
            let behind = (records.max(0) as u64).saturating_sub(c.map_or(0, |c| c.next_idx));
            let last = c.and_then(|c| c.delivered_at);
            let stale = behind > 0 && last.is_none_or(|l| now - l > EXPORT_STALE_SECS);
            write!(
                items,
                r#"<li class="{}" data-export="{}">{} ({}): 未送信 / behind {behind} · 最終送信 / last delivery {}</li>"#,
                if stale { "bad" } else { "ok" },
                escape(&e.name),
                escape(&e.name),
                escape(&e.format),
                last.map_or("-".into(), jst)
            )?;
        }
        Ok(format!(
            r#"<div>外部送信 / export (<code>sekisho audit export status</code>):</div><ul id="audit-exports">{items}</ul>"#
        ))
    }
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}秒 / {s} s"),
        s if s < 7200 => format!("{}分 / {} min", s / 60, s / 60),
        s => format!("{}時間 / {} h", s / 3600, s / 3600),
    }
}

impl Console {
    /// `POST /.sekisho/console/findings/ID` (token already checked): an officer closes a
    /// finding (`crate::oversight::anomaly::act`), then sees the dashboard again.
    pub(super) async fn finding_act(
        &self,
        v: &Visit<'_>,
        id: &str,
        form: &[(String, String)],
    ) -> Response<Body> {
        use crate::oversight::anomaly::{Act, act};
        let note = crate::endpoint::field(form, "note");
        let a = match crate::endpoint::field(form, "op") {
            "dismiss" => Act::Dismiss { note },
            "suspend_user" => Act::SuspendUser { note },
            "suspend_facility" => Act::SuspendFacility { note },
            _ => {
                return super::layout::refusal(
                    sekisho_protocol::Reason::BadRequest,
                    v.caller.request_id,
                    false,
                );
            }
        };
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
            Ok(_) => super::layout::see_other(super::HOME),
            Err(e) if e.reason == sekisho_protocol::Reason::ConsoleNotPermitted => {
                self.refused(v, e.reason, &format!("{}/{id}", super::FINDINGS))
                    .await
            }
            Err(e) => {
                if e.reason == sekisho_protocol::Reason::Internal {
                    tracing::warn!(error = %e.detail, "an act on a finding failed");
                }
                super::layout::refusal(e.reason, v.caller.request_id, false)
            }
        }
    }
}
