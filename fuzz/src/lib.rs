//! What the fuzz targets share: a card that answers from a script (the fuzzer's input), the
//! ISO 7816-4 shape of a command APDU, and the checks on text that must be safe to show.
//!
//! Card scripts are a sequence of replies, each `len_hi len_lo bytes…` (a length of `FFFF`
//! is a removed card instead); once the script runs out, every transmit fails, as a link
//! would. The seed generator (`tests/seeds.rs`) writes real transcripts of the virtual cards
//! in this form.

use std::sync::OnceLock;

use sekisho_ca::{Authority, CaOptions, KeyAlgorithm};
use sekisho_cardreader::apdu::Channel;
use sekisho_cardreader::patient_card::{
    certificate_patient_id, check_signature, is_valid_patient_id,
};
use sekisho_cardreader::{Application, CardError, HpkiCard, PatientCard, Pin, Transport};

/// The reply length that stands for a transport error (the card was pulled).
pub const REMOVED: u16 = 0xFFFF;

/// A card whose every answer comes from the fuzzer; it keeps what the host sent and what it
/// answered, for checks on the whole exchange.
pub struct ScriptedCard<'a> {
    script: &'a [u8],
    pub log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl<'a> ScriptedCard<'a> {
    pub fn new(script: &'a [u8]) -> Self {
        ScriptedCard {
            script,
            log: Vec::new(),
        }
    }

    fn next_reply(&mut self) -> Option<Result<Vec<u8>, CardError>> {
        let [hi, lo, rest @ ..] = self.script else {
            return None;
        };
        let len = u16::from_be_bytes([*hi, *lo]);
        if len == REMOVED {
            self.script = rest;
            return Some(Err(CardError::Removed));
        }
        let n = usize::from(len).min(rest.len());
        let (reply, rest) = rest.split_at(n);
        self.script = rest;
        Some(Ok(reply.to_vec()))
    }
}

impl Transport for ScriptedCard<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let reply = self
            .next_reply()
            .unwrap_or_else(|| Err(CardError::Link("script exhausted".into())));
        self.log.push((apdu.to_vec(), reply.as_ref().ok().cloned()));
        reply
    }
}

/// Appends one reply to a script (for the seed generator).
pub fn push_reply(script: &mut Vec<u8>, reply: &[u8]) {
    let len = u16::try_from(reply.len()).expect("a reply under 64 KiB");
    assert_ne!(len, REMOVED);
    script.extend_from_slice(&len.to_be_bytes());
    script.extend_from_slice(reply);
}

/// What a command APDU is, by ISO/IEC 7816-4 §5.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub extended: bool,
    /// Lc's data.
    pub data: Vec<u8>,
    /// Ne: 1..=65536, `None` without Le.
    pub le: Option<usize>,
}

/// Reads a command APDU by the standard's four cases, short and extended; `Err` says why it
/// is not one.
pub fn command_shape(apdu: &[u8]) -> Result<Shape, &'static str> {
    let Some(body) = apdu.get(4..) else {
        return Err("shorter than a header");
    };
    let short_le = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    let ext_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65_536,
        n => usize::from(n),
    };
    match body {
        [] => Ok(Shape {
            extended: false,
            data: Vec::new(),
            le: None,
        }),
        [le] => Ok(Shape {
            extended: false,
            data: Vec::new(),
            le: Some(short_le(*le)),
        }),
        [0, hi, lo] => Ok(Shape {
            extended: true,
            data: Vec::new(),
            le: Some(ext_le(*hi, *lo)),
        }),
        [0, hi, lo, rest @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if lc == 0 {
                return Err("extended Lc of zero");
            }
            match rest.len().checked_sub(lc) {
                Some(0) => Ok(Shape {
                    extended: true,
                    data: rest.to_vec(),
                    le: None,
                }),
                Some(2) => Ok(Shape {
                    extended: true,
                    data: rest[..lc].to_vec(),
                    le: Some(ext_le(rest[lc], rest[lc + 1])),
                }),
                _ => Err("extended body does not match Lc"),
            }
        }
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc) {
                Some(0) => Ok(Shape {
                    extended: false,
                    data: rest.to_vec(),
                    le: None,
                }),
                Some(1) => Ok(Shape {
                    extended: false,
                    data: rest[..lc].to_vec(),
                    le: Some(short_le(rest[lc])),
                }),
                _ => Err("short body does not match Lc"),
            }
        }
    }
}

