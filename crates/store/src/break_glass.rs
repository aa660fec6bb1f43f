//! Emergency access declarations (break-glass: R-PAT-4, R-BG-1..3): from the physician's first
//! step to the officer's review. Every state change is a row update in one statement guarded by
//! the state it expects, so two replicas (or a replica and the CLI) cannot both move one
//! declaration; the triggers of migration 0011 put the patient on the change log, so gateways
//! see a grant start or end within a poll.

use anyhow::{Result, bail};
use sqlx::{Any, Row, Transaction};

use super::{Store, now};

/// The states of a declaration.
pub mod status {
    /// Begun without a patient: the physician finds one by name.
    pub const CHOOSE_PATIENT: &str = "choose_patient";
    /// Waiting for the card's signature.
    pub const AWAITING_SIGNATURE: &str = "awaiting_signature";
    /// Signed and recorded; waiting for a second person's approval (child protection).
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    /// Access is granted until `expires_at`.
    pub const ACTIVE: &str = "active";
    /// Ended early: by an officer, or with the physician's session where the category says so.
    pub const ENDED: &str = "ended";
    /// A draft that was never signed, or a grant past its time.
    pub const EXPIRED: &str = "expired";
    /// Approval refused.
    pub const REJECTED: &str = "rejected";
}

/// What an officer found.
pub const FINDINGS: [&str; 3] = ["justified", "not_justified", "follow_up_needed"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    pub id: String,
    pub user_id: String,
    pub facility: String,
    pub terminal: String,
    pub session_id: String,
    pub card: String,
    pub patient_id: Option<String>,
    pub category: String,
    pub justification: String,
    pub status: String,
    pub allows_write: bool,
    pub hours: i64,
    pub ends_with_session: bool,
    pub follow_up_required: bool,
    pub outside_care_team: Option<bool>,
    pub created_at: i64,
    pub draft_expires_at: i64,
    pub nonce_hash: Option<String>,
    pub declared_at_text: Option<String>,
    pub declared_at: Option<i64>,
    pub starts_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub approved_by: Option<String>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    pub follow_up_at: Option<i64>,
    pub follow_up_kind: Option<String>,
    pub follow_up_sha256: Option<String>,
    pub review_finding: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
    pub review_comment: Option<String>,
}

impl Declaration {
    /// Whether it grants access at `at`.
    pub fn grants_at(&self, at: i64) -> bool {
        self.status == status::ACTIVE
            && self.starts_at.is_some_and(|s| s <= at)
            && self.expires_at.is_some_and(|e| e > at)
    }

    /// A required follow-up that has not been recorded `after_hours` after the declaration.
    pub fn follow_up_overdue(&self, at: i64, after_hours: i64) -> bool {
        self.follow_up_required
            && self.follow_up_at.is_none()
            && self
                .declared_at
                .is_some_and(|d| at - d > after_hours * 3600)
    }
}

/// A new declaration as the physician begins it.
pub struct NewDeclaration<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub facility: &'a str,
    pub terminal: &'a str,
    pub session_id: &'a str,
    pub card: &'a str,
    pub category: &'a str,
    pub justification: &'a str,
    pub allows_write: bool,
    pub hours: i64,
    pub ends_with_session: bool,
    pub follow_up_required: bool,
    pub draft_expires_at: i64,
}

const COLUMNS: &str = "id, user_id, facility, terminal, session_id, card, patient_id, category, \
    justification, status, allows_write, hours, ends_with_session, follow_up_required, \
    outside_care_team, created_at, draft_expires_at, nonce_hash, declared_at_text, declared_at, \
    starts_at, expires_at, approved_by, ended_at, ended_by, end_reason, follow_up_at, \
    follow_up_kind, follow_up_sha256, review_finding, reviewed_by, reviewed_at, review_comment";

