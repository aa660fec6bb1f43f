//! Verifying an HPKI authentication certificate and the card's login signature.
//!
//! [`HpkiVerifier::verify`] checks, in this order:
//! 1. the certificate parses (x509-parser) and follows the HPKI authentication profile: a
//!    certificate policy under 1.2.392.100495.1.5.1.2 (a signature-application certificate is
//!    refused as such), key usage with digitalSignature. The certificatePolicies extension may
//!    be critical, as on real cards: this is where it is processed;
//! 2. its structure (`inspect::inspect`): version 3, no repeated extension, no critical
//!    extension we do not process, no nameConstraints; it is not a CA; its extended key usage
//!    is absent (HPKI cards carry none: RFC 5280, no EKU means no restriction) or includes
//!    clientAuth or anyExtendedKeyUsage;
//! 3. the path, root → issuing CA → card, and revocation (`path::TrustStore::validate`):
//!    names chained byte for byte, every signature, every certificate's validity at the given
//!    time, CA flags and key usage, path length, CRLs of the issuing CA and (by default) the
//!    root's authority revocation list; unknown status and expired CRLs fail closed. The
//!    checks and their reasons are listed in the documentation of the `path` module;
//! 4. the CA that issued the certificate, if it states certificate policies, states an
//!    authentication policy (or anyPolicy);
//! 5. the identity: subject names, the kanji name of the SAN directoryName, the hcRole, each
//!    decoded and checked as untrusted text.
//!
//! A verifier is immutable: when CRLs are refreshed, build a new one and swap it in.

use std::fmt;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_PKCS1_RSAENCRYPTION, OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_KEY_USAGE,
};

use super::hcrole::{self, HcRoles, Qualification};
use super::inspect;
use super::name::{dn_string, single_attr};
use super::path::TrustStore;
pub use super::revocation::RevocationScope;
use super::{AUTH_POLICY_ARC, HpkiError, SIGNATURE_POLICY_ARC, arcs, oid_string};
use crate::encoding::{pem_or_der, serial_hex_from_raw};

/// Larger certificates are refused unread; an HPKI certificate is about 1.5 KB.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// anyPolicy (2.5.29.32.0).
const ANY_POLICY: &[u64] = &[2, 5, 29, 32, 0];

/// Where the verifier's trust comes from. Every item is PEM or DER.
#[derive(Clone, Default)]
pub struct HpkiTrustConfig {
    /// Root certificates (e.g. MHLW HPKI Root CA V2).
    pub anchors: Vec<Vec<u8>>,
    /// Issuing CA certificates (e.g. the MEDIS or JMA authentication CAs).
    pub intermediates: Vec<Vec<u8>>,
    /// CRLs of the issuing CAs, and the authority revocation list of the root.
    pub crls: Vec<Vec<u8>>,
    pub revocation: RevocationScope,
}

impl fmt::Debug for HpkiTrustConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HpkiTrustConfig")
            .field("anchors", &self.anchors.len())
            .field("intermediates", &self.intermediates.len())
            .field("crls", &self.crls.len())
            .field("revocation", &self.revocation)
            .finish()
    }
}

/// A certificate's issuer and serial number: the stable key to map a card to an account (a
/// renewed card has a new serial, and is mapped again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerSerial {
    /// The issuer's name, RFC 4514 escaping, attributes in certificate order
    /// ("C=JP, O=MEDIS, OU=MEDIS HPKI CA, CN=…").
    pub issuer: String,
    /// The issuer's name as DER, for an exact comparison.
    pub issuer_der: Vec<u8>,
    /// Lowercase hex, without DER's leading 00 (the crate's one spelling of serials).
    pub serial_hex: String,
}

impl fmt::Display for IssuerSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serial {} from {}", self.serial_hex, self.issuer)
    }
}

/// Who the card's certificate names, once verified. Every text field was decoded from the
/// certificate and checked (no control or invisible formatting characters, at most 128
/// characters), but is still the CA's text, not ours: escape it for its destination (HTML,
/// HTTP headers need ASCII, e.g. percent-encoding for the kanji name).
#[derive(Clone, PartialEq, Eq)]
pub struct HpkiIdentity {
    /// Romanised name (subject CN), e.g. "Sanjushi Kagurazaka".
    pub common_name: String,
    /// Facility (subject O).
    pub organization: Option<String>,
    /// Subject serialNumber: the HPKI holder id.
    pub holder_id: Option<String>,
    /// Subject C ("JP").
    pub country: Option<String>,
    /// Name in kanji (CN of the SAN directoryName), e.g. "神楽坂　三十四".
    pub kanji_name: Option<String>,
    /// Facility in kanji (O of the SAN directoryName).
    pub kanji_organization: Option<String>,
    /// hcRole; `None`: the card carries no role (non-licensed staff).
    pub roles: Option<HcRoles>,
    /// The authentication policy found (dotted).
    pub policy: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    issuer_serial: IssuerSerial,
    public_key: Vec<u8>,
}

