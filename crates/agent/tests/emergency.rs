//! Emergency declarations (break-glass) signed by the virtual HPKI card through pcscd, against
//! the in-test gateway: what the card signs, and what it never signs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use sekisho_agent::{
    self as agent, AgentError, Confirm, Declaration, DeclarationRequest, FixedPin, PinRequest,
    PinSource, Reason, Summary,
};
use sekisho_cardreader::hpki::Application;
use zeroize::Zeroizing;

/// The PIN, counting how often it was asked for.
struct CountingPin {
    pin: &'static str,
    asked: AtomicUsize,
}

impl CountingPin {
    fn new(pin: &'static str) -> Arc<CountingPin> {
        Arc::new(CountingPin {
            pin,
            asked: AtomicUsize::new(0),
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl PinSource for CountingPin {
    fn pin(&self, _: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(Zeroizing::new(self.pin.to_string()))
    }
}

/// Says yes (or no), keeping every declaration it was shown.
#[derive(Default)]
struct Shown {
    yes: bool,
    seen: Mutex<Vec<Declaration>>,
}

impl Shown {
    fn answering(yes: bool) -> Arc<Shown> {
        Arc::new(Shown {
            yes,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Confirm for Shown {
    fn confirm(&self, d: &Declaration) -> Result<bool, AgentError> {
        self.seen.lock().unwrap().push(d.clone());
        Ok(self.yes)
    }
}

fn request(patient: &str, category: &str) -> DeclarationRequest {
    DeclarationRequest {
        category: category.into(),
        justification: "救急搬送、意識障害。Unconscious on arrival; no relative reachable.".into(),
        patient: Some(patient.into()),
    }
}

fn signatures(card: &Arc<Mutex<RecordingCard>>) -> usize {
    card.lock().unwrap().signatures.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_signs_exactly_the_declaration_once() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);

    // No card: nothing is begun at the gateway.
    let e = agent::emergency_declare(
        &cfg,
        &request("P-0001", "unconscious"),
        Arc::new(FixedPin::new(PIN)),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::NoCard { .. }), "{e:?}");
    assert_eq!(lock(&state).emergency.begun, 0);

    let card_engine = RecordingCard::new();
    let card = insert(&card_engine).await;

    // Not signed in: the gateway's refusal, with its code and exit status; nothing signed.
    let e = agent::emergency_declare(
        &cfg,
        &request("P-0001", "unconscious"),
        Arc::new(FixedPin::new(PIN)),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::BreakGlassNotPermitted), "{e:?}");
    assert_eq!(e.exit_code(), 5);
    assert!(
        e.to_string().contains("sign in with your card first"),
        "{e}"
    );
    assert!(e.message_ja().contains("ログイン"), "{}", e.message_ja());
    assert_eq!(signatures(&card_engine), 0);

    agent::login(&cfg, PIN).await.unwrap();
    assert_eq!(signatures(&card_engine), 1);

    // Declaring: shown once, the PIN asked once (although the card still counts the sign-in's
    // PIN as verified), one signature, over exactly the text the gateway made.
    let pins = CountingPin::new(PIN);
    let shown = Shown::answering(true);
    let outcome = agent::emergency_declare(
        &cfg,
        &request("P-0001", "unconscious"),
        pins.clone(),
        shown.clone(),
    )
    .await
    .unwrap();
    assert!(outcome.is_active());
    assert_eq!(outcome.declaration.patient, "P-0001");
    assert_eq!(outcome.declaration.terminal, TERMINAL_URN);
    assert!(outcome.state.expires_at.is_some());
    assert!(
        outcome
            .summary()
            .contains("active for patient P-0001 until")
    );
    assert!(outcome.summary_ja().contains("緊急時アクセスが有効"));
    assert_eq!(pins.asked(), 1);
    assert_eq!(shown.count(), 1);
    assert_eq!(shown.seen.lock().unwrap()[0], outcome.declaration);
    {
        let st = lock(&state);
        let card = card_engine.lock().unwrap();
        assert_eq!(
            card.signatures.len(),
            2,
            "one signature for the declaration"
        );
        let signed = &st.emergency.signed;
        assert_eq!(signed.len(), 1);
        assert_eq!(signed[0].id, outcome.declaration.declaration);
        assert_eq!(signed[0].to_sign, outcome.declaration.to_sign());
        assert_eq!(signed[0].signature, card.signatures[1]);
        assert_eq!(signed[0].certificate, identities().0.cert_der);
        assert!(signed_by_auth_key(
            &outcome.declaration.to_sign(),
            &card.signatures[1]
        ));
    }

    // Declined at the confirmation: no PIN asked, nothing signed.
    let pins = CountingPin::new(PIN);
    let e = agent::emergency_declare(
        &cfg,
        &request("P-0002", "unconscious"),
        pins.clone(),
        Shown::answering(false),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Declined), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    assert_eq!((pins.asked(), signatures(&card_engine)), (0, 2));

    // A wrong PIN: a try spent, nothing signed; the right one puts the counter back.
    let e = agent::emergency_declare(
        &cfg,
        &request("P-0002", "unconscious"),
        Arc::new(FixedPin::new("0000")),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, AgentError::WrongPin { tries_left: 14 }),
        "{e:?}"
    );
    assert_eq!(signatures(&card_engine), 2);

    // Child protection waits for a second person's approval.
    let outcome = agent::emergency_declare(
        &cfg,
        &request("P-0003", APPROVAL_CATEGORY),
        Arc::new(FixedPin::new(PIN)),
        Shown::answering(true),
    )
    .await
    .unwrap();
    assert!(!outcome.is_active());
    assert!(
        outcome.summary().contains("second person approves"),
        "{}",
        outcome.summary()
    );
    assert_eq!(signatures(&card_engine), 3);
    assert_eq!(
        card_engine
            .lock()
            .unwrap()
            .engine
            .tries_left(Application::Authentication),
        Some(15)
    );

    // The gateway's refusal of a declaration comes through with its code.
    lock(&state).emergency.refuse = Some((400, "break_glass_category_unknown"));
    let e = agent::emergency_declare(
        &cfg,
        &request("P-0001", "nonsense"),
        Arc::new(FixedPin::new(PIN)),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::BreakGlassCategoryUnknown), "{e:?}");
    assert_eq!(e.exit_code(), 5);
    lock(&state).emergency.refuse = None;

    remove(card).await;
    wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_texts_are_never_signed() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let card_engine = RecordingCard::new();
    let card = insert(&card_engine).await;
    agent::login(&cfg, PIN).await.unwrap();
    let before = signatures(&card_engine);

    let tampers: Vec<(&str, Tamper)> = vec![
        (
            "a sign-in challenge",
            Box::new(|d: &Declaration| {
                sekisho_protocol::wire::hpki_login_to_sign(&d.gateway, &d.terminal, &d.nonce)
            }),
        ),
        (
            "another terminal",
            Box::new(|d: &Declaration| {
                let mut d = d.clone();
                d.terminal = "urn:sekisho:terminal:F001:T999".into();
                d.to_sign()
            }),
        ),
        (
            "another gateway",
            Box::new(|d: &Declaration| {
                let mut d = d.clone();
                d.gateway = "gw.other.example".into();
                d.to_sign()
            }),
        ),
        (
            "a changed justification",
            Box::new(|d: &Declaration| {
                let mut d = d.clone();
                d.justification = "routine check".into();
                d.to_sign()
            }),
        ),
        (
            "another patient",
            Box::new(|d: &Declaration| {
                let mut d = d.clone();
                d.patient = "P-9999".into();
                d.to_sign()
            }),
        ),
        (
            "an extra line",
            Box::new(|d: &Declaration| [d.to_sign(), b"allows: view,write\n".to_vec()].concat()),
        ),
        (
            "CRLF line ends",
            Box::new(|d: &Declaration| {
                String::from_utf8(d.to_sign())
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes()
            }),
        ),
        (
            "an over-long text",
            Box::new(|d: &Declaration| {
                let mut t = d.to_sign();
                t.resize(64 * 1024, b'x');
                t
            }),
        ),
    ];
    for (what, tamper) in tampers {
        lock(&state).emergency.tamper = Some(tamper);
        let pins = CountingPin::new(PIN);
        let shown = Shown::answering(true);
        let e = agent::emergency_declare(
            &cfg,
            &request("P-0001", "unconscious"),
            pins.clone(),
            shown.clone(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AgentError::NotDeclaration(_)), "{what}: {e:?}");
        assert_eq!(e.exit_code(), 6, "{what}");
        // Neither shown nor asked for a PIN: refused before the physician sees it.
        assert_eq!((shown.count(), pins.asked()), (0, 0), "{what}");
        assert_eq!(signatures(&card_engine), before, "{what}: the card signed");
    }
    assert!(lock(&state).emergency.signed.is_empty());

    remove(card).await;
    wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_declarations_are_each_signed() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let card_engine = RecordingCard::new();
    let card = insert(&card_engine).await;
    agent::login(&cfg, PIN).await.unwrap();

    // Nothing prepared: nothing to do, the card is not even opened for it.
    let none =
        agent::emergency_sign_pending(&cfg, None, CountingPin::new(PIN), Shown::answering(true))
            .await
            .unwrap();
    assert!(none.is_empty());

    // Two prepared on the page, and one whose text names another terminal.
    let (a, b, hostile) = {
        let mut st = lock(&state);
        let a = st.emergency.prepare("P-0001", "unconscious", "意識なし");
        let b = st
            .emergency
            .prepare("P-0002", "disaster", "災害時、カード紛失");
        st.emergency.tamper = Some(Box::new(|d: &Declaration| {
            let mut d = d.clone();
            d.terminal = "urn:sekisho:terminal:F001:T002".into();
            d.to_sign()
        }));
        let hostile = st.emergency.prepare("P-0003", "unconscious", "x");
        st.emergency.tamper = None;
        (a, b, hostile)
    };
    let before = signatures(&card_engine);
    let pins = CountingPin::new(PIN);
    let shown = Shown::answering(true);
    let results = agent::emergency_sign_pending(&cfg, None, pins.clone(), shown.clone())
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    let by_id = |id: &str| results.iter().find(|r| r.id == id).unwrap();
    for id in [&a, &b] {
        let outcome = by_id(id).result.as_ref().unwrap();
        assert!(outcome.is_active(), "{id}");
        assert!(signed_by_auth_key(
            &outcome.declaration.to_sign(),
            &lock(&state)
                .emergency
                .signed
                .iter()
                .find(|s| &s.id == id)
                .unwrap()
                .signature
        ));
    }
    assert!(matches!(
        by_id(&hostile).result,
        Err(AgentError::NotDeclaration(_))
    ));
    assert_eq!(signatures(&card_engine), before + 2);
    assert_eq!(shown.count(), 2);
    assert_eq!(pins.asked(), 1, "the PIN is asked once per run");

    // One by id; an id not pending is the gateway's "not found".
    let c = lock(&state).emergency.prepare("P-0004", "unconscious", "x");
    let d = lock(&state).emergency.prepare("P-0005", "unconscious", "y");
    let e = agent::emergency_sign_pending(
        &cfg,
        Some("bg-9999"),
        CountingPin::new(PIN),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::BreakGlassDeclarationNotFound));
    assert_eq!(e.exit_code(), 5);
    let e = agent::emergency_sign_pending(
        &cfg,
        Some("../x"),
        CountingPin::new(PIN),
        Shown::answering(true),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Usage(_)), "{e:?}");
    let one = agent::emergency_sign_pending(
        &cfg,
        Some(&c),
        CountingPin::new(PIN),
        Shown::answering(true),
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, c);
    assert!(one[0].result.is_ok());
    assert_eq!(signatures(&card_engine), before + 3);

    // A wrong PIN stops the run: the next one is not tried with it.
    let _e = lock(&state).emergency.prepare("P-0006", "unconscious", "z");
    let results = agent::emergency_sign_pending(
        &cfg,
        None,
        Arc::new(FixedPin::new("0000")),
        Shown::answering(true),
    )
    .await
    .unwrap();
    // The hostile one is still pending (refused again), then the wrong PIN, then nothing.
    let ids: Vec<_> = results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [hostile.as_str(), d.as_str()], "{results:?}");
    assert!(matches!(
        results[1].result,
        Err(AgentError::WrongPin { tries_left: 14 })
    ));
    assert_eq!(signatures(&card_engine), before + 3);

