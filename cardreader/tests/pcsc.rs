//! The real path: pcscd + the vsmartcard vpcd reader + the `sekisho-vcard` binary.
//!
//! Needs the Debian packages `pcscd` and `vsmartcard-vpcd`, and enough rights to start `pcscd`
//! (root) if it is not running. Without them this test fails, saying what is missing: it never
//! skips.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{PIN, identities, verify_signature};
use sekisho_cardreader::hpki::{Application, HpkiCard, HpkiError, Pin, PinState, SignMethod};
use sekisho_cardreader::vcard::{ATR, Quirks, VirtualCard};
use sekisho_cardreader::{CardError, CardEvent, PcscTransport, readers, watch};

/// vpcd's first reader and its port: the `sekisho-vcard` binary goes there.
const READER: &str = "Virtual PCD 00 00";
const PORT: u16 = 35963;
/// vpcd's second reader: the in-process `VirtualCard` goes there.
const READER_2: &str = "Virtual PCD 00 01";
const PORT_2: u16 = 35964;

/// Starts pcscd if needed and waits for the vpcd readers; panics with the reason otherwise.
fn ensure_rig() {
    // One test at a time: two would race to start pcscd.
    static RIG: Mutex<()> = Mutex::new(());
    let _one = RIG.lock().unwrap_or_else(PoisonError::into_inner);
    let has_readers =
        |r: &Vec<String>| r.iter().any(|n| n == READER) && r.iter().any(|n| n == READER_2);
    if readers::list_readers().is_ok_and(|r| has_readers(&r)) {
        return;
    }
    if readers::list_readers().is_err() {
        // Not running: start it (it daemonizes; the socket is /run/pcscd/pcscd.comm).
        match Command::new("pcscd").status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "pcscd exited with {s} when started; it must run as root with /run/pcscd writable"
            ),
            Err(e) => panic!(
                "cannot start pcscd ({e}): install the Debian packages pcscd and vsmartcard-vpcd"
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match readers::list_readers() {
            Ok(r) if has_readers(&r) => return,
            Ok(r) if Instant::now() > deadline => panic!(
                "pcscd runs but lacks {READER:?} or {READER_2:?} (readers: {r:?}): \
                 install vsmartcard-vpcd and restart pcscd"
            ),
            Err(e) if Instant::now() > deadline => {
                panic!("pcscd does not answer: {e}")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The vcard process; killed when the test ends, however it ends.
struct VcardProcess(Child);

impl VcardProcess {
    fn start(dir: &std::path::Path) -> VcardProcess {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &std::path::Path, extra: &[&str]) -> VcardProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_sekisho-vcard"))
            .args(extra)
            .args(["--host", "127.0.0.1", "--port", &PORT.to_string()])
            .arg("--auth-cert")
            .arg(dir.join("auth.crt"))
            .arg("--auth-key")
            .arg(dir.join("auth.key"))
            .arg("--sign-cert")
            .arg(dir.join("sign.crt"))
            .arg("--sign-key")
            .arg(dir.join("sign.key"))
            .env("SEKISHO_VCARD_PIN", PIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sekisho-vcard");
        VcardProcess(child)
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().expect("vcard stdin");
        writeln!(stdin, "{line}").expect("write to vcard");
        stdin.flush().expect("flush vcard stdin");
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for VcardProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_inserted(rx: &Receiver<CardEvent>, within: Duration) -> Vec<u8> {
    wait_inserted_in(rx, READER, within)
}

fn wait_removed(rx: &Receiver<CardEvent>, within: Duration) {
    wait_removed_in(rx, READER, within)
}

fn next_event(rx: &Receiver<CardEvent>, within: Duration, what: &str) -> CardEvent {
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("no {what} event within {within:?}"))
}

/// Waits for `Inserted` in READER, skipping other readers' news.
fn wait_inserted_in(rx: &Receiver<CardEvent>, want: &str, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(rx, left, "card insertion") {
            CardEvent::Inserted { reader, atr } if reader == want => return atr,
            CardEvent::Removed { reader } if reader == want => {
                panic!("card removed while waiting for insertion")
            }
            _ => {}
        }
    }
}

fn wait_removed_in(rx: &Receiver<CardEvent>, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(rx, left, "card removal") {
            CardEvent::Removed { reader } if reader == want => return,
            CardEvent::Inserted { reader, .. } if reader == want => {
                panic!("card inserted while waiting for removal")
            }
            _ => {}
        }
    }
}

#[test]
fn hpki_card_through_pcscd_and_vpcd() {
    ensure_rig();
    let (auth, sign) = identities();
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        ("auth.crt", &auth.cert_pem),
        ("auth.key", &auth.key_pem),
        ("sign.crt", &sign.cert_pem),
        ("sign.key", &sign.key_pem),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write test file");
    }

    let (tx, rx) = mpsc::channel();
    let watcher = watch(Some(READER), move |event| {
        let _ = tx.send(event);
    })
    .expect("watch the vpcd reader");
    // The first events describe the reader as it is: it must be there and empty, or another
    // card is using port 35963 and this test cannot own the reader.
    match next_event(&rx, Duration::from_secs(5), "reader") {
        CardEvent::ReaderAdded { reader } => assert_eq!(reader, READER),
        other => panic!("expected the reader first, got {other:?}"),
    }
    if let Ok(CardEvent::Inserted { .. }) = rx.recv_timeout(Duration::from_millis(1500)) {
        panic!("a card is already in {READER:?}: another virtual card holds port {PORT}");
    }

    // Insertion: start the card.
    let mut vcard = VcardProcess::start(dir.path());
    let atr = wait_inserted(&rx, Duration::from_secs(10));
    assert_eq!(atr, ATR);

    let message = b"sekisho login challenge 0123456789abcdef";
    {
        let mut transport = PcscTransport::connect(READER).expect("connect to the card");
        assert_eq!(transport.atr().unwrap(), ATR);
        let tx = transport.transaction().expect("card transaction");
        let mut card = HpkiCard::new(tx);
        assert_eq!(
            card.read_certificate(Application::Authentication).unwrap(),
            auth.cert_der
        );
        assert_eq!(
            card.read_certificate(Application::Signature).unwrap(),
            sign.cert_der
        );
        assert_eq!(
            card.pin_state(Application::Authentication).unwrap(),
            PinState::TriesLeft(15)
        );
        let pin = Pin::new(PIN).unwrap();
        card.verify_pin(Application::Authentication, &pin).unwrap();
        // Extended-length PSO over the host-built block, through pcscd and vpcd.
        let signature = card
            .sign_sha256(Application::Authentication, message)
            .expect("sign through PC/SC");
        verify_signature(&auth.cert_der, message, &signature);
        assert_eq!(card.sign_method(), Some(SignMethod::RawPso));
    }

    // Removal: kill the card process; the watcher must report it within 2 s.
    let killed = Instant::now();
    vcard.kill();
    wait_removed(&rx, Duration::from_secs(2));
    eprintln!("removal reported {:?} after the kill", killed.elapsed());
    match PcscTransport::connect(READER) {
        Err(CardError::NoCard) | Err(CardError::Removed) | Err(CardError::Unresponsive) => {}
        Err(e) => panic!("unexpected error connecting to an empty reader: {e}"),
        Ok(_) => panic!("connected to a card that was removed"),
    }

    // The same card again, removed and put back through its stdin this time.
    let mut vcard = VcardProcess::start(dir.path());
    wait_inserted(&rx, Duration::from_secs(10));
    vcard.send("remove");
    wait_removed(&rx, Duration::from_secs(2));
    vcard.send("insert");
    wait_inserted(&rx, Duration::from_secs(10));
    {
        let transport = PcscTransport::connect(READER).expect("connect again");
        let mut card = HpkiCard::new(transport);
        // A new card session: the PIN is needed again.
        assert_eq!(
            card.pin_state(Application::Authentication).unwrap(),
            PinState::TriesLeft(15)
        );
    }
    vcard.send("quit");
    wait_removed(&rx, Duration::from_secs(2));
    let status = vcard.0.wait().expect("vcard exit status");
    assert!(status.success(), "sekisho-vcard exited with {status}");

    // --remove-after: in, then out and exit on its own.
    let mut vcard = VcardProcess::start_with(dir.path(), &["--remove-after", "1"]);
    wait_inserted(&rx, Duration::from_secs(10));
    wait_removed(&rx, Duration::from_secs(3));
    let status = vcard.0.wait().expect("vcard exit status");
    assert!(status.success(), "sekisho-vcard exited with {status}");

    assert!(watcher.is_running());
    watcher.stop();
}

/// The in-process card on the second reader: `VirtualCard::connect` inserts, `disconnect`
/// removes, and the card keeps its PIN counter in between, as a real one does.
#[test]
fn in_process_virtual_card_keeps_its_counter_across_removal() {
    ensure_rig();
    let (auth, _) = identities();
    let (tx, rx) = mpsc::channel();
    let watcher = watch(Some(READER_2), move |event| {
        let _ = tx.send(event);
    })
    .expect("watch the second vpcd reader");
    match next_event(&rx, Duration::from_secs(5), "reader") {
        CardEvent::ReaderAdded { reader } => assert_eq!(reader, READER_2),
        other => panic!("expected the reader first, got {other:?}"),
    }
    if let Ok(CardEvent::Inserted { .. }) = rx.recv_timeout(Duration::from_millis(1500)) {
        panic!("a card is already in {READER_2:?}: another virtual card holds port {PORT_2}");
    }
    let engine = Arc::new(Mutex::new(common::engine(Quirks::default())));

    let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT_2)).expect("insert");
    wait_inserted_in(&rx, READER_2, Duration::from_secs(10));
    {
        let mut hpki = HpkiCard::new(PcscTransport::connect(READER_2).expect("connect"));
        assert_eq!(
            hpki.read_certificate(Application::Authentication).unwrap(),
            auth.cert_der
        );
        let wrong = Pin::new("0000").unwrap();
        assert!(matches!(
            hpki.verify_pin(Application::Authentication, &wrong),
            Err(HpkiError::WrongPin { tries_left: 14 })
        ));
    }
    card.disconnect().expect("remove");
    wait_removed_in(&rx, READER_2, Duration::from_secs(2));

    let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT_2)).expect("insert again");
    wait_inserted_in(&rx, READER_2, Duration::from_secs(10));
    {
        let mut hpki = HpkiCard::new(PcscTransport::connect(READER_2).expect("connect"));
        assert_eq!(
            hpki.pin_state(Application::Authentication).unwrap(),
            PinState::TriesLeft(14)
        );
        hpki.verify_pin(Application::Authentication, &Pin::new(PIN).unwrap())
            .unwrap();
        let signature = hpki
            .sign_sha256(Application::Authentication, b"second insertion")
            .unwrap();
        verify_signature(&auth.cert_der, b"second insertion", &signature);
    }
    card.disconnect().expect("remove");
    wait_removed_in(&rx, READER_2, Duration::from_secs(2));
    watcher.stop();
}