fn row(r: &sqlx::any::AnyRow) -> Result<Declaration> {
    let flag = |c: &str| -> Result<bool> { Ok(r.try_get::<i64, _>(c)? != 0) };
    Ok(Declaration {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        facility: r.try_get("facility")?,
        terminal: r.try_get("terminal")?,
        session_id: r.try_get("session_id")?,
        card: r.try_get("card")?,
        patient_id: r.try_get("patient_id")?,
        category: r.try_get("category")?,
        justification: r.try_get("justification")?,
        status: r.try_get("status")?,
        allows_write: flag("allows_write")?,
        hours: r.try_get("hours")?,
        ends_with_session: flag("ends_with_session")?,
        follow_up_required: flag("follow_up_required")?,
        outside_care_team: r
            .try_get::<Option<i64>, _>("outside_care_team")?
            .map(|v| v != 0),
        created_at: r.try_get("created_at")?,
        draft_expires_at: r.try_get("draft_expires_at")?,
        nonce_hash: r.try_get("nonce_hash")?,
        declared_at_text: r.try_get("declared_at_text")?,
        declared_at: r.try_get("declared_at")?,
        starts_at: r.try_get("starts_at")?,
        expires_at: r.try_get("expires_at")?,
        approved_by: r.try_get("approved_by")?,
        ended_at: r.try_get("ended_at")?,
        ended_by: r.try_get("ended_by")?,
        end_reason: r.try_get("end_reason")?,
        follow_up_at: r.try_get("follow_up_at")?,
        follow_up_kind: r.try_get("follow_up_kind")?,
        follow_up_sha256: r.try_get("follow_up_sha256")?,
        review_finding: r.try_get("review_finding")?,
        reviewed_by: r.try_get("reviewed_by")?,
        reviewed_at: r.try_get("reviewed_at")?,
        review_comment: r.try_get("review_comment")?,
    })
}

pub async fn begin(store: &Store, d: &NewDeclaration<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO break_glass (id, user_id, facility, terminal, session_id, card, category,
           justification, status, allows_write, hours, ends_with_session, follow_up_required,
           created_at, draft_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(d.id)
    .bind(d.user_id)
    .bind(d.facility)
    .bind(d.terminal)
    .bind(d.session_id)
    .bind(d.card)
    .bind(d.category)
    .bind(d.justification)
    .bind(status::CHOOSE_PATIENT)
    .bind(i64::from(d.allows_write))
    .bind(d.hours)
    .bind(i64::from(d.ends_with_session))
    .bind(i64::from(d.follow_up_required))
    .bind(now())
    .bind(d.draft_expires_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Declaration>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM break_glass WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    r.as_ref().map(row).transpose()
}

/// Declarations by the newest first, optionally only those in `statuses` or of one patient.
pub async fn list(
    store: &Store,
    statuses: &[&str],
    patient: Option<&str>,
    limit: i64,
) -> Result<Vec<Declaration>> {
    if statuses
        .iter()
        .any(|s| !s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        bail!("not a declaration status: {statuses:?}");
    }
    let in_status = if statuses.is_empty() {
        String::new()
    } else {
        format!("AND status IN ('{}')", statuses.join("', '"))
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM break_glass WHERE ($1 IS NULL OR patient_id = $1) {in_status}
         ORDER BY created_at DESC LIMIT $2"
    )))
    .bind(patient)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// The grants a patient has now (active or awaiting approval), for the in-memory view.
pub async fn for_patient(store: &Store, patient: Option<&str>) -> Result<Vec<Declaration>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM break_glass WHERE status = 'active' AND expires_at > $1
           AND ($2 IS NULL OR patient_id = $2)"
    )))
    .bind(now())
    .bind(patient)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Sets the patient of a draft (by its own session) and the nonce the card will sign over;
