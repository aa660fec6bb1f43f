//! The HPKI card profile against the virtual card's engine, in-process.

mod common;

use common::{PIN, engine, identities, verify_signature};
use sekisho_cardreader::apdu::{CardError, Channel, Command, StatusWord, Transport};
use sekisho_cardreader::hpki::{
    AUTHENTICATION_AID, Application, EF_CERTIFICATE, EF_PRIVATE_KEY, HpkiCard, HpkiError, Pin,
    PinState, SignMethod,
};
use sekisho_cardreader::vcard::Quirks;

const AUTH: Application = Application::Authentication;
const SIGN: Application = Application::Signature;

fn pin(p: &str) -> Pin {
    Pin::new(p).expect("well-formed PIN")
}

#[test]
fn reads_both_certificates() {
    let (auth, sign) = identities();
    let mut card = HpkiCard::new(engine(Quirks::default()));
    assert_eq!(card.read_certificate(AUTH).unwrap(), auth.cert_der);
    assert_eq!(card.read_certificate(SIGN).unwrap(), sign.cert_der);
    assert_eq!(card.selected(), Some(SIGN));
}

#[test]
fn tries_left_and_wrong_pin() {
    let mut card = HpkiCard::new(engine(Quirks::default()));
    assert_eq!(card.pin_state(AUTH).unwrap(), PinState::TriesLeft(15));
    match card.verify_pin(AUTH, &pin("0000")) {
        Err(HpkiError::WrongPin { tries_left: 14 }) => {}
        other => panic!("expected a wrong PIN with 14 tries left, got {other:?}"),
    }
    assert_eq!(card.pin_state(AUTH).unwrap(), PinState::TriesLeft(14));
    assert_eq!(
        HpkiError::WrongPin { tries_left: 14 }.to_string(),
        "wrong PIN: 14 tries left before the card locks"
    );
    // The right PIN resets the counter; the other application's counter is its own.
    card.verify_pin(AUTH, &pin(PIN)).unwrap();
    assert_eq!(card.pin_state(AUTH).unwrap(), PinState::Verified);
    assert_eq!(card.transport_mut().tries_left(AUTH), Some(15));
    assert_eq!(card.pin_state(SIGN).unwrap(), PinState::TriesLeft(15));
}

#[test]
fn locks_after_fifteen_wrong_pins() {
    let mut card = HpkiCard::new(engine(Quirks::default()));
    for left in (1..15).rev() {
        match card.verify_pin(AUTH, &pin("9999")) {
            Err(HpkiError::WrongPin { tries_left }) => assert_eq!(tries_left, left),
            other => panic!("expected a wrong PIN, got {other:?}"),
        }
    }
    assert!(matches!(
        card.verify_pin(AUTH, &pin("9999")),
        Err(HpkiError::PinBlocked)
    ));
    assert_eq!(card.pin_state(AUTH).unwrap(), PinState::Blocked);
    // Even the right PIN is refused now, and is not sent to the card at all.
    assert!(matches!(
        card.verify_pin(AUTH, &pin(PIN)),
        Err(HpkiError::PinBlocked)
    ));
    assert_eq!(card.transport_mut().tries_left(AUTH), Some(0));
    assert!(matches!(
        card.sign_sha256(AUTH, b"challenge"),
        Err(HpkiError::PinRequired)
    ));
}

#[test]
fn authentication_signature_verifies() {
    let (auth, _) = identities();
    let mut card = HpkiCard::new(engine(Quirks::default()));
    assert!(matches!(
        card.sign_sha256(AUTH, b"nonce"),
        Err(HpkiError::PinRequired)
    ));
    card.verify_pin(AUTH, &pin(PIN)).unwrap();
    let challenge = b"sekisho challenge: terminal clinic-01/reception-1, nonce 8f3a";
    let signature = card.sign_sha256(AUTH, challenge).unwrap();
    assert_eq!(signature.len(), 256);
    verify_signature(&auth.cert_der, challenge, &signature);
    assert_eq!(card.sign_method(), Some(SignMethod::RawPso));
    // Once per session for the authentication application.
    let again = card.sign_sha256(AUTH, b"second").unwrap();
    verify_signature(&auth.cert_der, b"second", &again);
}

