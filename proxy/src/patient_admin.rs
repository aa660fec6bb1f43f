//! `sekisho patient …` and `sekisho careteam …`: the consent registry (R-PAT-1) and care teams
//! (R-PAT-3). Imports are all-or-nothing: every row is checked, bad rows are reported with their
//! line, and one bad row means nothing is written.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context, Result, bail};

use crate::cli::{CardCmd, CareteamCmd, PatientCmd, actor, audit_admin, open};
use sekisho_audit::AuditRecord;
use sekisho_store::consent as consent_rows;
use sekisho_store::patients::{self, Consent, NewPatient};

fn record(reason: &str, patient: &str, detail: Option<String>) -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Registry,
        patient: Some(patient.to_string()),
        user: Some(actor()),
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        detail,
        ..Default::default()
    }
}

/// Checks one patient; the error says what is wrong in words a clerk can fix.
fn check(p: &NewPatient) -> Result<(), String> {
    if !sekisho_policies::is_valid_patient_id(&p.patient_id) {
        return Err(format!(
            "patient id {:?}: letters, digits, '.', '_' or '-', at most 64",
            p.patient_id
        ));
    }
    let text_ok = |s: &str| {
        !s.trim().is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
    };
    if !text_ok(&p.name) {
        return Err("name: 1 to 128 characters without control characters".into());
    }
    if let Some(k) = &p.kana
        && !k.is_empty()
        && !text_ok(k)
    {
        return Err("kana: at most 128 characters without control characters".into());
    }
    if let Some(d) = p.birth_date.as_deref().filter(|d| !d.is_empty()) {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        if time::Date::parse(d, &fmt).is_err() {
            return Err(format!("birth date {d:?}: use YYYY-MM-DD"));
        }
    }
    if let Some(s) = p.sex.as_deref().filter(|s| !s.is_empty())
        && !matches!(s, "M" | "F" | "O")
    {
        return Err(format!("sex {s:?}: M, F or O"));
    }
    if let Some(c) = p.consent.as_deref().filter(|c| !c.is_empty()) {
        Consent::parse(c).map_err(|e| e.to_string())?;
    }
    for (f, id) in &p.local_ids {
        if sekisho_ca::TerminalId::new(f, "x").is_err()
            || id.is_empty()
            || id.len() > 64
            || id.chars().any(char::is_control)
        {
            return Err(format!(
                "local id {f}:{id}: FACILITY:ID with a valid facility id"
            ));
        }
    }
    Ok(())
}

fn parse_local_ids(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.split_once(':')
                .map(|(f, i)| (f.to_string(), i.to_string()))
                .ok_or_else(|| format!("local id {x:?}: FACILITY:ID"))
        })
        .collect()
}

pub async fn patient(cmd: PatientCmd) -> Result<i32> {
    match cmd {
        PatientCmd::Add {
            data_dir,
            id,
            name,
            kana,
            birth_date,
            sex,
            local_ids,
            consent,
        } => {
            let local_ids = parse_local_ids(&local_ids.join(";")).map_err(anyhow::Error::msg)?;
            let p = NewPatient {
                patient_id: id.clone(),
                name,
                kana,
                birth_date,
                sex,
                local_ids,
                consent,
            };
            check(&p).map_err(anyhow::Error::msg)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            let mut tx = store.pool().begin().await?;
            patients::insert(&mut tx, &p, &actor())
                .await
                .with_context(|| format!("cannot add patient {id} (already registered?)"))?;
            tx.commit().await?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                record(
                    "patient_added",
                    &id,
                    p.consent.clone().map(|c| format!("consent {c}")),
                ),
            )
            .await?;
            println!(
                "Patient {id} registered (consent: {}).",
                p.consent.as_deref().unwrap_or("none")
            );
            Ok(0)
        }
        PatientCmd::Consent { data_dir, id, note } => {
            consent(&data_dir, &id, Consent::Granted, note).await
        }
        PatientCmd::Withdraw { data_dir, id, note } => {
            consent(&data_dir, &id, Consent::Withdrawn, note).await
        }
        PatientCmd::List { data_dir } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:<10} {:>5}  NAME",
                "PATIENT", "CONSENT", "TEAM"
            )?;
            for p in patients::list(&store).await? {
                writeln!(
                    out,
                    "{:<24} {:<10} {:>5}  {}",
                    p.patient_id, p.consent, p.care_team, p.name
                )?;
            }
            Ok(0)
        }
        PatientCmd::Import {
            data_dir,
            file,
            dry_run,
        } => import(&data_dir, &file, dry_run).await,
        PatientCmd::Card(cmd) => card(cmd).await,
    }
}

