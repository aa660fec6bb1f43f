//! Path validation for the fixed HPKI profile: trust anchor (root) → issuing CA → end entity.
//!
//! # Why our own validator
//!
//! Real HPKI certificates mark certificatePolicies (2.5.29.32) **critical**. rustls-webpki does
//! not process policies, so it refuses every such certificate (`UnsupportedCriticalExtension`;
//! upstream declined to change this: rustls/webpki#30, #211, #232), and a certificate's
//! extensions cannot be altered without breaking its signature. The HPKI path is short and
//! fixed, so this module validates it itself, with aws-lc-rs for the signatures and
//! x509-parser for the certificates, doing what webpki did for us and processing the policy
//! extension in [`super::verify`]. rustls-webpki is still used here to parse CRLs, whose
//! profile it handles fully (v2 only, no delta CRLs, no indirect or reason-partitioned CRLs,
//! no unknown critical CRL or entry extension), and to look serials up in them.
//!
//! # The checks
//!
//! Once, when the verifier is built ([`TrustStore::new`]; refusals are
//! [`HpkiError::Config`]), for every configured CA certificate (anchors and intermediates):
//! - it is a well-formed X.509 v3 certificate, no extension appears twice, and every critical
//!   extension is one we process ([`PROCESSED_EXTENSIONS`]); nameConstraints is refused even
//!   when not critical, since we do not apply it;
//! - basicConstraints says cA=TRUE (critical or not), and keyUsage is present with
//!   keyCertSign: a certificate that is not a CA cannot issue;
//! - its key is RSA (2048–8192 bits) or ECDSA P-256/P-384;
//! - an intermediate is not self-issued (a root or a key-rollover certificate: roots are
//!   anchors), is not also an anchor and is not named like one, so a path always has exactly
//!   one issuing CA; at most [`MAX_CAS_PER_NAME`] CA certificates share a name;
//! - anchors are trusted as configured: their self-signature is not checked (as in webpki and
//!   openssl), but everything else listed here applies to them too;
//! - for each intermediate, the anchors that issued it: the anchor's subject is, byte for
//!   byte, the intermediate's issuer, and the anchor's key verifies its signature. The
//!   configuration cannot change during a verifier's life, so these signatures are checked
//!   once here rather than at every login;
//! - each CRL: webpki accepts it, it has a nextUpdate, and at least one configured CA whose
//!   subject is the CRL's issuer, with cRLSign, verifies its signature (those CAs are its
//!   signers).
//!
//! At each verification ([`TrustStore::validate`], after the caller has checked the end
//! entity's own profile and structure with [`inspect`]):
//! 1. the end entity is valid at `at` (notBefore ≤ at ≤ notAfter, RFC 5280);
//! 2. the issuing CA: a configured intermediate whose subject is the end entity's issuer, byte
//!    for byte, and whose key verifies the end entity's signature (the signature algorithm
//!    inside the signed part must equal the outer one). At most
//!    [`MAX_CAS_PER_NAME`] candidates, a bound also enforced on the configuration. An end
//!    entity issued directly by an anchor is refused: HPKI roots (MHLW) issue only CA
//!    certificates, so such a certificate is outside the profile;
//! 3. the issuing CA is valid at `at`, and its extended key usage, if any, allows client
//!    authentication (EKU chaining, as webpki did);
//! 4. an anchor that issued the CA (see above) is valid at `at`, allows client authentication
//!    in the same way, and its pathLenConstraint, if any, allows the one CA below it;
//! 5. revocation: the end entity against its issuing CA's CRLs, and, with
//!    [`RevocationScope::Chain`], the issuing CA against the anchor's (the authority revocation
//!    list). A CRL counts for a certificate when the certificate's issuer is one of the CRL's
//!    signers and the CRL's scope ([`CrlScope`]) includes it. Listed in any such CRL:
//!    [`HpkiError::Revoked`]. Otherwise one of them must be current
//!    (thisUpdate ≤ at < nextUpdate); if none is, [`HpkiError::CrlExpired`] when one has
//!    expired, else [`HpkiError::RevocationUnknown`] (fail closed in both cases).
//!
//! When several paths are possible (two CAs with one name, two anchors for one CA), each is
//! checked in full and the first that passes wins; otherwise the error of the most advanced
//! failed path is reported.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use time::OffsetDateTime;
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::asn1_rs::{Any, BitString, Class, FromDer, Oid, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, KeyUsage, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_ISSUER_DISTRIBUTION_POINT, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Version};

