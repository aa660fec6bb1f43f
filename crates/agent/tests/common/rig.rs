//! The reader rig: pcscd with the vsmartcard vpcd readers, and virtual cards put in them
//! in-process (connecting to vpcd's port inserts a card, closing the socket removes it).
//!
//! Tests that use a reader hold it for their whole run: a static mutex in each test binary and
//! a file lock (`sekisho-vpcd-<port>.lock` in the temp directory) shared with every other test
//! binary that drives the same reader.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sekisho_cardreader::vcard::{CardEngine, Chip, PatientCardEngine, Quirks, VirtualCard};
use sekisho_cardreader::{CardError, PcscTransport, readers};

/// The second vpcd reader: the physician's HPKI card goes there.
pub const READER: &str = "Virtual PCD 00 01";

pub const PORT: u16 = 35964;

/// The first vpcd reader: the patient card goes there.
pub const PATIENT_READER: &str = "Virtual PCD 00 00";

pub const PATIENT_PORT: u16 = 35963;

/// Holds the second vpcd reader for one test.
pub struct Rig {
    _file: std::fs::File,
    _one: MutexGuard<'static, ()>,
}

pub fn rig() -> Rig {
    static ONE: Mutex<()> = Mutex::new(());
    let one = ONE.lock().unwrap_or_else(PoisonError::into_inner);
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{PORT}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Released when the file is closed.
    file.lock()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ensure_pcscd();
    // The previous holder's card may still be seen for a moment after its socket closed
    // (pcscd polls the reader), more so on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match PcscTransport::connect(READER) {
            Err(CardError::NoCard) | Err(CardError::Removed) | Err(CardError::Unresponsive) => {
                break;
            }
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(_) => {
                panic!("a card is already in {READER:?}: another virtual card holds port {PORT}")
            }
            Err(e) => panic!("{READER:?}: {e}"),
        }
    }
    Rig {
        _file: file,
        _one: one,
    }
}

/// Starts pcscd if needed and waits for the vpcd reader; panics with the reason otherwise.
fn ensure_pcscd() {
    let has = |r: &Vec<String>| r.iter().any(|n| n == READER);
    if readers::list_readers().is_ok_and(|r| has(&r)) {
        return;
    }
    if readers::list_readers().is_err() {
        match std::process::Command::new("pcscd").status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("pcscd exited with {s}; it must run as root with /run/pcscd writable"),
            Err(e) => panic!(
                "cannot start pcscd ({e}): install the Debian packages pcscd and vsmartcard-vpcd"
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match readers::list_readers() {
            Ok(r) if has(&r) => return,
            Ok(r) if Instant::now() > deadline => panic!(
                "pcscd runs but lacks {READER:?} (readers: {r:?}): install vsmartcard-vpcd and restart pcscd"
            ),
            Err(e) if Instant::now() > deadline => panic!("pcscd does not answer: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// When a card last left the reader. vpcd loses a card that connects again too soon after a
/// removal (pcscd then never reports it), so every insertion waits [`SETTLE`] after the last
/// removal. A rig quirk: a real reader sees a physical card whenever it comes.
pub static LAST_REMOVAL: Mutex<Option<Instant>> = Mutex::new(None);

pub const SETTLE: Duration = Duration::from_millis(1500);

pub async fn settle() {
    let last = *LAST_REMOVAL.lock().unwrap_or_else(PoisonError::into_inner);
    // Unknown (another test binary may just have removed one): wait the full pause.
    let wait = last.map_or(SETTLE, |t| SETTLE.saturating_sub(t.elapsed()));
    tokio::time::sleep(wait).await;
}

/// Inserts the card (after the settle pause) without waiting for PC/SC to see it.
pub async fn plug<C: Chip>(engine: &Arc<Mutex<C>>) -> VirtualCard {
    settle().await;
    VirtualCard::connect(engine, ("127.0.0.1", PORT)).expect("insert the card")
}

pub fn new_engine() -> Arc<Mutex<CardEngine>> {
    Arc::new(Mutex::new(super::card::engine(Quirks::default())))
}

/// Inserts the card and waits until PC/SC can talk to it.
pub async fn insert<C: Chip>(engine: &Arc<Mutex<C>>) -> VirtualCard {
    let card = plug(engine).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = tokio::task::spawn_blocking(|| PcscTransport::connect(READER).is_ok())
            .await
            .unwrap();
        if ok {
            return card;
        }
        assert!(
            Instant::now() < deadline,
            "the card did not appear in {READER}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn remove(card: VirtualCard) {
    tokio::task::spawn_blocking(move || card.disconnect().expect("remove the card"))
        .await
        .unwrap();
    *LAST_REMOVAL.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
}

pub async fn wait_gone() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::task::spawn_blocking(|| PcscTransport::connect(READER).is_ok())
        .await
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the card stays in {READER}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The patient card (`Virtual PCD 00 00`), run in-process from its certificate and key files;
/// removed (its vpcd socket closed) when dropped.
pub struct PatientVcard(VirtualCard);

impl PatientVcard {
    pub fn start(cert: &Path, key: &Path, patient: &str) -> PatientVcard {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let engine = PatientCardEngine::from_pem(patient, &read(cert), &read(key))
            .expect("a patient card from the certificate and key");
        let card = VirtualCard::connect(&Arc::new(Mutex::new(engine)), ("127.0.0.1", PATIENT_PORT))
            .expect("insert the patient card");
        PatientVcard(card)
    }
}

/// Holds the first vpcd reader too (other binaries' tests put cards there); taken after
/// [`rig`], which holds the second. Released when the file is closed.
pub fn patient_reader_lock() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{PATIENT_PORT}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Released when the file is closed.
    file.lock()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        PcscTransport::connect(PATIENT_READER).is_err(),
        "a card is already in {PATIENT_READER:?}"
    );
    file
}

/// Waits until PC/SC sees a card in the patient reader (`present`) or none.
pub async fn wait_patient_card(present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::task::spawn_blocking(|| PcscTransport::connect(PATIENT_READER).is_ok())
        .await
        .unwrap()
        != present
    {
        assert!(
            Instant::now() < deadline,
            "the patient card did not {} {PATIENT_READER}",
            if present { "appear in" } else { "leave" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
