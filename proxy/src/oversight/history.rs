//! A patient's access history for a disclosure request (R-PAT-6; seed 002, 別添4(5): the
//! operator reports promptly how the patient's data was used): every decision about the
//! patient's records — who, when, from which facility and terminal, for what, on what grounds
//! (consent, or an emergency declaration) — oldest first. Asking for it is on record first, as
//! the asking person's act; nothing is read when that record cannot be written.

use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_store::Store;
use sqlx::Row;

use super::{NotMade, Officer, jst_day_start_ms};
use crate::policy::{Authorizer, OfficerAct};

/// Most decisions one report holds; a longer history is asked for in periods.
const MAX_ROWS: i64 = 100_000;

/// Which patient and which days (JST, `YYYY-MM-DD`, both inclusive).
pub struct Request<'a> {
    pub patient: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    /// How it is handed out, for the record: "table", "CSV", "printable page".
    pub form: &'a str,
}

/// Checks, records, then reads. `base` carries where the request came from.
pub async fn access_history(
    store: &Store,
    audit: &AuditLog,
    policy: &Authorizer,
    who: &Officer,
    req: &Request<'_>,
    base: AuditRecord,
) -> Result<Vec<AuditRecord>, NotMade> {
    if !sekisho_protocol::is_valid_patient_id(req.patient) {
        return Err(NotMade::new(
            Reason::RoutePatientIdMalformed,
            format!("{:?} is not a patient id", req.patient),
        ));
    }
    let from_ms = req.from.map(jst_day_start_ms).transpose()?;
    let to_ms = req
        .to
        .map(|d| jst_day_start_ms(d).map(|ms| ms + 86_400_000))
        .transpose()?;
    who.may(policy, OfficerAct::ReadAudit, "network")
        .map_err(|r| {
            NotMade::new(
                r,
                format!(
                    "{} may not read the audit log (read_audit in the policy set's console.cedar)",
                    who.user_id()
                ),
            )
        })?;
    audit
        .append(AuditRecord {
            event: Event::Report,
            user: Some(who.user_id().to_string()),
            patient: Some(req.patient.to_string()),
            action: Some("access_history".into()),
            decision: Decision::Permit,
            reason: "ok".into(),
            detail: Some(format!(
                "access history {} to {} as {}; by {}",
                req.from.unwrap_or("the start"),
                req.to.unwrap_or("now"),
                req.form,
                who.actor()
            )),
            ..base
        })
        .await
        .map_err(|e| {
            NotMade::new(
                Reason::AuditUnavailable,
                format!("the report was not produced: its audit record could not be written: {e}"),
            )
        })?;
    // Accesses made durable a moment ago (this node's journal) reach the tables first.
    audit.caught_up(std::time::Duration::from_secs(2)).await;
    let rows = sqlx::query(
        "SELECT record FROM audit_records WHERE patient = $1 AND event = 'request'
           AND ts >= $2 AND ts < $3 ORDER BY idx LIMIT $4",
    )
    .bind(req.patient)
    .bind(from_ms.unwrap_or(0))
    .bind(to_ms.unwrap_or(i64::MAX))
    .bind(MAX_ROWS + 1)
    .fetch_all(store.pool())
    .await
    .map_err(|e| NotMade::new(Reason::Internal, e.to_string()))?;
    if rows.len() as i64 > MAX_ROWS {
        return Err(NotMade::new(
            Reason::TooLarge,
            format!(
                "more than {MAX_ROWS} decisions in this period: give a shorter period (--from/--to)"
            ),
        ));
    }
    rows.iter()
        .map(|r| {
            let text: String = r
                .try_get(0)
                .map_err(|e| NotMade::new(Reason::Internal, e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| {
                NotMade::new(
                    Reason::Internal,
                    format!("an audit record is not readable: {e}"),
                )
            })
        })
        .collect()
}

/// The columns of the report: (Japanese, English). CSV's header row is English, for tools.
pub const HEADINGS: [(&str, &str); 12] = [
    ("時刻", "time"),
    ("判定", "decision"),
    ("理由", "reason"),
    ("利用者", "user"),
    ("資格", "qualification"),
    ("施設", "facility"),
    ("端末", "terminal"),
    ("操作", "action"),
    ("経路", "route"),
    ("目的", "purpose_of_use"),
    ("緊急時アクセス", "break_glass_id"),
    ("要求ID", "request_id"),
];

/// A record's fields in [`HEADINGS`] order.
pub fn fields(rec: &AuditRecord) -> [String; 12] {
    [
        rec.time.clone(),
        rec.decision.as_str().to_string(),
        rec.reason.clone(),
        rec.user.clone().unwrap_or_default(),
        rec.qualification.clone().unwrap_or_default(),
        rec.facility.clone().unwrap_or_default(),
        rec.terminal.clone().unwrap_or_default(),
        rec.action.clone().unwrap_or_default(),
        rec.route.clone().unwrap_or_default(),
        rec.purpose_of_use.clone().unwrap_or_default(),
        rec.break_glass_id.clone().unwrap_or_default(),
        rec.request_id.clone(),
    ]
}

/// The report as CSV (RFC 4180, UTF-8); `bom` puts a byte-order mark first, which spreadsheet
/// programs need to read the Japanese right (the console's download has it, the command line's
/// output, for tools, does not).
pub fn csv(records: &[AuditRecord], bom: bool) -> String {
    let mut out = String::from(if bom { "\u{feff}" } else { "" });
    out.push_str(&csv_line(&HEADINGS.map(|(_, en)| en.to_string())));
    for r in records {
        out.push_str(&csv_line(&fields(r)));
    }
    out
}

/// One RFC 4180 line. A field that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`,
/// a tab or a carriage return first) gets a leading `'`: record fields come from terminals
/// and certificates, and the clerk opens the file in a spreadsheet.
pub fn csv_line(fields: &[String]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{f}")
        } else {
            f.clone()
        };
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&f);
        }
    }
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let line = csv_line(&[
            "a,b".into(),
            "say \"hi\"".into(),
            "=HYPERLINK(\"x\")".into(),
            "-1".into(),
            "plain".into(),
        ]);
        assert_eq!(
            line,
            "\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",'-1,plain\r\n"
        );
    }
}
