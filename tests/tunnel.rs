//! WireGuard tunnels end to end (R-TERM-3) with an independent implementation: the gateway
//! (`sekisho serve` with `[tunnel]`, `require_tunnel = true`) runs in a network namespace of
//! its own with the demo upstream beside it; the terminal is Debian's `wireguard-go`,
//! configured with `wg` from the wg-quick file `sekisho terminal tunnel` wrote, in a second
//! namespace linked by a veth pair. Needs root, /dev/net/tun, iproute2, wireguard-go and
//! wireguard-tools (installed by tests/run.sh): fails, never skips, without them.
//!
//! The flood of handshake initiations (cookie replies under load) is tested on the endpoint
//! itself, in the same kind of namespaces: `proxy/src/tunnel/interop.rs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sekisho_tunnel::netns::{self, Bed, WgPeer};

const WG_PORT: u16 = netns::WG_PORT;

struct Net {
    bed: Bed,
    g: Gateway,
    _upstream: Upstream,
    conf_dir: tempfile::TempDir,
}

fn setup() -> Net {
    if let Some(why) = netns::unavailable() {
        panic!("the tunnel test needs network namespaces and WireGuard tools: {why}");
    }
    let bed = Bed::new().expect("network namespaces");
    let mut g = Gateway::start(Db::Sqlite);
    g.add_terminal("f1", "t2", &g.out.clone());
    g.stop();
    // The demo upstream lives in the gateway's namespace, on its loopback.
    let upstream = bed.in_ns(&bed.gw, Upstream::start).join().unwrap();
    let cfg_path = g.data.join("sekisho.toml");
    let mut cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let old_upstream = format!("http://{}", g.upstream.addr);
    assert!(cfg.contains(&old_upstream), "{cfg}");
    cfg = cfg.replace(&old_upstream, &format!("http://{}", upstream.addr));
    let old_listen = format!("gateway = \"127.0.0.1:{}\"", g.port);
    assert!(cfg.contains(&old_listen), "{cfg}");
    cfg = cfg.replace(&old_listen, &format!("gateway = \"0.0.0.0:{}\"", g.port));
    // Enrollment stays outside the tunnel (a terminal enrolls first, then gets its tunnel).
    let old_enroll = format!("enroll = \"127.0.0.1:{}\"", g.enroll_port);
    assert!(cfg.contains(&old_enroll), "{cfg}");
    cfg = cfg.replace(
        &old_enroll,
        &format!("enroll = \"0.0.0.0:{}\"", g.enroll_port),
    );
    cfg.push_str(&format!(
        "\n[tunnel]\ninterface = \"sks{tag}\"\nlisten = \"{u}:{WG_PORT}\"\naddress = \"{t}/24\"\nendpoint = \"{u}:{WG_PORT}\"\nrequire_tunnel = true\n",
        tag = bed.tag,
        u = netns::GW_UNDERLAY,
        t = netns::GW_TUNNEL,
    ));
    std::fs::write(&cfg_path, cfg).unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    for t in ["t1", "t2"] {
        let out = run_ok(&[
            "terminal",
            "tunnel",
            "--data-dir",
            g.data_str(),
            "--terminal",
            t,
            "--out",
            conf_dir.path().to_str().unwrap(),
        ]);
        assert!(out.contains(&format!("{t}.wg.png")), "{out}");
        // The QR code a mobile WireGuard app scans reads back as the very same file
        // (decoded by an independent reader, zbar).
        let png = conf_dir.path().join(format!("{t}.wg.png"));
        let qr = Command::new("zbarimg")
            .args(["-q", "--raw"])
            .arg(&png)
            .output()
            .expect("zbarimg (Debian zbar-tools) is installed");
        let conf = std::fs::read_to_string(conf_dir.path().join(format!("{t}.wg.conf"))).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&qr.stdout).trim_end(),
            conf.trim_end()
        );
    }
    let mut net = Net {
        bed,
        g,
        _upstream: upstream,
        conf_dir,
    };
    let data = net.g.data_str().to_string();
    let gw_ns = net.bed.gw.clone();
    net.bed
        .spawn(
            &gw_ns,
            &[env!("CARGO_BIN_EXE_sekisho"), "serve", "--data-dir", &data],
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = format!("http://127.0.0.1:{}/readyz", net.g.mgmt_port);
    while net
        .bed
        .exec(&gw_ns, &["curl", "-sf", "--max-time", "2", &ready])
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the gateway did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    net
}

