//! The virtual card rig: pcscd with a vpcd reader, taken one test at a time.

#![allow(dead_code)]

use std::time::{Duration, Instant};

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
