//! Faults (issue 14, items 2 and 3): the store cut or silently partitioned behind a TCP relay,
//! the upstream down, slow or answering garbage, and `kill -9` under load, repeated. Each is
//! answered as `docs/gateway.md` says, nothing reaches the upstream undecided-on-record, and
//! service returns on its own. The figures (latencies, rounds, requests checked) are printed:
//! `cargo test -p sekisho --test faults -- --nocapture`.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const UPLOAD_ROUTE: &str = r#"
[[route]]
methods = ["POST"]
path = "/upload"
level = "terminal"
action = "write"
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    /// The store's host is gone: every connection closed, new ones refused.
    Cut,
    /// A silent partition: connections are accepted and kept, nothing is forwarded.
    BlackHole,
}

/// A TCP relay between the gateway and PostgreSQL that the test cuts, black-holes and delays.
struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    delay_ms: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // A port below the ephemeral range: the relay closes and re-binds it on a cut, and no
        // outgoing connection may take it in between.
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        let delay_ms = Arc::new(AtomicU64::new(0));
        rt.spawn(relay_accept(addr, target, rx, delay_ms.clone()));
        // Listening before the gateway is pointed at it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the relay does not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Relay {
            addr,
            mode,
            delay_ms,
            _rt: rt,
        }
    }

    fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }
}

async fn relay_accept(
    addr: SocketAddr,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    delay: Arc<AtomicU64>,
) {
    loop {
        // Cut: no listener at all, so a connection is refused as by a host that is down.
        if *mode.borrow_and_update() == Mode::Cut {
            if mode.wait_for(|m| *m != Mode::Cut).await.is_err() {
                return;
            }
            continue;
        }
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        loop {
            tokio::select! {
                r = listener.accept() => if let Ok((c, _)) = r {
                    tokio::spawn(relay_conn(c, target, mode.clone(), delay.clone()));
                },
                r = mode.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if *mode.borrow() == Mode::Cut {
                        break;
                    }
                }
            }
        }
    }
}

/// Waits while black-holed; false once cut (the connection is to be closed).
async fn relay_passing(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Pass => return true,
            Mode::Cut => return false,
            Mode::BlackHole => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn relay_conn(
    client: tokio::net::TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    delay: Arc<AtomicU64>,
) {
    // A connection accepted during a black hole is held, silent, until the partition heals.
    if !relay_passing(&mut mode).await {
        return;
    }
    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = relay_pipe(cr, sw, mode.clone(), delay.clone()) => {}
        _ = relay_pipe(sr, cw, mode, delay) => {}
    }
}

async fn relay_pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    delay: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !relay_passing(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.changed() => continue,
        };
        // Bytes read just before a black hole are held with the rest.
        if !relay_passing(&mut mode).await {
            return;
        }
        let d = delay.load(Ordering::Relaxed);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A PostgreSQL gateway whose store is reached only through `relay` (the rig's own SQL goes
/// to PostgreSQL directly, so the test can look while the gateway cannot).
fn gateway_behind(relay: &Relay) -> Gateway {
    let relay_addr = relay.addr;
    Gateway::start_prepared(
        Db::Postgres,
        Options {
            extra_config: format!("{}{UPLOAD_ROUTE}", Options::default().extra_config),
            ..Default::default()
        },
        move |g| {
            let cfg = g.data.join("sekisho.toml");
            let text = std::fs::read_to_string(&cfg).unwrap();
            let direct = "@127.0.0.1:5432/";
            assert!(text.contains(direct), "the store URL in sekisho.toml");
            std::fs::write(&cfg, text.replace(direct, &format!("@{relay_addr}/"))).unwrap();
        },
    )
}

/// (status, JSON body, seconds) of one request as terminal t1 through curl.
fn timed(g: &Gateway, method: &str, path: &str) -> (u16, serde_json::Value, f64) {
    let started = Instant::now();
    let mut args = vec![
        "--max-time",
        "40",
        "-H",
        "Accept: application/json",
        "-X",
        method,
    ];
    if method == "POST" {
        args.extend(["--data-binary", "fault test"]);
    }
    let (status, body, _) = g.curl_t1(path, &args);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        started.elapsed().as_secs_f64(),
    )
}

/// A metric without labels from the gateway's `/metrics`.
fn metric(g: &Gateway, name: &str) -> u64 {
    let (_, text) = g.mgmt_get("/metrics").expect("/metrics answers");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics")) as u64
}

