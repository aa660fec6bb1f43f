//! The whole sign-in chain with real parts: the gateway (`sekisho serve`), the terminal agent
//! (`sekisho_agent`), pcscd with the vsmartcard vpcd reader, and the virtual HPKI
//! card holding a certificate of the test HPKI CA. Needs pcscd and vsmartcard-vpcd (installed
//! by tests/run.sh); fails, never skips, without them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sekisho_agent::{self as agent, AgentConfig, AgentError, FixedPin, WatchEvent};
use sekisho_ca::hpki::TestHpki;
use sekisho_cardreader::vcard::{AppFiles, CardEngine, Quirks, VirtualCard};

const READER: &str = "Virtual PCD 00 01";
const PORT: u16 = 35964;
const PIN: &str = "4321";

fn rig() -> VpcdRig {
    vpcd_rig(PORT, READER)
}

fn agent_config(g: &Gateway) -> AgentConfig {
    let (cert, key) = g.cert("t1");
    AgentConfig {
        gateway: format!("https://localhost:{}", g.port),
        cert: cert.into(),
        key: key.into(),
        ca: g.ca().into(),
        reader: Some(READER.into()),
    }
}

#[test]
fn a_physician_signs_in_with_the_card_and_removing_it_signs_out() {
    let _rig = rig();
    let extra = format!(
        "{}\n[[route]]\nname = \"me\"\nmethods = [\"GET\"]\npath = \"/debug/me\"\nlevel = \"user\"\naction = \"view\"\n\n[hpki]\nanchors = [\"hpki/root.crt\"]\nintermediates = [\"hpki/auth-ca.crt\"]\ncrls = [\"hpki/auth-ca.crl\", \"hpki/root.crl\"]\n",
        Options::default().extra_config
    );
    let mut g = Gateway::start_with(
        Db::Sqlite,
        Options {
            extra_config: extra,
            ..Default::default()
        },
    );
    let hpki = TestHpki::generate(&g.data.join("hpki")).unwrap();
    g.stop();
    g.serve();
    let doctor_crt = g.data.join("hpki/doctor.crt");
    run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        "doctor0000001",
        "--name",
        "神楽坂　三十四",
        "--facility",
        "f1",
        "--roles",
        "physician",
        "--hpki-cert",
        doctor_crt.to_str().unwrap(),
    ]);

    let engine = Arc::new(Mutex::new(
        CardEngine::new(
            AppFiles::from_pem(
                hpki.doctor.pem().as_bytes(),
                hpki.doctor.key.as_str().as_bytes(),
            )
            .unwrap(),
            None,
            PIN,
            Quirks::default(),
        )
        .unwrap(),
    ));
    let cfg = agent_config(&g);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT)).expect("insert the card");
        // Wait for PC/SC to see it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match agent::status(&cfg).await {
                Ok(_) => {}
                Err(e) => panic!("the gateway should answer the agent: {e}"),
            }
            if sekisho_cardreader::pcsc_transport::PcscTransport::connect(READER).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the card was not seen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A wrong PIN: the card says how many tries are left, nothing reaches the gateway.
        match agent::login(&cfg, "9999").await {
            Err(AgentError::WrongPin { tries_left }) => assert_eq!(tries_left, 14),
            other => panic!("expected a wrong-PIN error, got {other:?}"),
        }
        // The right PIN: signed in, and the browser's requests on this terminal are the doctor's.
        let info = agent::login(&cfg, PIN)
            .await
            .expect("sign-in with the card");
        assert_eq!(info.user, "doctor0000001");
        let (s, body, _) = g.curl_t1("/debug/me", &[]);
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["assertion_claims"]["user"], "doctor0000001");
        assert_eq!(v["assertion_claims"]["qualification"], "Medical Doctor");
        card.disconnect().expect("remove the card");
        agent::logout(&cfg, agent::LogoutReason::Logout)
            .await
            .unwrap();

        // watch: inserting signs in, removing signs out within 2 s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = agent::watch(cfg.clone(), Arc::new(FixedPin::new(PIN)), tx);
        let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT)).expect("insert the card");
        let signed_in = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(e) = rx.recv().await {
                if let WatchEvent::SignedIn { info, .. } = e {
                    return info;
                }
            }
            panic!("the watcher stopped");
        })
        .await
        .expect("watch signs in when the card is inserted");
        assert_eq!(signed_in.user, "doctor0000001");
        assert_eq!(g.curl_t1("/debug/me", &[]).0, 200);
        card.disconnect().expect("remove the card");
        let removed = Instant::now();
        loop {
            let (s, _, _) = g.curl_t1("/debug/me", &[]);
            if s == 401 {
                break;
            }
            assert!(
                removed.elapsed() < Duration::from_secs(2),
                "still signed in {:?} after removal",
                removed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handle.stop().await;

        // A card that locks: fifteen wrong PINs, then even the right one is refused by the card.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let fresh = Arc::new(Mutex::new(
            CardEngine::new(
                AppFiles::from_pem(
                    hpki.doctor.pem().as_bytes(),
                    hpki.doctor.key.as_str().as_bytes(),
                )
                .unwrap(),
                None,
                PIN,
                Quirks::default(),
            )
            .unwrap(),
        ));
        let card = VirtualCard::connect(&fresh, ("127.0.0.1", PORT)).expect("insert the card");
        let deadline = Instant::now() + Duration::from_secs(5);
        while sekisho_cardreader::pcsc_transport::PcscTransport::connect(READER).is_err() {
            assert!(Instant::now() < deadline, "the card was not seen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut last = None;
        for _ in 0..15 {
            last = Some(agent::login(&cfg, "0000").await);
        }
        assert!(
            matches!(last, Some(Err(AgentError::CardLocked))),
            "{last:?}"
        );
        match agent::login(&cfg, PIN).await {
            Err(AgentError::CardLocked) => {}
            other => panic!("a locked card must stay locked: {other:?}"),
        }
        card.disconnect().expect("remove the card");
    });
    g.wait_audit(|r| {
        r["event"] == "auth" && r["reason"] == "card_removed" && r["user"] == "doctor0000001"
    });
}

