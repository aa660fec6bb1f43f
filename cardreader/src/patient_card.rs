//! The Sekisho patient card (R-PAT-2): our own card application, on any [`Transport`].
//!
//! A patient gives a physician permission to see their record by handing over this card; the
//! terminal agent reads it and has it sign the gateway's consent challenge
//! (`sekisho-agent consent`). The card carries no name, kana or birth date: only the network
//! patient id and a certificate from Sekisho's patient-card CA (`sekisho_ca::patient_card`).
//!
//! # The card application
//!
//! | what | value |
//! |---|---|
//! | AID | `F0 53 45 4B 49 53 48 4F 50 43 01`: `F0` (proprietary, ISO 7816-5: no registered RID) + ASCII `SEKISHOPC` + version `01` |
//! | SELECT application | `00 A4 04 0C 0B <AID>` (no FCI); `P2=00` returns the FCI `6F 0D 84 0B <AID>` |
//! | EF `0001` | the network patient id, UTF-8 (in practice ASCII: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`), 1 to 64 bytes, the whole file |
//! | EF `0002` | the card certificate, DER, at most 4096 bytes |
//! | SELECT EF | `00 A4 02 0C 02 <file id>` |
//! | READ BINARY | `00 B0 <offset> <Le>`, offsets up to `7FFF`; `6282` when the file ends before `Le` bytes |
//! | sign | PSO: COMPUTE DIGITAL SIGNATURE `00 2A 9E 9A 20 <SHA-256 digest> 00` → ECDSA P-256 signature, ASN.1 DER (`30 .. 02 r 02 s`, at most 72 bytes) |
//!
//! Both files are free to read. The card has one key (ECDSA P-256, made on the card or put
//! there at issue), so no MANAGE SECURITY ENVIRONMENT is needed. The host hashes the message
//! (SHA-256) and the card signs the 32-byte digest.
//!
//! # No PIN
//!
//! Handing the card to the physician is the patient's consent, as in the seed rules (the
//! patient presents the card; the system reads it): a PIN would stand between a patient who
//! cannot type one (elderly, unwell) and their care, and would be typed on the physician's
//! terminal anyway. The card signs only what the terminal sends, and the agent sends only the
//! gateway's consent challenges (which begin `sekisho-patient-consent:v1\n`). A variant with a
//! PIN would add `VERIFY 00 20 00 81 <PIN>` before the signature and answer the PSO with `6982`
//! until then; [`PatientCard::sign`] already reports `6982` as
//! [`PatientCardError::PinRequired`].
//!
//! # Hostile answers
//!
//! Everything the card sends is checked: the id against the gateway's rule, the certificate is
//! parsed (x509-parser) and its one `urn:sekisho:patient:` URI must name the id of EF `0001`,
//! the signature is at most [`MAX_SIGNATURE`] bytes and a DER SEQUENCE of two positive
//! INTEGERs. The certificate's trust is the gateway's business (`verify_patient_card`).

use thiserror::Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::apdu::{self, CardError, Channel, Command, ReadError, Response, StatusWord, Transport};
use crate::pcsc_transport::PcscTransport;

/// The patient-card application: `F0` + "SEKISHOPC" + version 01.
pub const AID: [u8; 11] = [
    0xF0, b'S', b'E', b'K', b'I', b'S', b'H', b'O', b'P', b'C', 0x01,
];
/// EF holding the network patient id (UTF-8).
pub const EF_PATIENT_ID: [u8; 2] = [0x00, 0x01];
/// EF holding the card certificate (DER).
pub const EF_CERTIFICATE: [u8; 2] = [0x00, 0x02];
/// Largest certificate read.
pub const MAX_CERTIFICATE: usize = 4096;
/// Longest signature accepted (an ECDSA P-256 signature in DER is at most 72 bytes).
pub const MAX_SIGNATURE: usize = 80;
/// The patient id rule and the card certificate's URN are the network's (`sekisho_protocol`).
pub use sekisho_protocol::{MAX_PATIENT_ID, PATIENT_URN_PREFIX, is_valid_patient_id};

