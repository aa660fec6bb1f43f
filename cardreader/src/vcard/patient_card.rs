//! The virtual card's patient-card personality: the card application of
//! [`crate::patient_card`] (AID `F0 "SEKISHOPC" 01`, EF `0001` patient id, EF `0002`
//! certificate, PSO: COMPUTE DIGITAL SIGNATURE over a SHA-256 digest with an ECDSA P-256 key,
//! no PIN). Short APDUs only, as the profile needs nothing longer.

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::engine::{Answer, Apdu, parse, read_binary, sw};
use super::rsa::KeyError;
use crate::apdu::{CardError, Transport};
use crate::patient_card::{AID, EF_CERTIFICATE, EF_PATIENT_ID};

/// `3B 8D 80 01` + historical bytes `80` (COMPACT-TLV follows) `FB <AID>` (application
/// identifier, 11 bytes) + TCK: a T=1 card that names its application.
pub const PATIENT_CARD_ATR: [u8; 18] = [
    0x3B, 0x8D, 0x80, 0x01, 0x80, 0xFB, 0xF0, b'S', b'E', b'K', b'I', b'S', b'H', b'O', b'P', b'C',
    0x01, 0xD5,
];

/// A virtual patient card.
pub struct PatientCardEngine {
    patient_id: Vec<u8>,
    certificate: Vec<u8>,
    key: EcdsaKeyPair,
    // Volatile state, cleared on power-off and reset.
    selected: bool,
    current_ef: Option<[u8; 2]>,
    // What the card signed, for tests.
    signed: Vec<[u8; 32]>,
}

impl PatientCardEngine {
    /// A card for `patient_id` with its certificate (DER) and the certificate's ECDSA P-256 key
    /// (PKCS#8 DER). Refuses an id the profile does not allow, a certificate that does not name
    /// the id, and a key that is not the certificate's.
    pub fn new(
        patient_id: &str,
        certificate: Vec<u8>,
        key_pkcs8: &[u8],
    ) -> Result<PatientCardEngine, KeyError> {
        if !crate::patient_card::is_valid_patient_id(patient_id) {
            return Err(KeyError(
                "the patient id must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        match crate::patient_card::certificate_patient_id(&certificate) {
            Ok(named) if named == patient_id => {}
            Ok(_) => return Err(KeyError("the certificate names another patient")),
            Err(_) => {
                return Err(KeyError(
                    "the certificate is not a patient-card certificate (one urn:sekisho:patient: URI)",
                ));
            }
        }
        let engine = Self::with_files(patient_id.as_bytes().to_vec(), certificate, key_pkcs8)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&engine.certificate)
            .map_err(|_| KeyError("the certificate cannot be read"))?;
        if cert.public_key().subject_public_key.data.as_ref() != engine.key.public_key().as_ref() {
            return Err(KeyError("the certificate is not for this key"));
        }
        Ok(engine)
    }

    /// From the PEM files' contents: the certificate, and the key as PKCS#8 ("PRIVATE KEY").
    pub fn from_pem(
        patient_id: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<PatientCardEngine, KeyError> {
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|_| KeyError("no certificate in PEM"))?;
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k,
            Ok(_) => return Err(KeyError("the key must be PKCS#8 (\"PRIVATE KEY\") PEM")),
            Err(_) => return Err(KeyError("no private key in PEM")),
        };
        Self::new(patient_id, cert.to_vec(), key.secret_pkcs8_der())
    }

