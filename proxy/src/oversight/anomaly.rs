//! The anomaly rules (R-LOG-3, R-LOG-4): the audit log and the emergency declarations are
//! scanned every `[anomaly] scan_seconds` for use that needs an officer's look — many distinct
//! patients in an hour, many records in a day, records opened outside working hours, repeated
//! emergency declarations for patients outside the physician's care teams. A finding is
//! recorded once per rule, person and period whichever replica finds it
//! (`sekisho_store::anomaly`), with its notice to the officers' channels in the same
//! transaction; it is counted in `/metrics`, put on record, and shown on the console's
//! dashboard, where an officer dismisses it or suspends the person or their facility.
//!
//! Only ids and counts are in a finding: never a patient's name or which patients.

use anyhow::Result;
use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_store::anomaly::{self as rows, Finding};
use sekisho_store::{Store, now};
use sqlx::Row;

use crate::config::AnomalyConfig;
use crate::metrics::Metrics;
use crate::notify::{Notice, Notifier, kind};

/// The rules, by the name findings carry.
pub mod rule {
    pub const DISTINCT_PATIENTS_PER_HOUR: &str = "distinct_patients_per_hour";
    pub const ACCESSES_PER_DAY: &str = "accesses_per_day";
    pub const OUTSIDE_WORKING_HOURS: &str = "outside_working_hours";
    pub const BREAK_GLASS_OUTSIDE_TEAM: &str = "break_glass_outside_team";
}

const JST_SECS: i64 = 9 * 3600;

/// What a rule found: a person, how many, what it means.
struct Hit {
    rule: &'static str,
    user: String,
    count: i64,
    /// The period the finding is about: one finding per rule, person and period.
    period: String,
    ja: String,
    en: String,
}

