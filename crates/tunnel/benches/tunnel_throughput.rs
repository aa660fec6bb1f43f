//! Throughput and added latency of the WireGuard tunnel: Sekisho's endpoint (boringtun `Tunn`
//! on tokio + tun-rs) against `wireguard-go` on both ends, in one run, on the same bed: two
//! network namespaces linked by a veth pair, `wireguard-go` as the terminal in both cases.
//! Prints figures and ratios; not a test.
//!
//! Needs root, /dev/net/tun, `ip`, `wireguard-go`, `wg`, `iperf3`
//! (`apt-get install -y wireguard-go wireguard-tools iperf3`).
//!
//! cargo bench -p sekisho-tunnel --bench tunnel_throughput
//! TUNNEL_BENCH_SECS=10 (per iperf3 run, default 10)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use sekisho_tunnel::netns::{self, Bed, WgPeer};
use sekisho_tunnel::{PeerSpec, Tunnel, TunnelConfig, keys};

const ECHO_PORT: u16 = 7001;
const ROUND_TRIPS: usize = 5000;

#[derive(Debug, Clone, Copy)]
struct Figures {
    up_bps: f64,
    down_bps: f64,
    p50_us: f64,
    p99_us: f64,
    direct_p50_us: f64,
    direct_p99_us: f64,
}

fn iperf(bed: &Bed, secs: u64, reverse: bool) -> f64 {
    let t = secs.to_string();
    let server = netns::GW_TUNNEL.to_string();
    let mut args = vec!["iperf3", "-c", &server, "-t", &t, "-J", "-O", "1"];
    if reverse {
        args.push("-R");
    }
    let out = bed.exec(&bed.term, &args).expect("iperf3 client");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
}

/// A TCP echo server on `addr`, in namespace `ns`, for the latency figures.
fn echo_server(bed: &Bed, ns: &str, addr: SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = bed.in_ns(ns, move || {
        let l = TcpListener::bind(addr).expect("echo bind");
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv().unwrap();
}

/// p50 and p99 of a 64-byte request/response on one TCP connection, in microseconds.
fn latency(bed: &Bed, to: SocketAddr) -> (f64, f64) {
    bed.in_ns(&bed.term, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect");
        s.set_nodelay(true).unwrap();
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        let mut times = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS + 100 {
            let t = Instant::now();
            s.write_all(&msg).unwrap();
            s.read_exact(&mut buf).unwrap();
            if i >= 100 {
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], times[times.len() * 99 / 100])
    })
    .join()
    .unwrap()
}

fn terminal(bed: &mut Bed, secret_b64: &str, gw_public_b64: &str) {
    let endpoint = format!("{}:{}", netns::GW_UNDERLAY, netns::WG_PORT);
    let allowed = format!("{}/32", netns::GW_TUNNEL);
    let term = bed.term.clone();
    let iface = format!("wt{}", bed.tag);
    bed.wireguard_go(
        &term,
        &iface,
        netns::TERM_TUNNEL,
        32,
        secret_b64,
        0,
        WgPeer {
            public_b64: gw_public_b64,
            allowed_ips: &allowed,
            endpoint: Some(&endpoint),
            keepalive: Some("25"),
        },
    )
    .expect("wireguard-go terminal");
}

fn measure(bed: &mut Bed, secs: u64) -> Figures {
    let gw = bed.gw.clone();
    bed.spawn(&gw, &["iperf3", "-s", "-B", &netns::GW_TUNNEL.to_string()])
        .expect("iperf3 server");
    echo_server(bed, &gw, SocketAddr::from((netns::GW_TUNNEL, ECHO_PORT)));
    echo_server(bed, &gw, SocketAddr::from((netns::GW_UNDERLAY, ECHO_PORT)));
    // Wait for the tunnel (the first SYN triggers the handshake).
    let ready = bed
        .in_ns(&bed.term, || {
            let to = SocketAddr::from((netns::GW_TUNNEL, ECHO_PORT));
            TcpStream::connect_timeout(&to, Duration::from_secs(20)).is_ok()
        })
        .join()
        .unwrap();
    assert!(ready, "tunnel did not come up");
    std::thread::sleep(Duration::from_millis(500));
    let up_bps = iperf(bed, secs, false);
    let down_bps = iperf(bed, secs, true);
    let (p50_us, p99_us) = latency(bed, SocketAddr::from((netns::GW_TUNNEL, ECHO_PORT)));
    let (direct_p50_us, direct_p99_us) =
        latency(bed, SocketAddr::from((netns::GW_UNDERLAY, ECHO_PORT)));
    Figures {
        up_bps,
        down_bps,
        p50_us,
        p99_us,
        direct_p50_us,
        direct_p99_us,
    }
}

fn sekisho_gateway(secs: u64) -> Figures {
    let mut bed = Bed::new().expect("namespaces");
    let (gw_secret, gw_public) = keys::generate();
    let (t_secret, t_public) = keys::generate();
    let interface = format!("skg{}", bed.tag);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gw_thread = bed.in_ns(&bed.gw, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cfg = TunnelConfig::new(
                &interface,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, netns::WG_PORT)),
                netns::GW_TUNNEL,
                24,
            );
            let tunnel = Tunnel::start(cfg, gw_secret).await.expect("endpoint");
            tunnel.set_peers(vec![PeerSpec {
                terminal: "bench".into(),
                public_key: t_public,
                address: netns::TERM_TUNNEL,
            }]);
            tx.send(tunnel.clone()).unwrap();
            let _ = stop_rx.await;
            tunnel.shutdown().await;
        })
    });
    let tunnel = rx.recv().unwrap();
    terminal(
        &mut bed,
        &keys::encode_secret(&t_secret),
        &keys::encode(&gw_public),
    );
    let f = measure(&mut bed, secs);
    eprintln!("sekisho endpoint stats: {:?}", tunnel.stats());
    drop(tunnel);
    let _ = stop_tx.send(());
    gw_thread.join().unwrap();
    f
}