use super::HpkiError;
use super::verify::RevocationScope;

/// How many configured CA certificates may share one subject name. Bounds the signature
/// verifications of one login (the end entity's signature is tried with each candidate).
pub(crate) const MAX_CAS_PER_NAME: usize = 4;

/// The extensions whose meaning the verifier processes, so a certificate may mark them
/// critical: basicConstraints and keyUsage (here), certificatePolicies (the HPKI policy
/// checks of [`super::verify`]), subjectAltName (read for the kanji name), extKeyUsage (here).
/// Any other critical extension makes a certificate unusable (RFC 5280 §4.2).
pub(crate) const PROCESSED_EXTENSIONS: [Oid<'static>; 5] = [
    OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_CERTIFICATE_POLICIES,
    OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_EXTENDED_KEY_USAGE,
];

/// What [`inspect`] read from a certificate, once its structure was found acceptable.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    /// basicConstraints cA (false without the extension).
    pub ca: bool,
    pub path_len: Option<u32>,
    /// `None` without the keyUsage extension.
    pub key_usage: Option<KeyUsage>,
    /// extKeyUsage absent, or listing clientAuth or anyExtendedKeyUsage.
    pub client_auth: bool,
    /// URIs of the CRL distribution points that name a full URI, without cRLIssuer (indirect
    /// CRLs) or reasons (partitioned CRLs), which we do not support; empty without the
    /// extension. Matched against a CRL's issuingDistributionPoint.
    pub crl_uris: Vec<Vec<u8>>,
    pub not_before: i64,
    pub not_after: i64,
}

impl CertFacts {
    fn key_cert_sign(&self) -> bool {
        self.key_usage.is_some_and(|ku| ku.key_cert_sign())
    }

    fn crl_sign(&self) -> bool {
        self.key_usage.is_some_and(|ku| ku.crl_sign())
    }
}

/// Structure checks common to every certificate of a path, and the facts the path checks
/// need. `Malformed`: not a well-formed v3 certificate, a repeated extension, an extension we
/// process that cannot be read. `Unsupported`: a critical extension we do not process, or
/// nameConstraints.
pub(crate) fn inspect(cert: &X509Certificate<'_>) -> Result<CertFacts, HpkiError> {
    inspect_with(cert, &PROCESSED_EXTENSIONS)
}

