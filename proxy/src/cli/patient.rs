//! `sekisho patient …`: the consent registry (R-PAT-1), with patient cards (`card`) and lists
//! of patients to import (`import`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use sekisho_audit::AuditRecord;
use sekisho_store::consent as consent_rows;
use sekisho_store::patients::{self, Consent, NewPatient};

mod card;
mod import;

pub use card::CardCmd;

#[derive(Subcommand, Debug)]
pub enum PatientCmd {
    /// Register a patient (consent "none" unless --consent granted).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        kana: Option<String>,
        /// YYYY-MM-DD
        #[arg(long)]
        birth_date: Option<String>,
        /// M, F or O
        #[arg(long)]
        sex: Option<String>,
        /// A facility-local id, FACILITY:ID (repeatable).
        #[arg(long = "local-id")]
        local_ids: Vec<String>,
        #[arg(long)]
        consent: Option<String>,
    },
    /// Record the patient's consent (sharing starts).
    Consent {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record a withdrawal: the next request for this patient is refused.
    Withdraw {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Patient IC cards (R-PAT-2): issue, revoke, list.
    #[command(subcommand)]
    Card(CardCmd),
    /// Import patients from CSV (header: patient_id,name,kana,birth_date,sex,consent,local_ids)
    /// or JSON (an array of objects with those keys; local_ids "FAC:ID;FAC:ID"). Every row is
    /// checked first; one bad row and nothing is imported.
    Import {
        #[arg(long)]
        data_dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
}

/// The audit record of a change to a patient's entry, care team or cards.
pub(super) fn record(reason: &str, patient: &str, detail: Option<String>) -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Registry,
        patient: Some(patient.to_string()),
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

pub(super) async fn run(cmd: PatientCmd, op: &Operator) -> Result<i32> {
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
            let rec = record(
                "patient_added",
                &id,
                p.consent.clone().map(|c| format!("consent {c}")),
            );
            change(&dd, &cfg, &store, op, rec, async {
                let mut tx = store.begin_write().await?;
                patients::insert(&mut tx, &p, &op.actor()?)
                    .await
                    .with_context(|| format!("cannot add patient {id} (already registered?)"))?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            println!(
                "Patient {id} registered (consent: {}).",
                p.consent.as_deref().unwrap_or("none")
            );
            Ok(0)
        }
        PatientCmd::Consent { data_dir, id, note } => {
            consent(&data_dir, &id, Consent::Granted, note, op).await
        }
        PatientCmd::Withdraw { data_dir, id, note } => {
            consent(&data_dir, &id, Consent::Withdrawn, note, op).await
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
        } => import::run(&data_dir, &file, dry_run, op).await,
        PatientCmd::Card(cmd) => card::run(cmd, op).await,
    }
}

async fn consent(
    data_dir: &std::path::Path,
    id: &str,
    c: Consent,
    note: Option<String>,
    op: &Operator,
) -> Result<i32> {
    let (dd, cfg, store) = open(data_dir).await?;
    if patients::facts(&store, id).await?.is_none() {
        bail!("no patient {id:?} (see `sekisho patient list`)");
    }
    let reason = if c == Consent::Granted {
        "consent_granted"
    } else {
        "consent_withdrawn"
    };
    let rec = record(reason, id, note.clone());
    change(&dd, &cfg, &store, op, rec, async {
        if !patients::set_consent(&store, id, c, &op.actor()?, note.as_deref()).await? {
            bail!("no patient {id:?} (see `sekisho patient list`)");
        }
        if c != Consent::Granted {
            // A window opened before the withdrawal must not come back with a later consent.
            consent_rows::close_windows_for_patient(&store, id).await?;
        }
        Ok(())
    })
    .await?;
    println!(
        "Patient {id}: consent {}. This applies to the next request.",
        c.as_str()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
