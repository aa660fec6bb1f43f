//! What the test CA issues: end-entity and CA certificate specifications, and the validity
//! periods of real HPKI certificates (which start and end at midnight Japan time).

use rcgen::{CustomExtension, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::authority::now_seconds;

const JST: Duration = Duration::hours(9);
const DAY: Duration = Duration::days(1);
/// Five years and a day, ending one second before midnight Japan time, as real cards.
pub(super) const EE_LIFETIME: Duration = Duration::days(1827);

/// Which application of the card a certificate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EeKind {
    /// Authentication application: authentication CA, policy
    /// [`AUTH_EE_POLICY_GUESS`](crate::hpki::AUTH_EE_POLICY_GUESS), key usage digitalSignature.
    Authentication,
    /// Signature application: signature CA, policy
    /// [`SIGNATURE_EE_POLICY`](crate::hpki::SIGNATURE_EE_POLICY), key usage nonRepudiation.
    Signature,
}

/// An end-entity certificate to issue.
#[derive(Debug, Clone)]
pub struct EeSpec {
    pub kind: EeKind,
    pub common_name: String,
    pub organization: String,
    pub holder_id: String,
    pub kanji_name: String,
    pub kanji_organization: String,
    /// hcRole free texts; empty: no SubjectDirectoryAttributes extension.
    pub roles: Vec<String>,
    /// Replaces the SubjectDirectoryAttributes value built from `roles` (for tests of hostile
    /// content signed by a trusted CA).
    pub raw_sda: Option<Vec<u8>>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Mark certificatePolicies critical, as real HPKI certificates do.
    pub critical_policies: bool,
    /// Replaces the policy of `kind` (for tests of wrong policies).
    pub policy: Option<Vec<u64>>,
    /// Replaces the key usage of `kind`.
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    /// Extended key usages; HPKI cards have none.
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Added as given, after the others (for tests of unusual extensions).
    pub extra_extensions: Vec<RawExtension>,
}

/// An extension given as its DER value, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExtension {
    pub oid: Vec<u64>,
    pub critical: bool,
    /// The DER inside the extension's OCTET STRING.
    pub value: Vec<u8>,
}

impl RawExtension {
    pub(super) fn to_rcgen(&self) -> CustomExtension {
        let mut ext = CustomExtension::from_oid_content(&self.oid, self.value.clone());
        ext.set_criticality(self.critical);
        ext
    }
}

/// A CA certificate to issue, for tests (CAs that must not be trusted, other hierarchies).
#[derive(Debug, Clone)]
pub struct CaSpec {
    /// Subject CN; the rest of the subject is that of the test CA's issuing CAs
    /// (`C=JP, O=SEKISHO TEST, OU=SEKISHO TEST HPKI CA`), so the common name of an existing
    /// CA gives the same subject, DER for DER.
    pub common_name: String,
    /// certificatePolicies; `None`: no such extension.
    pub policy: Option<Vec<u64>>,
    pub critical_policies: bool,
    /// basicConstraints cA; `false` writes cA=FALSE.
    pub is_ca: bool,
    /// pathLenConstraint (when `is_ca`).
    pub path_len: Option<u8>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extra_extensions: Vec<RawExtension>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CaSpec {
    /// An issuing CA like the test CA's: CA with pathLen 0, keyCertSign and cRLSign, the given
    /// policy (non-critical), valid from six years ago for fifteen years.
    pub fn issuing(common_name: &str, policy: &[u64]) -> CaSpec {
        let not_before = jst_midnight(now_seconds() - Duration::days(2191));
        CaSpec {
            common_name: common_name.into(),
            policy: Some(policy.to_vec()),
            critical_policies: false,
            is_ca: true,
            path_len: Some(0),
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            extra_extensions: Vec::new(),
            not_before,
            not_after: not_before + Duration::days(5479) - Duration::seconds(1),
        }
    }
}

impl EeSpec {
    /// An authentication certificate valid for five years from today (midnight Japan time).
    pub fn authentication(
        common_name: &str,
        kanji_name: &str,
        holder_id: &str,
        roles: &[&str],
    ) -> EeSpec {
        let not_before = jst_midnight(now_seconds());
        EeSpec {
            kind: EeKind::Authentication,
            common_name: common_name.into(),
            organization: "SEKISHO TEST HOSPITAL".into(),
            holder_id: holder_id.into(),
            kanji_name: kanji_name.into(),
            kanji_organization: "関所テスト病院".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            raw_sda: None,
            not_before,
            not_after: not_before + EE_LIFETIME - Duration::seconds(1),
            critical_policies: false,
            policy: None,
            key_usages: None,
            extended_key_usages: Vec::new(),
            extra_extensions: Vec::new(),
        }
    }
}

/// The last midnight in Japan (UTC+9) at or before `t`, as UTC: real HPKI validity periods
/// start at 15:00:00Z.
pub(super) fn jst_midnight(t: OffsetDateTime) -> OffsetDateTime {
    let local = t + JST;
    let secs = local.unix_timestamp();
    let day = DAY.whole_seconds();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(day)).expect("in range") - JST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jst_midnight_is_1500_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(); // 2023-11-14 22:13Z
        let m = jst_midnight(t);
        assert_eq!((m.hour(), m.minute(), m.second()), (15, 0, 0));
        assert!(m <= t && t - m < DAY);
        assert_eq!(jst_midnight(m), m);
    }
}
