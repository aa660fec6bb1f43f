//! The gateway's own WireGuard endpoint (R-TERM-3: terminals reach the network through a VPN).
//!
//! Each registered terminal is a WireGuard peer with a fixed /32 tunnel address. The endpoint
//! creates a TUN interface (e.g. `sekisho0`) holding the gateway's tunnel address, so the
//! gateway's listeners see tunnelled connections coming from the terminals' addresses, and
//! [`Tunnel::terminal_for`] tells which terminal an address belongs to.
//!
//! ## Design
//!
//! boringtun's `noise::Tunn` (the protocol state machine of one peer) is driven from the
//! gateway's own tokio tasks, with the TUN device from `tun-rs`. boringtun's `device` module is
//! not used: it runs its own threads, is configured only through the WireGuard UAPI socket,
//! cannot change an existing peer (`update_peer` panics "Modifying existing peers is not yet
//! supported") and routes by allowed-IPs tables alone. Here the peers come from the registry in
//! process ([`Tunnel::set_peers`]), live.
//!
//! Tasks: one reads UDP datagrams (data packets are decrypted there and written to the TUN),
//! one reads the TUN (encrypts and sends), one does handshakes (the Diffie-Hellman work, fed
//! by a bounded queue so that a flood of initiations cannot starve established peers or grow
//! memory), one runs the timers of every peer every 100 ms and resets the rate limiters every
//! second.
//!
//! Rules enforced (see `engine.rs`):
//! - cryptokey routing: a decrypted packet reaches the TUN only if it is IPv4, its source is the
//!   sending peer's tunnel address and its destination is the gateway's tunnel address; a
//!   packet from the TUN goes only if its source is the gateway's tunnel address, and only to
//!   the peer whose tunnel address is its destination; IPv6 is dropped both ways;
//! - handshakes: boringtun's `RateLimiter` checks mac1 and, above
//!   `HANDSHAKE_RATE_LIMIT` initiations a second, answers with cookie replies instead of doing
//!   DH; under load, initiations with a valid cookie are limited per source address as well;
//!   initiations from unknown static keys are dropped silently;
//! - removal: a removed peer's `Tunn` (its sessions) and receiver index are dropped before
//!   [`Tunnel::set_peers`] returns; from then on nothing of that peer reaches the TUN.
//!
//! ## Where boringtun 0.7.1 falls short, and what is done here
//!
//! - `Tunn::handle_verified_packet` is `pub(crate)`: after the endpoint's own
//!   `RateLimiter::verify_packet` and `parse_handshake_anon` (needed to find the peer of an
//!   initiation), the packet must go through `Tunn::decapsulate`, which parses it and runs the
//!   (shared) rate limiter again. Initiations of configured peers are counted twice, so with
//!   only those, cookies start at half of `HANDSHAKE_RATE_LIMIT` (100) a second.
//! - `RateLimiter` has no per-source limit once a valid cookie (mac2) is presented, unlike the
//!   kernel's WireGuard: whoever receives cookies at its own address can still make the
//!   endpoint do Diffie-Hellman at full speed. A bounded per-source token bucket (20/s, burst
//!   5, 4096 sources) is applied under load here; "under load" is tracked here too, as the
//!   limiter keeps it private.
//! - Data messages are not padded to 16 bytes (`session.rs`: "TODO: spec requires padding");
//!   outbound plaintexts are padded here before `encapsulate`.
//! - `encapsulate`/`decapsulate` panic when the destination buffer is smaller than the packet:
//!   all buffers here are `MIN_SCRATCH` (64 KiB + 64).
//! - It logs ordinary timer events at `warn`/`error` (`HANDSHAKE(REKEY_TIMEOUT)`,
//!   `CONNECTION_EXPIRED(...)` when a terminal goes away): filter `boringtun=off` or `=error`.
//! - The `device` module cannot change a peer (`update_peer` panics), see above.
//!
//! ## Privileges
//!
//! Creating and configuring the TUN interface needs `CAP_NET_ADMIN`. Under systemd:
//!
//! ```ini
//! [Service]
//! AmbientCapabilities=CAP_NET_ADMIN
//! CapabilityBoundingSet=CAP_NET_ADMIN
//! ```
//!
//! `/dev/net/tun` must exist (in a container: `--device /dev/net/tun --cap-add NET_ADMIN`).
//! The UDP listen port (51820 by default) is above 1024 and needs nothing more.

mod engine;
pub mod keys;
mod runtime;
pub mod wgquick;

#[cfg(test)]
mod interop;
#[cfg(any(test, feature = "test-util"))]
pub mod netns;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

pub use engine::PeerChanges;
pub use keys::StaticSecret;

/// Where the endpoint lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// TUN interface name, e.g. `sekisho0` (at most 15 bytes).
    pub interface: String,
    /// UDP address to listen on, e.g. `0.0.0.0:51820`.
    pub listen: SocketAddr,
    /// The gateway's own tunnel address.
    pub address: Ipv4Addr,
    /// Prefix length of the tunnel subnet, e.g. 24.
    pub prefix: u8,
    /// MTU of the TUN interface.
    pub mtu: u16,
}

impl TunnelConfig {
    pub const DEFAULT_MTU: u16 = 1420;

