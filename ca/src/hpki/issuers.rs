//! The configured CA certificates of the HPKI trust store (trust anchors and issuing CAs),
//! checked once when the verifier is built, with the chain edges between them. The checks are
//! listed in the documentation of `super::path`.

use super::HpkiError;
use super::inspect::{CertFacts, check_may_issue, inspect};
use super::signature::{PublicKey, SigError};

/// How many configured CA certificates may share one subject name. Bounds the signature
/// verifications of one login (the end entity's signature is tried with each candidate).
pub(crate) const MAX_CAS_PER_NAME: usize = 4;

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
    /// For an intermediate: the anchors (indices into `TrustStore::cas`) whose subject is
    /// its issuer and whose key verified its signature.
    pub issued_by: Vec<usize>,
    /// For an intermediate no anchor issued: why, for messages.
    pub unchained: Option<String>,
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

/// The configured CA certificates, each checked as a CA ([`load_ca`]), duplicates dropped,
/// names checked, and the chain edges worked out: which anchors issued each intermediate.
/// Inputs are DER.
pub(crate) fn load_cas(
    anchors: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
) -> Result<Vec<Ca>, HpkiError> {
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
            cas[i].unchained = Some(
                why.unwrap_or_else(|| "its issuer is not a configured trust anchor".to_owned()),
            );
        }
        cas[i].issued_by = issued_by;
    }
    Ok(cas)
}