/// What went wrong with a patient card.
#[derive(Debug, Error)]
pub enum PatientCardError {
    #[error("this is not a Sekisho patient card (it has no patient-card application)")]
    NotPatientCard,
    #[error("no Sekisho patient card in {}", reader.as_deref().unwrap_or("any reader"))]
    NoPatientCard { reader: Option<String> },
    #[error("the patient card's patient id is not valid: {0}")]
    BadPatientId(&'static str),
    #[error("the patient card's certificate is missing or unreadable: {0}")]
    BadCertificate(&'static str),
    #[error("the patient card's certificate is for another patient than the card's id")]
    IdMismatch,
    #[error("the patient card's signature is malformed: {0}")]
    BadSignature(&'static str),
    #[error("the patient card wants a PIN before it signs")]
    PinRequired,
    #[error("the card refused {operation}: {status}")]
    Refused {
        operation: &'static str,
        status: StatusWord,
    },
    #[error("the card was removed; insert it again")]
    CardRemoved,
    #[error(transparent)]
    Card(CardError),
}

impl From<CardError> for PatientCardError {
    fn from(e: CardError) -> Self {
        match e {
            CardError::Removed | CardError::NoCard => PatientCardError::CardRemoved,
            other => PatientCardError::Card(other),
        }
    }
}

/// The patient id and certificate of a card, read and found consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    pub patient_id: String,
    /// DER, as on the card.
    pub certificate: Vec<u8>,
}

/// A patient card on a transport.
pub struct PatientCard<T: Transport> {
    channel: Channel<T>,
    selected: bool,
}

impl<T: Transport> PatientCard<T> {
    /// Short APDUs are enough for everything this card does.
    pub fn new(transport: T) -> Self {
        PatientCard {
            channel: Channel::short_only(transport),
            selected: false,
        }
    }

    pub fn transport_mut(&mut self) -> &mut T {
        self.channel.transport_mut()
    }

    pub fn into_transport(self) -> T {
        self.channel.into_transport()
    }

    fn send(&mut self, cmd: &Command) -> Result<Response, PatientCardError> {
        self.channel.transmit(cmd).map_err(|e| {
            // After a transport error the card's state is unknown: select again next time.
            self.selected = false;
            e.into()
        })
    }

    /// Selects the patient-card application. Any refusal means the card does not have it:
    /// [`PatientCardError::NotPatientCard`].
    pub fn select(&mut self) -> Result<(), PatientCardError> {
        self.selected = false;
        let cmd = Command::new(0x00, 0xA4, 0x04, 0x0C).with_data(&AID);
        let resp = self.send(&cmd)?;
        if !resp.is_ok() {
            return Err(PatientCardError::NotPatientCard);
        }
        self.selected = true;
        Ok(())
    }

    fn select_ef(&mut self, fid: [u8; 2], what: &'static str) -> Result<(), PatientCardError> {
        if !self.selected {
            self.select()?;
        }
        let resp = self.send(&Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&fid))?;
        match resp.status() {
            StatusWord::Ok => Ok(()),
            StatusWord::FileNotFound if fid == EF_PATIENT_ID => Err(
                PatientCardError::BadPatientId("the card has no patient id file"),
            ),
            StatusWord::FileNotFound => Err(PatientCardError::BadCertificate(
                "the card has no certificate file",
            )),
            status => Err(PatientCardError::Refused {
                operation: what,
                status,
            }),
        }
    }

    fn read_error(&mut self, e: ReadError, fid: [u8; 2]) -> PatientCardError {
        let id = fid == EF_PATIENT_ID;
        match e {
            ReadError::Card(e) => {
                self.selected = false;
                e.into()
            }
            ReadError::Refused(status) => PatientCardError::Refused {
                operation: if id {
                    "reading the patient id"
                } else {
                    "reading the certificate"
                },
                status,
            },
            ReadError::Truncated if id => PatientCardError::BadPatientId("the file is empty"),
            ReadError::TooLarge if id => PatientCardError::BadPatientId("longer than 64 bytes"),
            ReadError::Truncated => {
                PatientCardError::BadCertificate("the file ends inside the certificate")
            }
            ReadError::NotDer => PatientCardError::BadCertificate("not a DER certificate"),
            ReadError::TooLarge => PatientCardError::BadCertificate("larger than 4096 bytes"),
            ReadError::TooSlow => PatientCardError::BadCertificate("the card sends it too slowly"),
            ReadError::Offset => PatientCardError::BadCertificate("offset out of range"),
        }
    }

    /// The network patient id (EF `0001`), checked against [`is_valid_patient_id`].
    pub fn patient_id(&mut self) -> Result<String, PatientCardError> {
        self.select_ef(EF_PATIENT_ID, "selecting the patient id")?;
        let bytes = apdu::read_small_file(&mut self.channel, MAX_PATIENT_ID)
            .map_err(|e| self.read_error(e, EF_PATIENT_ID))?;
        let id =
            String::from_utf8(bytes).map_err(|_| PatientCardError::BadPatientId("not UTF-8"))?;
        if !is_valid_patient_id(&id) {
            return Err(PatientCardError::BadPatientId(
                "not 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or digit",
            ));
        }
        Ok(id)
    }

    /// The certificate as the card holds it (EF `0002`), without the consistency check of
    /// [`Self::identity`]: parsed, and naming exactly one patient, whose id is returned too.
    fn read_certificate(&mut self) -> Result<(Vec<u8>, String), PatientCardError> {
        self.select_ef(EF_CERTIFICATE, "selecting the certificate")?;
        let der = apdu::read_der_file(&mut self.channel, MAX_CERTIFICATE)
            .map_err(|e| self.read_error(e, EF_CERTIFICATE))?;
        let id = certificate_patient_id(&der)?;
        Ok((der, id))
    }

    /// The card certificate (DER), after checking that it names the patient of EF `0001`.
    pub fn certificate(&mut self) -> Result<Vec<u8>, PatientCardError> {
        Ok(self.identity()?.certificate)
    }

    /// The patient id and the certificate, which must name that same patient
    /// ([`PatientCardError::IdMismatch`] otherwise).
    pub fn identity(&mut self) -> Result<CardIdentity, PatientCardError> {
        let patient_id = self.patient_id()?;
        let (certificate, named) = self.read_certificate()?;
        if named != patient_id {
            return Err(PatientCardError::IdMismatch);
        }
        Ok(CardIdentity {
            patient_id,
            certificate,
        })
    }

    /// Hashes `message` (SHA-256) and has the card sign the digest: an ECDSA P-256 signature,
    /// ASN.1 DER, checked for form (not for validity: the gateway verifies it).
    pub fn sign(&mut self, message: &[u8]) -> Result<Vec<u8>, PatientCardError> {
        self.sign_digest(&crate::hpki::sha256(message))
    }

    /// Has the card sign a SHA-256 digest.
    pub fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, PatientCardError> {
        if !self.selected {
            self.select()?;
        }
        let pso = Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(digest)
            .with_le(256);
        let resp = self.send(&pso)?;
        match resp.status() {
            StatusWord::Ok => {
                check_signature(&resp.data)?;
                Ok(resp.data)
            }
            StatusWord::SecurityNotSatisfied => Err(PatientCardError::PinRequired),
            status => Err(PatientCardError::Refused {
                operation: "signing",
                status,
            }),
        }
    }
}

/// The one `urn:sekisho:patient:` URI of a certificate, with a valid id.
pub fn certificate_patient_id(der: &[u8]) -> Result<String, PatientCardError> {
    let bad = PatientCardError::BadCertificate;
    if der.len() > MAX_CERTIFICATE {
        return Err(bad("larger than 4096 bytes"));
    }
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| bad("not an X.509 certificate"))?;
    if !rest.is_empty() {
        return Err(bad("trailing data after the certificate"));
    }
    let mut found = None;
    for ext in cert.extensions() {
        let names = match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => &san.general_names,
            _ => continue,
        };
        for name in names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            // Counted without regard to case, so that a look-alike is refused, not skipped.
            let is_patient = uri.len() >= PATIENT_URN_PREFIX.len()
                && uri.as_bytes()[..PATIENT_URN_PREFIX.len()]
                    .eq_ignore_ascii_case(PATIENT_URN_PREFIX.as_bytes());
            if !is_patient {
                continue;
            }
            if found.is_some() {
                return Err(bad("it names more than one patient"));
            }
            found = Some(*uri);
        }
    }
    let uri = found.ok_or_else(|| bad("it names no patient (no urn:sekisho:patient: URI)"))?;
    match uri.strip_prefix(PATIENT_URN_PREFIX) {
        Some(id) if is_valid_patient_id(id) => Ok(id.to_string()),
        _ => Err(bad(
            "its patient name is not urn:sekisho:patient:<valid id>",
        )),
    }
}