async fn card(cmd: CardCmd) -> Result<i32> {
    match cmd {
        CardCmd::Issue {
            data_dir,
            patient,
            out,
            lifetime_days,
        } => {
            if !sekisho_policies::is_valid_patient_id(&patient) {
                bail!("{patient:?} is not a patient id (letters, digits, '.', '_', '-'; up to 64)");
            }
            if lifetime_days == 0 {
                bail!("--lifetime-days must be at least 1");
            }
            if out.exists() {
                bail!("{} exists already; give a new directory", out.display());
            }
            let (dd, cfg, store) = open(&data_dir).await?;
            if patients::facts(&store, &patient).await?.is_none() {
                bail!("no patient {patient:?} (see `sekisho patient list`)");
            }
            let ca = sekisho_ca::patient_card::ensure_patient_card_ca(
                &dd.ca_dir(),
                crate::config::ca_passphrase().as_deref(),
            )
            .context("cannot load or create the patient-card CA (if the CA keys are encrypted, set SEKISHO_CA_PASSPHRASE)")?;
            let (cert, key) = ca.issue_patient_card(
                &patient,
                std::time::Duration::from_secs(u64::from(lifetime_days) * 86_400),
            )?;
            // Files first, in a staging directory renamed into place: nothing half-written.
            let staging = out.with_extension("staging");
            std::fs::create_dir_all(&staging)
                .with_context(|| format!("cannot create {}", staging.display()))?;
            sekisho_ca::write_private_file(
                &staging.join("patient-card.key"),
                key.as_str().as_bytes(),
            )?;
            std::fs::write(staging.join("patient-card.crt"), cert.pem())?;
            std::fs::write(staging.join("patient-id"), format!("{patient}\n"))?;
            if let Err(e) = consent_rows::insert_card(
                &store,
                &cert.serial_hex,
                &patient,
                cert.not_after.unix_timestamp(),
                &actor(),
            )
            .await
            {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
            std::fs::rename(&staging, &out)?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                record(
                    "patient_card_issued",
                    &patient,
                    Some(format!("card {}", cert.serial_hex)),
                ),
            )
            .await?;
            println!(
                "Patient card {} issued for {patient} (valid until {}).\n  {}/patient-card.crt\n  {}/patient-card.key  (write it to the card, then destroy this copy)",
                cert.serial_hex,
                cert.not_after.date(),
                out.display(),
                out.display()
            );
            Ok(0)
        }
        CardCmd::Revoke { data_dir, serial } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let serial = serial.trim().to_ascii_lowercase().replace(':', "");
            let Some(row) = consent_rows::card(&store, &serial).await? else {
                bail!("no patient card {serial} (see `sekisho patient card list`)");
            };
            if !consent_rows::revoke_card(&store, &serial, &actor()).await? {
                println!("Patient card {serial} was already revoked.");
                return Ok(0);
            }
            audit_admin(
                &dd,
                &cfg,
                &store,
                record(
                    "patient_card_revoked",
                    &row.patient_id,
                    Some(format!("card {serial}")),
                ),
            )
            .await?;
            println!(
                "Patient card {serial} ({}) revoked; its consent windows are closed.",
                row.patient_id
            );
            Ok(0)
        }
        CardCmd::List { data_dir, patient } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<34} {:<24} {:<8} VALID UNTIL",
                "SERIAL", "PATIENT", "STATUS"
            )?;
            for c in consent_rows::cards(&store, patient.as_deref()).await? {
                let until = time::OffsetDateTime::from_unix_timestamp(c.not_after)
                    .map(|t| t.date().to_string())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<34} {:<24} {:<8} {until}",
                    c.serial, c.patient_id, c.status
                )?;
            }
            Ok(0)
        }
    }
}

