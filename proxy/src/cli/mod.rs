//! The `sekisho` command line. Every command that changes the store does it in one
//! transaction, so wrong input or a failure leaves nothing half-written; a running gateway
//! sees the change within a second.
//!
//! One module per command group holds that group's clap types and handlers (`terminal`,
//! `facility`, `user`, `patient`, `careteam`, `policy`, `ca`, `audit`, `breakglass`, `backup`
//! (and restore); `init` also runs `serve` and `demo`). What they share: `data_dir` opens a
//! data dir's configuration and store, and
//! `admin_audit` writes each change to the audit log as the named operator's act, before the
//! change is made. This module
//! only parses and dispatches.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sekisho_ca::KeyAlgorithm;

mod admin_audit;
mod audit;
mod backup;
mod breakglass;
mod ca;
mod careteam;
mod data_dir;
mod facility;
mod init;
mod keys;
mod notice;
mod operator_token;
mod patient;
mod policy;
mod terminal;
mod user;

pub use admin_audit::Operator;
pub use audit::AuditCmd;
pub use backup::{BackupArgs, RestoreArgs};
pub use breakglass::BreakglassCmd;
pub use ca::CaCmd;
pub use careteam::CareteamCmd;
pub use facility::FacilityCmd;
pub use init::InitArgs;
pub use notice::{MaintenanceCmd, NoticeCmd};
pub use operator_token::OperatorTokenCmd;
pub use patient::{CardCmd, PatientCmd};
pub use policy::PolicyCmd;
pub use terminal::TerminalCmd;
pub use user::UserCmd;

#[derive(Parser, Debug)]
#[command(
    name = "sekisho",
    version,
    about = "Sekisho access gateway for regional medical information-sharing networks"
)]
pub struct Cli {
    /// The person making a change (or an officer's act): recorded in the audit log, with the
    /// operating-system account, before the change is made. Required by every command that
    /// changes the network's records.
    #[arg(long, global = true, env = "SEKISHO_OPERATOR")]
    pub operator: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data dir: configuration, CA, server certificate, keys, database.
    Init(InitArgs),
    /// Run the gateway.
    Serve(DataDirArg),
    /// The network's facilities: add, list, suspend, resume, close.
    #[command(subcommand)]
    Facility(FacilityCmd),
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
    /// Notices to the network's users: add, list, remove (R-OPS-1).
    #[command(subcommand)]
    Notice(NoticeCmd),
    /// Maintenance windows: schedule, start (planned or emergency), end (R-OPS-1).
    #[command(subcommand)]
    Maintenance(MaintenanceCmd),
    /// Tokens for the management API (remote maintenance, R-OPS-4): add, list, revoke.
    #[command(subcommand)]
    OperatorToken(OperatorTokenCmd),
    /// Sekisho's CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The gateway's signing keys (assertion, audit checkpoints): list, rotate.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Emergency access declarations: list, show, review, approve, end, statistics (R-BG-3).
    #[command(subcommand)]
    Breakglass(BreakglassCmd),
    /// An encrypted backup of a data dir, taken while the gateway serves (R-OPS-2);
    /// `backup keygen` makes its key.
    Backup(BackupArgs),
    /// A data dir from a backup, into a new directory; the restore goes on record in it.
    Restore(RestoreArgs),
    /// Everything on loopback with a demo upstream, a demo terminal and instructions.
    Demo(crate::demo::DemoArgs),
}

#[derive(Args, Debug)]
pub struct DataDirArg {
    #[arg(long, env = "SEKISHO_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Key algorithms by name, for `init --ca-key` and `terminal add --key`.
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
    let op = Operator::new(cli.operator);
    match cli.command {
        Command::Init(a) => init::init(a).await,
        Command::Serve(a) => init::serve(a).await,
        Command::Facility(f) => facility::run(f, &op).await,
        Command::Terminal(t) => terminal::run(t, &op).await,
        Command::User(u) => user::run(u, &op).await,
        Command::Patient(p) => patient::run(p, &op).await,
        Command::Policy(p) => policy::run(p),
        Command::Careteam(c) => careteam::run(c, &op).await,
        Command::Ca(c) => ca::run(c, &op).await,
        Command::Notice(n) => notice::run_notice(n, &op).await,
        Command::OperatorToken(t) => operator_token::run(t, &op).await,
        Command::Maintenance(m) => notice::run_maintenance(m, &op).await,
        Command::Audit(a) => audit::run(a, &op).await,
        Command::Breakglass(b) => breakglass::run(b, &op).await,
        Command::Keys(k) => keys::run(k, &op).await,
        Command::Backup(a) => backup::backup(a, &op).await,
        Command::Restore(a) => backup::restore(a, &op).await,
        Command::Demo(a) => init::demo(a).await,
    }
}
