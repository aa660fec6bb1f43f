//! The card profiles (HPKI card, patient card) against a hostile card: every answer comes from
//! the fuzzer. Drives what the agent does with a card: select, read the certificate (a DER
//! object up to the length its header gives), the PIN status, the PIN, signing; for the
//! patient card the id file, the certificate that must name it, and the signature.
//!
//! Input: `flags | script`. flags bit 0: short-only channel; bit 1: the signature application;
//! bit 2: the patient card instead of the HPKI card.
//! Invariants: every APDU sent is a well-formed ISO 7816-4 command; a blocked card (empty
//! VERIFY answered `6983` or `63C0`) is never sent the PIN; a certificate read is one whole
//! DER SEQUENCE within the profile's bound; an HPKI signature is 256 bytes; a patient card's
//! id is valid, its certificate names exactly that id, its signature is a well-formed P-256
//! ECDSA signature.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_fuzz::{PIN, ScriptedCard, command_shape, drive_card};

fuzz_target!(|input: &[u8]| {
    let [flags, script @ ..] = input else {
        return;
    };
    let log = drive_card(ScriptedCard::new(script), *flags).log;
    check_exchange(&log);
});

/// Checks on the whole exchange, whatever the card answered.
fn check_exchange(log: &[(Vec<u8>, Option<Vec<u8>>)]) {
    // SW of the card's last answer before each command, for the PIN rule.
    let mut last_sw: Option<[u8; 2]> = None;
    let mut after_empty_verify = false;
    for (apdu, reply) in log {
        let shape = command_shape(apdu).unwrap_or_else(|e| panic!("sent a malformed APDU: {e}"));
        let verify = apdu[1] == 0x20;
        if verify && !shape.data.is_empty() {
            assert_eq!(shape.data, PIN.as_bytes(), "VERIFY carries the PIN only");
            assert!(
                after_empty_verify,
                "the PIN was sent without asking the card's PIN status first"
            );
            assert!(
                !matches!(last_sw, Some([0x69, 0x83] | [0x63, 0xC0])),
                "the PIN was sent to a blocked card"
            );
        } else if !verify {
            assert!(
                !apdu.windows(PIN.len()).any(|w| w == PIN.as_bytes()),
                "the PIN in a command other than VERIFY"
            );
        }
        // The status query is the empty VERIFY; GET RESPONSE rounds (C0) may follow it.
        if verify && shape.data.is_empty() {
            after_empty_verify = true;
        } else if apdu[1] != 0xC0 {
            after_empty_verify = false;
        }
        last_sw = reply
            .as_deref()
            .and_then(|r| r.len().checked_sub(2).map(|i| [r[i], r[i + 1]]));
    }
}
