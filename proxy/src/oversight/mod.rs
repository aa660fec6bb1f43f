//! What security officers and the secretariat do, in one place for the console
//! (`crate::console`) and the command line (`sekisho breakglass`, `sekisho audit patient`):
//! who may (the policy set's `read_audit`, `review_break_glass` and `approve_break_glass`,
//! `console.cedar`), the act on record first, then the change. A change whose record cannot
//! be written is not made.
//!
//! - [`break_glass`]: reviewing, approving, refusing and ending emergency declarations;
//! - [`history`]: a patient's access history (R-PAT-6), as rows or CSV;
//! - [`anomaly`]: the anomaly rules and their findings (R-LOG-3), and acting on a finding;
//! - [`people`]: registering, suspending and unlocking the people who sign in;
//! - [`recorded`]: the act on record first, then the change — for every administrative act.
//!
//! The audit log's search is `sekisho_audit::search`.

pub mod anomaly;
pub mod break_glass;
pub mod history;
pub mod people;

use sekisho_protocol::Reason;
use sekisho_store::users::UserRow;

use crate::policy::{Authorizer, OfficerAct};
use crate::sessions::Session;

/// The person acting, as the policies see them, and how they came (for the record).
pub struct Officer {
    pub session: Session,
    /// `console on terminal T` or the operating-system account that ran the command.
    pub via: String,
    /// Whether the console request came through the facility's tunnel.
    pub via_tunnel: bool,
}

/// The record of an act: what `act` says (event, decision, reason, detail, the facility
/// acted on) over the caller's record `base` (request id, peer, terminal, actor).
pub fn act_over(
    act: sekisho_audit::AuditRecord,
    base: sekisho_audit::AuditRecord,
) -> sekisho_audit::AuditRecord {
    sekisho_audit::AuditRecord {
        event: act.event,
        decision: act.decision,
        reason: act.reason,
        detail: act.detail,
        facility: act.facility.or(base.facility.clone()),
        ..base
    }
}

impl Officer {
    /// `USER (via)`, as records name the person acting.
    pub fn actor(&self) -> String {
        format!(
            "{} ({})",
            self.session.user_id,
            crate::headers::escape_text(&self.via, 120)
        )
    }

    /// The signed-in person of a console request.
    pub fn signed_in(session: &Session, via_tunnel: bool) -> Officer {
        Officer {
            via: format!("console on terminal {}", session.terminal),
            session: session.clone(),
            via_tunnel,
        }
    }

    /// The person named by `--operator` at the command line, run by `os_user`.
    pub fn operator(u: &UserRow, os_user: String) -> Officer {
        Officer {
            session: Session {
                session_id: String::new(),
                terminal: String::new(),
                user_id: u.user_id.clone(),
                facility: u.facility.clone(),
                roles: u.roles.clone(),
                method: "operator".into(),
                qualification: None,
                expires_at: i64::MAX,
                must_change_password: false,
                card: None,
                live: Default::default(),
            },
            via: os_user,
            via_tunnel: false,
        }
    }

    pub fn user_id(&self) -> &str {
        &self.session.user_id
    }

    /// Whether the policy set lets this person do `act` (on a declaration of `facility`).
    pub fn may(&self, policy: &Authorizer, act: OfficerAct, facility: &str) -> Result<(), Reason> {
        policy
            .officer(&self.session, act, facility, self.via_tunnel)
            .map(|_| ())
            .map_err(|r| r.reason)
    }
}

/// Why an act was not made: the reason the person is told, and a detail for the command line.
#[derive(Debug)]
pub struct NotMade {
    pub reason: Reason,
    pub detail: String,
}

impl NotMade {
    pub fn new(reason: Reason, detail: impl Into<String>) -> NotMade {
        NotMade {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for NotMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason.code())
    }
}

impl std::error::Error for NotMade {}

/// Writes `rec` to the audit log, then makes `change`: the one way every administrative act —
/// from the console or the command line — is made. A change whose record cannot be written is
/// not made (`AuditUnavailable`); one that fails after its record gets a second record,
/// `change_not_made`, saying so.
pub async fn recorded<T>(
    audit: &sekisho_audit::AuditLog,
    rec: sekisho_audit::AuditRecord,
    change: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, NotMade> {
    recorded_as(audit, rec, "change_not_made", change).await
}

/// [`recorded`], with the second record's reason given (`break_glass_act_not_made`). A change
/// that fails with a [`NotMade`] keeps its reason (a declaration in the wrong state is 409);
/// any other failure is a `BadRequest` with its message.
pub async fn recorded_as<T>(
    audit: &sekisho_audit::AuditLog,
    rec: sekisho_audit::AuditRecord,
    not_made_reason: &str,
    change: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, NotMade> {
    if let Err(e) = audit.append(rec.clone()).await {
        return Err(NotMade::new(
            Reason::AuditUnavailable,
            format!("nothing was changed: the change could not be recorded in the audit log: {e}"),
        ));
    }
    let e = match change.await {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let failed = match e.downcast::<NotMade>() {
        Ok(n) => n,
        Err(e) => NotMade::new(Reason::BadRequest, format!("{e:#}")),
    };
    let not_made = sekisho_audit::AuditRecord {
        decision: sekisho_audit::Decision::Deny,
        detail: Some(format!(
            "not made ({}): {}",
            rec.reason,
            crate::headers::escape_text(&failed.detail, 300)
        )),
        reason: not_made_reason.into(),
        time: String::new(),
        ..rec
    };
    if let Err(a) = audit.append(not_made).await {
        tracing::error!(error = %a, "a change on record as made was not made, and the log cannot say so");
    }
    Err(failed)
}

/// `2026-12-04 03:30` in Japan time, from Unix seconds.
pub fn jst(unix: i64) -> String {
    let jst = time::UtcOffset::from_hms(9, 0, 0).expect("a valid offset");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            let t = t.to_offset(jst);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A record's UTC time (RFC 3339) in Japan time, `2026-12-04 12:30:05`; the text as it is
/// when it does not parse.
pub fn jst_time(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return rfc3339.to_string();
    };
    let t = t.to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("a valid offset"));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The first millisecond of a day in Japan time, `YYYY-MM-DD`.
pub fn jst_day_start_ms(day: &str) -> Result<i64, NotMade> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &fmt).map_err(|_| {
        NotMade::new(
            Reason::BadRequest,
            format!("{day:?} is not a day (YYYY-MM-DD)"),
        )
    })?;
    let jst = time::UtcOffset::from_hms(9, 0, 0).expect("a valid offset");
    Ok((date.midnight().assume_offset(jst).unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_japan_time() {
        // 2026-04-01 00:00 JST is 2026-03-31 15:00 UTC.
        assert_eq!(
            super::jst_day_start_ms("2026-04-01").unwrap(),
            1_774_969_200_000
        );
        assert!(super::jst_day_start_ms("2026-13-01").is_err());
        assert!(super::jst_day_start_ms("yesterday").is_err());
        assert_eq!(super::jst(1_774_969_200), "2026-04-01 00:00");
        assert_eq!(
            super::jst_time("2026-03-31T23:30:05.123Z"),
            "2026-04-01 08:30:05"
        );
        assert_eq!(super::jst_time("garbage"), "garbage");
    }
}