/// A terminal namespace's wireguard-go from the wg-quick file Sekisho wrote for `terminal`.
fn bring_up(net: &mut Net, terminal: &str) {
    let conf =
        std::fs::read_to_string(net.conf_dir.path().join(format!("{terminal}.wg.conf"))).unwrap();
    bring_up_conf(net, &conf);
}

/// wireguard-go in the terminal namespace, configured from wg-quick text.
fn bring_up_conf(net: &mut Net, conf: &str) {
    let field = |name: &str| {
        conf.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} in {conf}"))
            .trim()
            .to_string()
    };
    let address: std::net::Ipv4Addr = field("Address").trim_end_matches("/32").parse().unwrap();
    let (private, public, endpoint, allowed) = (
        field("PrivateKey"),
        field("PublicKey"),
        field("Endpoint"),
        field("AllowedIPs"),
    );
    assert_eq!(allowed, format!("{}/32", netns::GW_TUNNEL));
    let term = net.bed.term.clone();
    let iface = format!("wt{}", net.bed.tag);
    net.bed
        .wireguard_go(
            &term,
            &iface,
            address,
            32,
            &private,
            0,
            WgPeer {
                public_b64: &public,
                allowed_ips: &allowed,
                endpoint: Some(&endpoint),
                keepalive: Some("25"),
            },
        )
        .expect("wireguard-go comes up");
}

/// curl from the terminal namespace to the gateway at `ip`, with terminal `cert`'s
/// certificate; (HTTP status or 0, body).
fn curl_from_terminal(net: &Net, ip: std::net::Ipv4Addr, cert: &str) -> (u16, String) {
    let (c, k) = net.g.cert(cert);
    curl_with(net, ip, &c, &k)
}

