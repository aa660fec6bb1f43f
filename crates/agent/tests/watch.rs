//! `watch`: sign in when an HPKI card is inserted, out when it leaves; patient cards in another
//! reader are no sign-in cards.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sekisho_agent::{
    self as agent, AgentError, LogoutReason, PinRequest, PinSource, Retry, WatchEvent,
};
use sekisho_cardreader::PcscTransport;
use tokio::sync::mpsc::UnboundedReceiver;
use zeroize::Zeroizing;

/// PINs from a list (then the right one), counting the requests.
struct PinQueue {
    pins: Mutex<VecDeque<&'static str>>,
    asked: Mutex<Vec<Option<u8>>>,
}

impl PinSource for PinQueue {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        self.asked.lock().unwrap().push(request.tries_left);
        assert_eq!(request.reader, READER);
        assert!(
            request.prompt().contains("YAMADA TARO"),
            "{}",
            request.prompt()
        );
        let pin = self.pins.lock().unwrap().pop_front().unwrap_or(PIN);
        Ok(Zeroizing::new(pin.to_string()))
    }
}

/// Waits for an event that `want` picks, printing the others.
async fn expect<T>(
    rx: &mut UnboundedReceiver<WatchEvent>,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&WatchEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                eprintln!("watch event: {ev:?}");
                if let Some(t) = want(&ev) {
                    return t;
                }
            }
            Ok(None) => panic!("the watcher ended while waiting for {what}"),
            Err(_) => {
                let now =
                    tokio::task::spawn_blocking(|| PcscTransport::connect(READER).map(|_| ()))
                        .await
                        .unwrap();
                panic!("no {what} within {within:?} (the reader says: {now:?})")
            }
        }
    }
}

