//! The `sekisho` command line. Every command that changes the store does it in one
//! transaction, so wrong input or a failure leaves nothing half-written; a running gateway
//! sees the change within a second.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sekisho_ca::{KeyAlgorithm, RevocationReason, TerminalId};

use crate::config::Config;
use crate::init::{self, InitOptions};
use crate::terminals::{self, Change};
use sekisho_audit::AuditRecord;
use sekisho_store::Store;

mod admin_audit;
mod careteam;
mod data_dir;
mod patient;

use admin_audit::{audit_admin, os_user};
use data_dir::open;

pub use careteam::CareteamCmd;
pub use patient::{CardCmd, PatientCmd};

#[derive(Parser, Debug)]
#[command(
    name = "sekisho",
    version,
    about = "Sekisho access gateway for regional medical information-sharing networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data dir: configuration, CA, server certificate, keys, database.
    Init(InitArgs),
    /// Run the gateway.
    Serve(DataDirArg),
    /// Register, enroll, list, suspend, resume and revoke terminals.
    #[command(subcommand)]
    Terminal(TerminalCmd),
    /// People who sign in: add, list, suspend, resume, unlock.
    #[command(subcommand)]
    User(UserCmd),
    /// Patients and their consent (R-PAT-1).
    #[command(subcommand)]
    Patient(PatientCmd),
    /// Who may see a patient: users and facilities of the care team (R-PAT-3).
    #[command(subcommand)]
    Careteam(CareteamCmd),
    /// The Cedar policy set: check it, run decision tables.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Sekisho's CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Everything on loopback with a demo upstream, a demo terminal and instructions.
    Demo(crate::demo::DemoArgs),
}

#[derive(Args, Debug)]
pub struct DataDirArg {
    #[arg(long, env = "SEKISHO_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The network application Sekisho protects, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub upstream: String,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub mgmt_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub enroll_listen: SocketAddr,
    /// The name terminals use to reach the gateway (in its server certificate).
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// The network's name, shown in the CA certificates.
    #[arg(long, default_value = "Sekisho Network")]
    pub network_name: String,
    /// Database URL; default: SQLite in the data dir.
    #[arg(long)]
    pub store_url: Option<String>,
    /// CA keys: ecdsa-p256 (default) or rsa-2048.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_alg)]
    pub ca_key: KeyAlgorithm,
}

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

const ROLES: &[&str] = &[
    "physician",
    "dentist",
    "pharmacist",
    "nurse",
    "care-manager",
    "helper",
    "clerk",
    "facility-admin",
    "secretariat",
    "security-officer",
];

async fn user(cmd: UserCmd) -> Result<i32> {
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
            if !crate::password::valid_user_id(&id) {
                bail!("--id must be 10 or more letters and digits (the network's ID rule)");
            }
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
                bail!("--name must be 1 to 64 characters without control characters");
            }
            TerminalId::new(&facility, "x").map_err(|_| {
                anyhow::anyhow!("--facility must be letters, digits, '.', '_' or '-'")
            })?;
            if roles.is_empty() {
                bail!("give at least one role with --roles ({})", ROLES.join(", "));
            }
            if let Some(r) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
                bail!("unknown role {r:?} (known: {})", ROLES.join(", "));
            }
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
            users::insert(
                &store,
                &users::NewUser {
                    user_id: &id,
                    name,
                    facility: &facility,
                    roles: &roles,
                    hpki_issuer: issuer.as_deref(),
                    hpki_serial: serial.as_deref(),
                    hpki_holder_id: holder.as_deref(),
                },
            )
            .await?;
            let temporary = match profile {
                Some(p) => Some(set_temporary_password(&store, &id, p).await?),
                None => None,
            };
            let mut rec = user_record("user_added", &id, &facility);
            rec.detail = Some(format!("roles {}", roles.join(",")));
            audit_admin(&dd, &cfg, &store, rec).await?;
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
        UserCmd::Suspend { data_dir, id } => user_status(&data_dir, &id, true).await,
        UserCmd::Resume { data_dir, id } => user_status(&data_dir, &id, false).await,
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
            let t = set_temporary_password(&store, &id, profile).await?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                user_record("password_reset", &id, &u.facility),
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
            // Recovery after a lock: a password that may have been guessed at is replaced. The
            // change is required before the lock is lifted, so a failure in between leaves the
            // account locked, never open with the old password.
            users::require_password_change(&store, &id).await?;
            if !lockouts::unlock(&store, Scope::Account, &id).await? {
                bail!("user {id} is not locked");
            }
            let mut rec = user_record("account_unlocked", &id, &u.facility);
            rec.detail =
                Some("account recovery by the secretariat; password change required".into());
            audit_admin(&dd, &cfg, &store, rec).await?;
            println!("User {id} unlocked.");
            Ok(0)
        }
    }
}

