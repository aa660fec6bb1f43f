//! Signatures made with the keys of HPKI certificates (and of patient cards): RSA PKCS#1 v1.5
//! and ECDSA P-256/P-384, verified with aws-lc-rs. Certificates and CRLs are read with
//! x509-parser; the checks of their two algorithm fields are the ones webpki made.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{Any, BitString, Class, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// A public key we can verify signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    kind: KeyKind,
    /// The subjectPublicKey bits: RSAPublicKey DER, or the uncompressed EC point.
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigError {
    /// An algorithm (or key/algorithm pair) we do not verify.
    Unsupported(String),
    /// It does not verify (or the two signature algorithm fields of a certificate differ).
    Invalid,
}

fn is_null(params: Option<&Any<'_>>) -> bool {
    params.is_some_and(|p| {
        p.class() == Class::Universal
            && p.tag() == Tag::Null
            && !p.header.is_constructed()
            && p.data.is_empty()
    })
}

impl PublicKey {
    /// An EC key on P-256 (what patient cards carry).
    pub(crate) fn is_p256(&self) -> bool {
        self.kind == KeyKind::EcP256
    }

    /// The subjectPublicKey bits (for an EC key, the uncompressed point).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// RSA (parameters NULL, RFC 3279) or EC on P-256/P-384 (namedCurve, RFC 5480).
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        let alg = &spki.algorithm;
        let kind = if alg.algorithm == OID_PKCS1_RSAENCRYPTION && is_null(alg.parameters.as_ref()) {
            KeyKind::Rsa
        } else if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = alg.parameters.as_ref().filter(|p| {
                p.class() == Class::Universal && p.tag() == Tag::Oid && !p.header.is_constructed()
            });
            match curve.map(|c| c.data) {
                Some(c) if c == OID_EC_P256.as_bytes() => KeyKind::EcP256,
                Some(c) if c == OID_NIST_EC_P384.as_bytes() => KeyKind::EcP384,
                _ => return Err("an EC key not on P-256 or P-384".into()),
            }
        } else {
            return Err(format!(
                "a key of algorithm {} (RSA or ECDSA P-256/P-384 are supported)",
                alg.algorithm
            ));
        };
        if spki.subject_public_key.unused_bits != 0 {
            return Err("a damaged public key".into());
        }
        Ok(PublicKey {
            kind,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Verifies `signature` over `message` made with algorithm `alg`: RSASSA-PKCS1-v1_5 with
    /// SHA-256/384/512 (parameters NULL) for RSA keys, ECDSA with SHA-256/384 (no parameters)
    /// for EC keys; RSA keys of 2048 to 8192 bits (aws-lc-rs enforces it).
    pub(crate) fn verify(
        &self,
        alg: &AlgorithmIdentifier<'_>,
        message: &[u8],
        signature: &BitString<'_>,
    ) -> Result<(), SigError> {
        let params = alg.parameters.as_ref();
        let oid = &alg.algorithm;
        let algorithm: &'static dyn VerificationAlgorithm = match self.kind {
            KeyKind::Rsa if is_null(params) => {
                if *oid == OID_PKCS1_SHA256WITHRSA {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                } else if *oid == OID_PKCS1_SHA384WITHRSA {
                    &sig::RSA_PKCS1_2048_8192_SHA384
                } else if *oid == OID_PKCS1_SHA512WITHRSA {
                    &sig::RSA_PKCS1_2048_8192_SHA512
                } else {
                    return Err(unsupported_alg(alg));
                }
            }
            KeyKind::EcP256 | KeyKind::EcP384 if params.is_none() => {
                let sha384 = if *oid == OID_SIG_ECDSA_WITH_SHA256 {
                    false
                } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
                    true
                } else {
                    return Err(unsupported_alg(alg));
                };
                match (self.kind, sha384) {
                    (KeyKind::EcP256, false) => &sig::ECDSA_P256_SHA256_ASN1,
                    (KeyKind::EcP256, true) => &sig::ECDSA_P256_SHA384_ASN1,
                    (_, false) => &sig::ECDSA_P384_SHA256_ASN1,
                    (_, true) => &sig::ECDSA_P384_SHA384_ASN1,
                }
            }
            _ => return Err(unsupported_alg(alg)),
        };
        if signature.unused_bits != 0 {
            return Err(SigError::Invalid);
        }
        UnparsedPublicKey::new(algorithm, &self.bytes)
            .verify(message, &signature.data)
            .map_err(|_| SigError::Invalid)
    }

    /// Verifies the signature of a certificate made with this key. The algorithm inside the
    /// signed part must be the outer one (RFC 5280 §4.1.1.2), as webpki required.
    pub(crate) fn verify_cert(&self, cert: &X509Certificate<'_>) -> Result<(), SigError> {
        if !same_algorithm(&cert.signature_algorithm, &cert.tbs_certificate.signature)
            || !same_algorithm_bytes(cert)
        {
            return Err(SigError::Invalid);
        }
        self.verify(
            &cert.signature_algorithm,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value,
        )
    }

    /// Same for a CRL.
    pub(crate) fn verify_crl(&self, crl: &CertificateRevocationList<'_>) -> Result<(), SigError> {
        if !same_algorithm(&crl.signature_algorithm, &crl.tbs_cert_list.signature) {
            return Err(SigError::Invalid);
        }
        self.verify(
            &crl.signature_algorithm,
            crl.tbs_cert_list.as_ref(),
            &crl.signature_value,
        )
    }
}

