//! The dispatch logic with in-process peers: plain boringtun `Tunn`s play the terminals.
//! The interop checks against wireguard-go are in `interop.rs`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use boringtun::noise::{Tunn, TunnResult};

use super::engine::{Engine, HANDSHAKE_RATE_LIMIT, Io, MIN_SCRATCH, TunOutcome};
use super::keys::{self, PublicKey, StaticSecret};
use super::{PeerSpec, TunnelStats};

const GW: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);

#[derive(Default)]
struct FakeIo {
    udp: Vec<(SocketAddr, Vec<u8>)>,
    tun: Vec<Vec<u8>>,
}

impl Io for FakeIo {
    fn send_udp(&mut self, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.udp.push((to, packet.to_vec()));
        Ok(())
    }
    fn write_tun(&mut self, packet: &[u8]) -> io::Result<()> {
        self.tun.push(packet.to_vec());
        Ok(())
    }
}

/// A terminal: its own `Tunn` towards the gateway, its UDP address, its tunnel address.
struct Terminal {
    name: String,
    tunn: Tunn,
    public: [u8; 32],
    udp: SocketAddr,
    address: Ipv4Addr,
}

impl Terminal {
    fn new(engine: &Engine, name: &str, n: u8) -> Terminal {
        let (secret, public) = keys::generate();
        Terminal {
            name: name.to_string(),
            tunn: Tunn::new(
                secret,
                PublicKey::from(engine.public_key()),
                None,
                None,
                u32::from(n),
                None,
            ),
            public,
            udp: SocketAddr::from(([192, 0, 2, n], 40_000 + u16::from(n))),
            address: Ipv4Addr::new(10, 231, 0, 10 + n),
        }
    }

    fn spec(&self) -> PeerSpec {
        PeerSpec {
            terminal: self.name.clone(),
            public_key: self.public,
            address: self.address,
        }
    }

    fn initiation(&mut self, force: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        match self.tunn.format_handshake_initiation(&mut buf, force) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("no initiation: {other:?}"),
        }
    }

    fn encrypt(&mut self, inner: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MIN_SCRATCH];
        match self.tunn.encapsulate(inner, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("no datagram: {other:?}"),
        }
    }

    /// Feed a datagram from the gateway; returns what the terminal sends back and what it
    /// delivers to its own TUN.
    fn receive(&mut self, datagram: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; MIN_SCRATCH];
        let (mut net, mut tun) = (Vec::new(), Vec::new());
        match self.tunn.decapsulate(None, datagram, &mut buf) {
            TunnResult::WriteToNetwork(p) => {
                net.push(p.to_vec());
                while let TunnResult::WriteToNetwork(p) = self.tunn.decapsulate(None, &[], &mut buf)
                {
                    net.push(p.to_vec());
                }
            }
            TunnResult::WriteToTunnelV4(p, _) => tun.push(p.to_vec()),
            TunnResult::Done => {}
            other => panic!("terminal refused: {other:?}"),
        }
        (net, tun)
    }
}

fn engine() -> Engine {
    let (secret, _) = keys::generate();
    Engine::new(secret, GW, 1420)
}

/// A minimal IPv4 header (+ payload); checksums do not matter to the engine.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(payload);
    p
}

/// Run a full handshake of `t` with the gateway.
fn connect(engine: &Engine, t: &mut Terminal) {
    let mut io = FakeIo::default();
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let init = t.initiation(true);
    let job = engine
        .handle_udp(t.udp, &init, &mut scratch, &mut io)
        .expect("initiation passes the rate limiter");
    engine.handle_handshake(&job, &mut scratch, &mut io);
    assert_eq!(io.udp.len(), 1, "one handshake response");
    assert_eq!(io.udp[0].0, t.udp);
    let (replies, _) = t.receive(&io.udp[0].1);
    assert_eq!(replies.len(), 1, "keepalive");
    let mut io = FakeIo::default();
    assert!(
        engine
            .handle_udp(t.udp, &replies[0], &mut scratch, &mut io)
            .is_none()
    );
    assert!(io.tun.is_empty() && io.udp.is_empty());
}

/// Terminal → gateway: returns what reached the gateway's TUN.
fn send_in(engine: &Engine, t: &mut Terminal, inner: &[u8]) -> Vec<Vec<u8>> {
    let datagram = t.encrypt(inner);
    let mut io = FakeIo::default();
    let mut scratch = vec![0u8; MIN_SCRATCH];
    assert!(
        engine
            .handle_udp(t.udp, &datagram, &mut scratch, &mut io)
            .is_none()
    );
    io.tun
}

