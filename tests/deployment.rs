//! Deployment that is tried, not only written (issue 13): the gateway under systemd's
//! `Type=notify` protocol, with a real notification socket, and the unit's hardening as
//! `systemd-analyze security` scores it.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// READY=1 once the gateway serves (its listeners answer at once), WATCHDOG=1 at half the
/// interval systemd sets, STOPPING=1 on SIGTERM.
#[test]
fn under_systemd_the_gateway_says_when_it_is_ready_feeds_the_watchdog_and_stops_cleanly() {
    let mut g = Gateway::start(Db::Sqlite);
    g.stop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut child = sekisho()
        .args(["serve", "--data-dir", g.data_str()])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let first = recv();
    assert!(first.starts_with("READY=1\n"), "{first:?}");
    assert!(first.contains("STATUS=serving terminals on"), "{first:?}");
    // Ready means serving: no waiting.
    assert_eq!(g.mgmt_get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(g.curl_t1("/", &[]).0, 200);
    let started = Instant::now();
    let mut pings = 0;
    while pings < 4 {
        if recv() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "four watchdog pings at a 0.4 s watchdog took {took:?}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    loop {
        let m = recv();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "unexpected {m:?}");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The unit file is hardened: `systemd-analyze security` scores its exposure at most 2.0 of
/// 10 (it was 2.5 before `Type=notify` and the added protections).
#[test]
fn the_systemd_unit_is_hardened() {
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/sekisho.service"
    );
    let o = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", unit])
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "exposure over 2.0:\n{out}");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("Type=notify") && text.contains("WatchdogSec="),
        "{text}"
    );
    let level = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sekisho.service: ")
                .nth(1)
        })
        .expect("an overall exposure line");
    println!("systemd-analyze security: {level}");
}

/// The unit's descriptor limit holds the default `limits.max_connections` (about two
/// descriptors a connection): the gateway cannot raise the hard limit under its own
/// `SystemCallFilter`.
#[test]
fn the_systemd_unit_allows_the_default_connection_limit() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/sekisho.service"
    ))
    .unwrap();
    let limit: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE=")
        .trim()
        .parse()
        .expect("a number");
    let max_connections = sekisho::config::Limits::default().max_connections;
    let wanted = sekisho::serve::descriptors::wanted(max_connections);
    assert!(
        limit >= wanted,
        "LimitNOFILE={limit} < {wanted} needed for max_connections {max_connections}"
    );
}

/// The Kubernetes manifests validate against the API schemas (offline, `kubernetes-validate`
/// from PyPI, strict: unknown fields fail), and a broken copy does not.
#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes");
    let validate = |file: &str| {
        std::process::Command::new("python3")
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                "1.30.0",
                file,
            ])
            .output()
            .expect("kubernetes-validate (pip install kubernetes-validate; tests/run.sh does)")
    };
    let main = format!("{dir}/sekisho.yaml");
    let o = validate(&main);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    for kind in [
        "deployment/sekisho",
        "service/sekisho",
        "service/sekisho-management",
        "poddisruptionbudget/sekisho",
        "networkpolicy/sekisho",
    ] {
        assert!(
            out.contains(&format!("passed for resource {kind} ")),
            "{kind}: {out}"
        );
    }
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(text.contains("path: /readyz") && text.contains("path: /healthz"));
    // A misspelt field is caught: the check can fail.
    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        broken.path(),
        text.replace("minAvailable: 2", "minAvailabel: 2"),
    )
    .unwrap();
    assert!(!validate(broken.path().to_str().unwrap()).status.success());
    // The database is CloudNativePG's Cluster, whose schema is the operator's (not offline
    // here): its shape is checked by hand.
    let db = std::fs::read_to_string(format!("{dir}/postgres-cnpg.yaml")).unwrap();
    for want in [
        "apiVersion: postgresql.cnpg.io/v1",
        "kind: Cluster",
        "name: sekisho-db",
        "instances: 3",
        "database: sekisho",
    ] {
        assert!(db.contains(want), "{want}");
    }
}
