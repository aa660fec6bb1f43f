//! Interop with an independent WireGuard implementation: Debian's `wireguard-go`, configured
//! with `wg`, is the terminal in its own network namespace; Sekisho's endpoint runs in this
//! process, in the gateway's namespace (see `netns.rs`). Needs root, iproute2, wireguard-go
//! and wireguard-tools (tests/run.sh installs them): fails, never skips, without them.
//!
//! cargo test -p sekisho --lib tunnel::interop -- --nocapture

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};

use super::keys::{self, PublicKey};
use super::netns::{self, Bed, WgPeer};
use super::{PeerSpec, Tunnel, TunnelConfig};

const ECHO_PORT: u16 = 8080;
const TERM_PORT: u16 = 9090;

/// The bed must be buildable: a test that cannot run fails rather than passing unseen.
fn require_bed() {
    if let Some(why) = netns::unavailable() {
        panic!("the WireGuard interop test cannot run here: {why}");
    }
}

/// Sekisho's endpoint, in the gateway namespace, with a TCP echo server on its tunnel address
/// that records who connected.
struct Gateway {
    tunnel: Tunnel,
    seen: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    fn start(bed: &Bed, secret: keys::StaticSecret) -> Gateway {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let interface = format!("skg{}", bed.tag);
        let thread = bed.in_ns(&bed.gw, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let cfg = TunnelConfig::new(
                    &interface,
                    SocketAddr::from((netns::GW_UNDERLAY, netns::WG_PORT)),
                    netns::GW_TUNNEL,
                    24,
                );
                let tunnel = Tunnel::start(cfg, secret).await.expect("endpoint starts");
                let listener = tokio::net::TcpListener::bind((netns::GW_TUNNEL, ECHO_PORT))
                    .await
                    .unwrap();
                let seen = Arc::new(Mutex::new(Vec::new()));
                let seen2 = Arc::clone(&seen);
                tokio::spawn(async move {
                    loop {
                        let Ok((mut s, peer)) = listener.accept().await else {
                            continue;
                        };
                        seen2.lock().unwrap().push(peer);
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                });
                tx.send((tunnel.clone(), seen)).unwrap();
                let _ = stop_rx.await;
                tunnel.shutdown().await;
            });
        });
        let (tunnel, seen) = rx.recv().expect("gateway thread started");
        Gateway {
            tunnel,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(msg)?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Start the terminal: wireguard-go with the gateway as its only peer.
fn start_terminal(bed: &mut Bed, secret: &keys::StaticSecret, gateway_public: [u8; 32]) {
    let endpoint = format!("{}:{}", netns::GW_UNDERLAY, netns::WG_PORT);
    let gw_pub = keys::encode(&gateway_public);
    let term = bed.term.clone();
    bed.wireguard_go(
        &term,
        &format!("wt{}", bed.tag),
        netns::TERM_TUNNEL,
        32,
        &keys::encode_secret(secret),
        0,
        WgPeer {
            public_b64: &gw_pub,
            allowed_ips: &format!("{}/32", netns::GW_TUNNEL),
            endpoint: Some(&endpoint),
            keepalive: Some("25"),
        },
    )
    .expect("wireguard-go terminal");
}

#[test]
fn wireguard_go_terminal_talks_both_ways_until_removed() {
    require_bed();
    let mut bed = Bed::new().expect("network namespaces");
    let (gw_secret, gw_public) = keys::generate();
    let (t_secret, t_public) = keys::generate();
    let gw = Gateway::start(&bed, gw_secret);
    let changes = gw.tunnel.set_peers(vec![PeerSpec {
        terminal: "term-1".into(),
        public_key: t_public,
        address: netns::TERM_TUNNEL,
    }]);
    assert_eq!(changes.added, ["term-1"]);
    start_terminal(&mut bed, &t_secret, gw_public);

    // The terminal side of the test: a TCP echo server on the terminal's tunnel address, and
    // a client that connects to the gateway, keeps the connection across the removal.
    let (to_main, from_term) = mpsc::channel::<Result<(), String>>();
    let (to_term, from_main) = mpsc::channel::<()>();
    let term_listener = bed.in_ns(&bed.term, || {
        let l = TcpListener::bind((netns::TERM_TUNNEL, TERM_PORT)).unwrap();
        if let Ok((mut s, peer)) = l.accept() {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(&buf[..n]);
            return Some(peer);
        }
        None
    });
    let term_client = bed.in_ns(&bed.term, move || {
        let gw_echo = SocketAddr::from((netns::GW_TUNNEL, ECHO_PORT));
        let started = Instant::now();
        let mut s = match TcpStream::connect_timeout(&gw_echo, Duration::from_secs(15)) {
            Ok(s) => s,
            Err(e) => return to_main.send(Err(format!("connect: {e}"))).unwrap(),
        };
        let r = round_trip(&mut s, b"hello from wireguard-go");
        eprintln!(
            "terminal -> gateway over the tunnel: {:?} after {:?}",
            r.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            started.elapsed()
        );
        if r.ok().as_deref() != Some(&b"hello from wireguard-go"[..]) {
            return to_main.send(Err("no echo".into())).unwrap();
        }
        to_main.send(Ok(())).unwrap();
        // Wait for the removal, then everything must fail.
        from_main.recv().unwrap();
        let after = round_trip(&mut s, b"after removal");
        let fresh = TcpStream::connect_timeout(&gw_echo, Duration::from_secs(3));
        to_main
            .send(match (&after, &fresh) {
                (Err(_), Err(_)) => Ok(()),
                _ => Err(format!(
                    "traffic after removal: old connection {after:?}, new {fresh:?}"
                )),
            })
            .unwrap();
    });

    from_term
        .recv()
        .unwrap()
        .expect("terminal reaches the gateway");
    let seen = gw.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].ip(), IpAddr::V4(netns::TERM_TUNNEL));
    assert_eq!(
        gw.tunnel.terminal_for(seen[0].ip()),
        Some("term-1".to_string())
    );

    // Gateway -> terminal, over the same tunnel.
    let reply = bed
        .in_ns(&bed.gw, || {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((netns::TERM_TUNNEL, TERM_PORT)),
                Duration::from_secs(5),
            )?;
            round_trip(&mut s, b"hello from sekisho")
        })
        .join()
        .unwrap()
        .expect("gateway reaches the terminal");
    assert_eq!(reply, b"hello from sekisho");
    let peer = term_listener.join().unwrap().expect("terminal accepted");
    assert_eq!(peer.ip(), IpAddr::V4(netns::GW_TUNNEL));
    // Revocation: remove the peer. Nothing more goes through, either way. The counters are
    // read once it is gone: the last packets of the round trip above (the terminal's final
    // ACK or FIN) may still arrive until then, and rightly reach the TUN.
    let changes = gw.tunnel.set_peers(vec![]);
    let before = gw.tunnel.stats();
    eprintln!("stats at removal: {before:?}");
    assert!(before.handshakes_ok >= 1);
    assert!(before.packets_in > 0 && before.packets_out > 0);
    assert_eq!(changes.removed, ["term-1"]);
    assert_eq!(gw.tunnel.terminal_for(IpAddr::V4(netns::TERM_TUNNEL)), None);
    to_term.send(()).unwrap();
    from_term.recv().unwrap().expect("no traffic after removal");
    term_client.join().unwrap();
    let out = bed
        .in_ns(&bed.gw, || {
            TcpStream::connect_timeout(
                &SocketAddr::from((netns::TERM_TUNNEL, TERM_PORT)),
                Duration::from_secs(2),
            )
            .map(|_| ())
        })
        .join()
        .unwrap();
    assert!(out.is_err(), "gateway -> removed terminal must fail");
    let after = gw.tunnel.stats();
    eprintln!("stats after removal: {after:?}");
    assert_eq!(
        after.packets_in, before.packets_in,
        "nothing reached the TUN"
    );
    assert!(after.dropped.unknown_index + after.dropped.no_route > 0);
}