/// Gateway TUN → terminal: returns the datagrams the gateway sent.
fn send_out(engine: &Engine, inner: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut io = FakeIo::default();
    let mut scratch = vec![0u8; MIN_SCRATCH];
    assert!(matches!(
        engine.handle_tun(inner, &mut scratch, &mut io),
        TunOutcome::Done
    ));
    io.udp
}

fn stats(engine: &Engine) -> TunnelStats {
    engine.stats()
}

#[test]
fn handshake_then_traffic_both_ways() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    let changes = engine.set_peers(vec![a.spec()]);
    assert_eq!(changes.added, vec!["term-a".to_string()]);
    connect(&engine, &mut a);
    assert_eq!(stats(&engine).handshakes_ok, 1);

    let inner = ipv4(a.address, GW, b"hello gateway");
    assert_eq!(send_in(&engine, &mut a, &inner), vec![inner.clone()]);

    let reply = ipv4(GW, a.address, b"hello terminal");
    let out = send_out(&engine, &reply);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0, a.udp,
        "sent to the endpoint learnt from the handshake"
    );
    // 34 bytes of plaintext padded to 48: header 16 + 48 + tag 16.
    assert_eq!(out[0].1.len(), 80);
    let (_, delivered) = a.receive(&out[0].1);
    assert_eq!(delivered, vec![reply]);

    let s = stats(&engine);
    assert_eq!((s.packets_in, s.packets_out), (1, 1));
    assert_eq!(
        engine.terminal_for(IpAddr::V4(a.address)),
        Some("term-a".into())
    );
    assert_eq!(engine.terminal_for(IpAddr::V4(GW)), None);
}

#[test]
fn cryptokey_routing_refuses_other_sources_and_destinations() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    let mut b = Terminal::new(&engine, "term-b", 2);
    engine.set_peers(vec![a.spec(), b.spec()]);
    connect(&engine, &mut a);
    connect(&engine, &mut b);

    // A pretends to be B, or any other address.
    assert!(send_in(&engine, &mut a, &ipv4(b.address, GW, b"x")).is_empty());
    assert!(send_in(&engine, &mut a, &ipv4(Ipv4Addr::new(10, 9, 9, 9), GW, b"x")).is_empty());
    assert_eq!(stats(&engine).dropped.source_mismatch, 2);
    // A talks to B through the gateway, or to anywhere else.
    let a_addr = a.address;
    assert!(send_in(&engine, &mut a, &ipv4(a_addr, b.address, b"x")).is_empty());
    assert!(
        send_in(
            &engine,
            &mut a,
            &ipv4(a_addr, Ipv4Addr::new(8, 8, 8, 8), b"x")
        )
        .is_empty()
    );
    assert_eq!(stats(&engine).dropped.not_gateway, 2);
    // IPv6 inside the tunnel.
    let mut v6 = vec![0u8; 48];
    v6[0] = 0x60;
    v6[5] = 8;
    assert!(send_in(&engine, &mut a, &v6).is_empty());
    assert_eq!(stats(&engine).dropped.ipv6, 1);
    // B's own packets still go through.
    let ok = ipv4(b.address, GW, b"ok");
    assert_eq!(send_in(&engine, &mut b, &ok), vec![ok]);

    // Outbound: each destination goes to its own peer only; unknown ones nowhere.
    let to_b = send_out(&engine, &ipv4(GW, b.address, b"to b"));
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0].0, b.udp);
    assert!(send_out(&engine, &ipv4(GW, Ipv4Addr::new(10, 231, 0, 99), b"?")).is_empty());
    assert_eq!(stats(&engine).dropped.no_route, 1);
    // Nothing routed through the gateway host into a terminal's tunnel.
    let other = Ipv4Addr::new(192, 168, 1, 5);
    assert!(send_out(&engine, &ipv4(other, b.address, b"x")).is_empty());
    assert_eq!(stats(&engine).dropped.not_gateway, 3);
    let mut v6 = vec![0u8; 48];
    v6[0] = 0x60;
    assert!(send_out(&engine, &v6).is_empty());
}