    pub fn new(interface: &str, listen: SocketAddr, address: Ipv4Addr, prefix: u8) -> Self {
        TunnelConfig {
            interface: interface.to_string(),
            listen,
            address,
            prefix,
            mtu: Self::DEFAULT_MTU,
        }
    }
}

/// One terminal's peer, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Registry terminal id.
    pub terminal: String,
    pub public_key: [u8; 32],
    /// The terminal's fixed tunnel address (a /32).
    pub address: Ipv4Addr,
}

/// Counters since the endpoint started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Peers configured now.
    pub peers: usize,
    /// Handshakes completed (responses sent, or our initiations answered).
    pub handshakes_ok: u64,
    /// Handshake messages that failed to authenticate or were refused (replays, bad keys).
    pub handshakes_failed: u64,
    /// Cookie replies sent instead of doing a handshake, under load.
    pub cookie_replies_sent: u64,
    /// Inner packets written to the TUN / sent to peers.
    pub packets_in: u64,
    pub packets_out: u64,
    /// Inner (IP) bytes written to the TUN / sent to peers.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub dropped: DropStats,
}

/// Packets dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Not a WireGuard message, or a bad inner packet.
    pub malformed: u64,
    /// Handshake message with a wrong mac1 (not meant for this gateway's key).
    pub bad_mac: u64,
    /// Handshake initiation from a static key that is not a configured peer (or whose static
    /// key does not decrypt).
    pub unknown_key: u64,
    /// Message for a receiver index that belongs to no configured peer.
    pub unknown_index: u64,
    /// Reached a peer that was being removed.
    pub removed_peer: u64,
    /// Initiations dropped because the handshake queue was full.
    pub handshake_queue_full: u64,
    /// Initiations over the per-source limit under load.
    pub source_rate_limited: u64,
    /// Decrypted packet whose source is not the sending peer's tunnel address.
    pub source_mismatch: u64,
    /// Decrypted packet not addressed to the gateway's tunnel address, or packet from the TUN
    /// not sent from it (the gateway routes nothing between terminals or other networks).
    pub not_gateway: u64,
    /// IPv6 packets (either direction).
    pub ipv6: u64,
    /// Packet from the TUN to an address of no configured peer.
    pub no_route: u64,
    /// Packet from the TUN for a peer that has not yet been heard from.
    pub no_endpoint: u64,
    /// Refused by the peer's session (bad authentication tag, replayed counter, no session).
    pub rejected_by_session: u64,
    /// Failed sends / writes.
    pub io: u64,
}

/// A running endpoint. Clones share it; it stops when [`Tunnel::shutdown`] is called or the
/// last clone is dropped, and the TUN interface disappears with it.
#[derive(Clone)]
pub struct Tunnel {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<engine::Engine>,
    interface: String,
    local_addr: SocketAddr,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.abort();
        }
    }
}

impl Tunnel {
    /// Create and configure the TUN interface (address, MTU, up), bind the UDP socket and
    /// spawn the tasks on the current tokio runtime. Needs `CAP_NET_ADMIN`.
    pub async fn start(cfg: TunnelConfig, private_key: StaticSecret) -> anyhow::Result<Tunnel> {
        let engine = Arc::new(engine::Engine::new(private_key, cfg.address, cfg.mtu));
        let started = runtime::start(&cfg, Arc::clone(&engine))?;
        tracing::info!(
            interface = %cfg.interface,
            listen = %started.local_addr,
            address = %cfg.address,
            prefix = cfg.prefix,
            public_key = %keys::encode(&engine.public_key()),
            "WireGuard endpoint up"
        );
        Ok(Tunnel {
            inner: Arc::new(Inner {
                engine,
                interface: cfg.interface,
                local_addr: started.local_addr,
                tasks: Mutex::new(started.tasks),
            }),
        })
    }

    /// Make the configured peers exactly `peers`: new ones are added, missing ones removed
    /// (their sessions destroyed before this returns: no more traffic either way), unchanged
    /// ones keep their sessions. A terminal, key or address listed twice gets no tunnel at all.
    /// When peers are removed this waits for the batch of datagrams being handled, if any
    /// (microseconds; no `.await` is held there).
    pub fn set_peers(&self, peers: Vec<PeerSpec>) -> PeerChanges {
        let changes = self.inner.engine.set_peers(peers);
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            tracing::info!(added = ?changes.added, removed = ?changes.removed, "tunnel peers changed");
        }
        for (terminal, reason) in &changes.rejected {
            tracing::error!(%terminal, %reason, "tunnel peer refused");
        }
        changes
    }

    /// The terminal whose tunnel address `addr` is, while its peer is configured.
    pub fn terminal_for(&self, addr: IpAddr) -> Option<String> {
        self.inner.engine.terminal_for(addr)
    }

    pub fn interface(&self) -> &str {
        &self.inner.interface
    }

    /// The UDP address actually bound (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.inner.engine.public_key()
    }

    pub fn stats(&self) -> TunnelStats {
        self.inner.engine.stats()
    }

    /// Stop the tasks and remove the TUN interface.
    pub async fn shutdown(self) {
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(interface = %self.inner.interface, "WireGuard endpoint stopped");
    }
}
