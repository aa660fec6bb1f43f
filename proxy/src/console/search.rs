//! The audit log searched (R-LOG-1): by time, person, terminal, facility, patient, route,
//! event, decision, reason, emergency declaration and request id; newest first, 50 a page.
//! Each record shows whether its bytes are what the tree holds and whether a signed
//! checkpoint covers it. A search is itself on record (what was asked) before it is shown.

use std::fmt::Write;

use http::Response;
use sekisho_audit::search::{Cursor, Filter, latest_checkpoint, search};
use sekisho_audit::{Decision, Event};
use sekisho_protocol::Reason;

use super::layout::q;
use super::{AUDIT, Console, Visit, param};
use crate::body::Body;
use crate::html::escape;
use crate::oversight::jst_day_start_ms;

/// How long a console read waits for this node's durable records to reach the store's tables
/// (`AuditLog::caught_up`); normally a few milliseconds.
pub(super) const CAUGHT_UP: std::time::Duration = std::time::Duration::from_secs(2);

const PAGE: i64 = 50;
/// Longest value of one search field.
const MAX_FIELD: usize = 128;

/// Every field of the search form, as recorded.
const SEARCHED: [&str; 14] = [
    "from",
    "to",
    "from_hours",
    "since_ms",
    "user",
    "terminal",
    "facility",
    "patient",
    "route",
    "reason",
    "bg",
    "request",
    "event",
    "decision",
];

/// The text fields: (query name, label).
const FIELDS: [(&str, &str); 8] = [
    ("user", "利用者 / person"),
    ("terminal", "端末 / terminal"),
    ("facility", "施設 / facility"),
    ("patient", "患者 / patient"),
    ("route", "経路 / route"),
    ("reason", "理由 / reason"),
    ("bg", "緊急時アクセス / break-glass id"),
    ("request", "要求ID / request id"),
];

impl Console {
    pub(super) async fn search(&self, v: &Visit<'_>, query: &[(String, String)]) -> Response<Body> {
        let filter = match parse(query) {
            Ok(f) => f,
            Err(msg) => return self.search_page(v, query, None, None, Some(&msg)).await,
        };
        let before = match param(query, "before").map(str::parse::<Cursor>).transpose() {
            Ok(b) => b,
            Err(_) => {
                let msg = "ページの位置が読めません。検索し直してください / The page position is not readable: search again";
                return self.search_page(v, query, None, None, Some(msg)).await;
            }
        };
        // Only an actual search is on record; opening the empty form is not.
        if filter == Filter::default() && before.is_none() && param(query, "all").is_none() {
            return self.search_page(v, query, None, None, None).await;
        }
        // Only the form's own fields, each escaped: nothing else a URL carries goes on record.
        let asked = SEARCHED
            .iter()
            .filter_map(|k| param(query, k).map(|v| (k, v)))
            .map(|(k, v)| format!("{k}={}", crate::headers::escape_text(v, MAX_FIELD)))
            .collect::<Vec<_>>()
            .join(" ");
        if let Err(r) = self
            .on_record(v, "audit_search", format!("audit search: {asked}"))
            .await
        {
            return super::layout::refusal(r, v.caller.request_id, false);
        }
        // Records made durable a moment ago (this node's journal) reach the tables first.
        self.audit.caught_up(CAUGHT_UP).await;
        let found = async {
            let cp = latest_checkpoint(&self.store, &self.verifiers).await?;
            search(&self.store, &filter, before, PAGE, cp.as_ref()).await
        }
        .await;
        match found {
            Ok(page) => {
                self.search_page(v, query, Some(page), filter.from_ms, None)
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot search the audit log");
                super::layout::refusal(Reason::Internal, v.caller.request_id, false)
            }
        }
    }

