//! The virtual card rig: pcscd with a vpcd reader, taken one test at a time.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sekisho_ca::hpki::TestCert;
use sekisho_cardreader::vcard::{AppFiles, CardEngine, Quirks, VirtualCard};

/// Holds one vpcd reader for a test: an flock shared with the cardreader tests, so that two
/// test binaries never put cards in the same reader at once.
pub struct VpcdRig {
    _file: std::fs::File,
}

/// Takes the reader on vpcd `port` (`Virtual PCD 00 00` is 35963, `00 01` is 35964), starting
/// pcscd if it is not running. Fails, never skips, without pcscd and vsmartcard-vpcd.
pub fn vpcd_rig(port: u16, reader: &str) -> VpcdRig {
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{port}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    // Released when the file is closed.
    file.lock().unwrap();
    let has =
        || sekisho_cardreader::readers::list_readers().is_ok_and(|r| r.iter().any(|n| n == reader));
    if !has() && sekisho_cardreader::readers::list_readers().is_err() {
        let s = std::process::Command::new("pcscd")
            .status()
            .expect("pcscd is installed (Debian pcscd, vsmartcard-vpcd)");
        assert!(s.success(), "pcscd did not start: {s}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has() {
        assert!(
            Instant::now() < deadline,
            "pcscd has no {reader:?}: install vsmartcard-vpcd"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // vpcd loses a card inserted right after a removal: let the reader settle first.
    std::thread::sleep(Duration::from_millis(1500));
    VpcdRig { _file: file }
}

/// A virtual HPKI card holding `cert` and its key, in the vpcd reader on `port`; it stays in
/// (and the reader stays taken) until this is dropped.
pub struct InsertedCard {
    _card: VirtualCard,
    _engine: Arc<Mutex<CardEngine>>,
    _rig: VpcdRig,
}

/// Takes the reader, inserts the card, and returns once PC/SC sees it.
pub fn insert_card(cert: &TestCert, port: u16, reader: &str, pin: &str) -> InsertedCard {
    let rig = vpcd_rig(port, reader);
    let engine = Arc::new(Mutex::new(
        CardEngine::new(
            AppFiles::from_pem(cert.pem().as_bytes(), cert.key.as_str().as_bytes()).unwrap(),
            None,
            pin,
            Quirks::default(),
        )
        .unwrap(),
    ));
    let card = VirtualCard::connect(&engine, ("127.0.0.1", port)).expect("insert the card");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sekisho_cardreader::pcsc_transport::PcscTransport::connect(reader).is_err() {
        assert!(Instant::now() < deadline, "the card was not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    InsertedCard {
        _card: card,
        _engine: engine,
        _rig: rig,
    }
}
