//! Patients, consent (R-PAT-1) and care teams (R-PAT-3). Every change is one transaction and
//! leaves a consent event; a withdrawal is seen by the very next request (decisions read the
//! store, nothing is cached).

use anyhow::{Result, bail};
use sqlx::{Any, Row, Transaction};

use super::{Store, now};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    None,
    Granted,
    Withdrawn,
    Suspended,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::None => "none",
            Consent::Granted => "granted",
            Consent::Withdrawn => "withdrawn",
            Consent::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Result<Consent> {
        Ok(match s {
            "none" => Consent::None,
            "granted" => Consent::Granted,
            "withdrawn" => Consent::Withdrawn,
            "suspended" => Consent::Suspended,
            other => bail!("unknown consent state {other:?} (granted, withdrawn, suspended, none)"),
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct NewPatient {
    pub patient_id: String,
    pub name: String,
    pub kana: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// (facility, local id) pairs.
    pub local_ids: Vec<(String, String)>,
    pub consent: Option<String>,
}

/// What a decision needs about one patient: consent and care team, nothing else.
#[derive(Clone, Debug)]
pub struct PatientFacts {
    pub patient_id: String,
    pub consent: Consent,
    pub care_team_users: Vec<String>,
    pub care_team_facilities: Vec<String>,
}

pub async fn insert(tx: &mut Transaction<'_, Any>, p: &NewPatient, by: &str) -> Result<()> {
    let consent = Consent::parse(p.consent.as_deref().unwrap_or("none"))?;
    let t = now();
    sqlx::query(
        "INSERT INTO patients (patient_id, name, kana, birth_date, sex, consent, consent_changed_at, consent_changed_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)",
    )
    .bind(&p.patient_id)
    .bind(&p.name)
    .bind(&p.kana)
    .bind(&p.birth_date)
    .bind(&p.sex)
    .bind(consent.as_str())
    .bind(t)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    for (facility, local) in &p.local_ids {
        sqlx::query(
            "INSERT INTO patient_local_ids (facility, local_id, patient_id) VALUES ($1, $2, $3)",
        )
        .bind(facility)
        .bind(local)
        .bind(&p.patient_id)
        .execute(&mut **tx)
        .await?;
    }
    event(tx, &p.patient_id, consent, by, Some("registered")).await
}

async fn event(
    tx: &mut Transaction<'_, Any>,
    patient: &str,
    c: Consent,
    by: &str,
    note: Option<&str>,
) -> Result<()> {
    sqlx::query("INSERT INTO consent_events (patient_id, consent, at, by_whom, note) VALUES ($1, $2, $3, $4, $5)")
        .bind(patient)
        .bind(c.as_str())
        .bind(now())
        .bind(by)
        .bind(note)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets the consent state; false if there is no such patient.
pub async fn set_consent(
    store: &Store,
    patient: &str,
    c: Consent,
    by: &str,
    note: Option<&str>,
) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let n = sqlx::query("UPDATE patients SET consent = $1, consent_changed_at = $2, consent_changed_by = $3 WHERE patient_id = $4")
        .bind(c.as_str())
        .bind(now())
        .bind(by)
        .bind(patient)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    event(&mut tx, patient, c, by, note).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn facts(store: &Store, patient: &str) -> Result<Option<PatientFacts>> {
    // One round trip: the patient's row joined with its care team (one row per member, or one
    // row with no member).
    let rows = sqlx::query(
        "SELECT p.consent, c.member_kind, c.member FROM patients p
         LEFT JOIN care_team c ON c.patient_id = p.patient_id WHERE p.patient_id = $1",
    )
    .bind(patient)
    .fetch_all(store.pool())
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let consent = Consent::parse(&first.try_get::<String, _>("consent")?)?;
    let (mut users, mut facilities) = (Vec::new(), Vec::new());
    for r in &rows {
        let kind: Option<String> = r.try_get("member_kind")?;
        let member: Option<String> = r.try_get("member")?;
        match (kind.as_deref(), member) {
            (Some("user"), Some(m)) => users.push(m),
            (Some("facility"), Some(m)) => facilities.push(m),
            _ => {}
        }
    }
    Ok(Some(PatientFacts {
        patient_id: patient.to_string(),
        consent,
        care_team_users: users,
        care_team_facilities: facilities,
    }))
}

/// Every patient's facts, for a gateway that keeps them in memory: two queries, whatever the
/// number of patients.
pub async fn all_facts(store: &Store) -> Result<Vec<PatientFacts>> {
    let mut by_id = std::collections::HashMap::new();
    let mut order = Vec::new();
    for r in sqlx::query("SELECT patient_id, consent FROM patients")
        .fetch_all(store.pool())
        .await?
    {
        let id: String = r.try_get("patient_id")?;
        let consent = Consent::parse(&r.try_get::<String, _>("consent")?)?;
        order.push(id.clone());
        by_id.insert(
            id.clone(),
            PatientFacts {
                patient_id: id,
                consent,
                care_team_users: Vec::new(),
                care_team_facilities: Vec::new(),
            },
        );
    }
    for r in sqlx::query("SELECT patient_id, member_kind, member FROM care_team")
        .fetch_all(store.pool())
        .await?
    {
        let id: String = r.try_get("patient_id")?;
        let kind: String = r.try_get("member_kind")?;
        let member: String = r.try_get("member")?;
        if let Some(f) = by_id.get_mut(&id) {
            match kind.as_str() {
                "user" => f.care_team_users.push(member),
                "facility" => f.care_team_facilities.push(member),
                _ => {}
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect())
}

pub async fn care_team_change(
    store: &Store,
    patient: &str,
    kind: &str,
    member: &str,
    add: bool,
    by: &str,
) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let exists = sqlx::query("SELECT 1 FROM patients WHERE patient_id = $1")
        .bind(patient)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        bail!("no patient {patient:?} (see `sekisho patient list`)");
    }
    let n = if add {
        sqlx::query(
            "INSERT INTO care_team (patient_id, member_kind, member, added_at, added_by) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (patient_id, member_kind, member) DO NOTHING",
        )
        .bind(patient)
        .bind(kind)
        .bind(member)
        .bind(now())
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
    } else {
        sqlx::query(
            "DELETE FROM care_team WHERE patient_id = $1 AND member_kind = $2 AND member = $3",
        )
        .bind(patient)
        .bind(kind)
        .bind(member)
        .execute(&mut *tx)
        .await?
        .rows_affected()
    };
    tx.commit().await?;
    Ok(n > 0)
}

#[derive(Clone, Debug)]
pub struct PatientRow {
    pub patient_id: String,
    pub name: String,
    pub consent: String,
    pub care_team: usize,
}

pub async fn list(store: &Store) -> Result<Vec<PatientRow>> {
    let rows = sqlx::query(
        "SELECT p.patient_id, p.name, p.consent, (SELECT COUNT(*) FROM care_team c WHERE c.patient_id = p.patient_id) AS team
         FROM patients p ORDER BY p.patient_id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PatientRow {
                patient_id: r.try_get("patient_id")?,
                name: r.try_get("name")?,
                consent: r.try_get("consent")?,
                care_team: r.try_get::<i64, _>("team")? as usize,
            })
        })
        .collect()
}

pub async fn care_team(store: &Store, patient: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT member_kind, member FROM care_team WHERE patient_id = $1 ORDER BY member_kind, member")
        .bind(patient)
        .fetch_all(store.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("member_kind")?, r.try_get("member")?)))
        .collect()
}

