//! Sign-in with the HPKI card through pcscd, from the library and from the command line.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use sekisho_agent::{self as agent, AgentError, LogoutReason, Reason, Summary};
use sekisho_cardreader::hpki::Application;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_the_card_through_pcscd() {
    let _rig = rig();
    let (auth, _) = identities();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);

    // No card.
    let e = agent::login(&cfg, PIN).await.unwrap_err();
    assert!(matches!(e, AgentError::NoCard { .. }), "{e:?}");
    assert!(e.to_string().contains("insert"), "{e}");
    assert_eq!(lock(&state).challenges_issued, 0);
    // An unknown reader is named, with the ones there are.
    let mut other = cfg.clone();
    other.reader = Some("No Such Reader 99".into());
    let e = agent::login(&other, PIN).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::UnknownReader { available, .. } if available.iter().any(|r| r == READER)),
        "{e:?}"
    );

    let engine = new_engine();
    let card = insert(&engine).await;

    // A wrong PIN: the card says how many tries are left; nothing is sent to log in.
    let e = agent::login(&cfg, "0000").await.unwrap_err();
    assert!(
        matches!(e, AgentError::WrongPin { tries_left: 14 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("14 tries left"), "{e}");
    assert!(e.message_ja().contains("14"));
    assert_eq!(e.exit_code(), 4);
    assert!(lock(&state).logins.is_empty());
    // A malformed PIN costs no try.
    let e = agent::login(&cfg, "12").await.unwrap_err();
    assert!(matches!(e, AgentError::PinFormat), "{e:?}");
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(14)
    );

    // The right PIN: signed in, with the card's authentication certificate and a signature the
    // gateway verified against it.
    let info = agent::login(&cfg, PIN).await.unwrap();
    assert_eq!(info.user, "yamada.taro");
    assert_eq!(info.qualification.as_deref(), Some("Medical Doctor"));
    assert!(info.summary().contains("YAMADA TARO"));
    {
        let st = lock(&state);
        assert_eq!(st.logins, vec![auth.cert_der.clone()]);
        assert_eq!(st.anonymous, 0);
    }
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(15)
    );
    let s = agent::status(&cfg).await.unwrap();
    assert!(s.signed_in);
    assert_eq!(s.method.as_deref(), Some("hpki"));

    // The gateway's refusals come through as such.
    for (status, code, want) in [
        (403, "hpki_revoked", Reason::HpkiRevoked),
        (403, "hpki_expired", Reason::HpkiExpired),
        (423, "account_locked", Reason::AccountLocked),
    ] {
        lock(&state).refuse = Some((status, code));
        let e = agent::login(&cfg, PIN).await.unwrap_err();
        assert_eq!(e.reason(), Some(want), "{e:?}");
    }
    lock(&state).refuse = None;

    assert!(agent::logout(&cfg, LogoutReason::Logout).await.unwrap());
    assert!(!agent::status(&cfg).await.unwrap().signed_in);
    assert_eq!(lock(&state).logouts.last().unwrap().1, "logout");

    // Gateway away: the card is not asked for a PIN (no try spent), the error says so.
    server.stop().await;
    let e = agent::login(&cfg, "9999").await.unwrap_err();
    assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(15)
    );

    remove(card).await;
    wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_login_status_logout() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let addr = server.addr;
    let common = |cmd: &str| -> Vec<String> {
        let mut v: Vec<String> = vec![
            cmd.into(),
            "--gateway".into(),
            format!("https://{addr}"),
            "--cert".into(),
            pki.path("T.crt").display().to_string(),
            "--key".into(),
            pki.path("T.key").display().to_string(),
            "--ca".into(),
            pki.path("ca.crt").display().to_string(),
        ];
        if cmd == "login" {
            v.extend(["--reader".into(), READER.into(), "--pin-stdin".into()]);
        }
        v
    };

    let (code, _, err) = agent_cli(common("login"), "1234\n").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no card in Virtual PCD 00 01"), "{err}");
    assert!(err.contains("カードが挿入されていません"), "{err}");

    let engine = new_engine();
    let card = insert(&engine).await;
    let (code, _, err) = agent_cli(common("login"), "0000\n").await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("wrong PIN: 14 tries left"), "{err}");
    assert!(!err.contains("0000"), "the PIN is never shown: {err}");

    let (code, out, err) = agent_cli(common("login"), "1234\n").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Signed in") && out.contains("YAMADA TARO"),
        "{out}"
    );
    assert!(out.contains("Medical Doctor"), "{out}");
    assert!(!out.contains("1234") && !err.contains("1234"));

    let (code, out, _) = agent_cli(common("status"), "").await;
    assert_eq!(code, 0);
    assert!(out.contains("Signed in") && out.contains("hpki"), "{out}");
    let (code, out, _) = agent_cli(common("logout"), "").await;
    assert_eq!(code, 0);
    assert!(out.contains("Signed out"), "{out}");
    let (_, out, _) = agent_cli(common("status"), "").await;
    assert!(out.contains("Not signed in"), "{out}");

    // The gateway gone: exit 6, said plainly.
    server.stop().await;
    let (code, _, err) = agent_cli(common("status"), "").await;
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("cannot be reached"), "{err}");

    remove(card).await;
    wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_signs_only_sign_in_challenges_for_sign_in() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let card_engine = RecordingCard::new();
    let card = insert(&card_engine).await;

    // A gateway that sends an emergency declaration (or anything else) as the sign-in
    // challenge gets no signature: the card is asked for nothing.
    let declaration = sekisho_protocol::wire::Declaration {
        gateway: "127.0.0.1".into(),
        terminal: TERMINAL_URN.into(),
        declaration: "bg1".into(),
        user: "yamada.taro".into(),
        patient: "P-0001".into(),
        category: "unconscious".into(),
        justification: "signed as a sign-in".into(),
        declared_at: "2026-12-04T02:00:00Z".into(),
        nonce: "n".into(),
    };
    for hostile in [
        declaration.to_sign(),
        b"sekisho-hpki-login\nnonce=x".to_vec(),
    ] {
        lock(&state).login_to_sign = Some(hostile);
        let e = agent::login(&cfg, PIN).await.unwrap_err();
        assert!(matches!(e, AgentError::NotLoginChallenge(_)), "{e:?}");
        assert_eq!(e.exit_code(), 6);
    }
    assert!(card_engine.lock().unwrap().signatures.is_empty());
    assert!(lock(&state).logins.is_empty());

    // The real challenge is signed, once.
    lock(&state).login_to_sign = None;
    agent::login(&cfg, PIN).await.unwrap();
    assert_eq!(card_engine.lock().unwrap().signatures.len(), 1);

    remove(card).await;
    wait_gone().await;
}