async fn consent(
    data_dir: &std::path::Path,
    id: &str,
    c: Consent,
    note: Option<String>,
) -> Result<i32> {
    let (dd, cfg, store) = open(data_dir).await?;
    if !patients::set_consent(&store, id, c, &actor(), note.as_deref()).await? {
        bail!("no patient {id:?} (see `sekisho patient list`)");
    }
    if c != Consent::Granted {
        // A window opened before the withdrawal must not come back with a later consent.
        consent_rows::close_windows_for_patient(&store, id).await?;
    }
    let reason = if c == Consent::Granted {
        "consent_granted"
    } else {
        "consent_withdrawn"
    };
    audit_admin(&dd, &cfg, &store, record(reason, id, note)).await?;
    println!(
        "Patient {id}: consent {}. This applies to the next request.",
        c.as_str()
    );
    Ok(0)
}

/// Reads rows from CSV or JSON (by content), with the line each row came from.
fn read_rows(text: &str) -> Result<Vec<(usize, Result<NewPatient, String>)>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(trimmed).context("not a JSON array of objects")?;
        return Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let get = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let row = (|| {
                    Ok(NewPatient {
                        patient_id: get("patient_id").ok_or("patient_id is missing")?,
                        name: get("name").ok_or("name is missing")?,
                        kana: get("kana"),
                        birth_date: get("birth_date"),
                        sex: get("sex"),
                        consent: get("consent"),
                        local_ids: parse_local_ids(&get("local_ids").unwrap_or_default())?,
                    })
                })();
                (i + 1, row)
            })
            .collect());
    }
    let mut lines = csv_records(text).into_iter();
    let Some((_, header)) = lines.next() else {
        bail!("the file is empty")
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(id_c), Some(name_c)) = (col("patient_id"), col("name")) else {
        bail!("the CSV header needs at least patient_id and name");
    };
    let opt = |rec: &Vec<String>, c: Option<usize>| {
        c.and_then(|c| rec.get(c))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Ok(lines
        .map(|(line, rec)| {
            let row = (|| {
                Ok(NewPatient {
                    patient_id: rec
                        .get(id_c)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                    name: rec
                        .get(name_c)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                    kana: opt(&rec, col("kana")),
                    birth_date: opt(&rec, col("birth_date")),
                    sex: opt(&rec, col("sex")),
                    consent: opt(&rec, col("consent")),
                    local_ids: parse_local_ids(&opt(&rec, col("local_ids")).unwrap_or_default())?,
                })
            })();
            (line, row)
        })
        .collect())
}

/// RFC 4180 records with the line each starts on (quoted fields may hold commas, quotes and
/// newlines).
fn csv_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let (mut rec, mut field, mut quoted, mut line, mut start) =
        (Vec::new(), String::new(), false, 1usize, 1usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c)
            }
            (false, '"') => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                rec.push(std::mem::take(&mut field));
                if rec.iter().any(|f| !f.is_empty()) {
                    out.push((start, std::mem::take(&mut rec)));
                }
                rec.clear();
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push((start, rec));
    }
    out
}

