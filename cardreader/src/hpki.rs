//! The HPKI card profile (医師資格証 and other HPKI cards), on any [`Transport`].
//!
//! Card facts (AIDs, files, APDUs, status words) are those of the project's `docs/hpki.md`: two
//! applications, each with a certificate in EF `0016`, an RSA-2048 key in EF `000C` and a PIN
//! behind `VERIFY P2=88`. The host builds the PKCS#1 v1.5 block and the card does raw RSA.

use std::fmt;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::apdu::{self, CardError, Channel, Command, ReadError, Response, StatusWord, Transport};
use crate::der;

/// The registered application provider id that every HPKI application name starts with.
pub const HPKI_RID: [u8; 5] = [0xE8, 0x28, 0xBD, 0x08, 0x0F];
/// The signature application (the AID seen on real cards).
pub const SIGNATURE_AID: [u8; 16] = [
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0xA0, 0x00, 0x00, 0x03, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
];
/// The authentication application, which login uses.
pub const AUTHENTICATION_AID: [u8; 16] = [
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0xA0, 0x00, 0x00, 0x03, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
];
/// EF holding the certificate (DER), free to read.
pub const EF_CERTIFICATE: [u8; 2] = [0x00, 0x16];
/// EF holding the private key.
pub const EF_PRIVATE_KEY: [u8; 2] = [0x00, 0x0C];
/// PIN reference in VERIFY (the spec's example says 96; real cards use 88).
pub const PIN_REFERENCE: u8 = 0x88;
/// Consecutive wrong PINs after which a card locks.
pub const PIN_TRIES: u8 = 15;
/// RSA-2048: the size of the block the card signs and of the signature.
pub const KEY_BYTES: usize = 256;
/// Largest certificate we read; real ones are about 2 KiB.
pub const MAX_CERTIFICATE: usize = 16 * 1024;

/// Bound on next-occurrence SELECTs when the card knows only the RID.
const MAX_PARTIAL_SELECTS: usize = 8;
/// DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// One of the card's two applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Application {
    /// 署名用: legally binding signatures; PIN before every signature.
    Signature,
    /// 認証用: login; PIN once per card session.
    Authentication,
}

impl Application {
    pub fn aid(self) -> &'static [u8; 16] {
        match self {
            Application::Signature => &SIGNATURE_AID,
            Application::Authentication => &AUTHENTICATION_AID,
        }
    }
}

impl fmt::Display for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Application::Signature => "signature",
            Application::Authentication => "authentication",
        })
    }
}

/// What went wrong, in words the card holder can act on.
#[derive(Debug, Error)]
pub enum HpkiError {
    #[error("wrong PIN: {tries_left} tries left before the card locks")]
    WrongPin { tries_left: u8 },
    #[error("the card's PIN is locked after too many wrong PINs; the card's issuer must unlock it")]
    PinBlocked,
    #[error("a PIN is 4 to 16 letters, digits or symbols (no spaces)")]
    PinFormat,
    #[error("the card needs the PIN first")]
    PinRequired,
    #[error("this is not an HPKI card (it has no HPKI {0} application)")]
    NotHpkiCard(Application),
    #[error("the card's {0} certificate is missing or unreadable: {1}")]
    BadCertificate(Application, &'static str),
    #[error("the card was removed; insert it again")]
    CardRemoved,
    #[error("the card refused {operation}: {status}")]
    Refused {
        operation: &'static str,
        status: StatusWord,
    },
    #[error(transparent)]
    Card(CardError),
}

impl From<CardError> for HpkiError {
    fn from(e: CardError) -> Self {
        match e {
            CardError::Removed | CardError::NoCard => HpkiError::CardRemoved,
            other => HpkiError::Card(other),
        }
    }
}

/// A PIN as the card wants it: 4–16 printable ASCII characters other than space (a stray
/// space from a form would cost a try). Wiped on drop; `Debug` never shows it.
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    pub fn new(pin: &str) -> Result<Pin, HpkiError> {
        let bytes = pin.as_bytes();
        if !(4..=16).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(HpkiError::PinFormat);
        }
        Ok(Pin(Zeroizing::new(bytes.to_vec())))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

/// The state of an application's PIN, asked without spending a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// Already verified in this card session.
    Verified,
    TriesLeft(u8),
    Blocked,
}

