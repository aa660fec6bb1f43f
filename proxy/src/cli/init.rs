//! `sekisho init`, `serve` and `demo`: making a data dir, running the gateway on one, or
//! everything on loopback for a first look.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sekisho_ca::KeyAlgorithm;

use super::{DataDirArg, parse_alg};
use crate::init::InitOptions;

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

pub(super) async fn init(a: InitArgs) -> Result<i32> {
    let ips: Vec<IpAddr> = Vec::new();
    let dd = crate::init::init(&InitOptions {
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

pub(super) async fn serve(a: DataDirArg) -> Result<i32> {
    crate::serve::serve(&a.data_dir).await?;
    Ok(0)
}

pub(super) async fn demo(a: crate::demo::DemoArgs) -> Result<i32> {
    crate::demo::run(a).await.map(|_| 0)
}
