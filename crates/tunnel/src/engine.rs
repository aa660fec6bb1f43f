//! The dispatch core of the WireGuard endpoint, free of I/O so that tests can drive it with
//! in-process peers: which peer a datagram belongs to (receiver index, or the static key inside
//! a handshake initiation), rate limiting of handshakes (boringtun's cookie [`RateLimiter`] plus
//! a per-source token bucket), cryptokey routing in both directions, and live peer changes.
//!
//! Every send happens through [`Io`] while the peer's lock is held (TUN writes are batched, under
//! `batch_gate`), so once [`Engine::set_peers`] has returned, a removed peer's packets are
//! neither written to the TUN nor sent (the only exception is an outbound datagram that was
//! already encrypted and found the UDP socket full: see [`TunOutcome::Blocked`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::{DropStats, PeerSpec, TunnelStats};

/// Handshake messages per second (over all peers) above which the endpoint answers
/// initiations with cookie replies instead of doing Diffie-Hellman (boringtun's device uses
/// the same figure). Initiations of configured peers count twice: see `mod.rs`.
pub(crate) const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Under load, initiations that carry a valid cookie (mac2) are further limited per source
/// address, as the Linux kernel's WireGuard does: a token bucket of this many per second...
const PER_SOURCE_PER_SEC: f64 = 20.0;
/// ... with this burst.
const PER_SOURCE_BURST: f64 = 5.0;
/// Most source addresses tracked by the per-source limiter; new sources beyond it are refused
/// under load until the next cleanup.
const PER_SOURCE_TABLE: usize = 4096;
/// Size of a handshake initiation.
pub(crate) const HANDSHAKE_INIT_LEN: usize = 148;
/// Scratch buffers passed to the engine must be at least this large (boringtun panics on a
/// destination smaller than the datagram).
pub const MIN_SCRATCH: usize = 65_536 + 64;

/// Where the engine's output goes. Calls are made with the peer's lock held: they must not
/// block (the real implementation uses `try_send`, and queues TUN writes in a batch that the
/// UDP task writes while holding `batch_gate`).
pub(crate) trait Io {
    fn send_udp(&mut self, to: SocketAddr, packet: &[u8]) -> io::Result<()>;
    fn write_tun(&mut self, packet: &[u8]) -> io::Result<()>;
}

/// A handshake initiation that passed the rate limiter, waiting for the (bounded) handshake
/// worker: parsing it costs a Diffie-Hellman.
pub(crate) struct HandshakeJob {
    pub from: SocketAddr,
    pub packet: [u8; HANDSHAKE_INIT_LEN],
}

/// What happened to a packet read from the TUN.
pub(crate) enum TunOutcome {
    Done,
    /// The UDP socket was full: `scratch[range]` is to be sent to `to` once it is writable, if
    /// `peer` is still configured then.
    Blocked {
        peer: Arc<Peer>,
        to: SocketAddr,
        range: Range<usize>,
    },
}

pub(crate) struct Peer {
    pub terminal: String,
    pub public_key: [u8; 32],
    pub address: Ipv4Addr,
    index: u32,
    live: AtomicBool,
    state: Mutex<PeerState>,
}