/// Waits until the gateway has received `n` logouts; returns the last one.
async fn logout_received(
    state: &Mutex<GatewayState>,
    n: usize,
    within: Duration,
) -> (Instant, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = lock(state).logouts.get(n - 1) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "logout #{n} not received within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_signs_in_on_insertion_and_out_on_removal() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let addr = server.addr;
    let cfg = pki.config(addr);
    let pins = Arc::new(PinQueue {
        pins: Mutex::new(VecDeque::from(["0000"])),
        asked: Mutex::new(Vec::new()),
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = agent::watch(cfg, pins.clone(), tx);
    let secs = Duration::from_secs;
    expect(&mut rx, secs(5), "watching", |e| {
        matches!(e, WatchEvent::ReaderAdded { reader } if reader == READER).then_some(())
    })
    .await;

    // First insertion, wrong PIN: refused with the tries left; a script's PIN is not asked
    // again until the card is inserted again.
    let engine = new_engine();
    let card = plug(&engine).await;
    let (error, retry) = expect(&mut rx, secs(10), "a failed login", |e| match e {
        WatchEvent::LoginFailed { error, retry, .. } => Some((error.to_string(), *retry)),
        WatchEvent::SignedIn { .. } => panic!("signed in with a wrong PIN"),
        _ => None,
    })
    .await;
    assert!(error.contains("14 tries left"), "{error}");
    assert_eq!(retry, Retry::Reinsert);
    remove(card).await;
    expect(&mut rx, secs(3), "removal", |e| {
        matches!(e, WatchEvent::CardRemoved { .. }).then_some(())
    })
    .await;
    assert!(lock(&state).logouts.is_empty(), "no session, no logout");

    // Second insertion: signed in.
    let card = plug(&engine).await;
    let info = expect(&mut rx, secs(10), "sign-in", |e| match e {
        WatchEvent::SignedIn { info, reader } => {
            assert_eq!(reader, READER);
            Some(info.clone())
        }
        WatchEvent::LoginFailed { error, .. } => panic!("login failed: {error}"),
        _ => None,
    })
    .await;
    assert_eq!(info.name, "YAMADA TARO");
    assert_eq!(*pins.asked.lock().unwrap(), vec![Some(15), Some(14)]);

    // Removal: the gateway gets `card_removed` within 2 s.
    let removed_at = Instant::now();
    remove(card).await;
    let (at, reason) = logout_received(&state, 1, secs(2)).await;
    assert_eq!(reason, "card_removed");
    let took = at.duration_since(removed_at);
    eprintln!("logout received {took:?} after the removal");
    assert!(took <= secs(2), "logout after {took:?}");
    expect(&mut rx, secs(2), "sign-out", |e| match e {
        WatchEvent::SignedOut { reason, ended, .. } => Some((*reason, *ended)),
        _ => None,
    })
    .await;

    // The gateway restarts while the card is in; the removal's logout waits for it.
    let card = plug(&engine).await;
    expect(&mut rx, secs(10), "sign-in", |e| {
        matches!(e, WatchEvent::SignedIn { .. }).then_some(())
    })
    .await;
    server.stop().await;
    remove(card).await;
    expect(&mut rx, secs(5), "a failed logout", |e| {
        matches!(e, WatchEvent::LogoutFailed { .. }).then_some(())
    })
    .await;
    assert_eq!(lock(&state).logouts.len(), 1);
    let server = start_gateway(&pki, addr.port(), &state).await;
    let (_, reason) = logout_received(&state, 2, secs(5)).await;
    assert_eq!(reason, "card_removed");
    assert!(!lock(&state).signed_in);

    // Signed in again, then the agent stops: it signs out on its way.
    let card = plug(&engine).await;
    expect(&mut rx, secs(10), "sign-in", |e| {
        matches!(e, WatchEvent::SignedIn { .. }).then_some(())
    })
    .await;
    handle.stop().await;
    let (_, reason) = logout_received(&state, 3, secs(1)).await;
    assert_eq!(reason, "logout");
    let (logins, anonymous) = {
        let st = lock(&state);
        (st.logins.len(), st.anonymous)
    };
    assert_eq!((logins, anonymous), (3, 0));
    remove(card).await;
    wait_gone().await;
    server.stop().await;
}

/// Waits `within`, failing on any watcher event but reader hot-plug: the agent must not react.
async fn expect_quiet(rx: &mut UnboundedReceiver<WatchEvent>, within: Duration, when: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(ev) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match ev {
            Some(ev @ (WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. })) => {
                eprintln!("watch event: {ev:?}");
            }
            Some(ev) => panic!("{when}: the watcher reacted: {ev:?}"),
            None => panic!("{when}: the watcher ended"),
        }
    }
}

/// Starts watching every reader; returns once both vpcd readers are reported.
async fn watch_all(
    pki: &Pki,
    gateway: SocketAddr,
    pins: Arc<dyn PinSource>,
) -> (agent::WatchHandle, UnboundedReceiver<WatchEvent>) {
    let mut cfg = pki.config(gateway);
    cfg.reader = None;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = agent::watch(cfg, pins, tx);
    let mut seen = Vec::new();
    while !(seen.contains(&READER) && seen.contains(&PATIENT_READER)) {
        let reader = expect(
            &mut rx,
            Duration::from_secs(5),
            "the vpcd readers",
            |e| match e {
                WatchEvent::ReaderAdded { reader } if reader == READER => Some(READER),
                WatchEvent::ReaderAdded { reader } if reader == PATIENT_READER => {
                    Some(PATIENT_READER)
                }
                WatchEvent::ReaderAdded { .. } | WatchEvent::Watching => None,
                other => panic!("before the readers: {other:?}"),
            },
        )
        .await;
        seen.push(reader);
    }
    (handle, rx)
}