#[test]
fn signature_application_wants_the_pin_every_time() {
    let (_, sign) = identities();
    let mut card = HpkiCard::new(engine(Quirks::default()));
    let sig = card.sign_with_pin(SIGN, &pin(PIN), b"document").unwrap();
    verify_signature(&sign.cert_der, b"document", &sig);
    assert!(matches!(
        card.sign_sha256(SIGN, b"document 2"),
        Err(HpkiError::PinRequired)
    ));
    let sig = card.sign_with_pin(SIGN, &pin(PIN), b"document 2").unwrap();
    verify_signature(&sign.cert_der, b"document 2", &sig);
}

#[test]
fn card_that_pads_itself() {
    let (auth, _) = identities();
    let quirks = Quirks {
        card_pads: true,
        ..Quirks::default()
    };
    let mut card = HpkiCard::new(engine(quirks));
    card.verify_pin(AUTH, &pin(PIN)).unwrap();
    let signature = card.sign_sha256(AUTH, b"old card").unwrap();
    verify_signature(&auth.cert_der, b"old card", &signature);
    assert_eq!(card.sign_method(), Some(SignMethod::CardPads));
}

#[test]
fn card_that_knows_only_the_rid() {
    let (auth, sign) = identities();
    let quirks = Quirks {
        partial_select_only: true,
        ..Quirks::default()
    };
    let mut card = HpkiCard::new(engine(quirks));
    // The authentication application is the second match after the RID.
    assert_eq!(card.read_certificate(AUTH).unwrap(), auth.cert_der);
    assert_eq!(card.read_certificate(SIGN).unwrap(), sign.cert_der);
}

#[test]
fn short_apdus_only_and_t0_habits() {
    let (auth, _) = identities();
    for quirks in [
        Quirks {
            short_only: true,
            ..Quirks::default()
        },
        Quirks {
            short_only: true,
            t0: true,
            ..Quirks::default()
        },
        Quirks {
            t0: true,
            card_pads: true,
            partial_select_only: true,
            ..Quirks::default()
        },
    ] {
        let mut card = HpkiCard::with_channel(Channel::short_only(engine(quirks)));
        assert_eq!(
            card.read_certificate(AUTH).unwrap(),
            auth.cert_der,
            "{quirks:?}"
        );
        assert_eq!(card.pin_state(AUTH).unwrap(), PinState::TriesLeft(15));
        card.verify_pin(AUTH, &pin(PIN)).unwrap();
        let signature = card.sign_sha256(AUTH, b"short").unwrap();
        verify_signature(&auth.cert_der, b"short", &signature);
    }
}

#[test]
fn falls_back_to_chaining_when_extended_length_is_refused() {
    let (auth, _) = identities();
    let quirks = Quirks {
        short_only: true,
        ..Quirks::default()
    };
    let mut card = HpkiCard::new(engine(quirks));
    card.verify_pin(AUTH, &pin(PIN)).unwrap();
    let signature = card.sign_sha256(AUTH, b"x").unwrap();
    verify_signature(&auth.cert_der, b"x", &signature);
}

#[test]
fn engine_reads_with_offsets_and_extended_length() {
    let (auth, _) = identities();
    let mut ch = Channel::new(engine(Quirks::default()));
    let select = Command::new(0x00, 0xA4, 0x04, 0x0C).with_data(&AUTHENTICATION_AID);
    assert!(ch.transmit(&select).unwrap().is_ok());
    let select_ef = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&EF_CERTIFICATE);
    assert!(ch.transmit(&select_ef).unwrap().is_ok());
    // Extended Le 00 00 from offset 10: the rest of the file, flagged as short of Le.
    let read = Command::new(0x00, 0xB0, 0x00, 0x0A).with_le(65_536);
    let resp = ch.transmit(&read).unwrap();
    assert_eq!(resp.sw, 0x6282);
    assert_eq!(resp.data, auth.cert_der[10..]);
    // Short read in the middle.
    let read = Command::new(0x00, 0xB0, 0x01, 0x00).with_le(16);
    let resp = ch.transmit(&read).unwrap();
    assert_eq!(
        (resp.sw, &resp.data[..]),
        (0x9000, &auth.cert_der[256..272])
    );
    // Past the end.
    let read = Command::new(0x00, 0xB0, 0x7F, 0x00).with_le(1);
    assert_eq!(ch.transmit(&read).unwrap().sw, 0x6B00);
    // The key file is not readable.
    let select_key = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&EF_PRIVATE_KEY);
    assert!(ch.transmit(&select_key).unwrap().is_ok());
    let read = Command::new(0x00, 0xB0, 0x00, 0x00).with_le(256);
    assert_eq!(
        ch.transmit(&read).unwrap().status(),
        StatusWord::SecurityNotSatisfied
    );
}

