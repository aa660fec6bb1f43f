//! `sekisho user …`: the people who sign in (R-ACCT-1): their registration with roles and an
//! HPKI card or a password, suspension (R-ACCT-6) and recovery from a lockout (R-ACCT-5).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use crate::oversight::people;
use sekisho_audit::AuditRecord;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Register a person (R-ACCT-1). With --hpki-cert, the card's authentication certificate
    /// (checked against the configured HPKI trust) maps the card to this account.
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// 10+ letters and digits (the seed networks' ID rule).
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        facility: String,
        /// Comma-separated: physician, dentist, pharmacist, nurse, care-manager, helper, clerk,
        /// facility-admin, secretariat, security-officer
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long)]
        hpki_cert: Option<PathBuf>,
        /// The card holder id (subject serialNumber) instead of a certificate file.
        #[arg(long)]
        hpki_holder_id: Option<String>,
        /// Give the person a password under this profile (jp-mhlw-qa-b, jp-mhlw-qa-a,
        /// jp-mhlw-qa-c, nist-800-63b-4); a temporary one is printed, changed at first sign-in.
        #[arg(long)]
        password_profile: Option<String>,
    },
    /// Set a new temporary password (printed; changed at the next sign-in).
    Passwd {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        /// Change the profile too.
        #[arg(long)]
        password_profile: Option<String>,
    },
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Suspend at once (R-ACCT-6): live sessions end.
    Suspend {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    Resume {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Lift a lockout (R-ACCT-5): the secretariat's account-recovery act, audited.
    Unlock {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

pub(super) async fn run(cmd: UserCmd, op: &Operator) -> Result<i32> {
    use sekisho_store::lockouts::{self, Scope};
    use sekisho_store::users;
    match cmd {
        UserCmd::Add {
            data_dir,
            id,
            name,
            facility,
            roles,
            hpki_cert,
            hpki_holder_id,
            password_profile,
        } => {
            let profile = password_profile
                .as_deref()
                .map(str::parse::<crate::password::Profile>)
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?;
            people::check(&id, &name, &facility, &roles)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            let (issuer, serial, holder) = match (&hpki_cert, &hpki_holder_id) {
                (Some(_), Some(_)) => bail!("give --hpki-cert or --hpki-holder-id, not both"),
                (Some(path), None) => {
                    let der = read_cert(path)?;
                    let trust = crate::signin::HpkiTrust::load(cfg.hpki.clone(), data_dir.clone())?;
                    let ident = trust.verify(&der).map_err(|e| {
                        anyhow::anyhow!("the card certificate is not accepted: {e}")
                    })?;
                    let is = ident.issuer_serial();
                    (
                        Some(is.issuer.clone()),
                        Some(is.serial_hex.clone()),
                        ident.holder_id.clone(),
                    )
                }
                (None, Some(h)) => (None, None, Some(h.clone())),
                (None, None) => (None, None, None),
            };
            let mut rec = user_record("user_added", &id, &facility);
            rec.detail = Some(format!("roles {}", roles.join(",")));
            let temporary = change(
                &dd,
                &cfg,
                &store,
                op,
                rec,
                people::add(
                    &store,
                    &people::NewPerson {
                        id: &id,
                        name: &name,
                        facility: &facility,
                        roles: &roles,
                        profile,
                        hpki_issuer: issuer.as_deref(),
                        hpki_serial: serial.as_deref(),
                        hpki_holder_id: holder.as_deref(),
                    },
                ),
            )
            .await?;
            if let Some(t) = temporary {
                println!("Temporary password for {id}: {t}");
                println!("(hand it over in person; it must be changed at the first sign-in)");
            }
            println!(
                "User {id} ({facility}) registered{}.",
                if issuer.is_some() || holder.is_some() {
                    " with an HPKI card"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        UserCmd::List { data_dir } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<20} {:<16} {:<10} {:<6} {:<28} NAME",
                "USER", "FACILITY", "STATUS", "HPKI", "ROLES"
            )?;
            for u in users::list(&store).await? {
                let locked = lockouts::get(&store, Scope::Account, &u.user_id)
                    .await?
                    .locked_at
                    .is_some();
                let status = if u.suspended {
                    "suspended"
                } else if locked {
                    "locked"
                } else {
                    "active"
                };
                let hpki = if u.hpki_serial.is_some() || u.hpki_holder_id.is_some() {
                    "yes"
                } else {
                    "-"
                };
                // Names were checked for control characters when added.
                writeln!(
                    out,
                    "{:<20} {:<16} {:<10} {:<6} {:<28} {}",
                    u.user_id,
                    u.facility,
                    status,
                    hpki,
                    u.roles.join(","),
                    u.name
                )?;
            }
            Ok(0)
        }
        UserCmd::Suspend { data_dir, id } => user_status(&data_dir, &id, true, op).await,
        UserCmd::Resume { data_dir, id } => user_status(&data_dir, &id, false, op).await,
        UserCmd::Passwd {
            data_dir,
            id,
            password_profile,
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let Some(u) = users::get(&store, &id).await? else {
                bail!("no user {id:?} (see `sekisho user list`)")
            };
            let profile = match password_profile.or(u.password_profile.clone()) {
                Some(p) => p
                    .parse::<crate::password::Profile>()
                    .map_err(|e| anyhow::anyhow!(e))?,
                None => crate::password::Profile::JpMhlwQaB,
            };
            let t = change(
                &dd,
                &cfg,
                &store,
                op,
                user_record("password_reset", &id, &u.facility),
                people::set_temporary_password(&store, &id, profile),
            )
            .await?;
            println!("Temporary password for {id}: {t}");
            println!("(hand it over in person; it must be changed at the next sign-in)");
            Ok(0)
        }
        UserCmd::Unlock { data_dir, id } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let Some(u) = users::get(&store, &id).await? else {
                bail!("no user {id:?} (see `sekisho user list`)")
            };
            if lockouts::get(&store, Scope::Account, &id)
                .await?
                .locked_at
                .is_none()
            {
                bail!("user {id} is not locked");
            }
            let mut rec = user_record("account_unlocked", &id, &u.facility);
            rec.detail =
                Some("account recovery by the secretariat; password change required".into());
            change(&dd, &cfg, &store, op, rec, people::unlock(&store, &id)).await?;
            println!("User {id} unlocked.");
            Ok(0)
        }
    }
}

async fn user_status(data_dir: &Path, id: &str, suspend: bool, op: &Operator) -> Result<i32> {
    let (dd, cfg, store) = open(data_dir).await?;
    let Some(u) = sekisho_store::users::get(&store, id).await? else {
        bail!("no user {id:?} (see `sekisho user list`)")
    };
    if u.suspended == suspend {
        bail!(
            "user {id} is already {}",
            if suspend { "suspended" } else { "active" }
        );
    }
    let rec = user_record(
        if suspend {
            "user_suspended"
        } else {
            "user_resumed"
        },
        id,
        &u.facility,
    );
    change(
        &dd,
        &cfg,
        &store,
        op,
        rec,
        people::set_suspended(&store, id, suspend),
    )
    .await?;
    println!(
        "User {id} {}. Running gateways apply this within a second.",
        if suspend {
            "suspended; their sessions ended"
        } else {
            "resumed"
        }
    );
    Ok(0)
}

fn user_record(reason: &str, id: &str, facility: &str) -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Registry,
        user: Some(id.to_string()),
        facility: Some(facility.to_string()),
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        ..Default::default()
    }
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match rustls_pki_types::CertificateDer::from_pem_slice(&bytes) {
        Ok(c) => Ok(c.to_vec()),
        Err(_) => Ok(bytes),
    }
}