async fn set_temporary_password(
    store: &Store,
    id: &str,
    profile: crate::password::Profile,
) -> Result<String> {
    let t = crate::password::temporary();
    let h = crate::password::hash(&t)?;
    if !sekisho_store::users::set_password(
        store,
        id,
        &h,
        profile.as_str(),
        profile.change_at_first_login(),
    )
    .await?
    {
        bail!("no user {id:?}");
    }
    Ok(t)
}

async fn user_status(data_dir: &Path, id: &str, suspend: bool) -> Result<i32> {
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
    sekisho_store::users::set_suspended(&store, id, suspend).await?;
    audit_admin(
        &dd,
        &cfg,
        &store,
        user_record(
            if suspend {
                "user_suspended"
            } else {
                "user_resumed"
            },
            id,
            &u.facility,
        ),
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

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate the data dir's policy set against its schema.
    Check {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run decision tables (a TOML file, or a directory of them) against the policy set
    /// (the data dir's, or the shipped default with no --data-dir).
    Test {
        file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Print the current CRL (PEM) on stdout.
    Crl {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the Merkle tree and check every signed checkpoint.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn parse_alg(s: &str) -> Result<KeyAlgorithm, String> {
    match s {
        "ecdsa-p256" | "p256" | "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
        "rsa-2048" | "rsa" => Ok(KeyAlgorithm::Rsa2048),
        _ => Err(format!(
            "unknown key algorithm {s:?} (ecdsa-p256 or rsa-2048)"
        )),
    }
}

/// Returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Init(a) => {
            let ips: Vec<IpAddr> = Vec::new();
            let dd = init::init(&InitOptions {
                data_dir: a.data_dir.clone(),
                upstream: a.upstream,
                listen: a.listen,
                mgmt_listen: a.mgmt_listen,
                enroll_listen: a.enroll_listen,
                hostname: a.hostname,
                network_name: a.network_name,
                store_url: a.store_url,
                ca_key: a.ca_key,
                extra_ips: ips,
            })
            .await?;
            println!("Created {}", dd.root.display());
            println!(
                "Next: sekisho terminal add --data-dir {} --facility F --terminal T --out DIR",
                dd.root.display()
            );
            println!("      sekisho serve --data-dir {}", dd.root.display());
            Ok(0)
        }
        Command::Serve(a) => {
            crate::serve::serve(&a.data_dir).await?;
            Ok(0)
        }
        Command::Terminal(t) => terminal(t).await,
        Command::User(u) => user(u).await,
        Command::Patient(p) => patient::run(p).await,
        Command::Policy(p) => policy(p),
        Command::Careteam(c) => careteam::run(c).await,
        Command::Ca(CaCmd::Crl { data_dir }) => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let ca = terminals::load_authority(&dd).ok();
            let crl = terminals::ensure_crl(&store, ca.as_ref(), &cfg.ca).await?;
            print!("{}", sekisho_ca::crl_pem(&crl.der));
            Ok(0)
        }
        Command::Audit(AuditCmd::Verify { data_dir }) => {
            let (dd, _cfg, store) = open(&data_dir).await?;
            let key_file = dd.audit_dir().join("checkpoint.pub");
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("cannot read {}", key_file.display()))?;
            let report = sekisho_audit::verify(&store, key.trim()).await?;
            println!(
                "records: {}  checkpoints: {}",
                report.records, report.checkpoints
            );
            if report.problems.is_empty() {
                println!("audit log OK: every record is covered by a valid signed checkpoint");
                Ok(0)
            } else {
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
                println!(
                    "audit log FAILED verification: {} problem(s)",
                    report.problems.len()
                );
                Ok(1)
            }
        }
        Command::Demo(a) => crate::demo::run(a).await.map(|_| 0),
    }
}

