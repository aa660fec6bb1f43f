//! A patient's access history for a disclosure request (R-PAT-6): a print-ready Japanese
//! report (the browser prints it; navigation and forms are not printed) or CSV. Producing it is
//! on record first (`crate::oversight::history`).

use std::fmt::Write;

use http::{HeaderValue, Response, StatusCode, header};

use super::{Console, PATIENT, Visit, param};
use crate::body::{Body, full};
use crate::html::escape;
use crate::oversight::history::{self, HEADINGS};

impl Console {
    pub(super) async fn history(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
    ) -> Response<Body> {
        let patient = param(query, "patient");
        let from = param(query, "from");
        let to = param(query, "to");
        let csv = param(query, "format") == Some("csv");
        let mut out = format!(
            r#"<form class="filters noprint" method="get" action="{PATIENT}" id="history">
<label>患者ID / patient id <input name="patient" value="{}" required maxlength="64" autocomplete="off"></label>
<label>開始日 / from (JST) <input type="date" name="from" value="{}"></label>
<label>終了日 / to (JST) <input type="date" name="to" value="{}"></label>
<div><button type="submit">報告書を表示 / Show the report</button> <button type="submit" name="format" value="csv">CSV</button></div></form>"#,
            escape(patient.unwrap_or("")),
            escape(from.unwrap_or("")),
            escape(to.unwrap_or(""))
        );
        let Some(patient) = patient else {
            out.push_str("<p>患者さんから開示の求めがあったとき、その患者さんの記録がいつ、誰に、どの施設から、どのような根拠(同意・緊急時アクセス)で利用されたかを報告します。報告書の作成は監査ログに記録されます。<br><span class=\"en\">When a patient asks how their records were used, this reports who accessed them, when, from which facility and on what grounds (consent or emergency access). Producing the report is itself recorded in the audit log.</span></p>");
            return v.page(
                "患者別アクセス履歴",
                "Patient access history",
                "patient",
                &out,
            );
        };
        let req = history::Request {
            patient,
            from,
            to,
            form: if csv { "CSV" } else { "printable page" },
        };
        let records = match history::access_history(
            &self.store,
            &self.audit,
            &self.policy,
            &v.who,
            &req,
            v.record(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // An internal error's text stays in the gateway's log.
                let detail = if e.reason == sekisho_protocol::Reason::Internal {
                    tracing::warn!(error = %e.detail, "cannot produce an access history");
                    ""
                } else {
                    e.detail.as_str()
                };
                write!(
                    out,
                    r#"<p class="msg">{}<br><span class="en">{}</span></p>"#,
                    escape(e.reason.ja()),
                    escape(detail)
                )
                .ok();
                let mut r = v.page(
                    "患者別アクセス履歴",
                    "Patient access history",
                    "patient",
                    &out,
                );
                *r.status_mut() = e.reason.status();
                return r;
            }
        };
        if csv {
            let mut r = Response::new(full(history::csv(&records, true)));
            super::layout::secure(&mut r, "text/csv; charset=utf-8");
            // The patient id is checked (letters, digits, `-`, `_`), so it is safe in the name.
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"access-history-{patient}.csv\""
            )) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            *r.status_mut() = StatusCode::OK;
            return r;
        }
        let emergency = records
            .iter()
            .filter(|r| r.break_glass_id.is_some())
            .count();
        write!(
            out,
            r#"<section id="report"><h2>診療情報の利用状況のご報告 <span class="en">/ How your records were accessed</span></h2>
<table><tr><th>患者ID / patient</th><td class="mono">{}</td></tr>
<tr><th>対象期間 / period</th><td>{} 〜 {}</td></tr>
<tr><th>件数 / decisions</th><td id="count">{}(うち緊急時アクセス / under emergency access: {emergency})</td></tr>
<tr><th>作成 / produced</th><td>{} (JST) · {}</td></tr></table>
<h2>明細 <span class="en">/ Details</span></h2><table id="rows"><tr>"#,
            escape(patient),
            escape(from.unwrap_or("記録の開始 / the start")),
            escape(to.unwrap_or("現在 / now")),
            records.len(),
            crate::oversight::jst(sekisho_store::now()),
            escape(&v.session.user_id),
        )
        .ok();
        for (ja, en) in HEADINGS {
            write!(out, r#"<th>{ja}<br><span class="en">{en}</span></th>"#).ok();
        }
        out.push_str("</tr>");
        for rec in &records {
            out.push_str("<tr>");
            let mut fields = history::fields(rec);
            // The printed report is read in Japan time (the CSV keeps UTC, for tools).
            fields[0] = crate::oversight::jst_time(&fields[0]);
            for f in fields {
                write!(out, "<td>{}</td>", escape(&f)).ok();
            }
            out.push_str("</tr>");
        }
        out.push_str("</table><p class=\"en\">判定 permit は閲覧・操作が認められたこと、deny は拒否されたことを示します。緊急時アクセスの欄に番号があるものは、患者さんの同意に代えて緊急時の宣言に基づいたものです。<br>permit: the access was allowed; deny: it was refused. A break-glass id means the access rested on an emergency declaration instead of consent.</p></section>");
        v.page(
            "患者別アクセス履歴",
            "Patient access history",
            "patient",
            &out,
        )
    }
}