/// Audit records the gateway has made durable so far (`sekisho_audit_records_total`).
fn committed_records(g: &Gateway) -> u64 {
    metric(g, "sekisho_audit_records_total")
}

fn timed_readyz(g: &Gateway) -> (Option<(u16, String)>, f64) {
    let started = Instant::now();
    let r = g.mgmt_get("/readyz");
    (r, started.elapsed().as_secs_f64())
}

fn verify_ok(g: &Gateway) {
    let out = run(&["audit", "verify", "--data-dir", g.data_str()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("audit log OK"),
        "audit verify: {text}"
    );
}

/// One store fault: requests are refused `audit_unavailable` (503), none is forwarded
/// unrecorded, `/readyz` says so, and service returns on its own once the relay passes.
/// Returns the refusal latencies.
fn store_fault(g: &Gateway, relay: &Relay, mode: Mode) -> Vec<f64> {
    assert_eq!(
        timed(g, "POST", "/upload").0,
        200,
        "service before the fault"
    );
    relay.set(mode);
    let fault_at = Instant::now();
    let hits = g.upstream.hits();
    let mut latencies = Vec::new();
    // A request whose record the node's journal made durable is answered until the gateway
    // sees the store fail: its indexer's attempt fails, or (a silent partition) has gone a
    // second without an answer. From the first refusal on, everything is refused.
    let mut answered = 0;
    let mut i = 0;
    while latencies.len() < 6 {
        // Writes wait for their record: the upstream must see none of them refused. A safe
        // read is forwarded while its record is made durable (docs/gateway.md, 6) — so the one
        // read that finds the journal refusing may reach it, its answer withheld — but once
        // the store is known down, nothing reaches the upstream at all.
        let method = if i % 2 == 0 { "POST" } else { "GET" };
        i += 1;
        let path = if method == "POST" { "/upload" } else { "/" };
        let (status, body, secs) = timed(g, method, path);
        println!(
            "{mode:?}: {method} {path} -> {status} {} in {secs:.2} s",
            body["error"]
        );
        if status == 200 && latencies.is_empty() {
            answered += 1;
            assert!(
                fault_at.elapsed() < Duration::from_secs(3),
                "{mode:?}: requests still answered {:.1} s into the fault",
                fault_at.elapsed().as_secs_f64()
            );
            continue;
        }
        assert_eq!(status, 503, "{mode:?}: {method} {body}");
        assert_eq!(body["error"], "audit_unavailable", "{mode:?}: {body}");
        latencies.push(secs);
    }
    println!("{mode:?}: {answered} answered on the journal before the store was known down");
    let forwarded = g.upstream.hits() - hits;
    assert!(
        forwarded <= answered + 1,
        "{mode:?}: {forwarded} requests reached the upstream, {answered} answered; only the read that found the store down may be forwarded unanswered"
    );
    // Known down by now: reads are refused before the upstream is asked.
    let known_down = g.upstream.hits();
    for _ in 0..3 {
        let (status, body, secs) = timed(g, "GET", "/");
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("audit_unavailable"))
        );
        assert!(
            secs < 1.0,
            "{mode:?}: a refusal with the store known down took {secs:.2} s"
        );
    }
    assert_eq!(
        g.upstream.hits(),
        known_down,
        "{mode:?}: a read reached the upstream with the store known to be down"
    );
    let (ready, secs) = timed_readyz(g);
    println!("{mode:?}: /readyz -> {ready:?} in {secs:.2} s");
    let (status, body) = ready.expect("/readyz answers during a store fault");
    assert_eq!(status, 503, "{mode:?}: /readyz {body}");
    assert!(
        body.contains("store"),
        "{mode:?}: /readyz names the store: {body}"
    );

    relay.set(Mode::Pass);
    let healed = Instant::now();
    loop {
        if timed(g, "POST", "/upload").0 == 200 {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(30),
            "{mode:?}: no service 30 s after the store came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{mode:?}: service back {:.2} s after the store",
        healed.elapsed().as_secs_f64()
    );
    let ready = within_a_poll(|| g.mgmt_get("/readyz"), |r| matches!(r, Some((200, _))));
    assert!(
        matches!(ready, Some((200, _))),
        "{mode:?}: /readyz after: {ready:?}"
    );
    // What the journal acknowledged during the fault reached the store.
    let lag = within_a_poll(|| metric(g, "sekisho_audit_index_lag_records"), |l| *l == 0);
    assert_eq!(
        lag, 0,
        "{mode:?}: records acknowledged during the fault are not in the store"
    );
    verify_ok(g);
    latencies
}

