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