#[test]
fn removed_peer_gets_no_traffic_and_kept_peer_keeps_its_session() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    let mut b = Terminal::new(&engine, "term-b", 2);
    engine.set_peers(vec![a.spec(), b.spec()]);
    connect(&engine, &mut a);
    connect(&engine, &mut b);
    let handshakes = stats(&engine).handshakes_ok;

    // A data packet of A's, encrypted before the removal, arrives after it.
    let in_flight = a.encrypt(&ipv4(a.address, GW, b"late"));
    let changes = engine.set_peers(vec![b.spec()]);
    assert_eq!(changes.removed, vec!["term-a".to_string()]);
    assert_eq!(changes.kept, vec!["term-b".to_string()]);
    assert_eq!(engine.terminal_for(IpAddr::V4(a.address)), None);

    let mut io = FakeIo::default();
    let mut scratch = vec![0u8; MIN_SCRATCH];
    engine.handle_udp(a.udp, &in_flight, &mut scratch, &mut io);
    assert!(io.tun.is_empty() && io.udp.is_empty());
    assert_eq!(stats(&engine).dropped.unknown_index, 1);
    assert!(send_out(&engine, &ipv4(GW, a.address, b"x")).is_empty());

    // A new handshake from A: silently dropped.
    let init = a.initiation(true);
    let job = engine
        .handle_udp(a.udp, &init, &mut scratch, &mut io)
        .unwrap();
    engine.handle_handshake(&job, &mut scratch, &mut io);
    assert!(io.udp.is_empty());
    assert_eq!(stats(&engine).dropped.unknown_key, 1);

    // B was kept: its session still works without a new handshake.
    let ok = ipv4(b.address, GW, b"still here");
    assert_eq!(send_in(&engine, &mut b, &ok), vec![ok]);
    assert_eq!(stats(&engine).handshakes_ok, handshakes);

    // A is added back: a fresh peer (new index), a new handshake is needed and works.
    engine.set_peers(vec![a.spec(), b.spec()]);
    engine.handle_udp(a.udp, &in_flight, &mut scratch, &mut io);
    assert!(io.tun.is_empty());
    connect(&engine, &mut a);
    let ok = ipv4(a.address, GW, b"back");
    assert_eq!(send_in(&engine, &mut a, &ok), vec![ok]);
}

#[test]
fn ambiguous_peers_get_no_tunnel() {
    let engine = engine();
    let a = Terminal::new(&engine, "term-a", 1);
    let b = Terminal::new(&engine, "term-b", 2);
    let mut same_addr = b.spec();
    same_addr.terminal = "term-c".into();
    same_addr.public_key = Terminal::new(&engine, "x", 3).public;
    let mut same_key = a.spec();
    same_key.terminal = "term-d".into();
    same_key.address = Ipv4Addr::new(10, 231, 0, 44);
    let mut gw_addr = Terminal::new(&engine, "term-e", 5).spec();
    gw_addr.address = GW;
    let changes = engine.set_peers(vec![a.spec(), b.spec(), same_addr, same_key, gw_addr]);
    let rejected: Vec<&str> = changes.rejected.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(rejected, ["term-a", "term-b", "term-c", "term-d", "term-e"]);
    assert!(changes.added.is_empty());
    assert_eq!(engine.peer_count(), 0);
}

#[test]
fn unknown_keys_are_dropped_silently_and_floods_get_cookies() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    engine.set_peers(vec![a.spec()]);
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut io = FakeIo::default();

    // Initiations from strangers: valid mac1 (they know the gateway's public key).
    let mut cookies = 0;
    let mut jobs = 0;
    for i in 0..(HANDSHAKE_RATE_LIMIT + 50) {
        let mut stranger = Terminal::new(&engine, "stranger", (i % 200) as u8);
        let init = stranger.initiation(false);
        match engine.handle_udp(stranger.udp, &init, &mut scratch, &mut io) {
            Some(job) => {
                jobs += 1;
                engine.handle_handshake(&job, &mut scratch, &mut io);
            }
            None => cookies += 1,
        }
    }
    assert!(
        cookies >= 50,
        "cookie replies once over the limit: {cookies}"
    );
    // Strangers never get a handshake response, only cookie replies (type 3).
    assert!(io.udp.iter().all(|(_, p)| p[0] == 3));
    let s = stats(&engine);
    assert_eq!(s.cookie_replies_sent, cookies);
    assert_eq!(s.dropped.unknown_key, jobs);
    assert_eq!(s.handshakes_ok, 0);

    // Under load, the legitimate terminal is asked for a cookie too, and then gets through.
    let mut io = FakeIo::default();
    let init = a.initiation(false);
    assert!(
        engine
            .handle_udp(a.udp, &init, &mut scratch, &mut io)
            .is_none()
    );
    assert_eq!(io.udp.len(), 1);
    assert_eq!(io.udp[0].1[0], 3, "cookie reply");
    let (nothing, _) = a.receive(&io.udp[0].1);
    assert!(nothing.is_empty());
    let retry = a.initiation(true); // now carries mac2
    let mut io = FakeIo::default();
    let job = engine
        .handle_udp(a.udp, &retry, &mut scratch, &mut io)
        .expect("a valid cookie passes");
    engine.handle_handshake(&job, &mut scratch, &mut io);
    assert_eq!(io.udp.len(), 1);
    assert_eq!(io.udp[0].1[0], 2, "handshake response");
    assert_eq!(stats(&engine).handshakes_ok, 1);

    // The limiter resets: a second later, no cookie needed.
    engine.reset_rate_limits();
}