/// [`inspect`] for a profile that processes the extensions `processed_here` (which must be among
/// [`PROCESSED_EXTENSIONS`]: the others would not be read); any other critical extension is
/// `Unsupported`.
pub(crate) fn inspect_with(
    cert: &X509Certificate<'_>,
    processed_here: &[Oid<'static>],
) -> Result<CertFacts, HpkiError> {
    let malformed = |why: String| HpkiError::Malformed(why);
    if cert.version() != X509Version::V3 {
        return Err(malformed(format!(
            "it is an X.509 version {} certificate; only version 3 is accepted",
            cert.version().0.saturating_add(1)
        )));
    }
    let mut facts = CertFacts {
        ca: false,
        path_len: None,
        key_usage: None,
        client_auth: true,
        crl_uris: Vec::new(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    };
    let exts = cert.extensions();
    for (i, ext) in exts.iter().enumerate() {
        // RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a
        // particular extension". Two could be read differently by different software.
        if exts[..i].iter().any(|e| e.oid == ext.oid) {
            return Err(malformed(format!(
                "the extension {} appears twice",
                ext.oid.to_id_string()
            )));
        }
        let processed = processed_here.contains(&ext.oid);
        if ext.oid == OID_X509_EXT_NAME_CONSTRAINTS {
            // Critical or not: applying a constraint that a CA set is not optional for us.
            return Err(HpkiError::Unsupported(
                "it has a nameConstraints extension, which this verifier does not apply".into(),
            ));
        }
        if ext.critical && !processed {
            return Err(HpkiError::Unsupported(format!(
                "it has a critical extension {} that this verifier does not process",
                ext.oid.to_id_string()
            )));
        }
        let unreadable = || malformed(format!("its extension {} cannot be read", ext.oid));
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                facts.ca = bc.ca;
                facts.path_len = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => facts.key_usage = Some(*ku),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                facts.client_auth = eku.client_auth || eku.any
            }
            ParsedExtension::CRLDistributionPoints(dps) => {
                for dp in dps.iter() {
                    if dp.crl_issuer.is_some() || dp.reasons.is_some() {
                        continue;
                    }
                    if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                        for name in names {
                            if let GeneralName::URI(uri) = name {
                                facts.crl_uris.push(uri.as_bytes().to_vec());
                            }
                        }
                    }
                }
            }
            // The other processed extensions are read by their users, but must be readable.
            ParsedExtension::CertificatePolicies(_)
            | ParsedExtension::SubjectAlternativeName(_) => {}
            // A processed extension that x509-parser could not read (ParseError).
            _ if PROCESSED_EXTENSIONS.contains(&ext.oid) => return Err(unreadable()),
            _ => {}
        }
    }
    Ok(facts)
}

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

/// A configured CA certificate, checked when the verifier was built.
pub(crate) struct Ca {
    pub der: Vec<u8>,
    /// DER of the subject and issuer Names, compared byte for byte.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    /// Raw serial (INTEGER content), as CRLs list it.
    pub serial: Vec<u8>,
    /// The subject as text, for messages.
    pub name: String,
    pub key: PublicKey,
    pub facts: CertFacts,
    pub anchor: bool,
    /// For an intermediate: the anchors (indices into [`TrustStore::cas`]) whose subject is
    /// its issuer and whose key verified its signature.
    pub issued_by: Vec<usize>,
    /// For an intermediate no anchor issued: why, for messages.
    pub unchained: Option<String>,
}

/// The scope of a CRL, from its issuingDistributionPoint (RFC 5280 §5.2.5). webpki has
/// already refused indirect CRLs, reason-partitioned CRLs and attribute-certificate CRLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CrlScope {
    /// No issuingDistributionPoint: every certificate of the issuer.
    All,
    Partial {
        only_user: bool,
        only_ca: bool,
        /// The distribution point's full-name URIs; `None` when it names no distribution point
        /// (the CRL then covers every certificate of the issuer within the flags above, as
        /// RFC 5280 §6.3.3 reads). A name relative to the issuer gives an empty list: we cannot
        /// match it, so the CRL covers nothing.
        uris: Option<Vec<Vec<u8>>>,
    },
}

impl CrlScope {
    /// Does a CRL of this scope cover a certificate (a CA or an end entity, with these CRL
    /// distribution point URIs)? With a named distribution point, one of the certificate's
    /// URIs must be one of the CRL's, byte for byte (as webpki); a certificate without a
    /// distribution point is not covered by a partitioned CRL (webpki took it as covered: we
    /// fail closed instead).
    pub(crate) fn covers(&self, is_ca: bool, cert_uris: &[Vec<u8>]) -> bool {
        match self {
            CrlScope::All => true,
            CrlScope::Partial {
                only_user,
                only_ca,
                uris,
            } => {
                if (*only_user && is_ca) || (*only_ca && !is_ca) {
                    return false;
                }
                match uris {
                    None => true,
                    Some(uris) => cert_uris.iter().any(|u| uris.contains(u)),
                }
            }
        }
    }
}