/// The card presence limit these tests run with (the least `signin.card_presence_secs` takes):
/// the agent proves presence every 5 s.
const PRESENCE_SECS: u64 = 15;

/// A gateway with the test HPKI, `/debug/me` for the signed-in person, the doctor's account,
/// and card sessions that end 15 s after the card's last presence proof.
fn card_gateway(db: Db) -> (Gateway, TestHpki) {
    let extra = format!(
        "{}\n[[route]]\nname = \"me\"\nmethods = [\"GET\"]\npath = \"/debug/me\"\nlevel = \"user\"\naction = \"view\"\n\n[hpki]\nanchors = [\"hpki/root.crt\"]\nintermediates = [\"hpki/auth-ca.crt\"]\ncrls = [\"hpki/auth-ca.crl\", \"hpki/root.crl\"]\n",
        Options::default().extra_config
    );
    let mut g = Gateway::start_with(
        db,
        Options {
            extra_config: extra,
            replace: vec![("card_presence_secs = 60", "card_presence_secs = 15")],
            ..Default::default()
        },
    );
    let hpki = TestHpki::generate(&g.data.join("hpki")).unwrap();
    g.stop();
    g.serve();
    let doctor_crt = g.data.join("hpki/doctor.crt");
    run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        "doctor0000001",
        "--name",
        "神楽坂　三十四",
        "--facility",
        "f1",
        "--roles",
        "physician",
        "--hpki-cert",
        doctor_crt.to_str().unwrap(),
    ]);
    (g, hpki)
}