/// One scan: every rule over the records it looks at; the findings recorded now (not those
/// another replica or an earlier scan recorded).
pub async fn scan(
    store: &Store,
    cfg: &AnomalyConfig,
    notifier: &Notifier,
    audit: &AuditLog,
    metrics: &Metrics,
) -> Result<Vec<Finding>> {
    let t = now();
    let mut hits = Vec::new();
    let permitted_patient_requests = "event = 'request' AND decision = 'permit'
         AND patient IS NOT NULL AND user_id IS NOT NULL";
    // The current day in Japan time, from its first second.
    let day_start = (t + JST_SECS).div_euclid(86_400) * 86_400 - JST_SECS;
    let day = crate::oversight::jst(day_start)[..10].to_string();

    if cfg.distinct_patients_per_hour > 0 {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT user_id, COUNT(DISTINCT patient) AS n FROM audit_records
             WHERE ts >= $1 AND {permitted_patient_requests}
             GROUP BY user_id HAVING COUNT(DISTINCT patient) > $2"
        )))
        .bind((t - 3600) * 1000)
        .bind(i64::from(cfg.distinct_patients_per_hour))
        .fetch_all(store.pool())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            hits.push(Hit {
                rule: rule::DISTINCT_PATIENTS_PER_HOUR,
                user: r.try_get("user_id")?,
                count: n,
                period: format!("hour {}", t / 3600),
                ja: format!(
                    "1時間に{n}人の患者の記録を開きました(上限 {})",
                    cfg.distinct_patients_per_hour
                ),
                en: format!(
                    "opened the records of {n} patients within an hour (threshold {})",
                    cfg.distinct_patients_per_hour
                ),
            });
        }
    }
    if cfg.accesses_per_day > 0 {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT user_id, COUNT(*) AS n FROM audit_records
             WHERE ts >= $1 AND {permitted_patient_requests}
             GROUP BY user_id HAVING COUNT(*) > $2"
        )))
        .bind(day_start * 1000)
        .bind(i64::from(cfg.accesses_per_day))
        .fetch_all(store.pool())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            hits.push(Hit {
                rule: rule::ACCESSES_PER_DAY,
                user: r.try_get("user_id")?,
                count: n,
                period: format!("day {day}"),
                ja: format!(
                    "本日 {n} 件の患者記録にアクセスしました(上限 {})",
                    cfg.accesses_per_day
                ),
                en: format!(
                    "{n} patient record requests today (threshold {})",
                    cfg.accesses_per_day
                ),
            });
        }
    }
    if let Some((start, end)) = cfg.hours()? {
        // Minute of the day in Japan time, computed the same way by SQLite and PostgreSQL.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT user_id, COUNT(*) AS n FROM audit_records
             WHERE ts >= $1 AND {permitted_patient_requests}
               AND (((ts / 1000 + {JST_SECS}) % 86400) / 60 < $2
                    OR ((ts / 1000 + {JST_SECS}) % 86400) / 60 >= $3)
             GROUP BY user_id"
        )))
        .bind(day_start * 1000)
        .bind(i64::from(start))
        .bind(i64::from(end))
        .fetch_all(store.pool())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            hits.push(Hit {
                rule: rule::OUTSIDE_WORKING_HOURS,
                user: r.try_get("user_id")?,
                count: n,
                period: format!("day {day}"),
                ja: format!(
                    "勤務時間外({})に患者記録へ {n} 件アクセスしました",
                    cfg.working_hours
                ),
                en: format!(
                    "{n} patient record requests outside working hours ({})",
                    cfg.working_hours
                ),
            });
        }
    }
    if cfg.break_glass_outside_team > 0 {
        let month = sekisho_store::break_glass::since(store, t - 30 * 86_400).await?;
        let mut by_user: std::collections::BTreeMap<&str, i64> = Default::default();
        for d in month.iter().filter(|d| d.outside_care_team == Some(true)) {
            *by_user.entry(d.user_id.as_str()).or_default() += 1;
        }
        for (user, n) in by_user {
            if n >= i64::from(cfg.break_glass_outside_team) {
                hits.push(Hit {
                    rule: rule::BREAK_GLASS_OUTSIDE_TEAM,
                    user: user.to_string(),
                    count: n,
                    period: format!("30 days to {day}"),
                    ja: format!("30日間に担当外の患者への緊急時アクセスを {n} 回宣言しました"),
                    en: format!(
                        "declared emergency access for patients outside their care teams {n} times in 30 days"
                    ),
                });
            }
        }
    }

    let mut found = Vec::new();
    for h in hits {
        let facility = sekisho_store::users::get(store, &h.user)
            .await?
            .map(|u| u.facility);
        let f = Finding {
            id: format!("af-{}", sekisho_protocol::new_request_id()),
            rule: h.rule.to_string(),
            user_id: h.user.clone(),
            facility: facility.clone(),
            dedupe: format!("{}|{}|{}", h.rule, h.user, h.period),
            count: h.count,
            detail: format!("{} / {}", h.ja, h.en),
            created_at: t,
            status: rows::status::OPEN.into(),
            closed_by: None,
            closed_at: None,
            note: None,
        };
        let mut tx = store.begin_write().await?;
        if !rows::insert(&mut tx, &f).await? {
            continue;
        }
        notifier
            .enqueue_in(
                &mut tx,
                Notice {
                    kind: kind::ANOMALY.into(),
                    subject_ja: format!("要確認の利用: {} ({})", h.user, h.rule),
                    subject_en: format!("Use to look at: {} ({})", h.user, h.rule),
                    text: format!(
                        "{} の利用が検知ルール {} に該当しました: {}\n管理コンソールで確認してください。\n\n{} matched the anomaly rule {}: {}\nPlease look at it in the console.",
                        h.user, h.rule, h.ja, h.user, h.rule, h.en
                    ),
                    data: serde_json::json!({
                        "finding": f.id, "rule": h.rule, "user": h.user,
                        "facility": facility, "count": h.count,
                    }),
                },
            )
            .await?;
        tx.commit().await?;
        notifier.wake();
        metrics
            .anomaly_findings
            .get_or_create(&vec![("rule", h.rule)])
            .inc();
        audit.append_nowait(AuditRecord {
            request_id: sekisho_protocol::new_request_id(),
            event: Event::Report,
            user: Some(h.user.clone()),
            facility: f.facility.clone(),
            action: Some("anomaly".into()),
            decision: Decision::Permit,
            reason: h.rule.into(),
            detail: Some(format!(
                "finding {}: {}",
                f.id,
                crate::headers::escape_text(&h.en, 300)
            )),
            ..Default::default()
        });
        found.push(f);
    }
    metrics
        .anomaly_open
        .set(rows::open(store).await?.len() as i64);
    Ok(found)
}