/// A configured CRL.
pub(crate) struct Crl {
    /// The CAs (indices into [`TrustStore::cas`]) whose key verified it.
    pub signers: Vec<usize>,
    pub this_update: i64,
    pub next_update: i64,
    pub next_update_time: OffsetDateTime,
    pub scope: CrlScope,
    /// webpki's reading, to look serials up.
    pub list: CertRevocationList<'static>,
    /// The issuer as text, for messages.
    pub issuer_name: String,
}

/// The certificate whose revocation status is wanted.
struct Subject<'a> {
    serial: &'a [u8],
    is_ca: bool,
    crl_uris: &'a [Vec<u8>],
}

/// The configured CAs and CRLs, checked, with the chain edges worked out.
pub(crate) struct TrustStore {
    pub cas: Vec<Ca>,
    pub crls: Vec<Crl>,
    pub revocation: RevocationScope,
}

/// A CA certificate from the configuration, parsed and checked as a CA.
fn load_ca(der: Vec<u8>, anchor: bool, what: &str) -> Result<Ca, HpkiError> {
    let cfg = |why: String| HpkiError::Config(format!("{what}: {why}"));
    let (rest, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| cfg(format!("it cannot be read: {e}")))?;
    if !rest.is_empty() {
        return Err(cfg("trailing data after the certificate".into()));
    }
    let name = cert.subject().to_string();
    let cfg = |why: String| HpkiError::Config(format!("{what} (\"{name}\"): {why}"));
    let facts = inspect(&cert).map_err(|e| cfg(e.to_string()))?;
    check_may_issue(&facts).map_err(cfg)?;
    let key = PublicKey::from_spki(cert.public_key())
        .map_err(|e| cfg(format!("its key is not supported: {e}")))?;
    let subject = cert.subject().as_raw().to_vec();
    let issuer = cert.issuer().as_raw().to_vec();
    if !anchor && subject == issuer {
        return Err(cfg(
            "it is self-issued (a root or a key-rollover certificate); configure roots as trust anchors"
                .into(),
        ));
    }
    let serial = cert.raw_serial().to_vec();
    drop(cert);
    Ok(Ca {
        der,
        subject,
        issuer,
        serial,
        name,
        key,
        facts,
        anchor,
        issued_by: Vec::new(),
        unchained: None,
    })
}

/// May a certificate with these facts issue certificates? basicConstraints cA=TRUE (critical
/// or not) and keyUsage with keyCertSign (RFC 5280 §4.2.1.3, §4.2.1.9; a CA certificate
/// without keyUsage is refused too: conforming CAs must include it).
pub(crate) fn check_may_issue(facts: &CertFacts) -> Result<(), String> {
    if !facts.ca {
        return Err("it is not a CA certificate (basicConstraints cA is not TRUE)".into());
    }
    if !facts.key_cert_sign() {
        return Err("its key usage does not include keyCertSign".into());
    }
    Ok(())
}