/// A DER SEQUENCE that is exactly as long as its header says.
pub fn is_whole_der_sequence(der: &[u8]) -> bool {
    let [0x30, l0, rest @ ..] = der else {
        return false;
    };
    let (len, rest) = match *l0 {
        0..=0x7F => (usize::from(*l0), rest),
        0x81..=0x84 => {
            let n = usize::from(l0 & 0x7F);
            let Some(bytes) = rest.get(..n) else {
                return false;
            };
            (
                bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
                &rest[n..],
            )
        }
        _ => return false,
    };
    rest.len() == len
}

/// Text read from a certificate and shown to people or written to logs: not blank, at most
/// 128 characters, no control or invisible formatting characters (what `sekisho_ca::hpki`
/// promises of every text it returns; the list is its own, restated here on purpose).
pub fn is_display_safe(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= 128
        && !s.chars().any(|c| {
            c.is_control()
                || matches!(
                    c,
                    '\u{061C}'
                        | '\u{200B}'..='\u{200F}'
                        | '\u{2028}'
                        | '\u{2029}'
                        | '\u{202A}'..='\u{202E}'
                        | '\u{2060}'..='\u{2064}'
                        | '\u{2066}'..='\u{2069}'
                        | '\u{FEFF}'
                        | '\u{FFF9}'..='\u{FFFB}'
                )
        })
}

/// A CA made once per process in a temporary directory, for the targets that sign.
pub fn throwaway_ca() -> &'static Authority {
    static CA: OnceLock<(Authority, tempfile::TempDir)> = OnceLock::new();
    &CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let authority = Authority::create(
            &dir.path().join("ca"),
            &CaOptions {
                algorithm: KeyAlgorithm::EcdsaP256,
                passphrase: None,
                name: "Sekisho Fuzz Network".into(),
            },
        )
        .expect("a throwaway CA");
        (authority, dir)
    })
    .0
}

/// The PIN the host types (and the virtual cards of the seeds know).
pub const PIN: &str = "1234";

/// What the agent does with a card, with the checks on each answer the profiles give; the
/// card target runs it on a scripted card, the seed generator on the virtual cards.
/// flags bit 0: short-only channel; bit 1: the signature application; bit 2: a patient card.
pub fn drive_card<T: Transport>(card: T, flags: u8) -> T {
    if flags & 4 != 0 {
        patient_card(card)
    } else {
        hpki_card(card, flags)
    }
}

fn hpki_card<T: Transport>(card: T, flags: u8) -> T {
    let channel = if flags & 1 != 0 {
        Channel::short_only(card)
    } else {
        Channel::new(card)
    };
    let app = if flags & 2 != 0 {
        Application::Signature
    } else {
        Application::Authentication
    };
    let mut hpki = HpkiCard::with_channel(channel);
    if let Ok(der) = hpki.read_certificate(app) {
        assert!(is_whole_der_sequence(&der), "not one DER SEQUENCE");
        assert!(der.len() <= 16 * 1024, "{} bytes", der.len());
    }
    let _ = hpki.pin_state(app);
    let pin = Pin::new(PIN).expect("a valid PIN");
    if let Ok(sig) = hpki.sign_with_pin(app, &pin, b"challenge") {
        assert_eq!(sig.len(), 256);
    }
    if let Ok(sig) = hpki.sign_sha256(app, b"challenge") {
        assert_eq!(sig.len(), 256);
    }
    hpki.into_transport()
}

fn patient_card<T: Transport>(card: T) -> T {
    let mut patient = PatientCard::new(card);
    if let Ok(id) = patient.identity() {
        assert!(is_valid_patient_id(&id.patient_id), "{:?}", id.patient_id);
        assert!(id.certificate.len() <= 4096);
        assert!(is_whole_der_sequence(&id.certificate));
        assert_eq!(
            certificate_patient_id(&id.certificate).ok().as_deref(),
            Some(id.patient_id.as_str())
        );
    }
    if let Ok(sig) = patient.sign(b"consent") {
        check_signature(&sig).expect("a signature the profile returned is well-formed");
    }
    patient.into_transport()
}