#[test]
fn store_cut_or_partitioned_fails_closed_and_recovers() {
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap());
    let g = gateway_behind(&relay);
    let mut figures = Vec::new();
    for mode in [Mode::Cut, Mode::BlackHole] {
        let l = store_fault(&g, &relay, mode);
        figures.push((mode, l));
    }
    // A slow store (50 ms each way per packet) is slow service, not a refusal.
    relay.delay_ms.store(50, Ordering::Relaxed);
    let (status, _, secs) = timed(&g, "POST", "/upload");
    println!("store delayed 50 ms: POST /upload -> {status} in {secs:.2} s");
    assert_eq!(status, 200);
    relay.delay_ms.store(0, Ordering::Relaxed);
    for (mode, l) in &figures {
        let slow = l.iter().filter(|s| **s >= 1.0).count();
        println!(
            "{mode:?}: refusal latencies {:?} s",
            l.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>()
        );
        // Only the request that finds the store gone waits (a connection attempt, or the
        // commit timeout of a silent partition); once it is known down, refusals are immediate.
        assert!(
            slow <= 1,
            "{mode:?}: {slow} refusals took a second or more once the store was known down"
        );
    }
}

/// A small filesystem of its own (tmpfs, mounted by the test: it runs as root, as
/// `tests/run.sh` does), unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Appends to a file until the filesystem has no room left; returns its path. Called again
    /// before each request: SQLite frees a little now and then (a WAL reset), which would
    /// otherwise let the odd commit through.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the filesystem: {e}"),
            }
        }
        // Whatever a smaller write can still take.
        while f.write(&[0x5a; 512]).is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The disk under the SQLite store and its audit log fills up: every request is refused