    /// A card with these file contents as they are, unchecked (for tests of cards that hold
    /// wrong data); only the key must be an ECDSA P-256 PKCS#8 key and the files must fit
    /// READ BINARY's offsets.
    pub fn with_files(
        patient_id_file: Vec<u8>,
        certificate_file: Vec<u8>,
        key_pkcs8: &[u8],
    ) -> Result<PatientCardEngine, KeyError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_pkcs8)
            .map_err(|_| KeyError("not an ECDSA P-256 PKCS#8 key"))?;
        if patient_id_file.len() > 0x7FFF || certificate_file.len() > 0x7FFF {
            return Err(KeyError("a file larger than READ BINARY can address"));
        }
        Ok(PatientCardEngine {
            patient_id: patient_id_file,
            certificate: certificate_file,
            key,
            selected: false,
            current_ef: None,
            signed: Vec::new(),
        })
    }

    pub fn atr(&self) -> &'static [u8] {
        &PATIENT_CARD_ATR
    }

    /// The digests the card has signed, oldest first.
    pub fn signed_digests(&self) -> &[[u8; 32]] {
        &self.signed
    }

    pub fn power_on(&mut self) {
        self.clear_volatile();
    }

    pub fn power_off(&mut self) {
        self.clear_volatile();
    }

    pub fn reset(&mut self) {
        self.clear_volatile();
    }

    fn clear_volatile(&mut self) {
        self.selected = false;
        self.current_ef = None;
    }

    /// Answers one command APDU with response data + SW1 SW2.
    pub fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let (mut data, status) = self.answer(raw);
        data.extend_from_slice(&status.to_be_bytes());
        data
    }

    fn answer(&mut self, raw: &[u8]) -> Answer {
        let cmd = match parse(raw) {
            Ok(c) => c,
            Err(status) => return sw(status),
        };
        if cmd.extended {
            return sw(0x6700);
        }
        if cmd.cla == 0x10 {
            // 6884: command chaining not supported.
            return sw(0x6884);
        }
        if cmd.cla != 0x00 {
            return sw(0x6E00);
        }
        let (out, status) = match cmd.ins {
            0xA4 => self.select(&cmd),
            0xB0 => self.read_binary(&cmd),
            0x2A => self.sign(&cmd),
            _ => sw(0x6D00),
        };
        match cmd.le {
            // Case 1 and 3 commands get no data.
            None => (Vec::new(), status),
            Some(le) if out.len() > le => sw(0x6700),
            Some(_) => (out, status),
        }
    }

    fn select(&mut self, cmd: &Apdu<'_>) -> Answer {
        match (cmd.p1, cmd.p2) {
            (0x04, 0x00 | 0x0C) => {
                self.current_ef = None;
                if cmd.data != AID {
                    // Another application (an HPKI AID, say): this card does not have it.
                    self.selected = false;
                    return sw(0x6A82);
                }
                self.selected = true;
                if cmd.p2 == 0x0C {
                    return sw(0x9000);
                }
                let mut fci = vec![0x6F, 2 + AID.len() as u8, 0x84, AID.len() as u8];
                fci.extend_from_slice(&AID);
                (fci, 0x9000)
            }
            (0x02, 0x0C) => {
                if !self.selected {
                    return sw(0x6A82);
                }
                let Ok(fid) = <[u8; 2]>::try_from(cmd.data) else {
                    return sw(0x6700);
                };
                if fid != EF_PATIENT_ID && fid != EF_CERTIFICATE {
                    return sw(0x6A82);
                }
                self.current_ef = Some(fid);
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn read_binary(&mut self, cmd: &Apdu<'_>) -> Answer {
        if !self.selected {
            return sw(0x6986);
        }
        match self.current_ef {
            Some(EF_PATIENT_ID) => read_binary(&self.patient_id, cmd, false),
            Some(_) => read_binary(&self.certificate, cmd, false),
            None => sw(0x6986),
        }
    }

    /// PSO: COMPUTE DIGITAL SIGNATURE over a SHA-256 digest; no PIN.
    fn sign(&mut self, cmd: &Apdu<'_>) -> Answer {
        if cmd.p1 != 0x9E || cmd.p2 != 0x9A {
            return sw(0x6A86);
        }
        if !self.selected {
            return sw(0x6985);
        }
        let Ok(digest) = <[u8; 32]>::try_from(cmd.data) else {
            return sw(0x6700);
        };
        if cmd.le.is_none() {
            return sw(0x6700);
        }
        let Ok(imported) = Digest::import_less_safe(&digest, &SHA256) else {
            return sw(0x6F00);
        };
        match self.key.sign_digest(&imported) {
            Ok(sig) => {
                self.signed.push(digest);
                (sig.as_ref().to_vec(), 0x9000)
            }
            Err(_) => sw(0x6F00),
        }
    }
}

/// The engine in-process: what tests of the card profile talk to.
impl Transport for PatientCardEngine {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok(self.process(apdu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_checksum_and_length() {
        assert_eq!(PATIENT_CARD_ATR[1..].iter().fold(0u8, |a, b| a ^ b), 0);
        // T0's low nibble is the number of historical bytes.
        assert_eq!(
            usize::from(PATIENT_CARD_ATR[1] & 0x0F),
            PATIENT_CARD_ATR.len() - 5
        );
        assert_eq!(&PATIENT_CARD_ATR[6..17], &AID);
    }
}
