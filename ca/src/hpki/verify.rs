//! Verifying an HPKI authentication certificate and the card's login signature.
//!
//! [`HpkiVerifier::verify`] checks, in this order:
//! 1. the certificate parses (x509-parser) and follows the HPKI authentication profile: a
//!    certificate policy under 1.2.392.100495.1.5.1.2 (a signature-application certificate is
//!    refused as such), key usage with digitalSignature;
//! 2. the chain to a configured trust anchor, every certificate's validity at the given time,
//!    and revocation against the configured CRLs, with rustls-webpki: unknown status and
//!    expired CRLs fail closed. HPKI end-entity certificates may carry no extended key usage;
//!    webpki's `KeyUsage::client_auth()` accepts that (RFC 5280: no EKU means no restriction),
//!    and still refuses a certificate whose EKU list omits client authentication (webpki
//!    applies this to the CA certificates of the path too, and does not treat
//!    anyExtendedKeyUsage as a match);
//! 3. the CA that issued the certificate, if it states certificate policies, states an
//!    authentication policy (or anyPolicy);
//! 4. the identity: subject names, the kanji name of the SAN directoryName, the hcRole, each
//!    decoded and checked as untrusted text.
//!
//! A verifier is immutable: when CRLs are refreshed, build a new one and swap it in.

use std::fmt;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::asn1_rs::{Any, Class, Oid, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_PKCS1_RSAENCRYPTION, OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::x509::X509Name;

use super::hcrole::{self, HcRoles, Qualification};
use super::text;
use super::{AUTH_POLICY_ARC, HpkiError, SIGNATURE_POLICY_ARC, oid_string};
use crate::encoding::{pem_or_der, serial_hex_from_raw};

/// Larger certificates are refused unread; an HPKI certificate is about 1.5 KB.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// anyPolicy (2.5.29.32.0).
const ANY_POLICY: &[u64] = &[2, 5, 29, 32, 0];
/// Extensions rustls-webpki understands; others, when critical, make it refuse a certificate.
const WEBPKI_KNOWN_EXTENSIONS: [u64; 6] = [15, 17, 19, 30, 31, 37];

/// Which certificates of a chain must be covered by a CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationScope {
    /// The card's certificate and every intermediate CA (the MHLW authority revocation list
    /// covers the issuing CAs): a CRL from each issuer on the path must be loaded.
    #[default]
    Chain,
    /// Only the card's certificate (the issuing CA's CRL).
    EndEntity,
}

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
    anchors: Vec<TrustAnchor<'static>>,
    anchor_ders: Vec<Vec<u8>>,
    intermediates: Vec<CertificateDer<'static>>,
    /// For each CA certificate (DER): may it issue authentication certificates?
    ca_policy: Vec<(Vec<u8>, Result<(), String>)>,
    crls: Vec<CertRevocationList<'static>>,
    crl_next_updates: Vec<OffsetDateTime>,
    revocation: RevocationScope,
}

impl fmt::Debug for HpkiVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HpkiVerifier")
            .field("anchors", &self.anchors.len())
            .field("intermediates", &self.intermediates.len())
            .field("crls", &self.crls.len())
            .field("revocation", &self.revocation)
            .finish()
    }
}