impl fmt::Debug for HpkiIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HpkiIdentity")
            .field("common_name", &self.common_name)
            .field("organization", &self.organization)
            .field("holder_id", &self.holder_id)
            .field("kanji_name", &self.kanji_name)
            .field("qualifications", &self.qualifications())
            .field("issuer_serial", &self.issuer_serial)
            .finish_non_exhaustive()
    }
}

impl HpkiIdentity {
    /// Issuer name and serial number, to map the card to an account.
    pub fn issuer_serial(&self) -> &IssuerSerial {
        &self.issuer_serial
    }

    /// Every qualification named by the hcRole, in certificate order; empty when none.
    pub fn qualifications(&self) -> Vec<Qualification> {
        self.roles
            .as_ref()
            .map(HcRoles::qualifications)
            .unwrap_or_default()
    }

    /// The first qualification, if any.
    pub fn qualification(&self) -> Option<Qualification> {
        self.qualifications().into_iter().next()
    }

    pub fn is_medical_doctor(&self) -> bool {
        self.qualifications()
            .iter()
            .any(Qualification::is_medical_doctor)
    }

    /// Checks an RSASSA-PKCS1-v1_5 / SHA-256 signature over `message` (the login challenge)
    /// with this certificate's key.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), HpkiError> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(message, signature)
            .map_err(|_| HpkiError::BadSignature)
    }
}

/// Checks HPKI authentication certificates against configured anchors, CAs and CRLs.
pub struct HpkiVerifier {
    store: TrustStore,
    /// For each CA of `store.cas` (same index): may it issue authentication certificates?
    ca_policy: Vec<Result<(), String>>,
}

impl fmt::Debug for HpkiVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let anchors = self.store.cas.iter().filter(|c| c.anchor).count();
        f.debug_struct("HpkiVerifier")
            .field("anchors", &anchors)
            .field("intermediates", &(self.store.cas.len() - anchors))
            .field("crls", &self.store.crls.len())
            .field("revocation", &self.store.revocation)
            .finish()
    }
}