/// What an officer does with a finding (R-LOG-3: stop the service for that person or facility).
#[derive(Clone, Copy, Debug)]
pub enum Act<'a> {
    /// Nothing wrong: closed with a note.
    Dismiss { note: &'a str },
    /// The person is suspended: every session ends on every gateway within a second.
    SuspendUser { note: &'a str },
    /// Every active terminal of the person's facility is suspended: their connections close
    /// at once. Resumed one by one with `sekisho terminal resume`.
    SuspendFacility { note: &'a str },
}

impl Act<'_> {
    fn note(&self) -> &str {
        match self {
            Act::Dismiss { note } | Act::SuspendUser { note } | Act::SuspendFacility { note } => {
                note
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Act::Dismiss { .. } => "anomaly_dismissed",
            Act::SuspendUser { .. } => "anomaly_user_suspended",
            Act::SuspendFacility { .. } => "anomaly_facility_suspended",
        }
    }
}

/// Makes `act` on finding `id` as `who` (the policy set's `act_on_findings`), on record first.
pub async fn act(
    store: &Store,
    audit: &AuditLog,
    policy: &crate::policy::Authorizer,
    who: &super::Officer,
    id: &str,
    act: Act<'_>,
    base: AuditRecord,
) -> Result<Finding, super::NotMade> {
    use super::NotMade;
    use sekisho_protocol::Reason;
    let internal = |e: anyhow::Error| NotMade::new(Reason::Internal, e.to_string());
    who.may(policy, crate::policy::OfficerAct::ActOnFindings, "network")
        .map_err(|r| {
            NotMade::new(
                r,
                format!(
                    "{} may not act on findings (act_on_findings in console.cedar)",
                    who.user_id()
                ),
            )
        })?;
    let f = rows::get(store, id)
        .await
        .map_err(internal)?
        .ok_or_else(|| NotMade::new(Reason::NotFound, format!("no finding {id:?}")))?;
    if f.status != rows::status::OPEN {
        return Err(NotMade::new(
            Reason::BadRequest,
            format!("finding {id} is {} already", f.status),
        ));
    }
    if f.user_id == who.user_id() {
        return Err(NotMade::new(
            Reason::ConsoleNotPermitted,
            "a finding about yourself is someone else's to close".to_string(),
        ));
    }
    let facility = f.facility.clone().unwrap_or_default();
    if matches!(act, Act::SuspendFacility { .. }) && facility.is_empty() {
        return Err(NotMade::new(
            Reason::BadRequest,
            "the person has no facility on record".to_string(),
        ));
    }
    let note = crate::headers::escape_text(act.note(), 300);
    let rec = AuditRecord {
        event: Event::Registry,
        user: Some(f.user_id.clone()),
        facility: f.facility.clone(),
        actor: Some(who.actor()),
        action: Some("anomaly".into()),
        decision: Decision::Permit,
        reason: act.code().into(),
        detail: Some(format!("finding {id} ({}): {note}", f.rule)),
        ..base
    };
    super::recorded_as(audit, rec, "anomaly_act_not_made", async {
        match act {
            Act::Dismiss { .. } => {}
            Act::SuspendUser { .. } => {
                sekisho_store::users::set_suspended(store, &f.user_id, true).await?;
            }
            Act::SuspendFacility { note } => {
                // The officer's note, one line, kept with the facility's status.
                let note: String = note
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(300)
                    .collect();
                crate::facilities::change_status(
                    store,
                    None,
                    &facility,
                    sekisho_store::facilities::Change::Suspend,
                    &format!("anomaly finding {id} ({}): {note}", f.rule),
                )
                .await?;
            }
        }
        let to = match act {
            Act::Dismiss { .. } => rows::status::DISMISSED,
            _ => rows::status::ACTED,
        };
        if !rows::close(store, id, to, who.user_id(), act.note()).await? {
            return Err(NotMade::new(
                Reason::BadRequest,
                format!("finding {id} was closed meanwhile"),
            )
            .into());
        }
        Ok(())
    })
    .await?;
    rows::get(store, id)
        .await
        .map_err(internal)?
        .ok_or_else(|| NotMade::new(Reason::Internal, format!("{id} vanished")))
}