/// `audit_unavailable`, no write reaches the upstream, reads stop being forwarded once the
/// writes are known to fail, `/readyz` says the log cannot be written; when room is made,
/// service returns without a restart, the refusals are on record (written late, marked so)
/// and `audit verify` passes. (On PostgreSQL the store's disk is the server's, which the tests
/// share: not filled here.)
#[test]
fn a_full_disk_fails_closed_and_recovers() {
    let fs = SmallFs::mount("24m");
    let mut g = Gateway::start_with(
        Db::Sqlite,
        Options {
            extra_config: format!("{}{UPLOAD_ROUTE}", Options::default().extra_config),
            data_in: Some(fs.path().to_path_buf()),
            ..Default::default()
        },
    );
    assert_eq!(
        timed(&g, "POST", "/upload").0,
        200,
        "service before the fault"
    );
    let filler = fs.path().join("filler");

    // The WAL may still have room of its own for a few commits: go on until the disk says no.
    let mut refused_ids = Vec::new();
    let mut answered = 0;
    let mut forwarded_refused = 0;
    for i in 0..400 {
        fs.fill();
        let hits = g.upstream.hits();
        let (status, body, _) = timed(&g, "POST", "/upload");
        match status {
            200 => answered += 1,
            503 => {
                assert_eq!(body["error"], "audit_unavailable", "{body}");
                forwarded_refused += g.upstream.hits() - hits;
                refused_ids.push(body["request_id"].as_str().unwrap().to_string());
            }
            s => panic!("request {i} on a full disk: {s} {body}"),
        }
        if refused_ids.len() >= 3 {
            break;
        }
    }
    println!(
        "full disk: {answered} writes still committed in the WAL's room, then refusals {refused_ids:?}"
    );
    assert!(refused_ids.len() >= 3, "a full disk never refused a write");
    assert_eq!(forwarded_refused, 0, "a refused write reached the upstream");

    // Reads: once the writes are known to fail, a read is refused before the upstream is asked.
    // A commit that still finds room (SQLite reuses the WAL's own pages after a checkpoint:
    // a 200 here, or a late refusal record written in the background) ends that knowledge,
    // and the next read may again be forwarded while its record commits; so a read counts as
    // known-unwritable only when no record was committed since the last failure.
    let mut refused_reads = 0;
    let mut held_back = 0;
    // The records committed before the last refused read was sent.
    let mut committed_at_failure = None;
    for _ in 0..40 {
        fs.fill();
        let hits = g.upstream.hits();
        let committed = committed_records(&g);
        let (status, body, _) = timed(&g, "GET", "/");
        match status {
            200 => committed_at_failure = None,
            503 => {
                assert_eq!(body["error"], "audit_unavailable", "{body}");
                if committed_at_failure == Some(committed) {
                    assert_eq!(
                        g.upstream.hits(),
                        hits,
                        "a read reached the upstream while the log was known unwritable"
                    );
                    held_back += 1;
                }
                refused_ids.push(body["request_id"].as_str().unwrap().to_string());
                refused_reads += 1;
                committed_at_failure = Some(committed);
            }
            s => panic!("a read on a full disk: {s} {body}"),
        }
        if held_back >= 3 {
            break;
        }
    }
    println!("full disk: {refused_reads} reads refused, {held_back} before the upstream was asked");
    assert!(
        held_back >= 3,
        "reads were not refused before the upstream on a full disk ({refused_reads} refused)"
    );
    let (status, body) = g
        .mgmt_get("/readyz")
        .expect("/readyz answers on a full disk");
    println!("full disk: /readyz -> {status} {}", body.trim());
    assert_eq!(status, 503, "/readyz on a full disk: {body}");
    // Which of the two depends on whether the writer could still open a connection: on a disk
    // with no room at all, SQLite cannot.
    assert!(
        body.contains("audit log cannot be written") || body.contains("store unreachable"),
        "{body}"
    );

    // Room again: service returns by itself.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    loop {
        if timed(&g, "POST", "/upload").0 == 200 {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "no service 30 s after the disk had room again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "full disk: service back {:.2} s after room was made",
        freed.elapsed().as_secs_f64()
    );
    let ready = within_a_poll(|| g.mgmt_get("/readyz"), |r| matches!(r, Some((200, _))));
    assert!(matches!(ready, Some((200, _))), "/readyz after: {ready:?}");

    // Every refusal is on record, written once the log took records again.
    // (Retried with a backoff of up to 10 s, so this may take a few seconds.)
    let late = Instant::now();
    let records = loop {
        let records = g.audit_records();
        let missing = refused_ids
            .iter()
            .filter(|id| {
                !records
                    .iter()
                    .any(|r| r["request_id"] == id.as_str() && r["decision"] == "deny")
            })
            .count();
        if missing == 0 {
            break records;
        }
        assert!(
            late.elapsed() < Duration::from_secs(30),
            "{missing} refusals still not on record 30 s after the disk had room"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "full disk: {} refusals on record {:.2} s after service returned",
        refused_ids.len(),
        late.elapsed().as_secs_f64()
    );
    for id in &refused_ids {
        let rec = records
            .iter()
            .find(|r| r["request_id"] == id.as_str() && r["decision"] == "deny")
            .unwrap();
        assert_eq!(rec["reason"], "audit_unavailable", "{rec}");
        assert!(
            rec["detail"]
                .as_str()
                .is_some_and(|d| d.contains("could not be written")),
            "{rec}"
        );
    }
    verify_ok(&g);
    g.stop();
}

/// The terminal CRL runs out while the gateway cannot re-sign it (its CA key kept offline):
/// every terminal is refused `crl_expired` and `/readyz` says so; when the secretariat signs a
/// new CRL from the CLI, service returns on every request after it, without a restart. The
/// shortest CRL lifetime is an hour, so the test brings the stored CRL's next update forward to
/// a few seconds from now while the gateway is stopped.
#[test]
fn an_expired_crl_refuses_everyone_until_a_new_one_is_signed() {
    for db in BOTH {
        let mut g = Gateway::start(db);
        g.add_terminal("f1", "t2", &g.out.clone());
        assert_eq!(g.curl_t1("/", &[]).0, 200, "{db:?}: service before");
        g.stop();
        let key = g.data.join("ca").join("issuing.key");
        let away = g.data.join("issuing.key.offline");
        std::fs::rename(&key, &away).unwrap();
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 4;
        g.sql(&format!(
            "UPDATE crl_state SET next_update = {expires} WHERE id = 1"
        ));
        g.serve();
        assert_eq!(
            g.curl_t1("/", &[]).0,
            200,
            "{db:?}: service until the CRL runs out"
        );

        let ran_out = Instant::now();
        let (status, body) = loop {
            let (status, body, _) = g.curl_t1("/", &["-H", "Accept: application/json"]);
            // 0: the connection was cut as the CRL ran out (live connections are closed
            // then); the next one is answered.
            if status != 200 && status != 0 {
                break (status, body);
            }
            assert!(
                ran_out.elapsed() < Duration::from_secs(15),
                "{db:?}: still served 10 s after the CRL ran out"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        println!(
            "{db:?}: CRL out: {status} {} {:.1} s after the poll began",
            body.trim(),
            ran_out.elapsed().as_secs_f64()
        );
        assert_eq!(status, 503, "{db:?}: {body}");
        assert!(body.contains("crl_expired"), "{db:?}: {body}");
        let (status, ready) = g.mgmt_get("/readyz").expect("/readyz");
        assert_eq!(status, 503, "{db:?}: /readyz with the CRL out: {ready}");
        g.wait_audit(|r| r["reason"] == "crl_expired" && r["decision"] == "deny");

        // The secretariat signs a new CRL (here, revoking another terminal) where the CA key is.
        std::fs::rename(&away, &key).unwrap();
        run_ok(&[
            "terminal",
            "revoke",
            "--data-dir",
            g.data_str(),
            "--terminal",
            "t2",
            "--reason",
            "superseded",
        ]);
        let signed = Instant::now();
        loop {
            if g.curl_t1("/", &[]).0 == 200 {
                break;
            }
            assert!(
                signed.elapsed() < Duration::from_secs(10),
                "{db:?}: no service 10 s after a new CRL was signed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "{db:?}: service back {:.2} s after a new CRL was signed",
            signed.elapsed().as_secs_f64()
        );
        let ready = within_a_poll(|| g.mgmt_get("/readyz"), |r| matches!(r, Some((200, _))));
        assert!(
            matches!(ready, Some((200, _))),
            "{db:?}: /readyz after: {ready:?}"
        );
        verify_ok(&g);
    }
}

/// A number in `0..n` that differs from run to run (when the crash comes).
fn random_below(n: u64) -> u64 {
    u64::from_str_radix(&sekisho_protocol::new_request_id()[..12], 16).unwrap() % n
}

/// Files a crash must never leave behind: temporary files, or a key, certificate, CRL, JSON or
/// TOML file that is empty or cut short. Returns how many files were looked at.
fn check_no_torn_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            n += check_no_torn_files(&path);
            continue;
        }
        n += 1;
        assert!(
            !name.ends_with(".tmp"),
            "a temporary file was left: {path:?}"
        );
        // The database and its WAL are SQLite's to recover; the audit journal's segments and
        // its lock file are the journal's (a torn tail is cut when it is opened, and the
        // restarts here show every answered decision in the log).
        if name.starts_with("sekisho.db") || name.ends_with(".seg") || name == "lock" {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        assert!(!data.is_empty(), "an empty file: {path:?}");
        let text = String::from_utf8_lossy(&data);
        if text.starts_with("-----BEGIN") {
            let begins = text.matches("-----BEGIN ").count();
            let ends = text.matches("-----END ").count();
            assert!(
                begins == ends && text.trim_end().ends_with("-----"),
                "a PEM file cut short: {path:?}"
            );
        } else if name.ends_with(".json") {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&data).is_ok(),
                "JSON cut short: {path:?}"
            );
        } else if name.ends_with(".toml") {
            assert!(
                toml::from_str::<toml::Table>(&text).is_ok(),
                "TOML cut short: {path:?}"
            );
        } else if name == "enroll-pin.key" {
            assert_eq!(data.len(), 32, "the PIN key cut short: {path:?}");
        } else if [".crt", ".key", ".pem", ".crl"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            panic!("a key or certificate that is not whole PEM: {path:?}");
        }
    }
    n
}

