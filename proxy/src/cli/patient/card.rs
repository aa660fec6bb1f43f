//! `sekisho patient card …`: patient IC cards (R-PAT-2), issued by Sekisho's patient-card CA;
//! a card opens consent windows at the gateway until it is revoked.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::record;
use crate::cli::admin_audit::{Operator, change};
use crate::cli::data_dir::open;
use sekisho_store::consent as consent_rows;
use sekisho_store::patients;

#[derive(Subcommand, Debug)]
pub enum CardCmd {
    /// Issue a patient card: a key and a certificate from Sekisho's patient-card CA (made on
    /// first use), written to --out as patient-card.key (0600) and patient-card.crt for the
    /// card personalisation, and registered as the patient's active card.
    Issue {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
        /// A directory that does not exist yet.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1826)]
        lifetime_days: u32,
    },
    /// Revoke a card (lost, replaced): it opens no more windows, and the windows it opened close.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        serial: String,
    },
    List {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: Option<String>,
    },
}

pub(super) async fn run(cmd: CardCmd, op: &Operator) -> Result<i32> {
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
            let rec = record(
                "patient_card_issued",
                &patient,
                Some(format!("card {}", cert.serial_hex)),
            );
            let issued = change(&dd, &cfg, &store, op, rec, async {
                consent_rows::insert_card(
                    &store,
                    &cert.serial_hex,
                    &patient,
                    cert.not_after.unix_timestamp(),
                    &op.actor()?,
                )
                .await?;
                std::fs::rename(&staging, &out)?;
                Ok(())
            })
            .await;
            if let Err(e) = issued {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
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
            if row.revoked_at.is_some() {
                println!("Patient card {serial} was already revoked.");
                return Ok(0);
            }
            let rec = record(
                "patient_card_revoked",
                &row.patient_id,
                Some(format!("card {serial}")),
            );
            change(&dd, &cfg, &store, op, rec, async {
                if !consent_rows::revoke_card(&store, &serial, &op.actor()?).await? {
                    bail!("patient card {serial} was revoked meanwhile");
                }
                Ok(())
            })
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