impl HpkiVerifier {
    /// Builds a verifier. Refuses certificates and CRLs that cannot be read, a CA certificate
    /// that may not issue (not a CA, no keyCertSign), has a critical extension we do not
    /// process or a key we cannot use, a self-issued intermediate, and a CRL that no configured
    /// CA signed. An expired CRL is accepted here (it may be replaced soon) and makes
    /// verification fail closed.
    pub fn new(config: &HpkiTrustConfig) -> Result<HpkiVerifier, HpkiError> {
        let cfg = HpkiError::Config;
        if config.anchors.is_empty() {
            return Err(cfg("no trust anchor is configured".into()));
        }
        let read = |inputs: &[Vec<u8>], labels: &[&str], kind: &str, what: &str| {
            inputs
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    pem_or_der(input, labels, kind)
                        .map_err(|e| cfg(format!("{what} {}: {e}", i + 1)))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let anchors = read(
            &config.anchors,
            &["CERTIFICATE"],
            "trust anchor",
            "trust anchor",
        )?;
        let intermediates = read(
            &config.intermediates,
            &["CERTIFICATE"],
            "CA certificate",
            "intermediate CA",
        )?;
        let crls = read(&config.crls, &["X509 CRL"], "CRL", "CRL")?;
        let store = TrustStore::new(anchors, intermediates, crls, config.revocation)?;
        let mut ca_policy = Vec::with_capacity(store.cas.len());
        for ca in &store.cas {
            let cert = parse_cert(&ca.der).map_err(|e| cfg(format!("{}: {e}", ca.name)))?;
            ca_policy.push(issuer_policy(&cert)?);
        }
        Ok(HpkiVerifier { store, ca_policy })
    }

    /// When the first loaded CRL expires: refresh CRLs before then, or logins fail closed.
    pub fn earliest_crl_next_update(&self) -> Option<OffsetDateTime> {
        self.store.crls.iter().map(|c| c.next_update_time).min()
    }

    /// Verifies a card's authentication certificate (DER) at time `at`.
    pub fn verify(&self, ee_der: &[u8], at: UnixTime) -> Result<HpkiIdentity, HpkiError> {
        if ee_der.len() > MAX_CERT_BYTES {
            return Err(HpkiError::Malformed(format!(
                "it is {} bytes long, more than any HPKI certificate",
                ee_der.len()
            )));
        }
        let cert = parse_cert(ee_der).map_err(HpkiError::Malformed)?;
        let policy = check_profile(&cert)?;
        let facts = inspect::inspect(&cert)?;
        if facts.ca {
            return Err(HpkiError::WrongKeyUsage("it is a CA certificate".into()));
        }
        if !facts.client_auth {
            return Err(HpkiError::WrongKeyUsage(
                "its extended key usage does not include client authentication".into(),
            ));
        }
        let at = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
        let issuer = self.store.validate(&cert, &facts, at)?;
        if let Err(why) = &self.ca_policy[issuer] {
            return Err(HpkiError::WrongPolicy(why.clone()));
        }

        identity(&cert, policy)
    }

    /// [`verify`](Self::verify) at the current time.
    pub fn verify_now(&self, ee_der: &[u8]) -> Result<HpkiIdentity, HpkiError> {
        self.verify(ee_der, UnixTime::now())
    }

    /// A whole card login: the certificate verifies at `at`, and `signature` is its key's
    /// RSASSA-PKCS1-v1_5 / SHA-256 signature over `challenge`.
    pub fn verify_login(
        &self,
        ee_der: &[u8],
        challenge: &[u8],
        signature: &[u8],
        at: UnixTime,
    ) -> Result<HpkiIdentity, HpkiError> {
        let identity = self.verify(ee_der, at)?;
        identity.verify_signature(challenge, signature)?;
        Ok(identity)
    }

    /// Checks an RSASSA-PKCS1-v1_5 / SHA-256 signature over `message` with the key of the
    /// certificate `ee_der`. Says nothing about the certificate itself: use
    /// [`verify_login`](Self::verify_login), or [`verify`](Self::verify) first.
    pub fn verify_signature(
        ee_der: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), HpkiError> {
        if ee_der.len() > MAX_CERT_BYTES {
            return Err(HpkiError::Malformed("the certificate is too large".into()));
        }
        let cert = parse_cert(ee_der).map_err(HpkiError::Malformed)?;
        let key = rsa_public_key(&cert)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
            .verify(message, signature)
            .map_err(|_| HpkiError::BadSignature)
    }
}

/// Steps 1, 2 and 5 of [`HpkiVerifier::verify`] without the path: the fuzz targets' way to
/// the identity reader with certificates whose signatures their mutations broke. It trusts
/// nothing, so it exists only with the `fuzzing` feature, which no build of the gateway
/// enables.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn read_unverified(ee_der: &[u8]) -> Result<HpkiIdentity, HpkiError> {
    if ee_der.len() > MAX_CERT_BYTES {
        return Err(HpkiError::Malformed("the certificate is too large".into()));
    }
    let cert = parse_cert(ee_der).map_err(HpkiError::Malformed)?;
    let policy = check_profile(&cert)?;
    inspect::inspect(&cert)?;
    identity(&cert, policy)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    Ok(cert)
}

fn under(arcs: &[u64], arc: &[u64]) -> bool {
    arcs.len() > arc.len() && arcs.starts_with(arc)
}

