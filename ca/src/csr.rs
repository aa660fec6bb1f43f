//! Certificate signing requests, treated as hostile input.
//!
//! Only the public key is taken from a CSR; its subject, extensions and other attributes are
//! never read, never copied. So the request is parsed only as far as needed: the outer
//! structure, the signed `certificationRequestInfo` bytes, the version, the public key, the
//! signature. The attributes are skipped unparsed, which is why CSRs from Windows, Apple or
//! OpenSSL with any extension request are all accepted (rcgen's own CSR parser refuses many).
//! The self-signature is checked with x509-parser's `verify_signature`: it proves the requester
//! holds the private key.

use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, SignatureAlgorithm};
use x509_parser::asn1_rs::{Any, BitString, FromDer, Integer, Tag};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::CaError;
use crate::encoding::pem_or_der;

const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// The verified public key of a CSR, in the form rcgen writes into a certificate.
#[derive(Debug)]
pub(crate) struct CsrPublicKey {
    alg: &'static SignatureAlgorithm,
    /// The subjectPublicKey bits: the EC point, or the PKCS#1 RSAPublicKey.
    key: Vec<u8>,
    pub(crate) is_rsa: bool,
}

impl rcgen::PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    // Only the key-type part of the algorithm is used when rcgen writes the SubjectPublicKeyInfo.
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Parses a CSR (PEM or DER), checks its self-signature and its key type, returns the key.
pub(crate) fn verified_public_key(input: &[u8]) -> Result<CsrPublicKey, CaError> {
    let der = pem_or_der(
        input,
        &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
        "certificate request",
    )
    .map_err(CaError::BadCsr)?;
    let bad = |why: &str| CaError::BadCsr(why.to_owned());

    // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
    let (rest, outer) = Any::from_der(&der).map_err(|_| bad("not a DER structure"))?;
    if !rest.is_empty() {
        return Err(bad("trailing data after the request"));
    }
    if outer.tag() != Tag::Sequence || !outer.header.is_constructed() {
        return Err(bad("not a certificate request"));
    }
    let body = outer.data;
    let (after_info, info) =
        Any::from_der(body).map_err(|_| bad("damaged certificationRequestInfo"))?;
    if info.tag() != Tag::Sequence {
        return Err(bad("damaged certificationRequestInfo"));
    }
    // The signature covers the whole TLV of certificationRequestInfo.
    let signed_bytes = &body[..body.len() - after_info.len()];
    let (rest, sig_alg) = AlgorithmIdentifier::from_der(after_info)
        .map_err(|_| bad("damaged signature algorithm"))?;
    let (rest, signature) = BitString::from_der(rest).map_err(|_| bad("damaged signature"))?;
    if !rest.is_empty() {
        return Err(bad("unexpected data after the signature"));
    }

    // CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name,
    //                                         subjectPKInfo, attributes [0] IMPLICIT SET }
    let (rest, version) = Integer::from_der(info.data).map_err(|_| bad("damaged version"))?;
    if version.as_u32().ok() != Some(0) {
        return Err(bad("unknown request version"));
    }
    let (rest, subject) = Any::from_der(rest).map_err(|_| bad("damaged subject"))?;
    if subject.tag() != Tag::Sequence {
        return Err(bad("damaged subject"));
    }
    let (rest, spki) =
        SubjectPublicKeyInfo::from_der(rest).map_err(|_| bad("damaged public key"))?;
    let (rest, attributes) = Any::from_der(rest).map_err(|_| bad("damaged attributes"))?;
    if !attributes.header.is_contextspecific() || attributes.tag() != Tag(0) {
        return Err(bad("damaged attributes"));
    }
    if !rest.is_empty() {
        return Err(bad("unexpected data after the attributes"));
    }

    // Check the key type first: a clear "RSA 1024 is not accepted" beats a signature error.
    let key = accepted_key(&spki)?;
    x509_parser::verify::verify_signature(&spki, &sig_alg, &signature, signed_bytes).map_err(
        |e| match e {
            x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
                bad("its signature algorithm is not supported")
            }
            _ => CaError::CsrSignature,
        },
    )?;
    Ok(key)
}

fn accepted_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<CsrPublicKey, CaError> {
    let alg = &spki.algorithm.algorithm;
    let bits = &spki.subject_public_key;
    if bits.unused_bits != 0 {
        return Err(CaError::BadCsr("damaged public key".into()));
    }
    let key = bits.data.to_vec();
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CaError::UnsupportedKey("EC key without a named curve".into()))?;
        let (alg, point_len) = if curve == OID_EC_P256 {
            (&PKCS_ECDSA_P256_SHA256, 65)
        } else if curve == OID_NIST_EC_P384 {
            (&PKCS_ECDSA_P384_SHA384, 97)
        } else {
            return Err(CaError::UnsupportedKey(format!("EC key on curve {curve}")));
        };
        // Uncompressed points only: that is what TLS stacks (webpki) accept.
        if key.len() != point_len || key[0] != 0x04 {
            return Err(CaError::UnsupportedKey(
                "EC key not in uncompressed form".into(),
            ));
        }
        Ok(CsrPublicKey {
            alg,
            key,
            is_rsa: false,
        })
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(CaError::BadCsr("damaged RSA public key".into()));
        };
        let size = bit_length(rsa.modulus);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&size) {
            return Err(CaError::UnsupportedKey(format!("RSA key of {size} bits")));
        }
        Ok(CsrPublicKey {
            alg: &PKCS_RSA_SHA256,
            key,
            is_rsa: true,
        })
    } else {
        Err(CaError::UnsupportedKey(format!("key algorithm {alg}")))
    }
}

/// Bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};

    fn rcgen_csr(kp: &KeyPair) -> Vec<u8> {
        CertificateParams::new(vec!["example.test".to_owned()])
            .unwrap()
            .serialize_request(kp)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn accepts_p256_and_p384() {
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
            let kp = KeyPair::generate_for(alg).unwrap();
            let key = verified_public_key(&rcgen_csr(&kp)).unwrap();
            assert_eq!(key.der_bytes(), kp.public_key_raw());
            assert!(!key.is_rsa);
        }
    }

    #[test]
    fn refuses_ed25519_and_junk() {
        let kp = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let err = verified_public_key(&rcgen_csr(&kp)).unwrap_err();
        assert!(matches!(err, CaError::UnsupportedKey(_)), "{err}");
        for junk in [&b""[..], b"\x30\x00", b"\x30\x03\x02\x01\x00", b"not a csr"] {
            assert!(matches!(verified_public_key(junk), Err(CaError::BadCsr(_))));
        }
    }

    #[test]
    fn refuses_changed_request() {
        let kp = KeyPair::generate().unwrap();
        let mut der = rcgen_csr(&kp);
        // Flip a byte inside the subject alternative name ("example.test"): still parses,
        // no longer matches the signature.
        let pos = der
            .windows(7)
            .position(|w| w == b"example")
            .expect("SAN in request");
        der[pos] = b'E';
        assert!(matches!(
            verified_public_key(&der),
            Err(CaError::CsrSignature)
        ));
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
    }
}