    remove(card).await;
    wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_emergency() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "emergency".into(),
            "--gateway".into(),
            format!("https://{}", server.addr),
            "--cert".into(),
            pki.path("T.crt").display().to_string(),
            "--key".into(),
            pki.path("T.key").display().to_string(),
            "--ca".into(),
            pki.path("ca.crt").display().to_string(),
            "--reader".into(),
            READER.into(),
            "--pin-stdin".into(),
            "--yes".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let declare = [
        "--patient",
        "P-0001",
        "--category",
        "unconscious",
        "--justification",
        "救急搬送、意識障害。Unconscious on arrival.",
    ];
    let card_engine = RecordingCard::new();
    let card = insert(&card_engine).await;

    // Not signed in: the gateway's refusal, in both languages, exit 5; nothing signed.
    let (code, _, err) = agent_cli(args(&declare), "1234\n").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("sign in with your card first"), "{err}");
    assert!(err.contains("HPKIカードでログインした医師"), "{err}");
    assert_eq!(signatures(&card_engine), 0);

    agent::login(&cfg, PIN).await.unwrap();

    // Declared: the declaration printed for the record, then until when access holds.
    let (code, out, err) = agent_cli(args(&declare), "1234\n").await;
    assert_eq!(code, 0, "{err}");
    for want in [
        "Emergency access declaration",
        "P-0001",
        "unconscious",
        "救急搬送、意識障害。Unconscious on arrival.",
        TERMINAL_URN,
        "Emergency access active for patient P-0001 until",
        "JST",
        "緊急時アクセスが有効です",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    assert!(!out.contains("1234") && !err.contains("1234"));
    assert_eq!(signatures(&card_engine), 2);
    assert_eq!(lock(&state).emergency.signed.len(), 1);

    // A usage mistake is caught before anything is sent.
    let (code, _, err) = agent_cli(
        args(&[
            "--patient",
            "../P",
            "--category",
            "c",
            "--justification",
            "j",
        ]),
        "1234\n",
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(lock(&state).emergency.begun, 1);

    // A hostile text: refused without signing, exit 6, said so.
    lock(&state).emergency.tamper = Some(Box::new(|d: &Declaration| {
        let mut d = d.clone();
        d.justification = "routine".into();
        d.to_sign()
    }));
    let (code, out, err) = agent_cli(args(&declare), "1234\n").await;
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("not the emergency declaration"), "{err}");
    assert!(err.contains("justification"), "{err}");
    assert!(
        !out.contains("Emergency access declaration"),
        "not shown: {out}"
    );
    assert_eq!(signatures(&card_engine), 2);
    lock(&state).emergency.tamper = None;

    // Pending: every one prepared on the page is signed, with one PIN; one whose text names
    // another terminal is refused (exit 6) without stopping the others. (The draft begun with
    // the changed justification is dropped first: without the agent's own request, only the
    // physician reading it can tell.)
    let (a, b, hostile) = {
        let mut st = lock(&state);
        st.emergency.declarations.clear();
        let a = st.emergency.prepare("P-0002", "disaster", "災害時");
        let b = st
            .emergency
            .prepare("P-0003", APPROVAL_CATEGORY, "虐待の疑い");
        st.emergency.tamper = Some(Box::new(|d: &Declaration| {
            let mut d = d.clone();
            d.terminal = "urn:sekisho:terminal:F001:T002".into();
            d.to_sign()
        }));
        let hostile = st.emergency.prepare("P-0004", "unconscious", "x");
        st.emergency.tamper = None;
        (a, b, hostile)
    };
    let (code, out, err) = agent_cli(args(&["--pending"]), "1234\n").await;
    assert_eq!(code, 6, "{err}");
    assert!(
        out.contains(&format!("{a}: Emergency access active")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{b}: Emergency declaration {b}")),
        "{out}"
    );
    assert!(out.contains("second person approves"), "{out}");
    assert!(err.contains(&format!("declaration {hostile}:")), "{err}");
    assert!(err.contains("T002"), "{err}");
    assert_eq!(signatures(&card_engine), 4);

    // One by id that is not pending: the gateway's "not found", exit 5.
    let (code, _, err) = agent_cli(args(&["--declaration", &a]), "1234\n").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("not found"), "{err}");

    remove(card).await;
    wait_gone().await;

    // Nothing pending that this terminal could sign: said so, exit 0, no card needed.
    lock(&state).emergency.declarations.clear();
    let (code, out, err) = agent_cli(args(&["--pending"]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("No emergency declaration waits"), "{out}");
}