    async fn search_page(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
        page: Option<sekisho_audit::search::Page>,
        since: Option<i64>,
        msg: Option<&str>,
    ) -> Response<Body> {
        let value = |k: &str| escape(param(query, k).unwrap_or(""));
        let mut out = String::new();
        if let Some(m) = msg {
            write!(out, r#"<p class="msg">{}</p>"#, escape(m)).ok();
        }
        write!(
            out,
            r#"<form class="filters" method="get" action="{AUDIT}" id="search">
<label>開始日 / from (JST) <input type="date" name="from" value="{}"></label>
<label>終了日 / to (JST) <input type="date" name="to" value="{}"></label>
<label>直近(時間) / last hours <input type="number" min="1" max="8760" name="from_hours" value="{}"></label>"#,
            value("from"),
            value("to"),
            value("from_hours")
        )
        .ok();
        for (name, label) in FIELDS {
            write!(
                out,
                r#"<label>{label} <input name="{name}" value="{}" maxlength="{MAX_FIELD}" autocomplete="off"></label>"#,
                value(name)
            )
            .ok();
        }
        let select = |name: &str, options: &[&str]| {
            let chosen = param(query, name).unwrap_or("");
            let mut s = format!(r#"<select name="{name}"><option value="">—</option>"#);
            for o in options {
                let sel = if *o == chosen { " selected" } else { "" };
                s.push_str(&format!(r#"<option{sel}>{o}</option>"#));
            }
            s.push_str("</select>");
            s
        };
        let events: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        write!(
            out,
            r#"<label>種別 / event {}</label><label>判定 / decision {}</label>
<input type="hidden" name="all" value="1"><div><button type="submit">検索 / Search</button></div></form>"#,
            select("event", &events),
            select(
                "decision",
                &[Decision::Permit.as_str(), Decision::Deny.as_str()]
            ),
        )
        .ok();
        if let Some(page) = page {
            write!(
                out,
                r#"<p>{} 件表示(新しい順) / {} shown, newest first.</p>"#,
                page.rows.len(),
                page.rows.len()
            )
            .ok();
            out.push_str(r#"<table id="results"><tr><th>#</th><th>時刻 / time (JST)</th><th>種別 / event</th><th>判定 / decision</th><th>理由 / reason</th><th>利用者 / person</th><th>施設・端末 / facility · terminal</th><th>患者 / patient</th><th>要求 / request</th><th>緊急 / break-glass</th><th>要求ID / request id</th><th>改ざん検証 / in the tree</th></tr>"#);
            for f in &page.rows {
                let r = &f.record;
                let standing = match (f.leaf_matches, f.in_signed_checkpoint) {
                    // Retention dropped the body; `audit verify` checks the kept leaf.
                    _ if f.pruned => "保存期間経過・本文削除 / pruned after retention (leaf kept)",
                    (true, true) => r#"<span class="ok">✓ 整合 / consistent</span>"#,
                    (true, false) => "署名待ち / not yet in a signed checkpoint",
                    (false, _) => {
                        r#"<span class="bad">✗ 記録が一致しません / does not match its leaf</span>"#
                    }
                };
                let opt = |o: &Option<String>| escape(o.as_deref().unwrap_or(""));
                write!(
                    out,
                    r#"<tr><td class="mono">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} · {}</td><td>{}</td><td class="mono">{} {}{}</td><td class="mono">{}</td><td class="mono"><a href="{AUDIT}?request={}">{}</a></td><td>{standing}</td></tr>"#,
                    f.idx,
                    escape(&crate::oversight::jst_time(&r.time)),
                    r.event.as_str(),
                    r.decision.as_str(),
                    escape(&r.reason),
                    match &r.actor {
                        Some(a) => format!("{}<br>操作者 / by {}", opt(&r.user), escape(a)),
                        None => opt(&r.user),
                    },
                    opt(&r.facility),
                    opt(&r.terminal),
                    opt(&r.patient),
                    opt(&r.method),
                    opt(&r.path),
                    r.detail
                        .as_deref()
                        .map(|d| format!("<br>{}", escape(d)))
                        .unwrap_or_default(),
                    opt(&r.break_glass_id),
                    q(&r.request_id),
                    escape(&r.request_id),
                )
                .ok();
            }
            out.push_str("</table>");
            if let Some(older) = page.older {
                // "The last N hours" is fixed to when the search was made, so that the next
                // pages do not slide.
                let mut params: Vec<String> = query
                    .iter()
                    .filter(|(k, v)| {
                        SEARCHED.contains(&k.as_str())
                            && k != "from_hours"
                            && k != "since_ms"
                            && !v.trim().is_empty()
                    })
                    .map(|(k, v)| format!("{}={}", q(k), q(v.trim())))
                    .collect();
                if let Some(since) = since {
                    params.push(format!("since_ms={since}"));
                }
                params.push(format!("before={older}"));
                write!(
                    out,
                    r#"<p><a id="older" href="{AUDIT}?{}">さらに古い記録 / Older records →</a></p>"#,
                    escape(&params.join("&"))
                )
                .ok();
            }
        }
        v.page("監査ログの検索", "Audit log search", "audit", &out)
    }
}

/// The search form read back; a clear message for what cannot be searched.
fn parse(query: &[(String, String)]) -> Result<Filter, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        match param(query, name) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_FIELD || v.chars().any(char::is_control) => {
                Err(format!(
                    "「{name}」が長すぎるか、使えない文字を含みます / {name} is too long or has characters that cannot be searched"
                ))
            }
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let mut f = Filter {
        user: text("user")?,
        terminal: text("terminal")?,
        facility: text("facility")?,
        patient: text("patient")?,
        route: text("route")?,
        reason: text("reason")?,
        break_glass_id: text("bg")?,
        request_id: text("request")?,
        ..Filter::default()
    };
    if let Some(e) = param(query, "event") {
        if !Event::ALL.iter().any(|x| x.as_str() == e) {
            return Err(format!("種別が不明です / unknown event {e:?}"));
        }
        f.event = Some(e.to_string());
    }
    if let Some(d) = param(query, "decision") {
        if d != "permit" && d != "deny" {
            return Err(format!("判定が不明です / unknown decision {d:?}"));
        }
        f.decision = Some(d.to_string());
    }
    if let Some(ms) = param(query, "since_ms") {
        let ms: i64 = ms
            .parse()
            .map_err(|_| "since_ms は数値です / since_ms is a number".to_string())?;
        f.from_ms = Some(ms);
    }
    let day = |name: &str| -> Result<Option<i64>, String> {
        param(query, name)
            .map(|d| jst_day_start_ms(d).map_err(|e| e.detail))
            .transpose()
    };
    f.from_ms = match (day("from")?, f.from_ms) {
        (Some(d), Some(s)) => Some(d.max(s)),
        (d, s) => d.or(s),
    };
    f.to_ms = day("to")?.map(|ms| ms + 86_400_000);
    if let Some(h) = param(query, "from_hours") {
        let h: i64 = h
            .parse()
            .ok()
            .filter(|h| (1..=8760).contains(h))
            .ok_or("直近の時間は 1〜8760 です / last hours is 1 to 8760")?;
        let since = (sekisho_store::now() - h * 3600) * 1000;
        f.from_ms = Some(f.from_ms.map_or(since, |t| t.max(since)));
    }
    Ok(f)
}