#[test]
fn engine_survives_garbage() {
    // Every 1..=8-byte command and a spread of longer ones: the card answers each with at
    // least a status word and never panics.
    let mut card = engine(Quirks {
        t0: true,
        ..Quirks::default()
    });
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for len in 0..600usize {
        let apdu: Vec<u8> = (0..len % 300)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        let mut apdu = apdu;
        if let [cla, ins, ..] = apdu.as_mut_slice() {
            *cla = [0x00, 0x10, 0x80][len % 3];
            *ins = [0xA4, 0xB0, 0x20, 0x22, 0x2A, 0xC0, 0xA4][len % 7];
        }
        assert!(card.process(&apdu).len() >= 2);
    }
}

#[test]
fn card_without_signature_application() {
    let (auth, _) = identities();
    let engine =
        sekisho_cardreader::vcard::CardEngine::new(auth.files(), None, PIN, Quirks::default())
            .unwrap();
    let mut card = HpkiCard::new(engine);
    assert!(matches!(
        card.read_certificate(SIGN),
        Err(HpkiError::NotHpkiCard(Application::Signature))
    ));
    assert_eq!(card.read_certificate(AUTH).unwrap(), auth.cert_der);
}

/// A card made of a closure: answers are whatever the test says.
struct FakeCard<F: FnMut(&[u8]) -> Vec<u8>>(F);

impl<F: FnMut(&[u8]) -> Vec<u8>> Transport for FakeCard<F> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok((self.0)(apdu))
    }
}

#[test]
fn not_an_hpki_card() {
    let mut sent = 0;
    let mut card = HpkiCard::new(FakeCard(|_| {
        sent += 1;
        vec![0x6A, 0x82]
    }));
    let err = card.read_certificate(AUTH).unwrap_err();
    assert!(matches!(err, HpkiError::NotHpkiCard(AUTH)));
    assert_eq!(
        err.to_string(),
        "this is not an HPKI card (it has no HPKI authentication application)"
    );
    assert_eq!(sent, 2, "full AID, then the RID once");
    let mut card = HpkiCard::new(FakeCard(|_| vec![0x6E, 0x00]));
    assert!(matches!(
        card.pin_state(AUTH),
        Err(HpkiError::NotHpkiCard(AUTH))
    ));
}

#[test]
fn next_match_selection_is_bounded() {
    // A card whose every RID match names some other application.
    let mut sent = 0;
    let mut card = HpkiCard::new(FakeCard(|apdu| {
        sent += 1;
        if apdu.get(4) == Some(&16) {
            return vec![0x6A, 0x82];
        }
        vec![0x6F, 0x03, 0x84, 0x01, 0x99, 0x90, 0x00]
    }));
    assert!(matches!(
        card.select(AUTH),
        Err(HpkiError::NotHpkiCard(AUTH))
    ));
    assert!(sent <= 10, "{sent} SELECTs");
}

/// Answers SELECTs with 9000 and READ BINARY from `file`.
fn card_with_file(file: Vec<u8>) -> impl Transport {
    FakeCard(move |apdu: &[u8]| {
        if apdu[1] != 0xB0 {
            return vec![0x90, 0x00];
        }
        let offset = usize::from(u16::from_be_bytes([apdu[2], apdu[3]]));
        let le = match apdu[4] {
            0 => 256,
            n => usize::from(n),
        };
        let mut out: Vec<u8> = file.iter().skip(offset).take(le).copied().collect();
        out.extend_from_slice(&[0x90, 0x00]);
        out
    })
}

#[test]
fn hostile_certificate_files() {
    // Claims 20 000 bytes: over the 16 KiB cap, refused before reading it.
    let mut big = vec![0x30, 0x82, 0x4E, 0x20];
    big.resize(300, 0);
    let mut card = HpkiCard::new(card_with_file(big));
    assert!(matches!(
        card.read_certificate(AUTH),
        Err(HpkiError::BadCertificate(AUTH, _))
    ));
    // Claims more than the file holds: the read stops at the file's end instead of looping.
    let mut short = vec![0x30, 0x82, 0x03, 0x00];
    short.resize(500, 0xAB);
    let mut card = HpkiCard::new(card_with_file(short));
    assert!(matches!(
        card.read_certificate(AUTH),
        Err(HpkiError::BadCertificate(AUTH, _))
    ));
    // Not DER at all.
    let mut card = HpkiCard::new(card_with_file(vec![0xFF; 64]));
    assert!(matches!(
        card.read_certificate(AUTH),
        Err(HpkiError::BadCertificate(AUTH, _))
    ));
    // An empty file.
    let mut card = HpkiCard::new(card_with_file(Vec::new()));
    assert!(card.read_certificate(AUTH).is_err());
    // A good one padded with FF: read up to the DER length only.
    let mut padded = vec![0x30, 0x81, 0x90];
    padded.extend_from_slice(&[0x11; 0x90]);
    let want = padded.clone();
    padded.resize(4096, 0xFF);
    let mut card = HpkiCard::new(card_with_file(padded));
    assert_eq!(card.read_certificate(AUTH).unwrap(), want);
}