fn unsupported_alg(alg: &AlgorithmIdentifier<'_>) -> SigError {
    SigError::Unsupported(format!(
        "signature algorithm {} is not supported with this key",
        alg.algorithm
    ))
}

/// The encodings of a certificate's two algorithm identifiers are the same bytes, as webpki
/// requires: x509-parser reads an OBJECT IDENTIFIER under another tag as the same OID, so the
/// decoded comparison alone would let the unsigned outer one be altered.
fn same_algorithm_bytes(cert: &X509Certificate<'_>) -> bool {
    fn tlv(input: &[u8]) -> Option<(&[u8], &[u8], Any<'_>)> {
        let (rest, any) = Any::from_der(input).ok()?;
        Some((&input[..input.len() - rest.len()], rest, any))
    }
    let outer = || -> Option<&[u8]> {
        let (_, _, cert_seq) = tlv(cert.as_raw())?;
        let (_, after_tbs, _) = tlv(cert_seq.data)?;
        let (alg, _, _) = tlv(after_tbs)?;
        Some(alg)
    };
    let inner = || -> Option<&[u8]> {
        let (_, _, tbs) = tlv(cert.tbs_certificate.as_ref())?;
        let (_, mut rest, first) = tlv(tbs.data)?;
        if first.class() == Class::ContextSpecific {
            // [0] version; the serial follows.
            rest = tlv(rest)?.1;
        }
        let (alg, _, _) = tlv(rest)?;
        Some(alg)
    };
    matches!((outer(), inner()), (Some(a), Some(b)) if a == b)
}

fn same_algorithm(a: &AlgorithmIdentifier<'_>, b: &AlgorithmIdentifier<'_>) -> bool {
    let same_any = |x: &Any<'_>, y: &Any<'_>| {
        x.class() == y.class()
            && x.tag() == y.tag()
            && x.header.is_constructed() == y.header.is_constructed()
            && x.data == y.data
    };
    a.algorithm == b.algorithm
        && match (&a.parameters, &b.parameters) {
            (None, None) => true,
            (Some(x), Some(y)) => same_any(x, y),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECDSA P-256 and P-384 chains verify; a changed byte does not; Ed25519 is refused.
    #[test]
    fn signature_algorithms() {
        use rcgen::{
            CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
            PKCS_ED25519,
        };
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
            let key = KeyPair::generate_for(alg).unwrap();
            let der = CertificateParams::new(vec!["x.test".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .der()
                .to_vec();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let pk = PublicKey::from_spki(cert.public_key()).unwrap();
            assert_eq!(pk.verify_cert(&cert), Ok(()));
            let mut bad = der.clone();
            let i = bad.windows(6).position(|w| w == b"x.test").unwrap();
            bad[i] = b'y';
            let (_, cert) = x509_parser::parse_x509_certificate(&bad).unwrap();
            assert_eq!(pk.verify_cert(&cert), Err(SigError::Invalid));
            // The outer (unsigned) algorithm identifier's OID under tag 07 instead of 06:
            // x509-parser reads the same OID, the bytes differ.
            let mut bad = der.clone();
            let i = (0..bad.len() - 12)
                .rev()
                .find(|&i| bad[i] == 0x30 && bad[i + 2] == 0x06 && bad[i + 4] == 0x2a)
                .unwrap();
            bad[i + 2] = 0x07;
            let (_, cert) = x509_parser::parse_x509_certificate(&bad).unwrap();
            assert_eq!(
                cert.signature_algorithm.algorithm,
                cert.tbs_certificate.signature.algorithm
            );
            assert_eq!(pk.verify_cert(&cert), Err(SigError::Invalid));
        }
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let der = CertificateParams::new(vec!["x.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(PublicKey::from_spki(cert.public_key()).is_err());
    }
}