/// A patient card in the other reader is no sign-in card: `watch` neither tries it nor reports
/// it, its removal signs no one out, and the physician's HPKI card works as before around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ignores_a_patient_card_in_another_reader() {
    let _rig = rig();
    let _patient_lock = patient_reader_lock();
    let secs = Duration::from_secs;
    let pki = Pki::new();
    let files = pki.ca.issue_patient_card("P-0001");
    std::fs::write(pki.path("patient.crt"), &files.cert_pem).unwrap();
    std::fs::write(pki.path("patient.key"), &files.key_pem).unwrap();
    let patient_card =
        || PatientVcard::start(&pki.path("patient.crt"), &pki.path("patient.key"), "P-0001");
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    // Only the right PIN, asked for once: the HPKI card's (the queue checks the reader).
    let pins = Arc::new(PinQueue {
        pins: Mutex::new(VecDeque::new()),
        asked: Mutex::new(Vec::new()),
    });
    let (handle, mut rx) = watch_all(&pki, server.addr, pins.clone()).await;

    // The patient card alone: nothing happens, the gateway is not asked.
    settle().await;
    let vcard = patient_card();
    wait_patient_card(true).await;
    expect_quiet(&mut rx, secs(2), "patient card inserted").await;
    assert_eq!(lock(&state).challenges_issued, 0);

    // The HPKI card beside it: signed in as before, and the patient card is not "waiting".
    let engine = new_engine();
    let card = plug(&engine).await;
    let mut inserted = false;
    expect(&mut rx, secs(10), "sign-in", |e| match e {
        WatchEvent::CardInserted { reader } if reader == READER => {
            inserted = true;
            None
        }
        WatchEvent::SignedIn { reader, .. } if reader == READER => Some(()),
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("while signing in: {other:?}"),
    })
    .await;
    assert!(inserted, "the HPKI card's insertion is reported");
    assert_eq!(*pins.asked.lock().unwrap(), vec![Some(15)]);

    // The patient card taken out while signed in: no sign-out.
    drop(vcard);
    wait_patient_card(false).await;
    expect_quiet(&mut rx, secs(2), "patient card removed").await;
    // Inserted again while signed in (the case in the field): still nothing.
    tokio::time::sleep(SETTLE).await;
    let vcard = patient_card();
    wait_patient_card(true).await;
    expect_quiet(&mut rx, secs(2), "patient card inserted while signed in").await;
    {
        let st = lock(&state);
        assert!(st.signed_in);
        assert!(st.logouts.is_empty(), "{:?}", st.logouts);
        assert_eq!((st.challenges_issued, st.logins.len()), (1, 1));
    }

    // The HPKI card taken out: signed out at once, as before.
    remove(card).await;
    let (_, reason) = logout_received(&state, 1, secs(2)).await;
    assert_eq!(reason, "card_removed");
    expect(&mut rx, secs(2), "sign-out", |e| match e {
        WatchEvent::SignedOut {
            reader,
            reason,
            ended,
        } => {
            assert_eq!(reader.as_deref(), Some(READER));
            assert_eq!((*reason, *ended), (LogoutReason::CardRemoved, true));
            Some(())
        }
        WatchEvent::CardRemoved { reader } if reader == READER => None,
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("while signing out: {other:?}"),
    })
    .await;
    expect_quiet(&mut rx, secs(1), "after the sign-out").await;
    handle.stop().await;
    assert_eq!(lock(&state).logouts.len(), 1, "nothing left to sign out");

    // A card session at the gateway, and only a patient card here when the agent starts: the
    // patient card does not account for it, so it is ended.
    lock(&state).signed_in = true;
    let (handle, mut rx) = watch_all(&pki, server.addr, pins.clone()).await;
    expect(&mut rx, secs(10), "the stale session ended", |e| match e {
        WatchEvent::SignedOut {
            reader,
            reason,
            ended,
        } => {
            assert_eq!(
                (reader, *reason, *ended),
                (&None, LogoutReason::CardRemoved, true)
            );
            Some(())
        }
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("with only a patient card: {other:?}"),
    })
    .await;
    handle.stop().await;
    {
        let st = lock(&state);
        assert_eq!(st.logouts.len(), 2);
        assert_eq!(
            (st.challenges_issued, st.logins.len(), st.anonymous),
            (1, 1, 0)
        );
    }

    drop(vcard);
    wait_patient_card(false).await;
    wait_gone().await;
    server.stop().await;
}