/// An ECDSA signature in DER: `30 L 02 Lr r 02 Ls s`, short lengths, nothing after; each
/// INTEGER minimal, positive and at most 32 bytes of magnitude (P-256).
pub fn check_signature(sig: &[u8]) -> Result<(), PatientCardError> {
    let bad = PatientCardError::BadSignature;
    if sig.is_empty() || sig.len() > MAX_SIGNATURE {
        return Err(bad("empty or longer than 80 bytes"));
    }
    let [0x30, len, body @ ..] = sig else {
        return Err(bad("not a DER SEQUENCE"));
    };
    if usize::from(*len) != body.len() || *len >= 0x80 {
        return Err(bad("the SEQUENCE's length is wrong"));
    }
    let mut rest = body;
    for _ in 0..2 {
        let [0x02, n, tail @ ..] = rest else {
            return Err(bad("not two INTEGERs"));
        };
        let n = usize::from(*n);
        if n == 0 || n > 33 || tail.len() < n {
            return Err(bad("an INTEGER of the wrong length"));
        }
        let (value, after) = tail.split_at(n);
        if value[0] & 0x80 != 0 {
            return Err(bad("a negative INTEGER"));
        }
        if value[0] == 0 && (n == 1 || value[1] & 0x80 == 0) {
            return Err(bad("an INTEGER that is zero or not minimally encoded"));
        }
        if n == 33 && value[0] != 0 {
            return Err(bad("an INTEGER larger than the curve"));
        }
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad("data after the two INTEGERs"));
    }
    Ok(())
}

