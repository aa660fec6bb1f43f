//! `sekisho terminal …`: issuing terminal certificates and suspending, resuming or revoking
//! them (R-TERM-1, R-TERM-4), one-time enrollment codes (R-TERM-2), WireGuard tunnels
//! (R-TERM-3).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sekisho_ca::{KeyAlgorithm, RevocationReason, TerminalId};

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use super::parse_alg;
use crate::terminals::{self, Change};
use sekisho_audit::AuditRecord;

#[derive(Subcommand, Debug)]
pub enum TerminalCmd {
    /// Issue a certificate and key for a terminal (.crt, .key, .p12 and ca.crt in --out).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        facility: String,
        #[arg(long)]
        terminal: String,
        #[arg(long)]
        out: PathBuf,
        /// Password of the .p12 bundle; one is generated and printed if not given.
        #[arg(long, env = "SEKISHO_P12_PASSWORD")]
        p12_password: Option<String>,
        /// Terminal key: ecdsa-p256 (default) or rsa-2048.
        #[arg(long, default_value = "ecdsa-p256", value_parser = parse_alg)]
        key: KeyAlgorithm,
        /// Certificate lifetime in days (default: ca.terminal_lifetime_days of the config).
        #[arg(long)]
        lifetime_days: Option<u32>,
    },
    /// Give a registered terminal its WireGuard tunnel (when [tunnel] is configured): with
    /// --public-key (made on the terminal, `wg genkey | wg pubkey`) the configuration is
    /// written with a placeholder for the private key; without, a key pair is made here.
    /// Writes <terminal>.wg.conf and a QR code <terminal>.wg.png (for mobile apps) to --out.
    Tunnel {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        terminal: String,
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a one-time access code and PIN for enrolling a terminal (R-TERM-2).
    EnrollCode {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        facility: String,
        #[arg(long)]
        terminal: String,
    },
    /// Revoke a terminal for good (lost, stolen, retired): its connections close at once.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        terminal: String,
        /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
    },
    /// Suspend a terminal: refused until resumed; its connections close at once.
    Suspend {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        terminal: String,
    },
    /// Lift a suspension.
    Resume {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        terminal: String,
    },
    /// List terminals with their status.
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub(super) async fn run(cmd: TerminalCmd, op: &Operator) -> Result<i32> {
    match cmd {
        TerminalCmd::Tunnel {
            data_dir,
            terminal,
            public_key,
            out,
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            if cfg.tunnel.is_none() {
                bail!(
                    "no [tunnel] section in the configuration: the gateway has no WireGuard endpoint"
                );
            }
            let mut tx = store.begin_write().await?;
            let found = sekisho_store::terminals::get(&mut tx, &terminal).await?;
            tx.commit().await?;
            match found {
                Some((_, sekisho_store::terminals::TerminalStatus::Active)) => {}
                Some((_, status)) => bail!("terminal {terminal} is {status:?}, not active"),
                None => bail!("no terminal {terminal} (see `sekisho terminal list`)"),
            }
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let rec = AuditRecord {
                event: sekisho_audit::Event::Registry,
                terminal: Some(terminal.clone()),
                decision: sekisho_audit::Decision::Permit,
                reason: "tunnel_peer_set".into(),
                ..Default::default()
            };
            let files = change(
                &dd,
                &cfg,
                &store,
                op,
                rec,
                crate::terminals::tunnel_bundle(
                    &dd,
                    &cfg,
                    &store,
                    &terminal,
                    public_key.as_deref(),
                    &out,
                ),
            )
            .await?;
            println!("Terminal {terminal}: WireGuard tunnel configured.");
            for f in files {
                println!("  {}", f.display());
            }
            Ok(0)
        }
        TerminalCmd::Add {
            data_dir,
            facility,
            terminal,
            out,
            p12_password,
            key,
            lifetime_days,
        } => {
            let id = TerminalId::new(&facility, &terminal)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            let ca = terminals::load_authority(&dd)?;
            let lifetime = match lifetime_days {
                Some(0) => bail!("--lifetime-days must be at least 1"),
                Some(d) => Duration::from_secs(u64::from(d) * 86_400),
                None => terminals::terminal_lifetime(&cfg.ca),
            };
            terminals::check_can_issue(&store, &id).await?;
            let (password, generated) = match p12_password {
                Some(p) if p.is_empty() => bail!("--p12-password must not be empty"),
                Some(p) => (p, false),
                None => (random_password(), true),
            };
            let (cert, keypem) = ca.issue_terminal(&id, lifetime, key)?;
            let chain = vec![ca.issuing_der().to_vec(), ca.root_der().to_vec()];
            let p12 = sekisho_ca::pkcs12(&cert.der, &keypem, &chain, &password, &id.terminal)?;
            // Stage every file, register, then move them into place: a failure leaves no
            // half-set of files and no registered certificate without its files.
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let stage = tempfile::Builder::new()
                .prefix(".sekisho-add-")
                .tempdir_in(&out)?;
            let files = [
                (format!("{terminal}.crt"), cert.pem().into_bytes(), false),
                (
                    format!("{terminal}.key"),
                    keypem.as_str().as_bytes().to_vec(),
                    true,
                ),
                (format!("{terminal}.p12"), p12, true),
                ("ca.crt".to_string(), ca.root_pem().into_bytes(), false),
            ];
            for (name, data, secret) in &files {
                let p = stage.path().join(name);
                if *secret {
                    sekisho_ca::write_private_file(&p, data)?;
                } else {
                    std::fs::write(&p, data)?;
                }
            }
            change(
                &dd,
                &cfg,
                &store,
                op,
                terminal_record("terminal_added", &id, format!("serial {}", cert.serial_hex)),
                async {
                    terminals::register(&store, &id, &cert).await?;
                    for (name, _, _) in &files {
                        std::fs::rename(stage.path().join(name), out.join(name))?;
                    }
                    Ok(())
                },
            )
            .await?;
            println!(
                "Terminal {} of facility {} registered (certificate serial {}, valid until {}).",
                id.terminal,
                id.facility,
                cert.serial_hex,
                cert.not_after.date()
            );
            for (name, _, _) in &files {
                println!("  {}", out.join(name).display());
            }
            if generated {
                println!("Password of {terminal}.p12: {password}");
            }
            if cfg.tunnel.is_some() {
                let files = crate::terminals::tunnel_bundle(&dd, &cfg, &store, &id.terminal, None, &out)
                    .await
                    .context("the terminal is registered but has no tunnel yet; run `sekisho terminal tunnel`")?;
                for f in files {
                    println!("  {}", f.display());
                }
            }
            Ok(0)
        }
        TerminalCmd::EnrollCode {
            data_dir,
            facility,
            terminal,
        } => {
            let id = TerminalId::new(&facility, &terminal)?;
            let (dd, cfg, store) = open(&data_dir).await?;
            let code = change(
                &dd,
                &cfg,
                &store,
                op,
                terminal_record("enroll_code_issued", &id, "one-time access code".into()),
                crate::enrollment::issue_code(
                    &store,
                    &cfg,
                    &crate::enrollment::PinKey::load_or_create(&dd.root)?,
                    &id,
                ),
            )
            .await?;
            let expires = time::OffsetDateTime::from_unix_timestamp(code.expires_at)?;
            println!(
                "Access code for terminal {} ({}):",
                id.terminal, id.facility
            );
            println!("  code: {}", code.code);
            println!("  PIN:  {}", code.pin);
            println!(
                "  valid until {} UTC, single use, {} PIN attempts",
                expires.format(&time::format_description::well_known::Rfc3339)?,
                cfg.enrollment.max_attempts
            );
            println!(
                "Enroll at https://{}:{}/ (or: sekisho-agent enroll)",
                cfg.hostname,
                cfg.listen.enroll.port()
            );
            Ok(0)
        }
        TerminalCmd::Revoke {
            data_dir,
            terminal,
            reason,
        } => status_change(&data_dir, &terminal, Change::Revoke(reason), op).await,
        TerminalCmd::Suspend { data_dir, terminal } => {
            status_change(&data_dir, &terminal, Change::Suspend, op).await
        }
        TerminalCmd::Resume { data_dir, terminal } => {
            status_change(&data_dir, &terminal, Change::Resume, op).await
        }
        TerminalCmd::List { data_dir } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let rows = sekisho_store::terminals::list(&store).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<20} {:<20} {:<10} {:>6}  {:<10}",
                "FACILITY", "TERMINAL", "STATUS", "CERTS", "EXPIRES"
            )?;
            for r in rows {
                let exp = r
                    .latest_not_after
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                    .map(|t| t.date().to_string())
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<20} {:<20} {:<10} {:>6}  {:<10}",
                    r.facility,
                    r.terminal,
                    r.status.as_str(),
                    r.active_certs,
                    exp
                )?;
            }
            Ok(0)
        }
    }
}