impl HpkiVerifier {
    /// Builds a verifier. Refuses certificates and CRLs that cannot be read, an intermediate
    /// that is not a CA, and a CRL that no configured CA signed. An expired CRL is accepted
    /// here (it may be replaced soon) and makes verification fail closed.
    pub fn new(config: &HpkiTrustConfig) -> Result<HpkiVerifier, HpkiError> {
        let cfg = HpkiError::Config;
        if config.anchors.is_empty() {
            return Err(cfg("no trust anchor is configured".into()));
        }
        let mut anchors = Vec::new();
        let mut anchor_ders = Vec::new();
        let mut ca_policy = Vec::new();
        for (i, input) in config.anchors.iter().enumerate() {
            let der = pem_or_der(input, &["CERTIFICATE"], "trust anchor")
                .map_err(|e| cfg(format!("trust anchor {}: {e}", i + 1)))?;
            let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| cfg(format!("trust anchor {}: {e:?}", i + 1)))?
                .to_owned();
            let cert = parse_cert(&der).map_err(|e| cfg(format!("trust anchor {}: {e}", i + 1)))?;
            ca_policy.push((der.clone(), issuer_policy(&cert)?));
            drop(cert);
            anchors.push(anchor);
            anchor_ders.push(der);
        }
        let mut intermediates = Vec::new();
        for (i, input) in config.intermediates.iter().enumerate() {
            let what = format!("intermediate CA {}", i + 1);
            let der = pem_or_der(input, &["CERTIFICATE"], "CA certificate")
                .map_err(|e| cfg(format!("{what}: {e}")))?;
            let cert = parse_cert(&der).map_err(|e| cfg(format!("{what}: {e}")))?;
            if !cert.is_ca() {
                return Err(cfg(format!(
                    "{what} ({}) is not a CA certificate",
                    cert.subject()
                )));
            }
            // Fail now, not at every login, if webpki cannot use this certificate.
            EndEntityCert::try_from(&CertificateDer::from(der.as_slice())).map_err(|e| {
                cfg(format!(
                    "{what} ({}) cannot be used by rustls-webpki: {e:?}{}",
                    cert.subject(),
                    critical_extensions_note(&cert)
                ))
            })?;
            ca_policy.push((der.clone(), issuer_policy(&cert)?));
            drop(cert);
            intermediates.push(CertificateDer::from(der));
        }

        let mut crls = Vec::new();
        let mut crl_next_updates = Vec::new();
        for (i, input) in config.crls.iter().enumerate() {
            let what = format!("CRL {}", i + 1);
            let der =
                pem_or_der(input, &["X509 CRL"], "CRL").map_err(|e| cfg(format!("{what}: {e}")))?;
            let (rest, parsed) = x509_parser::parse_x509_crl(&der)
                .map_err(|e| cfg(format!("{what} is damaged: {e}")))?;
            if !rest.is_empty() {
                return Err(cfg(format!("{what}: trailing data after the CRL")));
            }
            let next_update = parsed
                .next_update()
                .ok_or_else(|| cfg(format!("{what} has no next-update time")))?
                .to_datetime();
            let signed_by_ca = anchor_ders
                .iter()
                .map(Vec::as_slice)
                .chain(intermediates.iter().map(|c| c.as_ref()))
                .filter_map(|ca| parse_cert(ca).ok())
                .any(|ca| {
                    ca.subject().as_raw() == parsed.issuer().as_raw()
                        && parsed.verify_signature(ca.public_key()).is_ok()
                });
            if !signed_by_ca {
                return Err(cfg(format!(
                    "{what} (issuer \"{}\") is not signed by any configured CA",
                    parsed.issuer()
                )));
            }
            let crl = BorrowedCertRevocationList::from_der(&der)
                .and_then(|c| c.to_owned())
                .map_err(|e| cfg(format!("{what} cannot be used by rustls-webpki: {e:?}")))?;
            crls.push(CertRevocationList::from(crl));
            crl_next_updates.push(next_update);
        }