/// Policies of a certificate as arcs; `None` without the extension.
fn policies(cert: &X509Certificate<'_>) -> Result<Option<Vec<Vec<u64>>>, HpkiError> {
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_CERTIFICATE_POLICIES)
        .map_err(|e| HpkiError::Malformed(format!("certificate policies: {e}")))?;
    let Some(ext) = ext else {
        return Ok(None);
    };
    let ParsedExtension::CertificatePolicies(list) = ext.parsed_extension() else {
        return Err(HpkiError::Malformed(
            "its certificate policies cannot be read".into(),
        ));
    };
    list.iter()
        .map(|p| arcs(&p.policy_id))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn dotted_list(list: &[Vec<u64>]) -> String {
    list.iter()
        .map(|a| oid_string(a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HPKI authentication profile of the card's certificate. Returns the policy found.
fn check_profile(cert: &X509Certificate<'_>) -> Result<String, HpkiError> {
    let list = policies(cert)?
        .ok_or_else(|| HpkiError::WrongPolicy("it has no certificate policies extension".into()))?;
    let auth: Vec<&Vec<u64>> = list.iter().filter(|p| under(p, AUTH_POLICY_ARC)).collect();
    let signature = list.iter().any(|p| under(p, SIGNATURE_POLICY_ARC));
    match (auth.first(), signature) {
        (None, true) => return Err(HpkiError::SignatureCertificate),
        (None, false) => {
            return Err(HpkiError::WrongPolicy(format!(
                "its policies ({}) are not under the HPKI authentication arc {}",
                dotted_list(&list),
                oid_string(AUTH_POLICY_ARC)
            )));
        }
        (Some(_), true) => {
            return Err(HpkiError::WrongPolicy(
                "it claims both authentication and signature policies".into(),
            ));
        }
        (Some(_), false) => {}
    }

    let ku = cert
        .get_extension_unique(&OID_X509_EXT_KEY_USAGE)
        .map_err(|e| HpkiError::Malformed(format!("key usage: {e}")))?
        .ok_or_else(|| HpkiError::WrongKeyUsage("it has no key usage extension".into()))?;
    let ParsedExtension::KeyUsage(ku) = ku.parsed_extension() else {
        return Err(HpkiError::Malformed("its key usage cannot be read".into()));
    };
    if !ku.digital_signature() {
        return Err(HpkiError::WrongKeyUsage(if ku.non_repudiation() {
            "its key usage is nonRepudiation only, as on a signature certificate".into()
        } else {
            format!("its key usage ({ku}) lacks digitalSignature")
        }));
    }
    Ok(oid_string(auth[0]))
}

/// May this CA issue authentication certificates? Yes if it states no policies, or states an
/// authentication policy or anyPolicy.
fn issuer_policy(ca: &X509Certificate<'_>) -> Result<Result<(), String>, HpkiError> {
    let Some(list) =
        policies(ca).map_err(|e| HpkiError::Config(format!("{}: {e}", ca.subject())))?
    else {
        return Ok(Ok(()));
    };
    if list
        .iter()
        .any(|p| under(p, AUTH_POLICY_ARC) || p.as_slice() == ANY_POLICY)
    {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "it was issued by \"{}\", a CA whose policies ({}) are not for authentication",
            ca.subject(),
            dotted_list(&list)
        )))
    }
}

fn rsa_public_key<'a>(cert: &'a X509Certificate<'_>) -> Result<&'a [u8], HpkiError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(HpkiError::Unsupported(
            "the certificate's key is not an RSA key, as HPKI cards use".into(),
        ));
    }
    Ok(spki.subject_public_key.as_ref())
}

const CN: &[u64] = &[2, 5, 4, 3];
const SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
const C: &[u64] = &[2, 5, 4, 6];
const O: &[u64] = &[2, 5, 4, 10];

fn identity(cert: &X509Certificate<'_>, policy: String) -> Result<HpkiIdentity, HpkiError> {
    let subject = cert.subject();
    let common_name = single_attr(subject, CN, "subject common name")?
        .ok_or_else(|| HpkiError::Malformed("the subject has no common name".into()))?;
    let organization = single_attr(subject, O, "subject organisation")?;
    let holder_id = single_attr(subject, SERIAL_NUMBER, "subject serial number")?;
    let country = single_attr(subject, C, "subject country")?;

    let mut kanji_name = None;
    let mut kanji_organization = None;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| HpkiError::Malformed(format!("subject alternative name: {e}")))?;
    if let Some(dir) = san.and_then(|san| {
        san.value.general_names.iter().find_map(|g| match g {
            GeneralName::DirectoryName(n) => Some(n),
            _ => None,
        })
    }) {
        kanji_name = single_attr(dir, CN, "kanji name")?;
        kanji_organization = single_attr(dir, O, "kanji organisation")?;
    }

    let roles = hcrole::hcrole_from_parsed(cert)
        .map_err(|e| HpkiError::Malformed(format!("hcRole: {e}")))?;
    let issuer_serial = IssuerSerial {
        issuer: dn_string(cert.issuer())?,
        issuer_der: cert.issuer().as_raw().to_vec(),
        serial_hex: serial_hex_from_raw(cert.raw_serial()),
    };
    Ok(HpkiIdentity {
        common_name,
        organization,
        holder_id,
        country,
        kanji_name,
        kanji_organization,
        roles,
        policy,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        issuer_serial,
        public_key: rsa_public_key(cert)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_arcs() {
        assert!(under(
            &[1, 2, 392, 100_495, 1, 5, 1, 2, 0, 1],
            AUTH_POLICY_ARC
        ));
        assert!(!under(AUTH_POLICY_ARC, AUTH_POLICY_ARC));
        assert!(!under(&[1, 2, 392, 100_495, 1, 5, 1, 20], AUTH_POLICY_ARC));
    }
}