#[test]
fn per_source_limit_under_load() {
    let engine = engine();
    let a = Terminal::new(&engine, "term-a", 1);
    engine.set_peers(vec![a.spec()]);
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut io = FakeIo::default();
    // Push the endpoint under load.
    for _ in 0..HANDSHAKE_RATE_LIMIT {
        let mut s = Terminal::new(&engine, "s", 9);
        let init = s.initiation(false);
        engine.handle_udp(s.udp, &init, &mut scratch, &mut io);
    }
    // One source that answers cookies (owns its address): its valid-cookie initiations are
    // limited to the burst.
    let mut s = Terminal::new(&engine, "s", 7);
    let init = s.initiation(false);
    let mut io = FakeIo::default();
    assert!(
        engine
            .handle_udp(s.udp, &init, &mut scratch, &mut io)
            .is_none()
    );
    s.receive(&io.udp[0].1);
    let inits: Vec<Vec<u8>> = (0..30).map(|_| s.initiation(true)).collect();
    let started = std::time::Instant::now();
    let mut passed = 0;
    for init in &inits {
        if engine
            .handle_udp(s.udp, init, &mut scratch, &mut io)
            .is_some()
        {
            passed += 1;
        }
    }
    // The burst, plus what refilled meanwhile (20 a second).
    let refill = (started.elapsed().as_secs_f64() * 20.0).ceil() as u64;
    assert!(
        passed >= 5 && passed <= 5 + refill,
        "{passed} (refill {refill})"
    );
    assert!(stats(&engine).dropped.source_rate_limited >= 30 - 5 - refill);
}

#[test]
fn hostile_datagrams_do_not_panic() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    engine.set_peers(vec![a.spec()]);
    connect(&engine, &mut a);
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut io = FakeIo::default();
    let from = SocketAddr::from(([198, 51, 100, 1], 9));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = a.encrypt(&ipv4(a.address, GW, b"x"));
    for round in 0..5000 {
        let len = match round % 5 {
            0 => (next() % 4) as usize,
            1 => 148,
            2 => 92,
            3 => 64,
            _ => (next() % 1600) as usize,
        };
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 4 {
            d[0] = (next() % 5) as u8;
            d[1..4].fill(0);
        }
        if round % 7 == 0 && d.len() >= 16 {
            // A data message for the real receiver index, with garbage inside.
            d[..8].copy_from_slice(&valid[..8]);
        }
        if let Some(job) = engine.handle_udp(from, &d, &mut scratch, &mut io) {
            engine.handle_handshake(&job, &mut scratch, &mut io);
        }
        let _ = engine.handle_tun(&d, &mut scratch, &mut io);
    }
    assert!(io.tun.is_empty());
    let s = stats(&engine);
    assert_eq!(s.handshakes_ok, 1);
    // The real terminal is unaffected.
    let ok = ipv4(a.address, GW, b"fine");
    assert_eq!(send_in(&engine, &mut a, &ok), vec![ok]);
}

#[test]
fn timers_send_keepalives_to_the_endpoint() {
    let engine = engine();
    let mut a = Terminal::new(&engine, "term-a", 1);
    engine.set_peers(vec![a.spec()]);
    connect(&engine, &mut a);
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut io = FakeIo::default();
    engine.tick(&mut scratch, &mut io);
    // Nothing is due right after a handshake; ticking must simply not disturb the session.
    assert!(io.udp.iter().all(|(to, _)| *to == a.udp));
    let ok = ipv4(a.address, GW, b"after tick");
    assert_eq!(send_in(&engine, &mut a, &ok), vec![ok]);
}

#[test]
fn key_of_engine_matches() {
    let (secret, public) = keys::generate();
    let e = Engine::new(StaticSecret::from(secret.to_bytes()), GW, 1420);
    assert_eq!(e.public_key(), public);
}
