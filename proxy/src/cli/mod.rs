//! The `sekisho` command line. Every command that changes the store does it in one
//! transaction, so wrong input or a failure leaves nothing half-written; a running gateway
//! sees the change within a second.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sekisho_ca::KeyAlgorithm;

use crate::init::{self, InitOptions};

mod admin_audit;
mod audit;
mod ca;
mod careteam;
mod data_dir;
mod patient;
mod policy;
mod terminal;
mod user;

pub use audit::AuditCmd;
pub use ca::CaCmd;
pub use careteam::CareteamCmd;
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
        Command::Terminal(t) => terminal::run(t).await,
        Command::User(u) => user::run(u).await,
        Command::Patient(p) => patient::run(p).await,
        Command::Policy(p) => policy::run(p),
        Command::Careteam(c) => careteam::run(c).await,
        Command::Ca(c) => ca::run(c).await,
        Command::Audit(a) => audit::run(a).await,
        Command::Demo(a) => crate::demo::run(a).await.map(|_| 0),
    }
}