/// false if the draft is not in a state for it.
#[allow(clippy::too_many_arguments)]
pub async fn choose_patient(
    store: &Store,
    id: &str,
    session_id: &str,
    patient: &str,
    outside_care_team: bool,
    nonce_hash: &str,
    declared_at_text: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE break_glass SET patient_id = $1, outside_care_team = $2, nonce_hash = $3,
           declared_at_text = $4, status = 'awaiting_signature'
         WHERE id = $5 AND session_id = $6 AND status IN ('choose_patient', 'awaiting_signature')
           AND draft_expires_at > $7",
    )
    .bind(patient)
    .bind(i64::from(outside_care_team))
    .bind(nonce_hash)
    .bind(declared_at_text)
    .bind(id)
    .bind(session_id)
    .bind(now())
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records the card's signature and moves the declaration on: to `active` from `starts_at`
/// for `hours`, or to `awaiting_approval`. Single use: the nonce is cleared in the same
/// statement, so a replayed signature finds nothing to sign. False if it was not awaiting it.
#[allow(clippy::too_many_arguments)]
pub async fn signed(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    session_id: &str,
    nonce_hash: &str,
    signed_text: &str,
    certificate: &str,
    signature: &str,
    needs_approval: bool,
) -> Result<bool> {
    let t = now();
    let n = sqlx::query(
        "UPDATE break_glass SET signed_text = $1, certificate = $2, signature = $3, nonce_hash = NULL,
           declared_at = $4,
           status = CASE WHEN $5 = 1 THEN 'awaiting_approval' ELSE 'active' END,
           starts_at = CASE WHEN $5 = 1 THEN NULL ELSE $4 END,
           expires_at = CASE WHEN $5 = 1 THEN NULL ELSE $4 + hours * 3600 END
         WHERE id = $6 AND session_id = $7 AND nonce_hash = $8 AND status = 'awaiting_signature'
           AND draft_expires_at > $4",
    )
    .bind(signed_text)
    .bind(certificate)
    .bind(signature)
    .bind(t)
    .bind(i64::from(needs_approval))
    .bind(id)
    .bind(session_id)
    .bind(nonce_hash)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A second person's approval starts the grant; `approve = false` rejects it.
pub async fn decide_approval(store: &Store, id: &str, by: &str, approve: bool) -> Result<bool> {
    let t = now();
    let n = sqlx::query(
        "UPDATE break_glass SET approved_by = $1, approved_at = $2,
           status = CASE WHEN $3 = 1 THEN 'active' ELSE 'rejected' END,
           starts_at = CASE WHEN $3 = 1 THEN $2 ELSE NULL END,
           expires_at = CASE WHEN $3 = 1 THEN $2 + hours * 3600 ELSE NULL END
         WHERE id = $4 AND status = 'awaiting_approval' AND user_id <> $1",
    )
    .bind(by)
    .bind(t)
    .bind(i64::from(approve))
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends a grant (or a pending one) early.
pub async fn end(store: &Store, id: &str, by: &str, reason: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE break_glass SET status = 'ended', ended_at = $1, ended_by = $2, end_reason = $3
         WHERE id = $4 AND status IN ('active', 'awaiting_approval', 'awaiting_signature', 'choose_patient')",
    )
    .bind(now())
    .bind(by)
    .bind(reason)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends the grants of sessions about to end (the caller's `WHERE` on `sessions`, with the
/// value as `$3`) whose category ends them with the session. Runs inside the session's own
/// transaction, before the sessions are marked ended.
pub(crate) async fn end_with_sessions(
    tx: &mut Transaction<'_, Any>,
    sessions_where: &str,
    value: &str,
    reason: &str,
) -> Result<u64> {
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE break_glass SET status = 'ended', ended_at = $1, ended_by = 'session', end_reason = $2
         WHERE ends_with_session = 1 AND status IN ('active', 'awaiting_approval')
           AND session_id IN (SELECT session_id FROM sessions WHERE {sessions_where} AND ended_at IS NULL)"
    )))
    .bind(now())
    .bind(reason)
    .bind(value)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n)
}

/// As [`end_with_sessions`], for one session that has just been ended (in the same
/// transaction).
pub(crate) async fn end_ended_session(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    reason: &str,
) -> Result<u64> {
    let n = sqlx::query(
        "UPDATE break_glass SET status = 'ended', ended_at = $1, ended_by = 'session', end_reason = $2
         WHERE ends_with_session = 1 AND status IN ('active', 'awaiting_approval') AND session_id = $3",
    )
    .bind(now())
    .bind(reason)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n)
}

/// Grants past their time become `expired`, drafts never signed too; grants whose category
/// ends them with the session end when that session ran out of time (a session ended by
/// sign-out or card removal ends them at once: [`end_with_sessions`]). Returns how many.
pub async fn expire(store: &Store) -> Result<u64> {
    let t = now();
    let n = sqlx::query(
        "UPDATE break_glass SET status = 'expired'
         WHERE (status = 'active' AND expires_at <= $1)
            OR (status IN ('choose_patient', 'awaiting_signature') AND draft_expires_at <= $1)",
    )
    .bind(t)
    .execute(store.pool())
    .await?
    .rows_affected();
    let ended = sqlx::query(
        "UPDATE break_glass SET status = 'ended', ended_at = $1, ended_by = 'session',
                end_reason = 'session_expired'
         WHERE ends_with_session = 1 AND status IN ('active', 'awaiting_approval')
           AND session_id IN (SELECT session_id FROM sessions
                              WHERE ended_at IS NOT NULL OR absolute_expires_at <= $1)",
    )
    .bind(t)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n + ended)
}

/// The follow-up the physician recorded (004 (ウ): the patient's permission afterwards).
pub async fn follow_up(
    store: &Store,
    id: &str,
    user_id: &str,
    kind: &str,
    sha256: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE break_glass SET follow_up_at = $1, follow_up_kind = $2, follow_up_sha256 = $3, follow_up_by = $4
         WHERE id = $5 AND user_id = $4 AND declared_at IS NOT NULL",
    )
    .bind(now())
    .bind(kind)
    .bind(sha256)
    .bind(user_id)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An officer's finding; never by the declaring physician.