struct PeerState {
    /// `None` once the peer is removed: its sessions are gone with the `Tunn`.
    tunn: Option<Box<Tunn>>,
    /// Learnt from the last authenticated datagram (terminals roam, sit behind NAT).
    endpoint: Option<SocketAddr>,
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct PeerTable {
    by_key: HashMap<[u8; 32], Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    by_addr: HashMap<Ipv4Addr, Arc<Peer>>,
}

/// What [`Engine::set_peers`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
    /// Terminals left without a tunnel, with the reason (duplicate key or address, the
    /// gateway's own address or key).
    pub rejected: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub cookie_replies_sent: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub d_malformed: AtomicU64,
    pub d_bad_mac: AtomicU64,
    pub d_unknown_key: AtomicU64,
    pub d_unknown_index: AtomicU64,
    pub d_removed_peer: AtomicU64,
    pub d_handshake_queue_full: AtomicU64,
    pub d_source_rate_limited: AtomicU64,
    pub d_source_mismatch: AtomicU64,
    pub d_not_gateway: AtomicU64,
    pub d_ipv6: AtomicU64,
    pub d_no_route: AtomicU64,
    pub d_no_endpoint: AtomicU64,
    pub d_rejected_by_session: AtomicU64,
    pub d_io: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-source token buckets for handshake initiations under load, bounded in size.
#[derive(Default)]
struct SourceLimiter {
    buckets: HashMap<IpAddr, Bucket>,
}

impl SourceLimiter {
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= PER_SOURCE_TABLE {
            return false;
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: PER_SOURCE_BURST,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * PER_SOURCE_PER_SEC).min(PER_SOURCE_BURST);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget sources whose bucket has refilled.
    fn cleanup(&mut self, now: Instant) {
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * PER_SOURCE_PER_SEC < PER_SOURCE_BURST
        });
    }
}

pub(crate) struct Engine {
    private: StaticSecret,
    public: PublicKey,
    gateway: Ipv4Addr,
    mtu: usize,
    limiter: Arc<RateLimiter>,
    /// Initiations seen in the current second, to know when we are "under load" (boringtun's
    /// limiter keeps that to itself).
    inits_this_period: AtomicU64,
    sources: Mutex<SourceLimiter>,
    peers: RwLock<PeerTable>,
    /// Held (shared) by the UDP task from decrypting a batch of datagrams until the batch is
    /// written to the TUN; [`Engine::set_peers`] takes it exclusively after removing peers, so
    /// that a batch holding a removed peer's packets is finished before it returns.
    pub batch_gate: RwLock<()>,
    pub counters: Counters,
}

