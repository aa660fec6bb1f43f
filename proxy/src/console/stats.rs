//! Statistics (R-LOG-4: the secretariat and facility managers analyse how the system is
//! used): patient-record requests per person, per facility and per day (JST) over the last
//! days — permitted, refused, distinct patients. Reading them is on record like a search.

use std::fmt::Write;

use http::Response;
use sekisho_protocol::Reason;
use sqlx::Row;

use super::{Console, STATS, Visit, param};
use crate::body::Body;
use crate::html::escape;

/// Longest period, in days.
const MAX_DAYS: i64 = 90;
const JST_SECS: i64 = 9 * 3600;

impl Console {
    pub(super) async fn stats(&self, v: &Visit<'_>, query: &[(String, String)]) -> Response<Body> {
        let days = param(query, "days")
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .unwrap_or(7);
        if let Err(r) = self
            .on_record(v, "statistics", format!("statistics over {days} days"))
            .await
        {
            return super::layout::refusal(r, v.caller.request_id, false);
        }
        match self.stats_body(days).await {
            Ok(body) => v.page("利用統計", "Statistics", "stats", &body),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the statistics");
                super::layout::refusal(Reason::Internal, v.caller.request_id, false)
            }
        }
    }

    async fn stats_body(&self, days: i64) -> anyhow::Result<String> {
        let since_ms = (sekisho_store::now() - days * 86_400) * 1000;
        let mut out = format!(
            r#"<form method="get" action="{STATS}" class="filters noprint"><label>期間(日) / days <input type="number" name="days" min="1" max="{MAX_DAYS}" value="{days}"></label><div><button type="submit">表示 / Show</button></div></form>
<p>過去 {days} 日間の患者記録への要求(許可・拒否)と、開いた患者の人数。<br><span class="en">Patient-record requests over the last {days} days: permitted, refused, and how many distinct patients.</span></p>"#
        );
        let counted = "SUM(CASE WHEN decision = 'permit' THEN 1 ELSE 0 END) AS permitted,
             SUM(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS refused,
             COUNT(DISTINCT patient) AS patients";
        let scope =
            "FROM audit_records WHERE ts >= $1 AND event = 'request' AND patient IS NOT NULL";
        for (id, title_ja, title_en, key, group) in [
            ("by-person", "利用者別", "Per person", "user_id", "user_id"),
            (
                "by-facility",
                "施設別",
                "Per facility",
                "facility",
                "facility",
            ),
        ] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {key} AS k, {counted} {scope} AND {key} IS NOT NULL
                 GROUP BY {group} ORDER BY permitted DESC, k LIMIT 100"
            )))
            .bind(since_ms)
            .fetch_all(self.store.pool())
            .await?;
            write!(
                out,
                r#"<h2>{title_ja} <span class="en">/ {title_en}</span></h2><table id="{id}"><tr><th></th><th>許可 / permitted</th><th>拒否 / refused</th><th>患者数 / patients</th></tr>"#
            )?;
            for r in &rows {
                let k: String = r.try_get("k")?;
                write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&k),
                    r.try_get::<i64, _>("permitted")?,
                    r.try_get::<i64, _>("refused")?,
                    r.try_get::<i64, _>("patients")?
                )?;
            }
            out.push_str("</table>");
        }
        // Days in Japan time, the same integer arithmetic in SQLite and PostgreSQL.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT (ts / 1000 + {JST_SECS}) / 86400 AS d, {counted} {scope}
             GROUP BY (ts / 1000 + {JST_SECS}) / 86400 ORDER BY d"
        )))
        .bind(since_ms)
        .fetch_all(self.store.pool())
        .await?;
        out.push_str(r#"<h2>日別 <span class="en">/ Per day (JST)</span></h2><table id="by-day"><tr><th></th><th>許可 / permitted</th><th>拒否 / refused</th><th>患者数 / patients</th></tr>"#);
        for r in &rows {
            let d: i64 = r.try_get("d")?;
            let day = crate::oversight::jst(d * 86_400 - JST_SECS);
            write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                &day[..10],
                r.try_get::<i64, _>("permitted")?,
                r.try_get::<i64, _>("refused")?,
                r.try_get::<i64, _>("patients")?
            )?;
        }
        out.push_str("</table>");
        Ok(out)
    }
}