pub async fn review(
    store: &Store,
    id: &str,
    by: &str,
    finding: &str,
    comment: &str,
) -> Result<bool> {
    if !FINDINGS.contains(&finding) {
        bail!("finding must be one of {}", FINDINGS.join(", "));
    }
    let n = sqlx::query(
        "UPDATE break_glass SET review_finding = $1, reviewed_by = $2, reviewed_at = $3, review_comment = $4
         WHERE id = $5 AND user_id <> $2 AND declared_at IS NOT NULL",
    )
    .bind(finding)
    .bind(by)
    .bind(now())
    .bind(comment)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Declarations recorded more than `days` ago and still unreviewed, not notified again in the
/// last `days`; marks them notified now.
pub async fn take_unreviewed(store: &Store, days: i64) -> Result<Vec<Declaration>> {
    let t = now();
    let cutoff = t - days * 86_400;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE break_glass SET renotified_at = $1
         WHERE declared_at IS NOT NULL AND declared_at < $2 AND review_finding IS NULL
           AND (renotified_at IS NULL OR renotified_at < $2)
         RETURNING {COLUMNS}"
    )))
    .bind(t)
    .bind(cutoff)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// What the officers' queue shows: every signed declaration not reviewed yet, and every one
/// that is active or waits for approval, newest first.
pub async fn needing_attention(store: &Store) -> Result<Vec<Declaration>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM break_glass WHERE declared_at IS NOT NULL
           AND (review_finding IS NULL OR status IN ('active', 'awaiting_approval'))
         ORDER BY declared_at DESC"
    )))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