impl TrustStore {
    /// Loads and checks the configuration (see the module documentation). Inputs are DER.
    pub(crate) fn new(
        anchors: Vec<Vec<u8>>,
        intermediates: Vec<Vec<u8>>,
        crls: Vec<Vec<u8>>,
        revocation: RevocationScope,
    ) -> Result<TrustStore, HpkiError> {
        let cfg = HpkiError::Config;
        let mut cas: Vec<Ca> = Vec::new();
        for (i, der) in anchors.into_iter().enumerate() {
            if cas.iter().any(|c| c.der == der) {
                continue;
            }
            cas.push(load_ca(der, true, &format!("trust anchor {}", i + 1))?);
        }
        for (i, der) in intermediates.into_iter().enumerate() {
            let what = format!("intermediate CA {}", i + 1);
            if let Some(c) = cas.iter().find(|c| c.der == der) {
                if c.anchor {
                    return Err(cfg(format!(
                        "{what} (\"{}\") is also a trust anchor",
                        c.name
                    )));
                }
                continue;
            }
            cas.push(load_ca(der, false, &what)?);
        }
        for ca in &cas {
            // An issuing CA named like a root would be a candidate issuer of the root's own
            // certificates (e.g. a cross-certificate of a root), making an end entity signed by
            // a root acceptable: outside the profile.
            if !ca.anchor && cas.iter().any(|c| c.anchor && c.subject == ca.subject) {
                return Err(cfg(format!(
                    "the intermediate CA \"{}\" has the name of a trust anchor",
                    ca.name
                )));
            }
            if cas.iter().filter(|c| c.subject == ca.subject).count() > MAX_CAS_PER_NAME {
                return Err(cfg(format!(
                    "more than {MAX_CAS_PER_NAME} CA certificates are named \"{}\"",
                    ca.name
                )));
            }
        }

        // Chain edges: which anchors issued each intermediate.
        for i in 0..cas.len() {
            if cas[i].anchor {
                continue;
            }
            let (_, cert) = x509_parser::parse_x509_certificate(&cas[i].der)
                .map_err(|e| cfg(format!("{}: {e}", cas[i].name)))?;
            let mut issued_by = Vec::new();
            let mut why = None;
            for (j, root) in cas.iter().enumerate() {
                if !root.anchor || root.subject != cas[i].issuer {
                    continue;
                }
                match root.key.verify_cert(&cert) {
                    Ok(()) => issued_by.push(j),
                    Err(SigError::Invalid) => {
                        why = Some(format!(
                            "its signature does not verify with the key of the root \"{}\"",
                            root.name
                        ));
                    }
                    Err(SigError::Unsupported(m)) => why = Some(m),
                }
            }
            drop(cert);
            if issued_by.is_empty() {
                cas[i].unchained =
                    Some(why.unwrap_or_else(|| {
                        "its issuer is not a configured trust anchor".to_owned()
                    }));
            }
            cas[i].issued_by = issued_by;
        }

        let mut loaded = Vec::new();
        for (i, der) in crls.iter().enumerate() {
            loaded.push(load_crl(der, &cas, &format!("CRL {}", i + 1))?);
        }
        Ok(TrustStore {
            cas,
            crls: loaded,
            revocation,
        })
    }

    /// The path checks of one verification (see the module documentation). `ee` has passed
    /// [`inspect`] (giving `facts`) and the caller's profile checks. Returns the index of the
    /// issuing CA in [`Self::cas`].
    pub(crate) fn validate(
        &self,
        ee: &X509Certificate<'_>,
        facts: &CertFacts,
        at: i64,
    ) -> Result<usize, HpkiError> {
        check_time(facts, at, true)?;
        let issuer = ee.issuer().as_raw();
        let candidates: Vec<usize> = (0..self.cas.len())
            .filter(|&i| !self.cas[i].anchor && self.cas[i].subject == issuer)
            .take(MAX_CAS_PER_NAME)
            .collect();
        if candidates.is_empty() {
            if let Some(root) = self.cas.iter().find(|c| c.anchor && c.subject == issuer) {
                return Err(HpkiError::Untrusted(format!(
                    "it was issued directly by the root CA \"{}\", which in HPKI issues only the certificates of issuing CAs",
                    root.name
                )));
            }
            return Err(HpkiError::Untrusted(format!(
                "its issuer \"{}\" is not a configured HPKI CA",
                // The card's own bytes: escaped (RFC 4514, controls refused) before display.
                super::verify::dn_string(ee.issuer())
                    .unwrap_or_else(|_| "(a name that cannot be shown)".into())
            )));
        }
        let mut signature_error = None;
        let mut path_error = None;
        for i in candidates {
            let ca = &self.cas[i];
            match ca.key.verify_cert(ee) {
                Ok(()) => {}
                Err(e) => {
                    signature_error.get_or_insert(signature_refusal(e));
                    continue;
                }
            }
            match self.path_from(i, ee, facts, at) {
                Ok(()) => return Ok(i),
                Err(e) => {
                    path_error.get_or_insert(e);
                }
            }
        }
        // A path whose signatures verified says more than a signature that did not.
        Err(path_error
            .or(signature_error)
            .unwrap_or_else(|| HpkiError::Untrusted("no path".into())))
    }