fn wireguard_go_gateway(secs: u64) -> Figures {
    let mut bed = Bed::new().expect("namespaces");
    let (gw_secret, gw_public) = keys::generate();
    let (t_secret, t_public) = keys::generate();
    let gw = bed.gw.clone();
    let iface = format!("wg{}", bed.tag);
    let t_pub = keys::encode(&t_public);
    let allowed = format!("{}/32", netns::TERM_TUNNEL);
    bed.wireguard_go(
        &gw,
        &iface,
        netns::GW_TUNNEL,
        24,
        &keys::encode_secret(&gw_secret),
        netns::WG_PORT,
        WgPeer {
            public_b64: &t_pub,
            allowed_ips: &allowed,
            endpoint: None,
            keepalive: None,
        },
    )
    .expect("wireguard-go gateway");
    terminal(
        &mut bed,
        &keys::encode_secret(&t_secret),
        &keys::encode(&gw_public),
    );
    measure(&mut bed, secs)
}

fn main() {
    if let Some(why) = netns::unavailable() {
        println!("tunnel_throughput: skipped ({why})");
        return;
    }
    let has_iperf = Command::new("sh")
        .args(["-c", "command -v iperf3"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_iperf {
        println!("tunnel_throughput: skipped (iperf3 not installed)");
        return;
    }
    let secs: u64 = std::env::var("TUNNEL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let wg = wireguard_go_gateway(secs);
    let sk = sekisho_gateway(secs);

    let mbps = |b: f64| b / 1e6;
    println!("tunnel throughput, {secs} s per direction, terminal = wireguard-go in both rows");
    println!(
        "{:<28} {:>14} {:>14} {:>10} {:>10} {:>16} {:>16}",
        "gateway endpoint",
        "up Mbit/s",
        "down Mbit/s",
        "p50 us",
        "p99 us",
        "added p50 us",
        "added p99 us"
    );
    for (name, f) in [("wireguard-go", wg), ("sekisho (boringtun Tunn)", sk)] {
        println!(
            "{:<28} {:>14.0} {:>14.0} {:>10.1} {:>10.1} {:>16.1} {:>16.1}",
            name,
            mbps(f.up_bps),
            mbps(f.down_bps),
            f.p50_us,
            f.p99_us,
            f.p50_us - f.direct_p50_us,
            f.p99_us - f.direct_p99_us,
        );
    }
    println!(
        "ratio sekisho / wireguard-go: up {:.2}, down {:.2}, added latency p50 {:.2}, p99 {:.2}",
        sk.up_bps / wg.up_bps,
        sk.down_bps / wg.down_bps,
        (sk.p50_us - sk.direct_p50_us) / (wg.p50_us - wg.direct_p50_us),
        (sk.p99_us - sk.direct_p99_us) / (wg.p99_us - wg.direct_p99_us),
    );
}