/// Connects to the card in `reader` and selects the patient-card application. A card that
/// answers the SELECT with an error is [`PatientCardError::NotPatientCard`]; trouble reaching
/// the card (none there, still resetting, held by another program) is a
/// [`PatientCardError::Card`] error.
pub fn probe(reader: &str) -> Result<PcscTransport, PatientCardError> {
    let mut transport = PcscTransport::connect(reader)?;
    match transport.transaction() {
        Ok(tx) => PatientCard::new(tx).select()?,
        Err(e) => return Err(e.into()),
    }
    Ok(transport)
}

/// Finds the reader whose card is a patient card: each of `readers` in turn, connected (shared)
/// and asked to SELECT the patient-card application inside a PC/SC transaction. Readers
/// without a card, with a card that does not answer, or with another card (an HPKI card in the
/// next reader) are skipped. [`PatientCardError::NoPatientCard`] if none has one (naming the
/// reader when only one was given).
pub fn find_reader(readers: &[String]) -> Result<(String, PcscTransport), PatientCardError> {
    for name in readers {
        match probe(name) {
            Ok(transport) => return Ok((name.clone(), transport)),
            Err(PatientCardError::Card(CardError::NoService)) => {
                return Err(PatientCardError::Card(CardError::NoService));
            }
            // No card, a card that does not answer, a reader gone or taken, another card: not
            // this one.
            Err(_) => continue,
        }
    }
    Err(PatientCardError::NoPatientCard {
        reader: match readers {
            [one] => Some(one.clone()),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests;