#[test]
fn hostile_signature_answers() {
    // A signature of the wrong length is not passed on.
    let mut card = HpkiCard::new(FakeCard(|apdu: &[u8]| {
        if apdu[1] == 0x2A {
            vec![0x01, 0x02, 0x90, 0x00]
        } else {
            vec![0x90, 0x00]
        }
    }));
    assert!(matches!(
        card.sign_sha256(AUTH, b"x"),
        Err(HpkiError::Card(CardError::Malformed(_)))
    ));
}

#[test]
fn removal_mid_operation_is_reported_as_such() {
    struct Gone;
    impl Transport for Gone {
        fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, CardError> {
            Err(CardError::Removed)
        }
    }
    let mut card = HpkiCard::new(Gone);
    let err = card.read_certificate(AUTH).unwrap_err();
    assert!(matches!(err, HpkiError::CardRemoved));
    assert_eq!(err.to_string(), "the card was removed; insert it again");
}

#[test]
fn random_answers_never_panic_or_loop() {
    // A card that answers with random bytes, often behind a plausible status word.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut sent = 0usize;
        let mut card = HpkiCard::with_channel(Channel::new(FakeCard(|_: &[u8]| {
            sent += 1;
            let r = next();
            let len = (r % 300) as usize;
            let mut out: Vec<u8> = (0..len).map(|i| (r >> (i % 56)) as u8).collect();
            let sw: [u8; 2] = match r % 7 {
                0 => [0x90, 0x00],
                1 => [0x61, (r >> 8) as u8],
                2 => [0x6C, (r >> 8) as u8],
                3 => [0x63, 0xC0 | (r >> 8) as u8 & 0x0F],
                4 => [0x62, 0x82],
                _ => [(r >> 16) as u8, (r >> 24) as u8],
            };
            out.extend_from_slice(&sw);
            out
        })));
        let _ = card.read_certificate(AUTH);
        let _ = card.pin_state(AUTH);
        let _ = card.verify_pin(AUTH, &pin(PIN));
        let _ = card.sign_sha256(AUTH, b"x");
        assert!(sent < 5_000, "{sent} APDUs");
    }
}

#[test]
fn raw_rsa_bounds() {
    let (auth, _) = identities();
    let key = sekisho_cardreader::vcard::RsaKey::from_pem(auth.key_pem.as_bytes()).unwrap();
    assert_eq!(key.size(), 256);
    assert!(key.raw_private(&[0x00; 255]).is_none(), "short input");
    assert!(
        key.raw_private(&[0xFF; 256]).is_none(),
        "input above the modulus"
    );
    assert_eq!(key.raw_private(&[0x00; 256]).unwrap(), vec![0; 256]);
    // The card does the raw operation on whatever block it gets, like a real one; a block
    // above the modulus is refused with 6A80.
    let mut card = engine(Quirks::default());
    let mut ch = Channel::new(&mut card);
    for cmd in [
        Command::new(0x00, 0xA4, 0x04, 0x0C).with_data(&AUTHENTICATION_AID),
        Command::new(0x00, 0x20, 0x00, 0x88).with_data(PIN.as_bytes()),
        Command::new(0x00, 0x22, 0x41, 0xB6).with_data(&[0x84, 0x02, 0x00, 0x0C]),
    ] {
        assert!(ch.transmit(&cmd).unwrap().is_ok(), "{cmd:?}");
    }
    let pso = |block: &[u8]| {
        Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(block)
            .with_le(65_536)
    };
    assert_eq!(ch.transmit(&pso(&[0xFF; 256])).unwrap().sw, 0x6A80);
    let not_padded = ch.transmit(&pso(&[0x01; 256])).unwrap();
    assert_eq!((not_padded.sw, not_padded.data.len()), (0x9000, 256));
    assert_eq!(ch.transmit(&pso(&[0x01; 255])).unwrap().sw, 0x6700);
}
