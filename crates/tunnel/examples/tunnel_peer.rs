//! Run Sekisho's WireGuard endpoint alone, for manual checks and for tests that drive it from
//! outside (e.g. inside a network namespace with `ip netns exec`). Needs CAP_NET_ADMIN.
//!
//! cargo run -p sekisho-tunnel --example tunnel_peer -- \
//!     --interface sekisho0 --listen 0.0.0.0:51820 --address 10.231.0.1/24 \
//!     --key-file gw.key --peers-file peers
//!
//! The peers file has one peer a line, `terminal-id public-key-base64 tunnel-address`
//! (`#` comments); it is re-read when it changes, so peers are added and removed live. The
//! gateway's public key is printed at start; statistics every 5 seconds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use sekisho_tunnel::{PeerSpec, Tunnel, TunnelConfig, keys};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "sekisho0")]
    interface: String,
    #[arg(long, default_value = "0.0.0.0:51820")]
    listen: SocketAddr,
    /// The gateway's tunnel address with the subnet's prefix, e.g. 10.231.0.1/24.
    #[arg(long)]
    address: String,
    #[arg(long, default_value_t = TunnelConfig::DEFAULT_MTU)]
    mtu: u16,
    /// Private key file (created with mode 0600 if missing).
    #[arg(long)]
    key_file: PathBuf,
    #[arg(long)]
    peers_file: Option<PathBuf>,
}

fn read_peers(path: &PathBuf) -> anyhow::Result<Vec<PeerSpec>> {
    let text = std::fs::read_to_string(path)?;
    let mut peers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [terminal, key, address] = f[..] else {
            bail!("{}:{}: want `terminal key address`", path.display(), n + 1);
        };
        peers.push(PeerSpec {
            terminal: terminal.to_string(),
            public_key: keys::decode(key)?,
            address: address.parse()?,
        });
    }
    Ok(peers)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (addr, prefix) = args
        .address
        .split_once('/')
        .context("--address is address/prefix")?;
    let address: Ipv4Addr = addr.parse()?;
    let prefix: u8 = prefix.parse()?;
    let secret = keys::load_or_create_private_key(&args.key_file)?;
    let mut cfg = TunnelConfig::new(&args.interface, args.listen, address, prefix);
    cfg.mtu = args.mtu;
    let tunnel = Tunnel::start(cfg, secret).await?;
    println!("public key {}", keys::encode(&tunnel.public_key()));
    println!("listening on {}", tunnel.local_addr());

    let mut seen: Option<SystemTime> = None;
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Some(path) = &args.peers_file {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != seen {
                seen = modified;
                match read_peers(path) {
                    Ok(peers) => {
                        let changes = tunnel.set_peers(peers);
                        println!("peers: {changes:?}");
                    }
                    Err(e) => eprintln!("peers file: {e:#}"),
                }
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(5) {
            println!("{:?}", tunnel.stats());
        }
    }
    tunnel.shutdown().await;
    Ok(())
}