/// Counts for the statistics: declarations since `since`, by who, where and why, and how many
/// were for patients outside the physician's care teams.
pub async fn since(store: &Store, since: i64) -> Result<Vec<Declaration>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM break_glass WHERE declared_at IS NOT NULL AND declared_at >= $1
         ORDER BY declared_at"
    )))
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    fn new<'a>(id: &'a str, session: &'a str, ends_with_session: bool) -> NewDeclaration<'a> {
        NewDeclaration {
            id,
            user_id: "doc1",
            facility: "f1",
            terminal: "t1",
            session_id: session,
            card: "issuer|01",
            category: "unconscious",
            justification: "unconscious on arrival",
            allows_write: false,
            hours: 4,
            ends_with_session,
            follow_up_required: true,
            draft_expires_at: now() + 600,
        }
    }

    /// doc1's card session `sid` on `terminal`, open for an hour.
    async fn open_session(s: &Store, sid: &str, terminal: &str) {
        let mut tx = s.begin_write().await.unwrap();
        crate::sessions::open(
            &mut tx,
            &crate::sessions::SessionRow {
                session_id: sid.into(),
                terminal: terminal.into(),
                user_id: "doc1".into(),
                method: "hpki".into(),
                qualification: None,
                absolute_expires_at: now() + 3600,
                card: Some("issuer|01".into()),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    async fn sign(s: &Store, id: &str, session: &str, approval: bool) -> bool {
        let mut tx = s.begin_write().await.unwrap();
        let ok = signed(&mut tx, id, session, "n1", "text", "cert", "sig", approval)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ok
    }

    #[tokio::test]
    async fn a_declaration_goes_from_draft_to_grant_to_review_once_each() {
        for db in TestDb::both().await {
            let s = &db.store;
            begin(s, &new("bg-1", "s1", false)).await.unwrap();
            // Not signable before a patient is chosen, and only by its own session.
            assert!(!sign(s, "bg-1", "s1", false).await);
            assert!(
                !choose_patient(s, "bg-1", "s2", "P1", true, "n1", "t")
                    .await
                    .unwrap()
            );
            assert!(
                choose_patient(s, "bg-1", "s1", "P1", true, "n1", "t")
                    .await
                    .unwrap()
            );
            assert!(!sign(s, "bg-1", "s2", false).await, "another session");
            assert!(sign(s, "bg-1", "s1", false).await);
            assert!(!sign(s, "bg-1", "s1", false).await, "a replayed signature");
            let d = get(s, "bg-1").await.unwrap().unwrap();
            assert_eq!(d.status, status::ACTIVE);
            assert!(d.grants_at(now()));
            assert_eq!(d.expires_at.unwrap() - d.starts_at.unwrap(), 4 * 3600);
            assert_eq!(d.outside_care_team, Some(true));
            assert_eq!(for_patient(s, Some("P1")).await.unwrap().len(), 1);
            // The follow-up flag: overdue after the configured hours, cleared once recorded.
            assert!(!d.follow_up_overdue(now(), 24));
            assert!(d.follow_up_overdue(now() + 25 * 3600, 24));
            assert!(
                !follow_up(s, "bg-1", "doc2", "signature", "ab")
                    .await
                    .unwrap()
            );
            assert!(
                follow_up(s, "bg-1", "doc1", "signature", "ab")
                    .await
                    .unwrap()
            );
            let d = get(s, "bg-1").await.unwrap().unwrap();
            assert!(!d.follow_up_overdue(now() + 25 * 3600, 24));
            // Reviews: never by the declaring physician.
            assert!(!review(s, "bg-1", "doc1", "justified", "").await.unwrap());
            assert!(
                review(s, "bg-1", "officer1", "justified", "ok")
                    .await
                    .unwrap()
            );
            assert!(review(s, "bg-1", "officer1", "sloppy", "").await.is_err());
            // Ended early: no longer a grant.
            assert!(end(s, "bg-1", "officer1", "done").await.unwrap());
            assert!(!end(s, "bg-1", "officer1", "again").await.unwrap());
            assert!(for_patient(s, Some("P1")).await.unwrap().is_empty());
            assert_eq!(list(s, &[status::ENDED], None, 10).await.unwrap().len(), 1);
            assert!(list(s, &["bad status"], None, 10).await.is_err());
        }
    }

    #[tokio::test]
    async fn approval_starts_the_grant_and_the_session_end_ends_it_where_the_category_says() {
        for db in TestDb::both().await {
            let s = &db.store;
            begin(s, &new("bg-2", "s1", true)).await.unwrap();
            assert!(
                choose_patient(s, "bg-2", "s1", "P2", false, "n1", "t")
                    .await
                    .unwrap()
            );
            assert!(sign(s, "bg-2", "s1", true).await);
            let d = get(s, "bg-2").await.unwrap().unwrap();
            assert_eq!(d.status, status::AWAITING_APPROVAL);
            assert!(!d.grants_at(now()));
            assert!(
                !decide_approval(s, "bg-2", "doc1", true).await.unwrap(),
                "not by the declarer"
            );
            assert!(decide_approval(s, "bg-2", "officer1", true).await.unwrap());
            assert!(get(s, "bg-2").await.unwrap().unwrap().grants_at(now()));
            // The session it was declared in ends: so does the grant (this category says so).
            sqlx::query("INSERT INTO users (user_id, name, facility, roles, status, created_at, updated_at) VALUES ('doc1', 'd', 'f1', 'physician', 'active', 0, 0)")
                .execute(s.pool())
                .await
                .unwrap();
            open_session(s, "s1", "t1").await;
            let mut tx = s.begin_write().await.unwrap();
            crate::sessions::end_for_terminal(&mut tx, "t1", "card_removed")
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let d = get(s, "bg-2").await.unwrap().unwrap();
            assert_eq!(d.status, status::ENDED);
            assert_eq!(d.ended_by.as_deref(), Some("session"));
            // A session that runs out of time (no sign-out) ends such a grant at the next
            // expiry pass; one that does not end with the session is left alone.
            open_session(s, "s5", "t5").await;
            open_session(s, "s6", "t6").await;
            for (id, sid, ends) in [("bg-5", "s5", true), ("bg-6", "s6", false)] {
                begin(s, &new(id, sid, ends)).await.unwrap();
                assert!(
                    choose_patient(s, id, sid, "P5", false, "n1", "t")
                        .await
                        .unwrap()
                );
                assert!(sign(s, id, sid, false).await);
            }
            assert_eq!(expire(s).await.unwrap(), 0, "both sessions still open");
            sqlx::query(
                "UPDATE sessions SET absolute_expires_at = $1 WHERE session_id IN ('s5', 's6')",
            )
            .bind(now() - 1)
            .execute(s.pool())
            .await
            .unwrap();
            assert_eq!(expire(s).await.unwrap(), 1);
            let d = get(s, "bg-5").await.unwrap().unwrap();
            assert_eq!(d.status, status::ENDED);
            assert_eq!(d.end_reason.as_deref(), Some("session_expired"));
            assert_eq!(
                get(s, "bg-6").await.unwrap().unwrap().status,
                status::ACTIVE
            );
            // Drafts never signed expire.
            begin(
                s,
                &NewDeclaration {
                    draft_expires_at: now() - 1,
                    ..new("bg-3", "s9", false)
                },
            )
            .await
            .unwrap();
            assert_eq!(expire(s).await.unwrap(), 1);
            assert_eq!(
                get(s, "bg-3").await.unwrap().unwrap().status,
                status::EXPIRED
            );
        }
    }
}