fn curl_with(net: &Net, ip: std::net::Ipv4Addr, c: &str, k: &str) -> (u16, String) {
    let resolve = format!("localhost:{}:{ip}", net.g.port);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.bed.term,
            "curl",
            "-s",
            "--max-time",
            "8",
        ])
        .args([
            "--resolve",
            &resolve,
            "--cacert",
            &net.g.ca(),
            "--cert",
            c,
            "--key",
            k,
        ])
        .args(["-H", "accept: application/json", "-w", "\n%{http_code}"])
        .arg(net.g.url("/debug/headers"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_terminal_comes_in_through_its_own_tunnel_and_nowhere_else() {
    let mut net = setup();
    bring_up(&mut net, "t1");

    // Through its own tunnel: the upstream answers.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (s, body) = curl_from_terminal(&net, netns::GW_TUNNEL, "t1");
        if s == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "over the tunnel: {s} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("\"sekisho-terminal\""), "{body}");
    // The endpoint's counters are on the management listener.
    let metrics = net
        .bed
        .exec(
            &net.bed.gw,
            &[
                "curl",
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", net.g.mgmt_port),
            ],
        )
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("{series} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("sekisho_tunnel_peers "), 2.0);
    assert!(value("sekisho_tunnel_handshakes_total{result=\"ok\"} ") >= 1.0);
    assert!(value("sekisho_tunnel_packets_total{direction=\"in\"} ") > 0.0);

    // The same certificate off the tunnel (the veth address): refused before TLS.
    let (s, _) = curl_from_terminal(&net, netns::GW_UNDERLAY, "t1");
    assert_eq!(s, 0, "no answer at all off the tunnel");
    let v = net
        .g
        .wait_audit(|r| r["event"] == "tls" && r["reason"] == "tunnel_required");
    assert!(
        v["peer"]
            .as_str()
            .unwrap()
            .starts_with(&netns::TERM_UNDERLAY.to_string()),
        "{v}"
    );

    // Another terminal's certificate over t1's tunnel: refused, audited with the reason.
    let (s, body) = curl_from_terminal(&net, netns::GW_TUNNEL, "t2");
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("tunnel_terminal_mismatch"), "{body}");
    net.g
        .wait_audit(|r| r["reason"] == "tunnel_terminal_mismatch" && r["terminal"] == "t2");

    // Revoking t1 removes its peer: nothing gets through the tunnel any more, not even a TCP
    // connection attempt.
    let tcp = format!("echo > /dev/tcp/{}/{}", netns::GW_TUNNEL, net.g.port);
    assert!(
        net.bed
            .exec(&net.bed.term, &["timeout", "3", "bash", "-c", &tcp])
            .is_ok(),
        "TCP through the tunnel before revocation"
    );
    run_ok(&[
        "terminal",
        "revoke",
        "--data-dir",
        net.g.data_str(),
        "--terminal",
        "t1",
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        net.bed
            .exec(&net.bed.term, &["timeout", "3", "bash", "-c", &tcp])
            .is_err(),
        "no traffic through a revoked terminal's tunnel"
    );
}

#[test]
fn a_terminal_enrolled_with_its_own_wireguard_key_comes_in_through_its_tunnel() {
    let mut net = setup();
    let (code, pin) = enroll_code(&net.g, "f1", "pc-9");
    // The terminal makes both keys; only the public halves leave it.
    let dir = tempfile::tempdir().unwrap();
    let (key, csr) = new_csr(dir.path(), "pc-9");
    let (wg_secret, wg_public) = sekisho_tunnel::keys::generate();
    let body = serde_json::json!({
        "code": code, "pin": pin, "csr": csr,
        "wg_public_key": sekisho_tunnel::keys::encode(&wg_public),
    })
    .to_string();
    let (status, answer) = enroll_in_ns(&net, dir.path(), &body);
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let config = v["tunnel"]["config"]
        .as_str()
        .expect("a tunnel in the answer");
    assert!(
        !config.contains(&*sekisho_tunnel::keys::encode_secret(&wg_secret)),
        "the gateway never had the private key"
    );
    let config = config.replace(
        sekisho_tunnel::wgquick::PRIVATE_KEY_PLACEHOLDER,
        &sekisho_tunnel::keys::encode_secret(&wg_secret),
    );
    let cert = dir.path().join("pc-9.crt");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
    bring_up_conf(&mut net, &config);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, body) = curl_with(
            &net,
            netns::GW_TUNNEL,
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        );
        if s == 200 {
            assert!(body.contains("pc-9"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "over the new tunnel: {s} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A malformed WireGuard key is refused before the code is spent: the same code then works.
    let (code, pin) = enroll_code(&net.g, "f1", "pc-10");
    let (_, csr) = new_csr(dir.path(), "pc-10");
    let bad = serde_json::json!({"code": code, "pin": pin, "csr": csr, "wg_public_key": "nope"});
    let (status, answer) = enroll_in_ns(&net, dir.path(), &bad.to_string());
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("wg_public_key"), "{answer}");
    let good = serde_json::json!({"code": code, "pin": pin, "csr": csr});
    let (status, answer) = enroll_in_ns(&net, dir.path(), &good.to_string());
    assert_eq!(status, 200, "the code was not spent: {answer}");
}

/// POSTs `body` to the enrollment listener from the terminal's namespace (outside the tunnel);
/// (HTTP status, body).
fn enroll_in_ns(net: &Net, dir: &std::path::Path, body: &str) -> (u16, String) {
    let body_file = dir.join("req.json");
    std::fs::write(&body_file, body).unwrap();
    let resolve = format!("localhost:{}:{}", net.g.enroll_port, netns::GW_UNDERLAY);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.bed.term,
            "curl",
            "-s",
            "--max-time",
            "10",
        ])
        .args(["--resolve", &resolve, "--cacert", &net.g.ca()])
        .args([
            "-H",
            "content-type: application/json",
            "-w",
            "\n%{http_code}",
            "--data-binary",
        ])
        .arg(format!("@{}", body_file.display()))
        .arg(format!(
            "https://localhost:{}/enroll/csr",
            net.g.enroll_port
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