async fn import(data_dir: &std::path::Path, file: &std::path::Path, dry_run: bool) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = read_rows(&text)?;
    let (dd, cfg, store) = open(data_dir).await?;
    let existing: HashSet<String> = patients::list(&store)
        .await?
        .into_iter()
        .map(|p| p.patient_id)
        .collect();
    let mut seen = HashSet::new();
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for (line, row) in rows {
        let verdict = row.and_then(|p| {
            check(&p)?;
            if existing.contains(&p.patient_id) {
                return Err(format!("patient {} is already registered", p.patient_id));
            }
            if !seen.insert(p.patient_id.clone()) {
                return Err(format!(
                    "patient {} appears twice in the file",
                    p.patient_id
                ));
            }
            Ok(p)
        });
        match verdict {
            Ok(p) => good.push(p),
            Err(e) => bad.push(format!("  {}:{line}: {e}", file.display())),
        }
    }
    if !bad.is_empty() {
        eprintln!("{} bad row(s); nothing was imported:", bad.len());
        for b in &bad {
            eprintln!("{b}");
        }
        return Ok(1);
    }
    if dry_run {
        println!(
            "{} row(s) checked; all can be imported (dry run: nothing written).",
            good.len()
        );
        return Ok(0);
    }
    let mut tx = store.pool().begin().await?;
    for p in &good {
        patients::insert(&mut tx, p, &actor())
            .await
            .with_context(|| format!("cannot import patient {}", p.patient_id))?;
    }
    tx.commit().await?;
    audit_admin(
        &dd,
        &cfg,
        &store,
        record(
            "patients_imported",
            "-",
            Some(format!("{} patients from {}", good.len(), file.display())),
        ),
    )
    .await?;
    println!("{} patient(s) imported.", good.len());
    Ok(0)
}

pub async fn careteam(cmd: CareteamCmd) -> Result<i32> {
    let member =
        |user: Option<String>, facility: Option<String>| -> Result<(&'static str, String)> {
            match (user, facility) {
                (Some(u), None) => Ok(("user", u)),
                (None, Some(f)) => Ok(("facility", f)),
                _ => bail!("give --user or --facility (one of them)"),
            }
        };
    match cmd {
        CareteamCmd::Add {
            data_dir,
            patient,
            user,
            facility,
        } => {
            let (kind, m) = member(user, facility)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            if kind == "user" && sekisho_store::users::get(&store, &m).await?.is_none() {
                bail!("no user {m:?} (see `sekisho user list`)");
            }
            let added =
                patients::care_team_change(&store, &patient, kind, &m, true, &actor()).await?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                record("care_team_added", &patient, Some(format!("{kind} {m}"))),
            )
            .await?;
            println!(
                "{} {m} {} the care team of {patient}.",
                kind,
                if added { "joined" } else { "was already in" }
            );
            Ok(0)
        }
        CareteamCmd::Remove {
            data_dir,
            patient,
            user,
            facility,
        } => {
            let (kind, m) = member(user, facility)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            if !patients::care_team_change(&store, &patient, kind, &m, false, &actor()).await? {
                bail!("{kind} {m} is not in the care team of {patient}");
            }
            audit_admin(
                &dd,
                &cfg,
                &store,
                record("care_team_removed", &patient, Some(format!("{kind} {m}"))),
            )
            .await?;
            println!(
                "{kind} {m} left the care team of {patient}; this applies to the next request."
            );
            Ok(0)
        }
        CareteamCmd::List { data_dir, patient } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            for (kind, m) in patients::care_team(&store, &patient).await? {
                println!("{kind:<9} {m}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_follow_rfc4180() {
        let r = csv_records("a,b\n\"x, \"\"y\"\"\",2\n\n\"multi\nline\",3\r\n");
        assert_eq!(r[0], (1, vec!["a".to_string(), "b".into()]));
        assert_eq!(r[1], (2, vec!["x, \"y\"".to_string(), "2".into()]));
        assert_eq!(r[2], (4, vec!["multi\nline".to_string(), "3".into()]));
    }

    #[test]
    fn rows_are_checked() {
        let ok = NewPatient {
            patient_id: "P-1".into(),
            name: "山田 花子".into(),
            birth_date: Some("1950-02-03".into()),
            sex: Some("F".into()),
            ..Default::default()
        };
        assert!(check(&ok).is_ok());
        assert!(
            check(&NewPatient {
                patient_id: "bad id".into(),
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            check(&NewPatient {
                birth_date: Some("1950/02/03".into()),
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            check(&NewPatient {
                sex: Some("X".into()),
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            check(&NewPatient {
                consent: Some("maybe".into()),
                ..ok.clone()
            })
            .is_err()
        );
        assert!(
            check(&NewPatient {
                name: "a\u{7}".into(),
                ..ok
            })
            .is_err()
        );
    }
}