        Ok(HpkiVerifier {
            anchors,
            anchor_ders,
            intermediates,
            ca_policy,
            crls,
            crl_next_updates,
            revocation: config.revocation,
        })
    }

    /// When the first loaded CRL expires: refresh CRLs before then, or logins fail closed.
    pub fn earliest_crl_next_update(&self) -> Option<OffsetDateTime> {
        self.crl_next_updates.iter().min().copied()
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
        let ee_not_after = cert.validity().not_after.to_datetime();

        let webpki_err = |e: webpki::Error| map_webpki(e, ee_not_after, &cert);
        let ee_cert_der = CertificateDer::from(ee_der);
        let ee = EndEntityCert::try_from(&ee_cert_der).map_err(webpki_err)?;
        let crls: Vec<&CertRevocationList<'static>> = self.crls.iter().collect();
        let Ok(builder) = RevocationOptionsBuilder::new(&crls) else {
            return Err(HpkiError::RevocationUnknown("no CRL is loaded".into()));
        };
        let revocation = builder
            .with_depth(match self.revocation {
                RevocationScope::Chain => RevocationCheckDepth::Chain,
                RevocationScope::EndEntity => RevocationCheckDepth::EndEntity,
            })
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build();
        let path = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &self.intermediates,
                at,
                KeyUsage::client_auth(),
                Some(revocation),
                None,
            )
            .map_err(webpki_err)?;

        // The CA that issued the certificate: the first intermediate, or the anchor itself.
        let issuer_der: &[u8] = match path.intermediate_certificates().next() {
            Some(ca) => self
                .intermediates
                .iter()
                .map(|c| c.as_ref())
                .find(|c| *c == ca.der().as_ref())
                .unwrap_or_default(),
            None => {
                let anchor = path.anchor();
                self.anchors
                    .iter()
                    .position(|a| {
                        a.subject == anchor.subject
                            && a.subject_public_key_info == anchor.subject_public_key_info
                    })
                    .map(|i| self.anchor_ders[i].as_slice())
                    .unwrap_or_default()
            }
        };
        match self.ca_policy.iter().find(|(der, _)| der == issuer_der) {
            Some((_, Ok(()))) => {}
            Some((_, Err(why))) => return Err(HpkiError::WrongPolicy(why.clone())),
            None => {
                return Err(HpkiError::Untrusted(
                    "its issuing CA could not be identified".into(),
                ));
            }
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

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    Ok(cert)
}

