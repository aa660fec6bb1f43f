//! One certificate on its own, before any path is built: its structure and extensions
//! ([`inspect`]), whether it may issue certificates ([`check_may_issue`]) and its validity
//! period ([`check_time`]). Used for the HPKI path (`super::path`) and for patient cards.

use time::OffsetDateTime;
use x509_parser::asn1_rs::Oid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, KeyUsage, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_CERTIFICATE_POLICIES,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::x509::X509Version;

use super::HpkiError;

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
    pub(crate) fn key_cert_sign(&self) -> bool {
        self.key_usage.is_some_and(|ku| ku.key_cert_sign())
    }

    pub(crate) fn crl_sign(&self) -> bool {
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

/// RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both inclusive.
pub(crate) fn check_time(facts: &CertFacts, at: i64, end_entity: bool) -> Result<(), HpkiError> {
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