    /// The rest of the path once the CA at `ca` verified the end entity's signature.
    fn path_from(
        &self,
        ca_index: usize,
        ee: &X509Certificate<'_>,
        facts: &CertFacts,
        at: i64,
    ) -> Result<(), HpkiError> {
        let ca = &self.cas[ca_index];
        // Checked when loaded; repeated because it is what makes the signature meaningful.
        check_may_issue(&ca.facts).map_err(|why| {
            HpkiError::Untrusted(format!("its issuer \"{}\" may not issue: {why}", ca.name))
        })?;
        check_time(&ca.facts, at, false)?;
        check_eku_chain(ca)?;
        if ca.issued_by.is_empty() {
            return Err(HpkiError::Untrusted(format!(
                "its issuing CA \"{}\" does not chain to a configured root: {}",
                ca.name,
                ca.unchained.as_deref().unwrap_or("no root issued it")
            )));
        }
        let mut first_error = None;
        for &root_index in &ca.issued_by {
            match self.check_root_and_revocation(root_index, ca_index, ee, facts, at) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| HpkiError::Untrusted("no root".into())))
    }

    fn check_root_and_revocation(
        &self,
        root_index: usize,
        ca_index: usize,
        ee: &X509Certificate<'_>,
        facts: &CertFacts,
        at: i64,
    ) -> Result<(), HpkiError> {
        let root = &self.cas[root_index];
        let ca = &self.cas[ca_index];
        check_may_issue(&root.facts).map_err(|why| {
            HpkiError::Untrusted(format!("the root \"{}\" may not issue: {why}", root.name))
        })?;
        check_time(&root.facts, at, false)?;
        check_eku_chain(root)?;
        // RFC 5280 §4.2.1.9: pathLenConstraint is the number of non-self-issued intermediate
        // certificates that may follow; one (the issuing CA) follows the root. Nothing but the
        // end entity follows the issuing CA, so any value of its own is fine.
        if root.facts.path_len.is_some_and(|n| n < 1) {
            return Err(HpkiError::Untrusted(format!(
                "the path length constraint of the root \"{}\" forbids the CA \"{}\" below it",
                root.name, ca.name
            )));
        }
        self.check_revocation(
            &Subject {
                serial: ee.raw_serial(),
                is_ca: false,
                crl_uris: &facts.crl_uris,
            },
            ca_index,
            at,
            "the certificate",
        )?;
        if self.revocation == RevocationScope::Chain {
            self.check_revocation(
                &Subject {
                    serial: &ca.serial,
                    is_ca: true,
                    crl_uris: &ca.facts.crl_uris,
                },
                root_index,
                at,
                &format!("the CA certificate \"{}\"", ca.name),
            )?;
        }
        Ok(())
    }

    fn check_revocation(
        &self,
        subject: &Subject<'_>,
        issuer_index: usize,
        at: i64,
        what: &str,
    ) -> Result<(), HpkiError> {
        let covering: Vec<&Crl> = self
            .crls
            .iter()
            .filter(|c| {
                c.signers.contains(&issuer_index) && c.scope.covers(subject.is_ca, subject.crl_uris)
            })
            .collect();
        if covering.is_empty() {
            return Err(HpkiError::RevocationUnknown(format!(
                "no loaded CRL of \"{}\" covers {what}",
                self.cas[issuer_index].name
            )));
        }
        // Listed anywhere, even in a CRL that is no longer (or not yet) current: refused.
        for crl in &covering {
            match crl.list.find_serial(subject.serial) {
                Ok(None) => {}
                Ok(Some(_)) => return Err(HpkiError::Revoked),
                Err(e) => {
                    return Err(HpkiError::RevocationUnknown(format!(
                        "the CRL of \"{}\" cannot be read ({e:?})",
                        crl.issuer_name
                    )));
                }
            }
        }
        if covering
            .iter()
            .any(|c| c.this_update <= at && at < c.next_update)
        {
            return Ok(());
        }
        if let Some(expired) = covering
            .iter()
            .filter(|c| c.next_update <= at)
            .max_by_key(|c| c.next_update)
        {
            return Err(HpkiError::CrlExpired {
                next_update: expired.next_update_time,
            });
        }
        Err(HpkiError::RevocationUnknown(format!(
            "the CRL of \"{}\" that covers {what} is dated after the time of verification; check the gateway's clock",
            self.cas[issuer_index].name
        )))
    }
}