/// How the card signed the last time (the fallback is remembered for the card session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    /// `PSO: COMPUTE DIGITAL SIGNATURE` over the host-built PKCS#1 block (the spec's way).
    RawPso,
    /// `80 2A 00 80 <DigestInfo>`: older cards that pad themselves.
    CardPads,
}

/// An HPKI card on a transport.
pub struct HpkiCard<T: Transport> {
    channel: Channel<T>,
    selected: Option<Application>,
    method: Option<SignMethod>,
}

impl<T: Transport> HpkiCard<T> {
    /// Uses extended length where a command needs it, as HPKI cards expect.
    pub fn new(transport: T) -> Self {
        Self::with_channel(Channel::new(transport))
    }

    /// For a reader or card that only does short APDUs (command chaining, 61xx).
    pub fn with_channel(channel: Channel<T>) -> Self {
        HpkiCard {
            channel,
            selected: None,
            method: None,
        }
    }

    pub fn transport_mut(&mut self) -> &mut T {
        self.channel.transport_mut()
    }

    pub fn into_transport(self) -> T {
        self.channel.into_transport()
    }

    /// The application currently selected, as far as this object knows.
    pub fn selected(&self) -> Option<Application> {
        self.selected
    }

    fn send(&mut self, cmd: &Command) -> Result<Response, HpkiError> {
        self.channel.transmit(cmd).map_err(|e| {
            // After a transport error the card's state is unknown: select again next time.
            self.selected = None;
            e.into()
        })
    }

    /// Selects `app`: by full AID, or, if the card does not know it (`6A82`), by the RID and
    /// then next occurrences until the FCI names the application.
    pub fn select(&mut self, app: Application) -> Result<(), HpkiError> {
        self.selected = None;
        let full = Command::new(0x00, 0xA4, 0x04, 0x00)
            .with_data(app.aid())
            .with_le(256);
        let resp = self.send(&full)?;
        match resp.status() {
            StatusWord::Ok => {
                self.selected = Some(app);
                return Ok(());
            }
            StatusWord::FileNotFound => {}
            _ => return Err(HpkiError::NotHpkiCard(app)),
        }
        let mut p2 = 0x00;
        for _ in 0..MAX_PARTIAL_SELECTS {
            let partial = Command::new(0x00, 0xA4, 0x04, p2)
                .with_data(&HPKI_RID)
                .with_le(256);
            let resp = self.send(&partial)?;
            if !resp.is_ok() {
                break;
            }
            // Which application this is, only the FCI's DF name (tag 84) says.
            if fci_df_name(&resp.data) == Some(&app.aid()[..]) {
                self.selected = Some(app);
                return Ok(());
            }
            p2 = 0x02;
        }
        Err(HpkiError::NotHpkiCard(app))
    }

    fn ensure_selected(&mut self, app: Application) -> Result<(), HpkiError> {
        if self.selected != Some(app) {
            self.select(app)?;
        }
        Ok(())
    }