async fn status_change(data_dir: &Path, terminal: &str, to: Change, op: &Operator) -> Result<i32> {
    let (dd, cfg, store) = open(data_dir).await?;
    let ca = match to {
        Change::Revoke(_) => Some(terminals::load_authority(&dd)?),
        _ => None,
    };
    // The facility, for the record that comes first.
    let facility = sekisho_store::terminals::list(&store)
        .await?
        .into_iter()
        .find(|t| t.terminal == terminal)
        .map(|t| t.facility)
        .with_context(|| {
            format!("no terminal {terminal:?} is registered (see `sekisho terminal list`)")
        })?;
    let (reason, detail, done) = match to {
        Change::Revoke(r) => (
            "terminal_revoked",
            format!("reason {r}"),
            "revoked; its certificates are on the new CRL",
        ),
        Change::Suspend => ("terminal_suspended", String::new(), "suspended"),
        Change::Resume => ("terminal_resumed", String::new(), "resumed"),
    };
    let id = TerminalId::new(&facility, terminal)?;
    change(
        &dd,
        &cfg,
        &store,
        op,
        terminal_record(reason, &id, detail),
        terminals::change_status(&store, ca.as_ref(), &cfg.ca, terminal, to),
    )
    .await?;
    println!(
        "Terminal {terminal} ({facility}) {done}. Running gateways apply this within a second."
    );
    // Give the store a moment so a script's next command sees a settled state.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(0)
}

fn random_password() -> String {
    // 64 symbols: a byte's low six bits pick one without bias (96 bits in all).
    const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut raw = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
    raw.iter()
        .map(|b| ALPHABET[(*b & 63) as usize] as char)
        .collect()
}

fn terminal_record(reason: &str, id: &TerminalId, detail: String) -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Registry,
        terminal: Some(id.terminal.clone()),
        facility: Some(id.facility.clone()),
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        detail: Some(detail),
        ..Default::default()
    }
}