/// `kill -9` at random moments, repeatedly, under load and during start-up, on SQLite and
/// PostgreSQL: after each crash every 2xx answer so far has its decision record, the log
/// verifies, no file is torn, and the gateway starts again on the same data dir.
#[test]
fn kill_9_repeatedly_loses_no_answered_decision_and_tears_no_file() {
    const ROUNDS: usize = 6;
    for db in BOTH {
        let mut g = Gateway::start_with(
            db,
            Options {
                extra_config: format!("{}{UPLOAD_ROUTE}", Options::default().extra_config),
                ..Default::default()
            },
        );
        let mut answered: Vec<String> = Vec::new();
        for round in 0..ROUNDS {
            if round % 3 == 2 {
                // A crash while starting (keys, JWKS, CRL being read or written), then a start.
                g.kill9();
                g.spawn();
                std::thread::sleep(Duration::from_millis(random_below(400)));
                g.kill9();
                check_no_torn_files(&g.data);
                g.serve();
            }
            let pid = g.pid().expect("serve is running");
            let after = Duration::from_millis(300 + random_below(1200));
            let killer = std::thread::spawn(move || {
                std::thread::sleep(after);
                let st = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(st.success());
            });
            let this_round: Vec<String> = std::thread::scope(|s| {
                let conns: Vec<_> = (0..6)
                    .map(|c| {
                        let g = &g;
                        s.spawn(move || {
                            tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()
                                .unwrap()
                                .block_on(load_until_gone(g, c, true))
                        })
                    })
                    .collect();
                conns.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            killer.join().unwrap();
            g.kill9(); // reaps the killed child
            assert!(
                this_round.len() > 10,
                "{db:?} round {round}: the load got {} answers before the crash",
                this_round.len()
            );
            answered.extend(this_round.iter().cloned());
            let files = check_no_torn_files(&g.data);
            // The restart indexes what the journal made durable and the crash kept from the
            // store, before it serves.
            let started = Instant::now();
            g.serve();
            let ready_in = started.elapsed().as_secs_f64();
            let recorded: std::collections::HashSet<String> = g
                .sql_rows(
                    "SELECT request_id FROM audit_records WHERE event = 'request' AND decision = 'permit'",
                )
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            let missing: Vec<&String> = answered
                .iter()
                .filter(|id| !recorded.contains(*id))
                .collect();
            assert!(
                missing.is_empty(),
                "{db:?} round {round}: {} of {} answered requests have no decision record, e.g. {:?}",
                missing.len(),
                answered.len(),
                &missing[..missing.len().min(5)]
            );
            verify_ok(&g);
            println!(
                "{db:?} round {round}: killed after {} ms; {} answered this round, {} checked in all; {files} files whole; ready again in {ready_in:.2} s",
                after.as_millis(),
                this_round.len(),
                answered.len(),
            );
        }
        assert_eq!(
            g.curl_t1("/", &[]).0,
            200,
            "{db:?}: service after the crashes"
        );
        verify_ok(&g);
    }
}

/// An upstream that misbehaves: it reads each request and then never answers (`silent`), or
/// answers with bytes that are not HTTP. Counts the requests it got.
fn bad_upstream(silent: bool) -> (SocketAddr, Arc<AtomicU64>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                h.fetch_add(1, Ordering::SeqCst);
                if silent {
                    std::thread::sleep(Duration::from_secs(60));
                } else {
                    let _ = s.write_all(b"\x16\x03\x01 garbage, not HTTP\r\n\r\n\xff\xfe");
                }
            });
        }
    });
    (addr, hits)
}