    fn select_ef(&mut self, fid: [u8; 2], operation: &'static str) -> Result<(), HpkiError> {
        let cmd = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&fid);
        let resp = self.send(&cmd)?;
        match resp.status() {
            StatusWord::Ok => Ok(()),
            status => Err(HpkiError::Refused { operation, status }),
        }
    }

    /// The application's certificate (DER), read up to the length its header gives.
    pub fn read_certificate(&mut self, app: Application) -> Result<Vec<u8>, HpkiError> {
        self.ensure_selected(app)?;
        let cmd = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&EF_CERTIFICATE);
        if !self.send(&cmd)?.is_ok() {
            return Err(HpkiError::BadCertificate(app, "no certificate file"));
        }
        apdu::read_der_file(&mut self.channel, MAX_CERTIFICATE).map_err(|e| match e {
            ReadError::Card(e) => {
                // After a transport error the card's state is unknown: select again next time.
                self.selected = None;
                e.into()
            }
            ReadError::Refused(status) => HpkiError::Refused {
                operation: "reading the certificate",
                status,
            },
            ReadError::Truncated => {
                HpkiError::BadCertificate(app, "file ends inside the certificate")
            }
            ReadError::NotDer => HpkiError::BadCertificate(app, "not a DER certificate"),
            ReadError::TooLarge => HpkiError::BadCertificate(app, "larger than 16 KiB"),
            ReadError::TooSlow => HpkiError::BadCertificate(app, "the card sends it too slowly"),
            ReadError::Offset => HpkiError::BadCertificate(app, "offset out of range"),
        })
    }

    /// PIN tries left, asked with an empty VERIFY (costs no try).
    pub fn pin_state(&mut self, app: Application) -> Result<PinState, HpkiError> {
        self.ensure_selected(app)?;
        let resp = self.send(&Command::new(0x00, 0x20, 0x00, PIN_REFERENCE))?;
        match resp.status() {
            StatusWord::Ok => Ok(PinState::Verified),
            StatusWord::WrongPin { tries_left: 0 } | StatusWord::PinBlocked => {
                Ok(PinState::Blocked)
            }
            StatusWord::WrongPin { tries_left } => Ok(PinState::TriesLeft(tries_left)),
            status => Err(HpkiError::Refused {
                operation: "the PIN status query",
                status,
            }),
        }
    }

    /// Verifies the PIN. A blocked card is reported without sending the PIN.
    pub fn verify_pin(&mut self, app: Application, pin: &Pin) -> Result<(), HpkiError> {
        if self.pin_state(app)? == PinState::Blocked {
            return Err(HpkiError::PinBlocked);
        }
        let cmd = Command::new(0x00, 0x20, 0x00, PIN_REFERENCE).with_data(pin.bytes());
        let resp = self.send(&cmd)?;
        match resp.status() {
            StatusWord::Ok => Ok(()),
            StatusWord::WrongPin { tries_left: 0 } | StatusWord::PinBlocked => {
                Err(HpkiError::PinBlocked)
            }
            StatusWord::WrongPin { tries_left } => Err(HpkiError::WrongPin { tries_left }),
            StatusWord::WrongLength => Err(HpkiError::PinFormat),
            status => Err(HpkiError::Refused {
                operation: "the PIN",
                status,
            }),
        }
    }

    /// Signs a SHA-256 digest with the application's key (RSASSA-PKCS1-v1_5). The PIN must have
    /// been verified (for the signature application: just before, see [`Self::sign_with_pin`]).
    pub fn sign_sha256_digest(
        &mut self,
        app: Application,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, HpkiError> {
        self.prepare_key(app)?;
        self.compute_signature(digest)
    }

    /// Hashes `message` with SHA-256 and signs it (the PIN must have been verified).
    pub fn sign_sha256(&mut self, app: Application, message: &[u8]) -> Result<Vec<u8>, HpkiError> {
        self.sign_sha256_digest(app, &sha256(message))
    }

    /// The spec's whole sequence: select, key EF, MSE, VERIFY, PSO. What the signature
    /// application needs for every signature.
    pub fn sign_with_pin(
        &mut self,
        app: Application,
        pin: &Pin,
        message: &[u8],
    ) -> Result<Vec<u8>, HpkiError> {
        self.prepare_key(app)?;
        self.verify_pin(app, pin)?;
        self.compute_signature(&sha256(message))
    }

    /// SELECT EF 000C and MSE:SET the signing key.
    fn prepare_key(&mut self, app: Application) -> Result<(), HpkiError> {
        self.ensure_selected(app)?;
        self.select_ef(EF_PRIVATE_KEY, "selecting the key")?;
        let mse = Command::new(0x00, 0x22, 0x41, 0xB6).with_data(&[
            0x84,
            0x02,
            EF_PRIVATE_KEY[0],
            EF_PRIVATE_KEY[1],
        ]);
        let resp = self.send(&mse)?;
        match resp.status() {
            StatusWord::Ok => Ok(()),
            status => Err(HpkiError::Refused {
                operation: "setting the signing key",
                status,
            }),
        }
    }

    fn compute_signature(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, HpkiError> {
        let digest_info = digest_info_sha256(digest);
        if self.method != Some(SignMethod::CardPads) {
            let block = pkcs1_type1_block(&digest_info);
            let pso = Command::new(0x00, 0x2A, 0x9E, 0x9A)
                .with_data(&block[..])
                .with_le(65_536);
            let mut resp = self.send(&pso)?;
            if resp.status() == StatusWord::WrongLength && self.channel.extended_length() {
                // The card (or reader) does not take extended length: chain instead, and keep
                // doing so for this card.
                self.channel.set_extended_length(false);
                resp = self.send(&pso)?;
            }
            match resp.status() {
                StatusWord::InsNotSupported | StatusWord::ClaNotSupported => {}
                status => {
                    let sig = signature_result(resp, status)?;
                    self.method = Some(SignMethod::RawPso);
                    return Ok(sig);
                }
            }
        }
        let pads = Command::new(0x80, 0x2A, 0x00, 0x80)
            .with_data(&digest_info)
            .with_le(256);
        let resp = self.send(&pads)?;
        let status = resp.status();
        let sig = signature_result(resp, status)?;
        self.method = Some(SignMethod::CardPads);
        Ok(sig)
    }

    /// How this card signs, once it has signed.
    pub fn sign_method(&self) -> Option<SignMethod> {
        self.method
    }
}

fn signature_result(resp: Response, status: StatusWord) -> Result<Vec<u8>, HpkiError> {
    match status {
        StatusWord::Ok if resp.data.len() == KEY_BYTES => Ok(resp.data),
        StatusWord::Ok => Err(HpkiError::Card(CardError::Malformed(
            "signature of the wrong length",
        ))),
        StatusWord::SecurityNotSatisfied => Err(HpkiError::PinRequired),
        StatusWord::PinBlocked => Err(HpkiError::PinBlocked),
        status => Err(HpkiError::Refused {
            operation: "signing",
            status,
        }),
    }
}

/// The DF name in an FCI (`6F { 84 name, ... }`), or `None` if there is none or it is
/// malformed.
fn fci_df_name(fci: &[u8]) -> Option<&[u8]> {
    let (inner, _) = der::expect(fci, 0x6F).ok()?;
    der::find(inner, 0x84).ok().flatten()
}

pub fn sha256(message: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `DigestInfo { sha256, digest }` as DER.
pub fn digest_info_sha256(digest: &[u8; 32]) -> [u8; 51] {
    let mut out = [0; 51];
    out[..19].copy_from_slice(&SHA256_DIGEST_INFO);
    out[19..].copy_from_slice(digest);
    out
}

/// EMSA-PKCS1-v1_5 encoding for an RSA-2048 key: `00 01 FF…FF 00 || DigestInfo`.
pub fn pkcs1_type1_block(digest_info: &[u8; 51]) -> [u8; KEY_BYTES] {
    let mut block = [0xFF; KEY_BYTES];
    block[0] = 0x00;
    block[1] = 0x01;
    let sep = KEY_BYTES - digest_info.len() - 1;
    block[sep] = 0x00;
    block[sep + 1..].copy_from_slice(digest_info);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_rules() {
        assert!(Pin::new("1234").is_ok());
        assert!(Pin::new("abcDEF-123_!xyz9").is_ok());
        for bad in [
            "123",
            "12345678901234567",
            "12 34",
            "１２３４",
            "1234\n",
            "",
        ] {
            assert!(
                matches!(Pin::new(bad), Err(HpkiError::PinFormat)),
                "{bad:?}"
            );
        }
        assert_eq!(format!("{:?}", Pin::new("9876").unwrap()), "Pin(..)");
    }

    #[test]
    fn block_layout() {
        let di = digest_info_sha256(&[0xAB; 32]);
        let block = pkcs1_type1_block(&di);
        assert_eq!(&block[..2], &[0x00, 0x01]);
        assert!(block[2..204].iter().all(|&b| b == 0xFF));
        assert_eq!(block[204], 0x00);
        assert_eq!(&block[205..224], &SHA256_DIGEST_INFO);
        assert_eq!(&block[224..], &[0xAB; 32]);
    }

    #[test]
    fn fci_names() {
        let mut fci = vec![0x6F, 0x12, 0x84, 0x10];
        fci.extend_from_slice(&AUTHENTICATION_AID);
        assert_eq!(fci_df_name(&fci), Some(&AUTHENTICATION_AID[..]));
        assert_eq!(fci_df_name(&[0x6F, 0x05, 0x84, 0x10]), None);
        assert_eq!(fci_df_name(&[]), None);
        assert_eq!(fci_df_name(&[0x62, 0x00]), None);
    }
}