/// Initiations for the gateway from `n` unknown keys (valid mac1: the attacker knows the
/// gateway's public key).
fn stranger_initiations(gateway: [u8; 32], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (s, _) = keys::generate();
            let mut t = Tunn::new(s, PublicKey::from(gateway), None, None, i as u32, None);
            let mut buf = [0u8; 256];
            match t.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                _ => unreachable!(),
            }
        })
        .collect()
}

#[test]
fn handshake_flood_leaves_legitimate_terminal_connecting() {
    require_bed();
    let mut bed = Bed::new().expect("network namespaces");
    let (gw_secret, gw_public) = keys::generate();
    let (t_secret, t_public) = keys::generate();
    // A second, registered key whose holder floods with fresh initiations.
    let (k_secret, k_public) = keys::generate();
    let gw = Gateway::start(&bed, gw_secret);
    gw.tunnel.set_peers(vec![
        PeerSpec {
            terminal: "term-1".into(),
            public_key: t_public,
            address: netns::TERM_TUNNEL,
        },
        PeerSpec {
            terminal: "term-flooder".into(),
            public_key: k_public,
            address: std::net::Ipv4Addr::new(10, 231, 0, 3),
        },
    ]);

    let strangers = stranger_initiations(gw_public, 2000);
    let mut known = Tunn::new(k_secret, PublicKey::from(gw_public), None, None, 7, None);
    let known_inits: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let mut buf = [0u8; 256];
            match known.format_handshake_initiation(&mut buf, true) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                _ => unreachable!(),
            }
        })
        .collect();

    // Flood from a second address of the terminal's namespace, bounded in count and time.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let flood = bed.in_ns(&bed.term, move || {
        let sock = UdpSocket::bind((netns::TERM_UNDERLAY_2, 0)).unwrap();
        let to = SocketAddr::from((netns::GW_UNDERLAY, netns::WG_PORT));
        let started = Instant::now();
        let mut sent = 0u64;
        let mut stopped = false;
        while sent < 100_000 && started.elapsed() < Duration::from_secs(40) {
            if stop_rx.try_recv().is_ok() {
                stopped = true;
                break;
            }
            let p = if sent.is_multiple_of(8) {
                &known_inits[(sent / 8) as usize % known_inits.len()]
            } else {
                &strangers[sent as usize % strangers.len()]
            };
            if sock.send_to(p, to).is_ok() {
                sent += 1;
            }
            if sent.is_multiple_of(100) {
                // About 2,000 initiations a second: twenty times the rate limit, and within
                // what a debug build processes (a flood above the UDP socket's capacity is a
                // different, volumetric attack: the kernel drops datagrams before anyone
                // looks at them).
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        (sent, started.elapsed(), stopped)
    });

    std::thread::sleep(Duration::from_secs(2));
    let during = gw.tunnel.stats();
    eprintln!("stats 2 s into the flood: {during:?}");
    assert!(during.cookie_replies_sent > 0, "cookie replies under load");

    // The legitimate terminal comes up in the middle of the flood and connects.
    start_terminal(&mut bed, &t_secret, gw_public);
    let connected = bed
        .in_ns(&bed.term, || {
            let started = Instant::now();
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((netns::GW_TUNNEL, ECHO_PORT)),
                Duration::from_secs(30),
            )?;
            round_trip(&mut s, b"through the flood")?;
            Ok::<_, std::io::Error>(started.elapsed())
        })
        .join()
        .unwrap();
    let _ = stop_tx.send(());
    let (sent, flood_time, stopped) = flood.join().unwrap();
    let after = gw.tunnel.stats();
    eprintln!(
        "flood: {sent} initiations in {flood_time:?}; legitimate terminal connected after {connected:?}"
    );
    eprintln!("stats after the flood: {after:?}");
    connected.expect("the legitimate terminal connects during the flood");
    assert!(stopped, "the flood ended before the terminal connected");
    assert!(after.cookie_replies_sent > 1000, "{after:?}");

    assert!(after.dropped.unknown_key > 0, "{after:?}");
    assert!(after.handshakes_ok >= 1);
    assert_eq!(
        gw.seen.lock().unwrap().last().map(|a| a.ip()),
        Some(IpAddr::V4(netns::TERM_TUNNEL))
    );
}