fn policy_dir(data_dir: &Path) -> Result<PathBuf> {
    let cfg = Config::load(data_dir)?;
    Ok(data_dir.join(cfg.policy.dir))
}

fn policy(cmd: PolicyCmd) -> Result<i32> {
    match cmd {
        PolicyCmd::Check { data_dir } => {
            let dir = policy_dir(&data_dir)?;
            let engine =
                sekisho_policies::PolicyEngine::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "policy set OK: {} policies in {}",
                engine.policy_ids().len(),
                dir.display()
            );
            Ok(0)
        }
        PolicyCmd::Test { file, data_dir } => {
            let dir = match data_dir {
                Some(d) => policy_dir(&d)?,
                None => sekisho_policies::default_policy_dir(),
            };
            let engine =
                sekisho_policies::PolicyEngine::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            let report = if file.is_dir() {
                sekisho_policies::run_table_dir(&engine, &file)?
            } else {
                sekisho_policies::run_table(&engine, &sekisho_policies::DecisionTable::load(&file)?)
            };
            for f in &report.failures {
                println!("FAIL {f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            Ok(if report.failures.is_empty() { 0 } else { 1 })
        }
    }
}

fn admin_record(reason: &str, id: &TerminalId, detail: String) -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Registry,
        terminal: Some(id.terminal.clone()),
        facility: Some(id.facility.clone()),
        user: os_user(),
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        detail: Some(detail),
        ..Default::default()
    }
}

async fn terminal(cmd: TerminalCmd) -> Result<i32> {
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
            let mut tx = store.pool().begin().await?;
            let found = sekisho_store::terminals::get(&mut tx, &terminal).await?;
            tx.commit().await?;
            match found {
                Some((_, sekisho_store::terminals::TerminalStatus::Active)) => {}
                Some((_, status)) => bail!("terminal {terminal} is {status:?}, not active"),
                None => bail!("no terminal {terminal} (see `sekisho terminal list`)"),
            }
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let files = crate::terminals::tunnel_bundle(
                &dd,
                &cfg,
                &store,
                &terminal,
                public_key.as_deref(),
                &out,
            )
            .await?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                AuditRecord {
                    event: sekisho_audit::Event::Registry,
                    terminal: Some(terminal.clone()),
                    decision: sekisho_audit::Decision::Permit,
                    reason: "tunnel_peer_set".into(),
                    ..Default::default()
                },
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
            terminals::register(&store, &id, &cert).await?;
            for (name, _, _) in &files {
                std::fs::rename(stage.path().join(name), out.join(name))?;
            }
            audit_admin(
                &dd,
                &cfg,
                &store,
                admin_record("terminal_added", &id, format!("serial {}", cert.serial_hex)),
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
            let code = crate::enrollment::issue_code(&store, &cfg, &id).await?;
            audit_admin(
                &dd,
                &cfg,
                &store,
                admin_record("enroll_code_issued", &id, "one-time access code".into()),
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
        } => status_change(&data_dir, &terminal, Change::Revoke(reason)).await,
        TerminalCmd::Suspend { data_dir, terminal } => {
            status_change(&data_dir, &terminal, Change::Suspend).await
        }
        TerminalCmd::Resume { data_dir, terminal } => {
            status_change(&data_dir, &terminal, Change::Resume).await
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

async fn status_change(data_dir: &Path, terminal: &str, change: Change) -> Result<i32> {
    let (dd, cfg, store) = open(data_dir).await?;
    let ca = match change {
        Change::Revoke(_) => Some(terminals::load_authority(&dd)?),
        _ => None,
    };
    let facility = terminals::change_status(&store, ca.as_ref(), &cfg.ca, terminal, change).await?;
    let (reason, detail, done) = match change {
        Change::Revoke(r) => (
            "terminal_revoked",
            format!("reason {r}"),
            "revoked; its certificates are on the new CRL",
        ),
        Change::Suspend => ("terminal_suspended", String::new(), "suspended"),
        Change::Resume => ("terminal_resumed", String::new(), "resumed"),
    };
    let id = TerminalId::new(&facility, terminal)?;
    audit_admin(&dd, &cfg, &store, admin_record(reason, &id, detail)).await?;
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