fn signature_refusal(e: SigError) -> HpkiError {
    HpkiError::Untrusted(match e {
        SigError::Invalid => {
            "a signature in the chain does not verify: the certificate was altered, or forged"
                .into()
        }
        SigError::Unsupported(m) => format!("its signature cannot be checked: {m}"),
    })
}

/// RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both inclusive.
fn check_time(facts: &CertFacts, at: i64, end_entity: bool) -> Result<(), HpkiError> {
    let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if at < facts.not_before {
        return Err(HpkiError::NotYetValid {
            not_before: t(facts.not_before),
        });
    }
    if at > facts.not_after {
        return Err(HpkiError::Expired {
            not_after: t(facts.not_after),
            end_entity,
        });
    }
    Ok(())
}

/// A CA whose extended key usage excludes client authentication cannot vouch for a login
/// certificate (EKU chaining, as webpki and most platforms do; anyExtendedKeyUsage allows it).
fn check_eku_chain(ca: &Ca) -> Result<(), HpkiError> {
    if ca.facts.client_auth {
        Ok(())
    } else {
        Err(HpkiError::WrongKeyUsage(format!(
            "the extended key usage of the CA \"{}\" does not include client authentication",
            ca.name
        )))
    }
}

fn load_crl(der: &[u8], cas: &[Ca], what: &str) -> Result<Crl, HpkiError> {
    let cfg = |why: String| HpkiError::Config(format!("{what}: {why}"));
    let (rest, parsed) =
        x509_parser::parse_x509_crl(der).map_err(|e| cfg(format!("it is damaged: {e}")))?;
    if !rest.is_empty() {
        return Err(cfg("trailing data after the CRL".into()));
    }
    let issuer_name = parsed.issuer().to_string();
    let cfg = |why: String| HpkiError::Config(format!("{what} (issuer \"{issuer_name}\"): {why}"));
    let next_update = parsed
        .next_update()
        .ok_or_else(|| cfg("it has no next-update time".into()))?;
    // webpki's profile checks (version 2, no delta CRL, supported issuingDistributionPoint, no
    // unknown critical extension in the CRL or its entries), and its serial lookup.
    let list = OwnedCertRevocationList::from_der(der)
        .map_err(|e| cfg(format!("it cannot be used: {e:?}")))?;

    let issuer = parsed.issuer().as_raw();
    let mut signers = Vec::new();
    let mut why = "no configured CA has its issuer's name".to_owned();
    for (i, ca) in cas.iter().enumerate() {
        if ca.subject != issuer {
            continue;
        }
        match ca.key.verify_crl(&parsed) {
            Ok(()) if ca.facts.crl_sign() => signers.push(i),
            Ok(()) => why = format!("its issuer \"{}\" lacks the cRLSign key usage", ca.name),
            Err(_) => why = "its signature does not verify with any configured CA's key".into(),
        }
    }
    if signers.is_empty() {
        return Err(cfg(format!("it is not signed by any configured CA: {why}")));
    }

    let mut scope = CrlScope::All;
    for ext in parsed.extensions() {
        if ext.oid != OID_X509_EXT_ISSUER_DISTRIBUTION_POINT {
            continue;
        }
        let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() else {
            return Err(cfg("its issuing distribution point cannot be read".into()));
        };
        let uris = idp.distribution_point.as_ref().map(|dp| match dp {
            DistributionPointName::FullName(names) => names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.as_bytes().to_vec()),
                    _ => None,
                })
                .collect(),
            DistributionPointName::NameRelativeToCRLIssuer(_) => Vec::new(),
        });
        scope = CrlScope::Partial {
            only_user: idp.only_contains_user_certs,
            only_ca: idp.only_contains_ca_certs,
            uris,
        };
    }
    Ok(Crl {
        signers,
        this_update: parsed.last_update().timestamp(),
        next_update: next_update.timestamp(),
        next_update_time: next_update.to_datetime(),
        scope,
        list: CertRevocationList::from(list),
        issuer_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CertFacts {
        CertFacts {
            ca: true,
            path_len: None,
            key_usage: Some(KeyUsage { flags: 1 << 5 }),
            client_auth: true,
            crl_uris: vec![b"http://x/ca.crl".to_vec()],
            not_before: 100,
            not_after: 200,
        }
    }

    #[test]
    fn only_a_ca_with_key_cert_sign_may_issue() {
        assert!(check_may_issue(&facts()).is_ok());
        let not_ca = CertFacts {
            ca: false,
            ..facts()
        };
        assert!(check_may_issue(&not_ca).unwrap_err().contains("not a CA"));
        for ku in [None, Some(KeyUsage { flags: 1 << 6 })] {
            let f = CertFacts {
                key_usage: ku,
                ..facts()
            };
            assert!(check_may_issue(&f).unwrap_err().contains("keyCertSign"));
        }
    }

    #[test]
    fn validity_is_inclusive() {
        let f = facts();
        assert!(check_time(&f, 100, true).is_ok());
        assert!(check_time(&f, 200, true).is_ok());
        assert!(matches!(
            check_time(&f, 99, true),
            Err(HpkiError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_time(&f, 201, false),
            Err(HpkiError::Expired {
                end_entity: false,
                ..
            })
        ));
    }

    #[test]
    fn crl_scope() {
        let uri = vec![b"http://x/ca.crl".to_vec()];
        assert!(CrlScope::All.covers(false, &[]));
        let users = CrlScope::Partial {
            only_user: true,
            only_ca: false,
            uris: None,
        };
        assert!(users.covers(false, &uri) && !users.covers(true, &uri));
        let cas = CrlScope::Partial {
            only_user: false,
            only_ca: true,
            uris: None,
        };
        assert!(cas.covers(true, &[]) && !cas.covers(false, &[]));
        let named = CrlScope::Partial {
            only_user: false,
            only_ca: false,
            uris: Some(uri.clone()),
        };
        assert!(named.covers(false, &uri));
        assert!(!named.covers(false, &[b"http://x/other.crl".to_vec()]));
        assert!(
            !named.covers(false, &[]),
            "no CDP: not covered by a partition"
        );
        let relative = CrlScope::Partial {
            only_user: false,
            only_ca: false,
            uris: Some(Vec::new()),
        };
        assert!(!relative.covers(false, &uri));
    }

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

    #[test]
    fn processed_extensions_are_the_documented_ones() {
        let dotted: Vec<String> = PROCESSED_EXTENSIONS.iter().map(Oid::to_id_string).collect();
        assert_eq!(
            dotted,
            [
                "2.5.29.19",
                "2.5.29.15",
                "2.5.29.32",
                "2.5.29.17",
                "2.5.29.37"
            ]
        );
    }
}