fn arcs(oid: &Oid<'_>) -> Result<Vec<u64>, HpkiError> {
    oid.iter()
        .map(Iterator::collect)
        .ok_or_else(|| HpkiError::Malformed("an object identifier is too large".into()))
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

fn unix_to_datetime(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Names the critical extensions that rustls-webpki does not process, for messages.
fn critical_extensions_note(cert: &X509Certificate<'_>) -> String {
    let unknown: Vec<String> = cert
        .extensions()
        .iter()
        .filter(|e| e.critical)
        .filter_map(|e| {
            let arcs: Vec<u64> = e.oid.iter()?.collect();
            let known = arcs.len() == 4
                && arcs[..3] == [2, 5, 29]
                && WEBPKI_KNOWN_EXTENSIONS.contains(&arcs[3]);
            (!known).then(|| match arcs.as_slice() {
                [2, 5, 29, 32] => "certificatePolicies (2.5.29.32)".to_owned(),
                a => oid_string(a),
            })
        })
        .collect();
    if unknown.is_empty() {
        String::new()
    } else {
        format!(
            " (critical extensions it does not process: {})",
            unknown.join(", ")
        )
    }
}

fn map_webpki(
    e: webpki::Error,
    ee_not_after: OffsetDateTime,
    ee: &X509Certificate<'_>,
) -> HpkiError {
    use webpki::Error as W;
    #[allow(deprecated)]
    match e {
        W::CertExpired { not_after, .. } => {
            let not_after = unix_to_datetime(not_after);
            HpkiError::Expired {
                not_after,
                end_entity: not_after == ee_not_after,
            }
        }
        W::CertNotValidYet { not_before, .. } => HpkiError::NotYetValid {
            not_before: unix_to_datetime(not_before),
        },
        W::CertRevoked => HpkiError::Revoked,
        W::UnknownRevocationStatus => {
            HpkiError::RevocationUnknown("no loaded CRL covers a certificate of the chain".into())
        }
        W::CrlExpired { next_update, .. } => HpkiError::CrlExpired {
            next_update: unix_to_datetime(next_update),
        },
        W::UnknownIssuer => HpkiError::Untrusted("its issuer is not a configured HPKI CA".into()),
        W::InvalidSignatureForPublicKey
        | W::SignatureAlgorithmMismatch
        | W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => HpkiError::Untrusted(
            "a signature in the chain does not verify: the certificate was altered, or forged"
                .into(),
        ),
        W::InvalidCrlSignatureForPublicKey
        | W::IssuerNotCrlSigner
        | W::UnsupportedCrlSignatureAlgorithm
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKey
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            HpkiError::RevocationUnknown(format!("a loaded CRL cannot be used ({e:?})"))
        }
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            HpkiError::WrongKeyUsage(
                "its extended key usage does not include client authentication".into(),
            )
        }
        W::CaUsedAsEndEntity => HpkiError::WrongKeyUsage("it is a CA certificate".into()),
        W::UnsupportedCriticalExtension => {
            let note = critical_extensions_note(ee);
            HpkiError::Unsupported(if note.is_empty() {
                "a CA certificate in its chain has a critical extension that rustls-webpki does not process".into()
            } else {
                format!("rustls-webpki refuses it{note}")
            })
        }
        W::BadDer
        | W::BadDerTime
        | W::TrailingData(_)
        | W::ExtensionValueInvalid
        | W::InvalidSerialNumber
        | W::UnsupportedCertVersion
        | W::InvalidCertValidity => HpkiError::Malformed(format!("{e:?}")),
        other => HpkiError::Untrusted(format!("{other:?}")),
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

fn bad_text(what: &str) -> impl Fn(text::TextError) -> HpkiError + '_ {
    move |e| HpkiError::Malformed(format!("the {what} is refused: {e}"))
}

fn attr_text(value: &Any<'_>, what: &str) -> Result<String, HpkiError> {
    if value.class() != Class::Universal || value.header.is_constructed() {
        return Err(HpkiError::Malformed(format!("the {what} is not a string")));
    }
    text::decode(value.tag().0, value.data).map_err(bad_text(what))
}

/// The one value of an attribute type in a name; a name that repeats it is refused, since it
/// would be ambiguous which one identifies the holder.
fn single_attr(name: &X509Name<'_>, arcs: &[u64], what: &str) -> Result<Option<String>, HpkiError> {
    let mut found = None;
    for atv in name.iter_attributes() {
        if atv
            .attr_type()
            .iter()
            .is_some_and(|it| it.eq(arcs.iter().copied()))
        {
            if found.is_some() {
                return Err(HpkiError::Malformed(format!("the name has two {what}s")));
            }
            found = Some(attr_text(atv.attr_value(), what)?);
        }
    }
    Ok(found)
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

/// A name as text: attributes in certificate order, ", " between RDNs, "+" inside one, short
/// names for the usual types and dotted OIDs otherwise, values escaped as in RFC 4514, and
/// non-string values as '#' and the hex of their DER.
pub(crate) fn dn_string(name: &X509Name<'_>) -> Result<String, HpkiError> {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let arcs = arcs(atv.attr_type())?;
            let label = match arcs.as_slice() {
                [2, 5, 4, 3] => "CN".to_owned(),
                [2, 5, 4, 5] => "serialNumber".to_owned(),
                [2, 5, 4, 6] => "C".to_owned(),
                [2, 5, 4, 7] => "L".to_owned(),
                [2, 5, 4, 8] => "ST".to_owned(),
                [2, 5, 4, 10] => "O".to_owned(),
                [2, 5, 4, 11] => "OU".to_owned(),
                a => oid_string(a),
            };
            out.push_str(&label);
            out.push('=');
            let value = atv.attr_value();
            match attr_text(value, "name attribute") {
                Ok(s) => escape_rfc4514(&s, &mut out),
                Err(_) if value.class() != Class::Universal || value.header.is_constructed() => {
                    let der = value.to_der_vec().map_err(|e| {
                        HpkiError::Malformed(format!("a name attribute cannot be encoded: {e}"))
                    })?;
                    out.push('#');
                    out.push_str(&hex::encode(der));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

fn escape_rfc4514(s: &str, out: &mut String) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_rfc4514(" a,b+c\\ ", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c\\\\\\ ");
        let mut s = String::new();
        escape_rfc4514("#神楽坂　三十四", &mut s);
        assert_eq!(s, "\\#神楽坂　三十四");
        assert!(under(
            &[1, 2, 392, 100_495, 1, 5, 1, 2, 0, 1],
            AUTH_POLICY_ARC
        ));
        assert!(!under(AUTH_POLICY_ARC, AUTH_POLICY_ARC));
        assert!(!under(&[1, 2, 392, 100_495, 1, 5, 1, 20], AUTH_POLICY_ARC));
    }
}