impl Engine {
    pub fn new(private: StaticSecret, gateway: Ipv4Addr, mtu: u16) -> Engine {
        let public = PublicKey::from(&private);
        Engine {
            mtu: usize::from(mtu),
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            private,
            public,
            gateway,
            inits_this_period: AtomicU64::new(0),
            sources: Mutex::new(SourceLimiter::default()),
            peers: RwLock::new(PeerTable::default()),
            batch_gate: RwLock::new(()),
            counters: Counters::default(),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, PeerTable> {
        self.peers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the configured peers: new ones get a fresh `Tunn` and receiver index, missing
    /// ones are removed (their `Tunn` dropped under their lock), unchanged ones (same terminal,
    /// key and address) keep their sessions.
    pub fn set_peers(&self, specs: Vec<PeerSpec>) -> PeerChanges {
        let mut changes = PeerChanges::default();

        // Refuse ambiguous bindings outright: a key or an address claimed twice gets no tunnel
        // at all (fail closed), so does a terminal named twice.
        let mut key_count: HashMap<[u8; 32], usize> = HashMap::new();
        let mut addr_count: HashMap<Ipv4Addr, usize> = HashMap::new();
        let mut term_count: HashMap<&str, usize> = HashMap::new();
        for s in &specs {
            *key_count.entry(s.public_key).or_default() += 1;
            *addr_count.entry(s.address).or_default() += 1;
            *term_count.entry(s.terminal.as_str()).or_default() += 1;
        }
        let mut wanted: Vec<&PeerSpec> = Vec::with_capacity(specs.len());
        for s in &specs {
            let reason = if term_count[s.terminal.as_str()] > 1 {
                Some("terminal listed twice")
            } else if key_count[&s.public_key] > 1 {
                Some("public key shared with another terminal")
            } else if addr_count[&s.address] > 1 {
                Some("tunnel address shared with another terminal")
            } else if s.address == self.gateway {
                Some("tunnel address is the gateway's own")
            } else if s.public_key == *self.public.as_bytes() {
                Some("public key is the gateway's own")
            } else if s.address.is_unspecified()
                || s.address.is_broadcast()
                || s.address.is_multicast()
            {
                Some("tunnel address is not a unicast address")
            } else {
                None
            };
            match reason {
                Some(r) => changes.rejected.push((s.terminal.clone(), r.to_string())),
                None => wanted.push(s),
            }
        }

        let mut removed: Vec<Arc<Peer>> = Vec::new();
        {
            let mut table = self.peers.write().unwrap_or_else(|e| e.into_inner());
            let mut next = PeerTable::default();
            for s in wanted {
                let existing = table
                    .by_key
                    .get(&s.public_key)
                    .filter(|p| p.terminal == s.terminal && p.address == s.address && p.is_live());
                let peer = match existing {
                    Some(p) => {
                        changes.kept.push(s.terminal.clone());
                        Arc::clone(p)
                    }
                    None => {
                        let index = loop {
                            let i = random_index();
                            if !table.by_index.contains_key(&i) && !next.by_index.contains_key(&i) {
                                break i;
                            }
                        };
                        let tunn = Tunn::new(
                            self.private.clone(),
                            PublicKey::from(s.public_key),
                            None,
                            None,
                            index,
                            Some(Arc::clone(&self.limiter)),
                        );
                        changes.added.push(s.terminal.clone());
                        Arc::new(Peer {
                            terminal: s.terminal.clone(),
                            public_key: s.public_key,
                            address: s.address,
                            index,
                            live: AtomicBool::new(true),
                            state: Mutex::new(PeerState {
                                tunn: Some(Box::new(tunn)),
                                endpoint: None,
                            }),
                        })
                    }
                };
                next.by_index.insert(peer.index, Arc::clone(&peer));
                next.by_addr.insert(peer.address, Arc::clone(&peer));
                next.by_key.insert(peer.public_key, peer);
            }
            for (idx, p) in table.by_index.iter() {
                if next.by_index.get(idx).is_none_or(|n| !Arc::ptr_eq(n, p)) {
                    removed.push(Arc::clone(p));
                }
            }
            *table = next;
        }
        // Outside the table lock, but before returning: destroy the removed peers' sessions,
        // then wait for a TUN batch in progress (it may hold their last packets).
        let any_removed = !removed.is_empty();
        for p in removed {
            p.live.store(false, Ordering::Release);
            let mut st = p.lock();
            st.tunn = None;
            st.endpoint = None;
            drop(st);
            changes.removed.push(p.terminal.clone());
        }
        if any_removed {
            drop(self.batch_gate.write().unwrap_or_else(|e| e.into_inner()));
        }
        changes
    }

    pub fn terminal_for(&self, addr: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = addr else { return None };
        self.table()
            .by_addr
            .get(&v4)
            .filter(|p| p.is_live())
            .map(|p| p.terminal.clone())
    }

    pub fn peer_count(&self) -> usize {
        self.table().by_key.len()
    }

    fn all_peers(&self) -> Vec<Arc<Peer>> {
        self.table().by_index.values().cloned().collect()
    }

    /// A datagram from the network. Handshake initiations that pass the rate limiter are
    /// returned for the handshake worker; everything else is handled here.
    pub fn handle_udp(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut [u8],
        io: &mut impl Io,
    ) -> Option<HandshakeJob> {
        let c = &self.counters;
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(p) => p,
            Err(_) => {
                inc(&c.d_malformed);
                return None;
            }
        };
        let receiver_idx = match packet {
            Packet::HandshakeInit(_) => return self.screen_initiation(from, datagram, scratch, io),
            Packet::HandshakeResponse(ref p) => p.receiver_idx,
            Packet::PacketCookieReply(ref p) => p.receiver_idx,
            Packet::PacketData(ref p) => p.receiver_idx,
        };
        let is_handshake = matches!(packet, Packet::HandshakeResponse(_));
        let peer = self.table().by_index.get(&(receiver_idx >> 8)).cloned();
        let Some(peer) = peer else {
            inc(&c.d_unknown_index);
            return None;
        };
        let mut st = peer.lock();
        let Some(tunn) = st.tunn.as_mut() else {
            inc(&c.d_removed_peer);
            return None;
        };
        // boringtun offers no public way to hand it an already parsed packet: decapsulate
        // parses (and for handshakes, rate-limits) again.
        let result = tunn.decapsulate(Some(from.ip()), datagram, scratch);
        let mut authenticated = true;
        let mut flush = false;
        match result {
            TunnResult::Done => {}
            TunnResult::Err(e) => {
                authenticated = false;
                self.count_error(&e, is_handshake);
            }
            TunnResult::WriteToNetwork(out) => {
                // A keepalive after a completed handshake (we initiated), or a cookie reply.
                if is_handshake && out.first() == Some(&4) {
                    inc(&c.handshakes_ok);
                    flush = true;
                } else if out.first() == Some(&3) {
                    inc(&c.cookie_replies_sent);
                    authenticated = false;
                }
                if io.send_udp(from, out).is_err() {
                    inc(&c.d_io);
                }
            }
            TunnResult::WriteToTunnelV4(inner, src) => {
                if src != peer.address {
                    inc(&c.d_source_mismatch);
                    tracing::debug!(terminal = %peer.terminal, %src, "tunnel: inner source is not the peer's address");
                } else if Tunn::dst_address(inner) != Some(IpAddr::V4(self.gateway)) {
                    // Terminals talk to the gateway only, not to each other through it.
                    inc(&c.d_not_gateway);
                } else if io.write_tun(inner).is_err() {
                    inc(&c.d_io);
                } else {
                    inc(&c.packets_in);
                    add(&c.bytes_in, inner.len());
                }
            }
            TunnResult::WriteToTunnelV6(..) => inc(&c.d_ipv6),
        }
        if authenticated {
            st.endpoint = Some(from);
        }
        if flush {
            self.flush_queue(&mut st, from, scratch, io);
        }
        None
    }

    fn flush_queue(
        &self,
        st: &mut PeerState,
        to: SocketAddr,
        scratch: &mut [u8],
        io: &mut impl Io,
    ) {
        let Some(tunn) = st.tunn.as_mut() else { return };
        while let TunnResult::WriteToNetwork(out) = tunn.decapsulate(None, &[], scratch) {
            if io.send_udp(to, out).is_err() {
                inc(&self.counters.d_io);
            } else {
                inc(&self.counters.packets_out);
            }
        }
    }

    fn count_error(&self, e: &WireGuardError, is_handshake: bool) {
        let c = &self.counters;
        if is_handshake {
            inc(&c.handshakes_failed);
        }
        match e {
            WireGuardError::InvalidMac => inc(&c.d_bad_mac),
            WireGuardError::InvalidPacket | WireGuardError::IncorrectPacketLength => {
                inc(&c.d_malformed)
            }
            _ => inc(&c.d_rejected_by_session),
        }
        tracing::debug!(error = ?e, "tunnel: datagram refused");
    }

    /// The cheap checks on an initiation: mac1, the cookie under load (answering with a cookie
    /// reply), the per-source bucket under load.
    fn screen_initiation(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut [u8],
        io: &mut impl Io,
    ) -> Option<HandshakeJob> {
        let c = &self.counters;
        let under_load =
            self.inits_this_period.fetch_add(1, Ordering::Relaxed) >= HANDSHAKE_RATE_LIMIT;
        match self
            .limiter
            .verify_packet(Some(from.ip()), datagram, scratch)
        {
            Ok(_) => {}
            Err(TunnResult::WriteToNetwork(cookie)) => {
                if io.send_udp(from, cookie).is_ok() {
                    inc(&c.cookie_replies_sent);
                } else {
                    inc(&c.d_io);
                }
                return None;
            }
            Err(TunnResult::Err(WireGuardError::InvalidMac)) => {
                inc(&c.d_bad_mac);
                return None;
            }
            Err(_) => {
                inc(&c.d_malformed);
                return None;
            }
        }
        if under_load {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            if !sources.allow(from.ip(), Instant::now()) {
                inc(&c.d_source_rate_limited);
                return None;
            }
        }
        let mut packet = [0u8; HANDSHAKE_INIT_LEN];
        packet.copy_from_slice(datagram);
        Some(HandshakeJob { from, packet })
    }

    /// The expensive part of an initiation: find the peer by the static key inside (one DH),
    /// then let its `Tunn` answer. Unknown keys are dropped silently.
    pub fn handle_handshake(&self, job: &HandshakeJob, scratch: &mut [u8], io: &mut impl Io) {
        let c = &self.counters;
        let Ok(Packet::HandshakeInit(init)) = Tunn::parse_incoming_packet(&job.packet) else {
            inc(&c.d_malformed);
            return;
        };
        let half = match parse_handshake_anon(&self.private, &self.public, &init) {
            Ok(h) => h,
            Err(e) => {
                // The static key does not even decrypt: nobody we know.
                inc(&c.handshakes_failed);
                inc(&c.d_unknown_key);
                tracing::debug!(error = ?e, from = %job.from, "tunnel: initiation refused");
                return;
            }
        };
        let peer = self.table().by_key.get(&half.peer_static_public).cloned();
        let Some(peer) = peer else {
            inc(&c.d_unknown_key);
            return;
        };
        let mut st = peer.lock();
        let Some(tunn) = st.tunn.as_mut() else {
            inc(&c.d_removed_peer);
            return;
        };
        match tunn.decapsulate(Some(job.from.ip()), &job.packet, scratch) {
            TunnResult::WriteToNetwork(out) => {
                if out.first() == Some(&2) {
                    inc(&c.handshakes_ok);
                    tracing::debug!(terminal = %peer.terminal, from = %job.from, "tunnel: handshake");
                } else {
                    inc(&c.cookie_replies_sent);
                }
                let response = out.first() == Some(&2);
                if io.send_udp(job.from, out).is_err() {
                    inc(&c.d_io);
                }
                if response {
                    st.endpoint = Some(job.from);
                    self.flush_queue(&mut st, job.from, scratch, io);
                }
            }
            TunnResult::Err(e) => self.count_error(&e, true),
            _ => inc(&c.handshakes_failed),
        }
    }

    /// A packet read from the TUN: route it to the peer whose tunnel address is its
    /// destination, encrypt and send it.
    pub fn handle_tun(&self, packet: &[u8], scratch: &mut [u8], io: &mut impl Io) -> TunOutcome {
        let c = &self.counters;
        let dst = match packet.first().map(|b| b >> 4) {
            Some(4) => Tunn::dst_address(packet),
            Some(6) => {
                inc(&c.d_ipv6);
                return TunOutcome::Done;
            }
            _ => None,
        };
        let Some(IpAddr::V4(dst)) = dst else {
            inc(&c.d_malformed);
            return TunOutcome::Done;
        };
        // Only the gateway itself talks to terminals: nothing routed through this host.
        if packet[12..16] != self.gateway.octets() {
            inc(&c.d_not_gateway);
            return TunOutcome::Done;
        }
        let peer = self.table().by_addr.get(&dst).cloned();
        let Some(peer) = peer else {
            inc(&c.d_no_route);
            return TunOutcome::Done;
        };
        let mut st = peer.lock();
        let endpoint = st.endpoint;
        let Some(tunn) = st.tunn.as_mut() else {
            inc(&c.d_removed_peer);
            return TunOutcome::Done;
        };
        // The gateway never learns where a terminal is except from its authenticated
        // datagrams: until then there is nowhere to send.
        let Some(to) = endpoint else {
            inc(&c.d_no_endpoint);
            return TunOutcome::Done;
        };
        let base = scratch.as_ptr() as usize;
        // Pad the plaintext with zeros to a multiple of 16 bytes (not beyond the MTU), as the
        // protocol asks and boringtun does not ("TODO: spec requires padding" in its
        // session.rs); the receiver cuts at the IP length.
        let padded = padded_len(packet.len(), self.mtu);
        let room = scratch.len().saturating_sub(padded);
        let (dst, src): (&mut [u8], &[u8]) = if padded > packet.len() && room >= padded + 148 {
            let (dst, tail) = scratch.split_at_mut(room);
            tail[..packet.len()].copy_from_slice(packet);
            tail[packet.len()..].fill(0);
            (dst, tail)
        } else {
            (scratch, packet)
        };
        match tunn.encapsulate(src, dst) {
            TunnResult::WriteToNetwork(out) => {
                let is_data = out.first() == Some(&4);
                match io.send_udp(to, out) {
                    Ok(()) => {
                        if is_data {
                            inc(&c.packets_out);
                            add(&c.bytes_out, packet.len());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let start = out.as_ptr() as usize - base;
                        let range = start..start + out.len();
                        drop(st);
                        if is_data {
                            inc(&c.packets_out);
                            add(&c.bytes_out, packet.len());
                        }
                        return TunOutcome::Blocked { peer, to, range };
                    }
                    Err(_) => inc(&c.d_io),
                }
            }
            TunnResult::Done => {}
            TunnResult::Err(e) => {
                inc(&c.d_io);
                tracing::debug!(error = ?e, "tunnel: encapsulate failed");
            }
            _ => {}
        }
        TunOutcome::Done
    }

    /// Run every peer's timers (call every 100–250 ms) and send what they ask for.
    pub fn tick(&self, scratch: &mut [u8], io: &mut impl Io) {
        for peer in self.all_peers() {
            let mut st = peer.lock();
            let endpoint = st.endpoint;
            let Some(tunn) = st.tunn.as_mut() else {
                continue;
            };
            match tunn.update_timers(scratch) {
                TunnResult::WriteToNetwork(out) => {
                    if let Some(to) = endpoint
                        && io.send_udp(to, out).is_err()
                    {
                        inc(&self.counters.d_io);
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) | TunnResult::Done => {}
                TunnResult::Err(e) => {
                    tracing::debug!(terminal = %peer.terminal, error = ?e, "tunnel: timer")
                }
                _ => {}
            }
        }
    }

    /// Once a second: reset the handshake counters of the rate limiters.
    pub fn reset_rate_limits(&self) {
        self.limiter.reset_count();
        self.inits_this_period.store(0, Ordering::Relaxed);
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cleanup(Instant::now());
    }

    pub fn stats(&self) -> TunnelStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TunnelStats {
            peers: self.peer_count(),
            handshakes_ok: g(&c.handshakes_ok),
            handshakes_failed: g(&c.handshakes_failed),
            cookie_replies_sent: g(&c.cookie_replies_sent),
            packets_in: g(&c.packets_in),
            packets_out: g(&c.packets_out),
            bytes_in: g(&c.bytes_in),
            bytes_out: g(&c.bytes_out),
            dropped: DropStats {
                malformed: g(&c.d_malformed),
                bad_mac: g(&c.d_bad_mac),
                unknown_key: g(&c.d_unknown_key),
                unknown_index: g(&c.d_unknown_index),
                removed_peer: g(&c.d_removed_peer),
                handshake_queue_full: g(&c.d_handshake_queue_full),
                source_rate_limited: g(&c.d_source_rate_limited),
                source_mismatch: g(&c.d_source_mismatch),
                not_gateway: g(&c.d_not_gateway),
                ipv6: g(&c.d_ipv6),
                no_route: g(&c.d_no_route),
                no_endpoint: g(&c.d_no_endpoint),
                rejected_by_session: g(&c.d_rejected_by_session),
                io: g(&c.d_io),
            },
        }
    }
}

/// Length of a plaintext of `len` bytes once padded: the next multiple of 16, but no more than
/// the MTU (and never less than `len`).
fn padded_len(len: usize, mtu: usize) -> usize {
    if len >= mtu {
        return len;
    }
    len.next_multiple_of(16).min(mtu)
}

/// A random, non-zero 24-bit receiver index (boringtun puts it in the top 24 bits of its
/// session indices: `index << 8`).
fn random_index() -> u32 {
    loop {
        let mut b = [0u8; 4];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            continue;
        }
        let i = u32::from_le_bytes(b) & 0x00ff_ffff;
        if i != 0 {
            return i;
        }
    }
}