/// The upstream down, silent past `upstream.timeout_secs`, or answering garbage: 502
/// `upstream_unreachable` or 504 `upstream_timeout`, in bounded time, with an `outcome`
/// record; a write still has its decision on record before it went out.
#[test]
fn upstream_down_slow_or_garbage_is_answered_and_audited() {
    let down = format!("127.0.0.1:{}", free_port());
    let (silent, _) = bad_upstream(true);
    let (garbage, _) = bad_upstream(false);
    for (what, addr, status, reason, bound) in [
        ("down", down, 502, "upstream_unreachable", 3.0),
        ("silent", silent.to_string(), 504, "upstream_timeout", 5.0),
        (
            "garbage",
            garbage.to_string(),
            502,
            "upstream_unreachable",
            3.0,
        ),
    ] {
        let g = Gateway::start_with(
            Db::Sqlite,
            Options {
                upstream_url: Some(format!("http://{addr}")),
                replace: vec![("timeout_secs = 30", "timeout_secs = 2")],
                extra_config: format!("{}{UPLOAD_ROUTE}", Options::default().extra_config),
                ..Default::default()
            },
        );
        for (method, path) in [("GET", "/"), ("POST", "/upload")] {
            let (s, body, secs) = timed(&g, method, path);
            println!(
                "upstream {what}: {method} {path} -> {s} {} in {secs:.2} s",
                body["error"]
            );
            assert_eq!(s, status, "upstream {what}: {method} {body}");
            assert_eq!(body["error"], reason, "upstream {what}: {body}");
            assert!(secs < bound, "upstream {what}: {method} took {secs:.2} s");
            let id = body["request_id"].as_str().unwrap().to_string();
            g.wait_audit(|r| {
                r["event"] == "request"
                    && r["request_id"] == id.as_str()
                    && r["decision"] == "permit"
            });
            g.wait_audit(|r| {
                r["event"] == "outcome" && r["request_id"] == id.as_str() && r["reason"] == reason
            });
        }
        assert_eq!(
            g.mgmt_get("/readyz").map(|r| r.0),
            Some(200),
            "upstream {what}: the gateway itself is ready"
        );
        verify_ok(&g);
    }
}
