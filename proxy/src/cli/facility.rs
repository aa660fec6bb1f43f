//! `sekisho facility …`: the facility registry (issue 13, R-LOG-3). Adding names a facility;
//! suspending (urgent, with a report afterwards), resuming and closing act on all of its
//! terminals and people at once. Each is the operator's act on record before it is made.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use crate::facilities::{change_status, check_note};
use crate::terminals::load_authority;
use sekisho_audit::AuditRecord;
use sekisho_store::facilities::{self as rows, Change, NewFacility};

#[derive(Subcommand, Debug)]
pub enum FacilityCmd {
    /// Register a facility (or name one a terminal or person already registered).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// The id terminals and people name it by: letters, digits, '.', '_', '-'.
        #[arg(long)]
        facility: String,
        /// Its name as people know it, e.g. 岡山中央病院.
        #[arg(long)]
        name: String,
        /// hospital, clinic, pharmacy, care-home, …
        #[arg(long)]
        kind: String,
        /// Whom the secretariat calls: a person, a telephone number.
        #[arg(long)]
        contact: Option<String>,
    },
    /// List facilities with their status, terminals and people.
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Suspend a facility at once: its terminals are refused and their connections closed, its
    /// people's sessions end and they cannot sign in, until it is resumed.
    Suspend {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        facility: String,
        /// Why: on record with the change.
        #[arg(long)]
        reason: String,
    },
    /// Lift a facility's suspension.
    Resume {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        facility: String,
        #[arg(long)]
        reason: String,
    },
    /// Close a facility for good (it left the network): as suspending, and its terminals'
    /// certificates are revoked (cessation of operation) on a new CRL.
    Close {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        facility: String,
        #[arg(long)]
        reason: String,
    },
}

pub(super) async fn run(cmd: FacilityCmd, op: &Operator) -> Result<i32> {
    match cmd {
        FacilityCmd::Add {
            data_dir,
            facility,
            name,
            kind,
            contact,
        } => {
            if !sekisho_protocol::ids::is_valid_id(&facility) {
                bail!("a facility id is 1 to 64 letters, digits, '.', '_' or '-'");
            }
            let name = one_line("--name", &name, 200)?;
            let kind = one_line("--kind", &kind, 40)?;
            let contact = contact
                .as_deref()
                .map(|c| one_line("--contact", c, 200))
                .transpose()?;
            let (dd, cfg, store) = open(&data_dir).await?;
            let rec = record("facility_added", &facility, format!("{name} ({kind})"));
            let new = NewFacility {
                facility: &facility,
                name,
                kind,
                contact,
            };
            change(&dd, &cfg, &store, op, rec, rows::add(&store, &new)).await?;
            println!("Facility {facility} registered: {name} ({kind}).");
            Ok(0)
        }
        FacilityCmd::List { data_dir } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<20} {:<10} {:<12} {:>9} {:>6}  NAME",
                "FACILITY", "STATUS", "KIND", "TERMINALS", "PEOPLE"
            )?;
            for f in rows::list(&store).await? {
                writeln!(
                    out,
                    "{:<20} {:<10} {:<12} {:>9} {:>6}  {}",
                    f.facility,
                    f.status.as_str(),
                    f.kind,
                    f.terminals,
                    f.people,
                    f.name
                )?;
            }
            Ok(0)
        }
        FacilityCmd::Suspend {
            data_dir,
            facility,
            reason,
        } => status(&data_dir, &facility, Change::Suspend, &reason, op).await,
        FacilityCmd::Resume {
            data_dir,
            facility,
            reason,
        } => status(&data_dir, &facility, Change::Resume, &reason, op).await,
        FacilityCmd::Close {
            data_dir,
            facility,
            reason,
        } => status(&data_dir, &facility, Change::Close, &reason, op).await,
    }
}

async fn status(
    data_dir: &Path,
    facility: &str,
    to: Change,
    reason: &str,
    op: &Operator,
) -> Result<i32> {
    let note = check_note(reason)?;
    let (dd, cfg, store) = open(data_dir).await?;
    let ca = match to {
        Change::Close => Some(load_authority(&dd)?),
        _ => None,
    };
    let done = match to {
        Change::Suspend => "suspended",
        Change::Resume => "resumed",
        Change::Close => "closed",
    };
    let changed = change(
        &dd,
        &cfg,
        &store,
        op,
        crate::facilities::record(facility, to, note),
        change_status(
            &store,
            ca.as_ref().map(|a| (a, &cfg.ca)),
            facility,
            to,
            note,
        ),
    )
    .await?;
    println!(
        "Facility {facility} {done}: {} sessions ended{}. Running gateways apply this within a second.",
        changed.sessions_ended,
        if changed.terminals_revoked.is_empty() {
            String::new()
        } else {
            format!(
                ", terminals revoked on a new CRL: {}",
                changed.terminals_revoked.join(" ")
            )
        }
    );
    Ok(0)
}

fn one_line<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        bail!("{what} must be one line of 1 to {max} characters");
    }
    Ok(v)
}

fn record(reason: &str, facility: &str, detail: String) -> AuditRecord {
    AuditRecord {
        event: sekisho_audit::Event::Registry,
        facility: Some(facility.to_string()),
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        detail: Some(detail),
        ..Default::default()
    }
}