/// `sekisho-agent watch` as a process of its own (this test binary run again in agent mode,
/// [`agent_process`]), so that it can be killed with SIGKILL: it prints `EVENT <event>` lines.
struct AgentProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl AgentProcess {
    fn start(cfg: &AgentConfig) -> AgentProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "agent_process", "--nocapture"])
            .env("SEKISHO_TEST_AGENT_GATEWAY", &cfg.gateway)
            .env("SEKISHO_TEST_AGENT_CERT", &cfg.cert)
            .env("SEKISHO_TEST_AGENT_KEY", &cfg.key)
            .env("SEKISHO_TEST_AGENT_CA", &cfg.ca)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(e) = l.strip_prefix("EVENT ") {
                    let _ = tx.send(e.to_string());
                }
            }
        });
        AgentProcess { child, lines }
    }

    /// Waits for an event line starting with `prefix`; panics after `within`.
    fn wait(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("the agent did not report {prefix} within {within:?}"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let s = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
    }

    fn kill9(&mut self) {
        let s = std::process::Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Agent mode of this test binary (run by [`AgentProcess`], ignored otherwise): watches the
/// reader with the PIN given, printing each event, until killed.
#[test]
#[ignore = "run by the card presence test as the agent process"]
fn agent_process() {
    let Ok(gateway) = std::env::var("SEKISHO_TEST_AGENT_GATEWAY") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap();
    let cfg = AgentConfig {
        gateway,
        cert: env("SEKISHO_TEST_AGENT_CERT").into(),
        key: env("SEKISHO_TEST_AGENT_KEY").into(),
        ca: env("SEKISHO_TEST_AGENT_CA").into(),
        reader: Some(READER.into()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _handle = agent::watch(cfg, Arc::new(FixedPin::new(PIN)), tx);
        while let Some(e) = rx.recv().await {
            println!("EVENT {e:?}");
        }
    });
}

/// The card proves its presence, so the session outlives the presence limit many times over;
/// once the agent is killed (SIGKILL: no sign-out) the proofs stop and the gateway ends the
/// session within the limit (plus one sweep), on record as `heartbeat_missed`. Likewise when
/// the card is taken out while the agent is frozen (SIGSTOP) and cannot sign out.
#[test]
fn a_card_session_lasts_while_the_card_proves_its_presence_and_ends_when_the_agent_is_killed() {
    for db in BOTH {
        let _rig = rig();
        let (g, hpki) = card_gateway(db);
        let cfg = agent_config(&g);
        let card = insert_card_in(&hpki.doctor);
        let mut agent = AgentProcess::start(&cfg);
        agent.wait("SignedIn", Duration::from_secs(20));
        assert_eq!(g.curl_t1("/debug/me", &[]).0, 200);

        // Twice the limit with proofs: still signed in, every request the doctor's.
        let until = Instant::now() + Duration::from_secs(2 * PRESENCE_SECS);
        let mut proofs = 0;
        while Instant::now() < until {
            if agent
                .lines
                .try_recv()
                .is_ok_and(|l| l.starts_with("Present"))
            {
                proofs += 1;
            }
            let (s, body, _) = g.curl_t1("/debug/me", &[]);
            assert_eq!(
                s, 200,
                "{db:?}: signed out while the card proves its presence: {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            proofs >= 4,
            "{db:?}: {proofs} presence proofs in {}s",
            2 * PRESENCE_SECS
        );
        assert!(
            !g.audit_records()
                .iter()
                .any(|r| r["reason"] == "heartbeat_missed"),
            "{db:?}"
        );

        // The agent dies without a word; the card stays in the reader.
        agent.wait("Present", Duration::from_secs(10));
        agent.kill9();
        let killed = Instant::now();
        loop {
            let (s, _, _) = g.curl_t1("/debug/me", &[]);
            if s == 401 {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(PRESENCE_SECS + 5),
                "{db:?}: still signed in {:?} after the agent was killed",
                killed.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let took = killed.elapsed();
        println!(
            "{db:?}: the session ended {:.1} s after the agent was killed (limit {PRESENCE_SECS} s after the last proof)",
            took.as_secs_f64()
        );
        // Not before the limit: the last proof was at most a moment before the kill.
        assert!(
            took >= Duration::from_secs(PRESENCE_SECS - 2),
            "{db:?}: {took:?}"
        );
        g.wait_audit(|r| {
            r["event"] == "auth"
                && r["reason"] == "heartbeat_missed"
                && r["user"] == "doctor0000001"
        });
        let (_, status, _) = g.curl_t1("/.sekisho/auth/status", &[]);
        assert!(status.contains("\"signed_in\":false"), "{db:?}: {status}");

        // The card taken out while the agent is frozen (SIGSTOP: it can neither notice nor
        // sign out): the gateway ends the session by itself, since the card proves nothing.
        let agent = AgentProcess::start(&cfg);
        agent.wait("SignedIn", Duration::from_secs(20));
        agent.wait("Present", Duration::from_secs(10));
        assert_eq!(g.curl_t1("/debug/me", &[]).0, 200);
        agent.signal("-STOP");
        let (card, _engine) = card;
        card.disconnect().expect("remove the card");
        let removed = Instant::now();
        while g.curl_t1("/debug/me", &[]).0 != 401 {
            assert!(
                removed.elapsed() < Duration::from_secs(PRESENCE_SECS + 5),
                "{db:?}: still signed in {:?} after the card was removed",
                removed.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "{db:?}: with the agent frozen, the session ended {:.1} s after the card was removed",
            removed.elapsed().as_secs_f64()
        );
        // Both ends on record (written without waiting: poll), the second by the gateway's
        // sweep while the agent is still frozen.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let missed = g
                .audit_records()
                .into_iter()
                .filter(|r| r["reason"] == "heartbeat_missed" && r["user"] == "doctor0000001")
                .count();
            if missed == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{db:?}: {missed} ends on record");
            std::thread::sleep(Duration::from_millis(100));
        }
        agent.signal("-CONT");
    }
}

/// The doctor's card, in this file's reader (taken by the caller's rig).
fn insert_card_in(cert: &sekisho_ca::hpki::TestCert) -> (VirtualCard, Arc<Mutex<CardEngine>>) {
    let engine = Arc::new(Mutex::new(
        CardEngine::new(
            AppFiles::from_pem(cert.pem().as_bytes(), cert.key.as_str().as_bytes()).unwrap(),
            None,
            PIN,
            Quirks::default(),
        )
        .unwrap(),
    ));
    let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT)).expect("insert the card");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sekisho_cardreader::pcsc_transport::PcscTransport::connect(READER).is_err() {
        assert!(Instant::now() < deadline, "the card was not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (card, engine)
}
