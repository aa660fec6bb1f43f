//! Path validation for the fixed HPKI profile: trust anchor (root) → issuing CA → end entity.
//!
//! # Why our own validator
//!
//! Real HPKI certificates mark certificatePolicies (2.5.29.32) **critical**. rustls-webpki does
//! not process policies, so it refuses every such certificate (`UnsupportedCriticalExtension`;
//! upstream declined to change this: rustls/webpki#30, #211, #232), and a certificate's
//! extensions cannot be altered without breaking its signature. The HPKI path is short and
//! fixed, so this module validates it itself, with aws-lc-rs for the signatures
//! ([`super::signature`]) and x509-parser for the certificates ([`super::inspect`]), doing
//! what webpki did for us and processing the policy extension in [`super::verify`].
//! rustls-webpki is still used to parse CRLs ([`super::revocation`]), whose profile it
//! handles fully (v2 only, no delta CRLs, no indirect or reason-partitioned CRLs, no unknown
//! critical CRL or entry extension), and to look serials up in them.
//!
//! # The checks
//!
//! Once, when the verifier is built ([`TrustStore::new`]; refusals are
//! [`HpkiError::Config`]), for every configured CA certificate (anchors and intermediates):
//! - it is a well-formed X.509 v3 certificate, no extension appears twice, and every critical
//!   extension is one we process
//!   ([`PROCESSED_EXTENSIONS`](super::inspect::PROCESSED_EXTENSIONS)); nameConstraints is
//!   refused even when not critical, since we do not apply it;
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
//! entity's own profile and structure with [`inspect`](super::inspect::inspect)):
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
//!    signers and the CRL's scope ([`CrlScope`](super::revocation::CrlScope)) includes it.
//!    Listed in any such CRL: [`HpkiError::Revoked`]. Otherwise one of them must be current
//!    (thisUpdate ≤ at < nextUpdate); if none is, [`HpkiError::CrlExpired`] when one has
//!    expired, else [`HpkiError::RevocationUnknown`] (fail closed in both cases).
//!
//! When several paths are possible (two CAs with one name, two anchors for one CA), each is
//! checked in full and the first that passes wins; otherwise the error of the most advanced
//! failed path is reported.

use x509_parser::certificate::X509Certificate;

use super::HpkiError;
use super::inspect::{CertFacts, check_may_issue, check_time};
use super::issuers::{Ca, MAX_CAS_PER_NAME, load_cas};
use super::name::dn_string;
use super::revocation::{Crl, RevocationScope, Subject, check_revocation, load_crl};
use super::signature::SigError;

/// The configured CAs and CRLs, checked, with the chain edges worked out.
pub(crate) struct TrustStore {
    pub cas: Vec<Ca>,
    pub crls: Vec<Crl>,
    pub revocation: RevocationScope,
}

impl TrustStore {
    /// Loads and checks the configuration (see the module documentation). Inputs are DER.
    pub(crate) fn new(
        anchors: Vec<Vec<u8>>,
        intermediates: Vec<Vec<u8>>,
        crls: Vec<Vec<u8>>,
        revocation: RevocationScope,
    ) -> Result<TrustStore, HpkiError> {
        let cas = load_cas(anchors, intermediates)?;
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
    /// [`inspect`](super::inspect::inspect) (giving `facts`) and the caller's profile checks.
    /// Returns the index of the issuing CA in [`Self::cas`].
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
                dn_string(ee.issuer()).unwrap_or_else(|_| "(a name that cannot be shown)".into())
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
        check_revocation(
            &self.crls,
            &self.cas,
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
            check_revocation(
                &self.crls,
                &self.cas,
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