/// A patient found by name (for an emergency declaration: R-BG-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameMatch {
    pub patient_id: String,
    pub name: String,
    pub kana: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
}

/// Patients whose name or kana contains `q`, spaces (half- and full-width) ignored on both
/// sides; at most `limit`, by id.
pub async fn search_by_name(store: &Store, q: &str, limit: i64) -> Result<Vec<NameMatch>> {
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != ' ' && *c != '\u{3000}')
            .collect()
    };
    // LIKE wildcards in the query are literal text.
    let needle = format!(
        "%{}%",
        squeeze(q)
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "SELECT patient_id, name, kana, birth_date, sex FROM patients
         WHERE REPLACE(REPLACE(name, ' ', ''), '\u{3000}', '') LIKE $1 ESCAPE '\\'
            OR REPLACE(REPLACE(COALESCE(kana, ''), ' ', ''), '\u{3000}', '') LIKE $1 ESCAPE '\\'
         ORDER BY patient_id LIMIT $2",
    )
    .bind(needle)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(NameMatch {
                patient_id: r.try_get("patient_id")?,
                name: r.try_get("name")?,
                kana: r.try_get("kana")?,
                birth_date: r.try_get("birth_date")?,
                sex: r.try_get("sex")?,
            })
        })
        .collect()
}
