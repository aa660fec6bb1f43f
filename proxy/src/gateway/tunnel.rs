//! How terminal connections relate to the gateway's WireGuard endpoint (R-TERM-3): the endpoint
//! started from `[tunnel]`, its peers kept equal to the registry's active terminals, and which
//! terminal's tunnel a connection came through.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use sekisho_store::Store;
use sekisho_tunnel::{PeerSpec, Tunnel, TunnelConfig, keys};
use tracing::warn;

pub struct TunnelBinding {
    tunnel: Tunnel,
    /// The gateway's own tunnel address: tunnelled connections arrive on it.
    address: Ipv4Addr,
    /// Accept terminals only through their own tunnel.
    pub(super) required: bool,
}

impl TunnelBinding {
    pub fn new(tunnel: Tunnel, address: Ipv4Addr, required: bool) -> TunnelBinding {
        TunnelBinding {
            tunnel,
            address,
            required,
        }
    }

    /// The terminal whose tunnel this connection came through, if it did.
    pub(super) fn terminal(&self, peer: SocketAddr, local: Option<SocketAddr>) -> Option<String> {
        (local.map(|l| l.ip()) == Some(IpAddr::V4(self.address)))
            .then(|| self.tunnel.terminal_for(peer.ip()))
            .flatten()
    }
}

/// Starts the WireGuard endpoint with the peers of the active terminals.
pub async fn start(store: &Store, cfg: &crate::config::Tunnel, data_dir: &Path) -> Result<Tunnel> {
    let subnet = cfg.subnet()?;
    let key = keys::load_or_create_private_key(&data_dir.join(&cfg.private_key))?;
    let t = Tunnel::start(
        TunnelConfig::new(&cfg.interface, cfg.listen, subnet.gateway, subnet.prefix),
        key,
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the WireGuard endpoint on {} ({}); it needs CAP_NET_ADMIN and /dev/net/tun",
            cfg.listen, cfg.interface
        )
    })?;
    sync_peers(store, &t).await?;
    Ok(t)
}

/// Makes the endpoint's peers those of the store's active terminals.
pub async fn sync_peers(store: &Store, t: &Tunnel) -> Result<()> {
    let mut peers = Vec::new();
    for p in sekisho_store::tunnel_peers::active(store).await? {
        match keys::decode(&p.public_key) {
            Ok(public_key) => peers.push(PeerSpec {
                terminal: p.terminal,
                public_key,
                address: p.address,
            }),
            Err(e) => warn!(terminal = %p.terminal, error = %e, "unusable tunnel key: no peer"),
        }
    }
    t.set_peers(peers);
    Ok(())
}
