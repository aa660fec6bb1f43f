//! Revocation: which certificates of a chain must be covered by a CRL ([`RevocationScope`]),
//! the configured CRLs ([`load_crl`]) and the revocation check of one certificate
//! ([`check_revocation`]). The rules are listed in the documentation of `super::path`.

use time::OffsetDateTime;
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_X509_EXT_ISSUER_DISTRIBUTION_POINT;

use super::HpkiError;
use super::issuers::Ca;

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
    /// The CAs (indices into `TrustStore::cas`) whose key verified it.
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
pub(crate) struct Subject<'a> {
    pub serial: &'a [u8],
    pub is_ca: bool,
    pub crl_uris: &'a [Vec<u8>],
}

/// The revocation status of `subject`, a certificate issued by `cas[issuer_index]`, at `at`;
/// `what` names it in messages (see the module documentation of `super::path`, check 5).
pub(crate) fn check_revocation(
    crls: &[Crl],
    cas: &[Ca],
    subject: &Subject<'_>,
    issuer_index: usize,
    at: i64,
    what: &str,
) -> Result<(), HpkiError> {
    let covering: Vec<&Crl> = crls
        .iter()
        .filter(|c| {
            c.signers.contains(&issuer_index) && c.scope.covers(subject.is_ca, subject.crl_uris)
        })
        .collect();
    if covering.is_empty() {
        return Err(HpkiError::RevocationUnknown(format!(
            "no loaded CRL of \"{}\" covers {what}",
            cas[issuer_index].name
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
        cas[issuer_index].name
    )))
}

pub(crate) fn load_crl(der: &[u8], cas: &[Ca], what: &str) -> Result<Crl, HpkiError> {
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
}
