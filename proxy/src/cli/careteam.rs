//! `sekisho careteam …`: who may see a patient, the users and facilities of its care team
//! (R-PAT-3).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use super::patient::record;
use sekisho_store::patients;

#[derive(Subcommand, Debug)]
pub enum CareteamCmd {
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        facility: Option<String>,
    },
    Remove {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        facility: Option<String>,
    },
    List {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
    },
}

pub(super) async fn run(cmd: CareteamCmd, op: &Operator) -> Result<i32> {
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
            let rec = record("care_team_added", &patient, Some(format!("{kind} {m}")));
            let added = change(
                &dd,
                &cfg,
                &store,
                op,
                rec,
                patients::care_team_change(&store, &patient, kind, &m, true, &op.actor()?),
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
            let rec = record("care_team_removed", &patient, Some(format!("{kind} {m}")));
            let by = op.actor()?;
            change(&dd, &cfg, &store, op, rec, async {
                if !patients::care_team_change(&store, &patient, kind, &m, false, &by).await? {
                    bail!("{kind} {m} is not in the care team of {patient}");
                }
                Ok(())
            })
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
