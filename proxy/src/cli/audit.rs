//! `sekisho audit …`: the tamper-evident audit log, verified against its signed checkpoints,
//! and a patient's access history read from it (for a disclosure request: seed 002, 別添4(5)).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sekisho_audit::{AuditRecord, Decision, Event};
use sqlx::Row;

use super::admin_audit::{audit_admin, officer, os_user};
use super::data_dir::open;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the Merkle tree and check every signed checkpoint.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Every decision about one patient's records — who, when, from which facility and
    /// terminal, for what, on what grounds (consent or an emergency declaration) — oldest
    /// first. Producing it is on record first, as the operator's act.
    Patient {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
        /// From this day (JST, `YYYY-MM-DD`), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Up to this day (JST, `YYYY-MM-DD`), inclusive.
        #[arg(long)]
        to: Option<String>,
        /// CSV (RFC 4180, UTF-8) instead of a table.
        #[arg(long)]
        csv: bool,
        /// The security officer or secretariat member asking.
        #[arg(long, env = "SEKISHO_OPERATOR")]
        operator: String,
    },
}

pub(super) async fn run(cmd: AuditCmd) -> Result<i32> {
    match cmd {
        AuditCmd::Patient {
            data_dir,
            patient,
            from,
            to,
            csv,
            operator,
        } => {
            if !sekisho_protocol::is_valid_patient_id(&patient) {
                bail!("{patient:?} is not a patient id");
            }
            let from_ms = from.as_deref().map(jst_day_start_ms).transpose()?;
            let to_ms = to
                .as_deref()
                .map(|d| jst_day_start_ms(d).map(|ms| ms + 86_400_000))
                .transpose()?;
            let (dd, cfg, store) = open(&data_dir).await?;
            officer(&store, &operator).await?;
            // On record before anything is read: who asked about whom, for which days.
            audit_admin(
                &dd,
                &cfg,
                &store,
                AuditRecord {
                    request_id: sekisho_protocol::new_request_id(),
                    event: Event::Report,
                    user: Some(operator.clone()),
                    patient: Some(patient.clone()),
                    action: Some("access_history".into()),
                    decision: Decision::Permit,
                    reason: "ok".into(),
                    detail: Some(format!(
                        "access history {} to {}{}; by {operator} ({})",
                        from.as_deref().unwrap_or("the start"),
                        to.as_deref().unwrap_or("now"),
                        if csv { " as CSV" } else { "" },
                        os_user().unwrap_or_else(|| "os:unknown".into())
                    )),
                    ..Default::default()
                },
            )
            .await
            .context("the report was not produced: its audit record could not be written")?;
            let rows = sqlx::query(
                "SELECT record FROM audit_records WHERE patient = $1 AND event = 'request'
                   AND ts >= $2 AND ts < $3 ORDER BY idx",
            )
            .bind(&patient)
            .bind(from_ms.unwrap_or(0))
            .bind(to_ms.unwrap_or(i64::MAX))
            .fetch_all(store.pool())
            .await?;
            let mut out = String::new();
            if csv {
                out.push_str(&csv_line(&HEADINGS.map(|(_, en)| en.to_string())));
            } else {
                println!("{patient}: {} decision(s)", rows.len());
                println!(
                    "時刻/time  判定/decision  理由/reason  利用者/user  施設/facility  端末/terminal  操作/action  目的/purpose  経路/route"
                );
            }
            for r in rows {
                let rec: AuditRecord = serde_json::from_str(&r.try_get::<String, _>(0)?)
                    .context("an audit record is not readable")?;
                let fields = [
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
                ];
                if csv {
                    out.push_str(&csv_line(&fields));
                } else {
                    println!(
                        "{}  {:<6} {:<28} {:<14} {:<10} {:<12} {:<10} {:<8} {}{}",
                        fields[0],
                        fields[1],
                        fields[2],
                        fields[3],
                        fields[5],
                        fields[6],
                        fields[7],
                        fields[9],
                        fields[8],
                        if fields[10].is_empty() {
                            String::new()
                        } else {
                            format!("  (emergency {})", fields[10])
                        }
                    );
                }
            }
            if csv {
                print!("{out}");
            }
            Ok(0)
        }
        AuditCmd::Verify { data_dir } => {
            let (dd, _cfg, store) = open(&data_dir).await?;
            let key_file = dd.audit_dir().join("checkpoint.pub");
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("cannot read {}", key_file.display()))?;
            let report = sekisho_audit::verify(&store, key.trim()).await?;
            println!(
                "records: {}  checkpoints: {}",
                report.records, report.checkpoints
            );
            if report.problems.is_empty() {
                println!("audit log OK: every record is covered by a valid signed checkpoint");
                Ok(0)
            } else {
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
                println!(
                    "audit log FAILED verification: {} problem(s)",
                    report.problems.len()
                );
                Ok(1)
            }
        }
    }
}

/// The CSV columns: (Japanese, English); the header row is English for tools.
const HEADINGS: [(&str, &str); 12] = [
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

/// One RFC 4180 line. A field that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`,
/// a tab or a carriage return first) gets a leading `'`: record fields come from terminals
/// and certificates, and the clerk opens the file in a spreadsheet.
fn csv_line(fields: &[String]) -> String {
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

/// The first millisecond of a day in Japan time, `YYYY-MM-DD`.
fn jst_day_start_ms(day: &str) -> Result<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &fmt)
        .with_context(|| format!("{day:?} is not a day (YYYY-MM-DD)"))?;
    let jst = time::UtcOffset::from_hms(9, 0, 0).expect("a valid offset");
    Ok((date.midnight().assume_offset(jst).unix_timestamp_nanos() / 1_000_000) as i64)
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

    #[test]
    fn days_are_japan_time() {
        // 2026-04-01 00:00 JST is 2026-03-31 15:00 UTC.
        assert_eq!(jst_day_start_ms("2026-04-01").unwrap(), 1_774_969_200_000);
        assert!(jst_day_start_ms("2026-13-01").is_err());
        assert!(jst_day_start_ms("yesterday").is_err());
    }
}
