//! A test "HPKI" CA with the real profile, for tests (feature `test-util`). Never for production: its
//! names say TEST, and its keys are written unencrypted.
//!
//! Hierarchy, as in HPKI: an MHLW-like root (RSA-2048, SHA-256, 30 years, validity starting
//! and ending at midnight Japan time) → an issuing CA for authentication (policy
//! 1.2.392.100495.1.5.1.2.3.1) and one for signatures (1.2.392.100495.1.5.1.1.3.1) → end-entity
//! certificates (RSA-2048, 5 years) shaped like real cards': subject `C=JP, O=<facility>,
//! CN=<romanised name>, serialNumber=<holder id>`; SAN directoryName with the facility and the
//! name in kanji (UTF-8, full-width space); hcRole in SubjectDirectoryAttributes; CRL
//! distribution point; key usage digitalSignature (authentication) or nonRepudiation
//! (signature), critical; no EKU; certificatePolicies with a CPS qualifier.
//!
//! One difference: real HPKI certificates mark certificatePolicies **critical**. The test CA
//! marks it non-critical, except in `critical-policy.crt`, which reproduces the real case (the
//! verifier accepts both; tools that do not process policies refuse the critical form).
//!
//! For tests of certificates that must be refused, [`TestHpki::root_ca`] and
//! [`TestHpki::issuing_ca`] give the CAs with their keys: [`TestCa::issue`] issues any end
//! entity ([`EeSpec`], with [`RawExtension`]s), [`TestCa::issue_ca`] any CA certificate
//! ([`CaSpec`]), [`TestCa::root`] a separate root, [`TestCa::crl`] a CRL.
//!
//! # Files written by [`TestHpki::generate`]
//!
//! | file | what |
//! |---|---|
//! | `root.crt`, `root.key` | root CA ("TEST HPKI Root CA V2", no CN, like MHLW's) |
//! | `root.crl` | authority revocation list of the root (lists no CA) |
//! | `auth-ca.crt`, `auth-ca.key`, `auth-ca.crl` | authentication issuing CA; its CRL lists `revoked.crt` |
//! | `sign-ca.crt`, `sign-ca.key`, `sign-ca.crl` | signature issuing CA; empty CRL |
//! | `doctor.crt`, `doctor.key` | authentication certificate, hcRole "Medical Doctor" |
//! | `pharmacist.crt`, `pharmacist.key` | authentication certificate, hcRole "Pharmacist" |
//! | `norole.crt`, `norole.key` | authentication certificate without hcRole (staff) |
//! | `expired.crt`, `expired.key` | "Medical Doctor", validity ended 30 days ago |
//! | `revoked.crt`, `revoked.key` | "Medical Doctor", listed in `auth-ca.crl` |
//! | `signature.crt`, `signature.key` | the doctor's signature-application certificate |
//! | `critical-policy.crt`, `critical-policy.key` | the doctor's authentication certificate with a critical certificatePolicies, as real cards have |
//!
//! Certificates and CRLs are PEM; keys are unencrypted PKCS#8 PEM, mode 0600. Existing files
//! are replaced.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_RSA_SHA256, RsaKeySize, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;

use super::der::{self, context, tlv};
use super::hcrole::{HCROLE_ATTRIBUTE, HPKI_ROLE_SCHEME, SUBJECT_DIRECTORY_ATTRIBUTES};
use super::verify::{HpkiTrustConfig, RevocationScope};
use super::{AUTH_CA_POLICY, AUTH_EE_POLICY_GUESS, SIGNATURE_CA_POLICY, SIGNATURE_EE_POLICY};
use crate::crl::{self, RevocationReason, RevokedEntry};
use crate::encoding::{pem_encode, random_serial, serial_hex_from_raw};
use crate::{CaError, KeyPem, write_private_file};

const CERTIFICATE_POLICIES: &[u64] = &[2, 5, 29, 32];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const ID_QT_CPS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 2, 1];
const JST: Duration = Duration::hours(9);
const DAY: Duration = Duration::days(1);
/// Five years and a day, ending one second before midnight Japan time, as real cards.
const EE_LIFETIME: Duration = Duration::days(1827);

/// How to build the test CA.
#[derive(Debug, Clone)]
pub struct TestHpkiOptions {
    /// Prefix of the CRL distribution point URLs (`<base>auth-ca.crl`, …): where a demo serves
    /// the directory over HTTP.
    pub crl_base_url: String,
    /// How long the CRLs are valid (their nextUpdate).
    pub crl_validity: Duration,
}

impl Default for TestHpkiOptions {
    fn default() -> Self {
        TestHpkiOptions {
            crl_base_url: "http://hpki-test.invalid/crl/".into(),
            crl_validity: Duration::days(7),
        }
    }
}

/// Which application of the card a certificate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EeKind {
    /// Authentication application: authentication CA, policy [`AUTH_EE_POLICY_GUESS`], key
    /// usage digitalSignature.
    Authentication,
    /// Signature application: signature CA, policy [`SIGNATURE_EE_POLICY`], key usage
    /// nonRepudiation.
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
    fn to_rcgen(&self) -> CustomExtension {
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

/// A certificate of the test CA, with its key.
#[derive(Clone)]
pub struct TestCert {
    /// File stem in the output directory ("doctor": doctor.crt, doctor.key).
    pub name: String,
    pub der: Vec<u8>,
    pub key: KeyPem,
    pub serial_hex: String,
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("name", &self.name)
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

impl TestCert {
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// What the card does at login: an RSASSA-PKCS1-v1_5 / SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        let key = RsaKeyPair::from_pkcs8(self.key.der())
            .map_err(|e| CaError::BadKey(format!("{}: {e}", self.name)))?;
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| CaError::Signing(format!("{}: RSA signature failed", self.name)))?;
        Ok(sig)
    }
}

/// A CA of the test hierarchy, with its key: issues more certificates and CRLs (in memory
/// only).
pub struct TestCa {
    pub cert: TestCert,
    issuer: Issuer<'static, KeyPair>,
    key_id: Vec<u8>,
    /// The URL of its own CRL (the CRL distribution point of what it issues).
    crl_url: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed root from `spec` (its subject: `C=JP, O=SEKISHO TEST,
    /// OU=SEKISHO TEST HPKI CA, CN=<common_name>`); `crl_url` is where its CRL would be.
    pub fn root(spec: &CaSpec, name: &str, crl_url: &str) -> Result<TestCa, CaError> {
        make_ca(
            None,
            &issuing_dn(&spec.common_name)?,
            spec,
            name,
            crl_url.into(),
        )
    }

    /// An end-entity certificate shaped by `spec`, whatever `spec.kind` says (the kind only
    /// chooses the default policy and key usage).
    pub fn issue(&self, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
        issue_ee(self, spec, name)
    }

    /// A CA certificate shaped by `spec`, issued by this CA. Its CRL URL is
    /// `<this CA's CRL URL>.<name>.crl`.
    pub fn issue_ca(&self, spec: &CaSpec, name: &str) -> Result<TestCa, CaError> {
        make_ca(
            Some(self),
            &issuing_dn(&spec.common_name)?,
            spec,
            name,
            format!("{}.{name}.crl", self.crl_url),
        )
    }

    /// A CRL (DER) of this CA.
    pub fn crl(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        crl_of(self, entries, crl_number, this_update, next_update)
    }
}

/// The generated test CA.
pub struct TestHpki {
    pub dir: PathBuf,
    pub root: TestCert,
    pub auth_ca: TestCert,
    pub sign_ca: TestCert,
    /// DER of `root.crl`, `auth-ca.crl`, `sign-ca.crl`.
    pub root_crl: Vec<u8>,
    pub auth_crl: Vec<u8>,
    pub sign_crl: Vec<u8>,
    pub doctor: TestCert,
    pub pharmacist: TestCert,
    pub norole: TestCert,
    pub expired: TestCert,
    pub revoked: TestCert,
    pub signature: TestCert,
    pub critical_policy: TestCert,
    root_ca: TestCa,
    auth: TestCa,
    sign: TestCa,
}

impl std::fmt::Debug for TestHpki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHpki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestHpki {
    /// Generates the test CA and writes it to `dir` (created if missing) with the default
    /// options. Takes about a second (ten RSA-2048 keys).
    pub fn generate(dir: &Path) -> Result<TestHpki, CaError> {
        Self::generate_with(dir, &TestHpkiOptions::default())
    }

    pub fn generate_with(dir: &Path, opts: &TestHpkiOptions) -> Result<TestHpki, CaError> {
        let now = now_seconds();
        let base = &opts.crl_base_url;

        let root_spec = CaSpec {
            policy: None,
            path_len: Some(1),
            not_before: jst_midnight(now - Duration::days(3652)),
            not_after: jst_midnight(now - Duration::days(3652)) + Duration::days(10_957)
                - Duration::seconds(1),
            ..CaSpec::issuing("", &[])
        };
        let root_ca = make_ca(
            None,
            &[
                (DnType::CountryName, printable("JP")?),
                (DnType::OrganizationName, "SEKISHO TEST - not MHLW".into()),
                (
                    DnType::OrganizationalUnitName,
                    "Director-General for Policy Planning and Evaluation (TEST)".into(),
                ),
                // A second OU, as in the real root (rcgen keeps one value per type).
                (
                    DnType::CustomDnType(vec![2, 5, 4, 11]),
                    "TEST HPKI Root CA V2".into(),
                ),
            ],
            &root_spec,
            "root",
            format!("{base}root.crl"),
        )?;
        let issuing = |cn: &str, policy: &[u64], name: &str| {
            make_ca(
                Some(&root_ca),
                &issuing_dn(cn)?,
                &CaSpec::issuing(cn, policy),
                name,
                format!("{base}{name}.crl"),
            )
        };
        let auth = issuing(
            "HPKI-01-SekishoTestAuthCA-forAuthentication-forIndividual",
            AUTH_CA_POLICY,
            "auth-ca",
        )?;
        let sign = issuing(
            "HPKI-01-SekishoTestSignCA-forNonRepudiation",
            SIGNATURE_CA_POLICY,
            "sign-ca",
        )?;

        let doctor_spec = EeSpec::authentication(
            "Taro Yamada",
            "山田　太郎",
            "T00000001",
            &["Medical Doctor"],
        );
        let doctor = issue_ee(&auth, &doctor_spec, "doctor")?;
        let pharmacist = issue_ee(
            &auth,
            &EeSpec {
                organization: "SEKISHO TEST PHARMACY".into(),
                kanji_organization: "関所テスト薬局".into(),
                ..EeSpec::authentication(
                    "Hanako Suzuki",
                    "鈴木　花子",
                    "T00000002",
                    &["Pharmacist"],
                )
            },
            "pharmacist",
        )?;
        let norole = issue_ee(
            &auth,
            &EeSpec::authentication("Jiro Tanaka", "田中　次郎", "T00000003", &[]),
            "norole",
        )?;
        let expired_start = jst_midnight(now - EE_LIFETIME - Duration::days(30));
        let expired = issue_ee(
            &auth,
            &EeSpec {
                not_before: expired_start,
                not_after: expired_start + EE_LIFETIME - Duration::seconds(1),
                ..EeSpec::authentication(
                    "Ichiro Sato",
                    "佐藤　一郎",
                    "T00000004",
                    &["Medical Doctor"],
                )
            },
            "expired",
        )?;
        let revoked = issue_ee(
            &auth,
            &EeSpec::authentication(
                "Saburo Takahashi",
                "高橋　三郎",
                "T00000005",
                &["Medical Doctor"],
            ),
            "revoked",
        )?;
        let signature = issue_ee(
            &sign,
            &EeSpec {
                kind: EeKind::Signature,
                ..doctor_spec.clone()
            },
            "signature",
        )?;
        let critical_policy = issue_ee(
            &auth,
            &EeSpec {
                critical_policies: true,
                ..doctor_spec
            },
            "critical-policy",
        )?;

        let this_update = now - Duration::hours(1);
        let next_update = now + opts.crl_validity;
        let root_crl = crl_of(&root_ca, &[], 1, this_update, next_update)?;
        let auth_crl = crl_of(
            &auth,
            &[RevokedEntry {
                serial_hex: revoked.serial_hex.clone(),
                revoked_at: now - Duration::minutes(1),
                reason: RevocationReason::KeyCompromise,
            }],
            1,
            this_update,
            next_update,
        )?;
        let sign_crl = crl_of(&sign, &[], 1, this_update, next_update)?;

        let hpki = TestHpki {
            dir: dir.to_path_buf(),
            root: root_ca.cert.clone(),
            auth_ca: auth.cert.clone(),
            sign_ca: sign.cert.clone(),
            root_crl,
            auth_crl,
            sign_crl,
            doctor,
            pharmacist,
            norole,
            expired,
            revoked,
            signature,
            critical_policy,
            root_ca,
            auth,
            sign,
        };
        hpki.write()?;
        Ok(hpki)
    }

    fn write(&self) -> Result<(), CaError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| CaError::io("create the directory", &self.dir, e))?;
        for cert in self.certificates() {
            let crt = self.dir.join(format!("{}.crt", cert.name));
            fs::write(&crt, cert.pem()).map_err(|e| CaError::io("write", &crt, e))?;
            write_private_file(
                &self.dir.join(format!("{}.key", cert.name)),
                cert.key.as_str().as_bytes(),
            )?;
        }
        for (name, der) in [
            ("root.crl", &self.root_crl),
            ("auth-ca.crl", &self.auth_crl),
            ("sign-ca.crl", &self.sign_crl),
        ] {
            let path = self.dir.join(name);
            fs::write(&path, crl::crl_pem(der)).map_err(|e| CaError::io("write", &path, e))?;
        }
        Ok(())
    }

    /// Every certificate, CAs first.
    pub fn certificates(&self) -> [&TestCert; 10] {
        [
            &self.root,
            &self.auth_ca,
            &self.sign_ca,
            &self.doctor,
            &self.pharmacist,
            &self.norole,
            &self.expired,
            &self.revoked,
            &self.signature,
            &self.critical_policy,
        ]
    }

    /// Trust configuration for [`HpkiVerifier`](super::HpkiVerifier): the root as anchor,
    /// both issuing CAs, all three CRLs, revocation checked along the whole chain.
    pub fn trust_config(&self) -> HpkiTrustConfig {
        HpkiTrustConfig {
            anchors: vec![self.root.der.clone()],
            intermediates: vec![self.auth_ca.der.clone(), self.sign_ca.der.clone()],
            crls: vec![
                self.root_crl.clone(),
                self.auth_crl.clone(),
                self.sign_crl.clone(),
            ],
            revocation: RevocationScope::Chain,
        }
    }

    /// Issues another end-entity certificate (in memory only) from the authentication or
    /// signature CA, with a new key.
    pub fn issue(&self, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
        self.issue_from(spec.kind, spec, name)
    }

    /// Issues a certificate shaped by `spec` from the CA of `ca` (e.g. an authentication
    /// certificate from the signature CA, for tests).
    pub fn issue_from(&self, ca: EeKind, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
        let ca = match ca {
            EeKind::Authentication => &self.auth,
            EeKind::Signature => &self.sign,
        };
        issue_ee(ca, spec, name)
    }

    /// A new CRL (DER) of the authentication CA, e.g. an expired one.
    pub fn auth_crl_with(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        crl_of(&self.auth, entries, crl_number, this_update, next_update)
    }

    /// A new authority revocation list (DER) of the root.
    pub fn root_crl_with(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        crl_of(&self.root_ca, entries, crl_number, this_update, next_update)
    }

    /// The root CA, with its key.
    pub fn root_ca(&self) -> &TestCa {
        &self.root_ca
    }

    /// The authentication or signature issuing CA, with its key.
    pub fn issuing_ca(&self, kind: EeKind) -> &TestCa {
        match kind {
            EeKind::Authentication => &self.auth,
            EeKind::Signature => &self.sign,
        }
    }

    /// The CRL distribution point URL written into the certificates of the given CA
    /// ("root", "auth-ca", "sign-ca").
    pub fn crl_url(&self, ca: &str) -> Option<&str> {
        [&self.root_ca, &self.auth, &self.sign]
            .into_iter()
            .find(|c| c.cert.name == ca)
            .map(|c| c.crl_url.as_str())
    }
}

fn printable(s: &str) -> Result<DnValue, CaError> {
    Ok(DnValue::PrintableString(s.try_into().map_err(
        |e: rcgen::Error| CaError::Signing(format!("{s:?} as PrintableString: {e}")),
    )?))
}

fn rsa_key() -> Result<KeyPair, CaError> {
    Ok(KeyPair::generate_rsa_for(
        &PKCS_RSA_SHA256,
        RsaKeySize::_2048,
    )?)
}

fn policies_extension(policy: &[u64], critical: bool) -> CustomExtension {
    let qualifier = der::constructed(
        der::SEQUENCE,
        &[
            der::oid(ID_QT_CPS),
            tlv(der::IA5_STRING, b"http://hpki-test.invalid/cps/"),
        ],
    );
    let info = der::constructed(
        der::SEQUENCE,
        &[der::oid(policy), tlv(der::SEQUENCE, &qualifier)],
    );
    let mut ext =
        CustomExtension::from_oid_content(CERTIFICATE_POLICIES, tlv(der::SEQUENCE, &info));
    ext.set_criticality(critical);
    ext
}

/// The subject of the test CA's issuing CAs, with the given CN.
fn issuing_dn(cn: &str) -> Result<Vec<(DnType, DnValue)>, CaError> {
    Ok(vec![
        (DnType::CountryName, printable("JP")?),
        (DnType::OrganizationName, "SEKISHO TEST".into()),
        (
            DnType::OrganizationalUnitName,
            "SEKISHO TEST HPKI CA".into(),
        ),
        (DnType::CommonName, cn.into()),
    ])
}

fn make_ca(
    parent: Option<&TestCa>,
    dn: &[(DnType, DnValue)],
    spec: &CaSpec,
    name: &str,
    own_crl_url: String,
) -> Result<TestCa, CaError> {
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    let mut name_dn = DistinguishedName::new();
    for (ty, value) in dn {
        name_dn.push(ty.clone(), value.clone());
    }
    params.distinguished_name = name_dn;
    params.is_ca = if spec.is_ca {
        IsCa::Ca(match spec.path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        })
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = spec.key_usages.clone();
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    if let Some(policy) = &spec.policy {
        params
            .custom_extensions
            .push(policies_extension(policy, spec.critical_policies));
    }
    params
        .custom_extensions
        .extend(spec.extra_extensions.iter().map(RawExtension::to_rcgen));
    let cert = match parent {
        Some(parent) => {
            params.use_authority_key_identifier_extension = true;
            // An intermediate is covered by the root's authority revocation list.
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![parent.crl_url.clone()],
            }];
            params.signed_by(&key, &parent.issuer)?
        }
        None => params.self_signed(&key)?,
    };
    let der = cert.der().to_vec();
    let key_id = subject_key_id(&der)?;
    let key_pem = KeyPem::from_pkcs8_der(&key.serialize_der())?;
    Ok(TestCa {
        cert: TestCert {
            name: name.into(),
            serial_hex: serial_of(&der)?,
            der,
            key: key_pem,
        },
        issuer: Issuer::new(params, key),
        key_id,
        crl_url: own_crl_url,
    })
}

fn issue_ee(ca: &TestCa, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable("JP")?);
    dn.push(DnType::OrganizationName, spec.organization.as_str());
    dn.push(DnType::CommonName, spec.common_name.as_str());
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        printable(&spec.holder_id)?,
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.use_authority_key_identifier_extension = true;
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![ca.crl_url.clone()],
    }];
    let (policy, key_usage) = match spec.kind {
        EeKind::Authentication => (AUTH_EE_POLICY_GUESS, KeyUsagePurpose::DigitalSignature),
        EeKind::Signature => (SIGNATURE_EE_POLICY, KeyUsagePurpose::ContentCommitment),
    };
    let policy = spec.policy.as_deref().unwrap_or(policy);
    params.key_usages = spec.key_usages.clone().unwrap_or_else(|| vec![key_usage]);
    params.extended_key_usages = spec.extended_key_usages.clone();

    // SAN directoryName: C=JP, O=<facility in kanji>, CN=<name in kanji>, serialNumber=<id>.
    let atv = |arcs: &[u64], tag: u8, value: &str| {
        tlv(
            der::SET,
            &der::constructed(der::SEQUENCE, &[der::oid(arcs), tlv(tag, value.as_bytes())]),
        )
    };
    let kanji_dn = der::constructed(
        der::SEQUENCE,
        &[
            atv(&[2, 5, 4, 6], der::PRINTABLE_STRING, "JP"),
            atv(&[2, 5, 4, 10], der::UTF8_STRING, &spec.kanji_organization),
            atv(&[2, 5, 4, 3], der::UTF8_STRING, &spec.kanji_name),
            atv(&[2, 5, 4, 5], der::PRINTABLE_STRING, &spec.holder_id),
        ],
    );
    let san = tlv(der::SEQUENCE, &tlv(context(4), &kanji_dn));
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(SUBJECT_ALT_NAME, san));

    let sda = match &spec.raw_sda {
        Some(raw) => Some(raw.clone()),
        None if spec.roles.is_empty() => None,
        None => Some(hcrole_sda(&spec.roles)),
    };
    if let Some(sda) = sda {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                SUBJECT_DIRECTORY_ATTRIBUTES,
                sda,
            ));
    }
    params
        .custom_extensions
        .push(policies_extension(policy, spec.critical_policies));
    params
        .custom_extensions
        .extend(spec.extra_extensions.iter().map(RawExtension::to_rcgen));

    let cert = params.signed_by(&key, &ca.issuer)?;
    let der = cert.der().to_vec();
    let key_pem = KeyPem::from_pkcs8_der(&key.serialize_der())?;
    Ok(TestCert {
        name: name.into(),
        serial_hex: serial_of(&der)?,
        der,
        key: key_pem,
    })
}

/// The SubjectDirectoryAttributes value for the given hcRole free texts (UTF8String), in the
/// structure of real HPKI certificates; several roles are HCActors of one HCActorData, sorted
/// as DER wants a SET OF.
pub(crate) fn hcrole_sda(roles: &[String]) -> Vec<u8> {
    let mut actors: Vec<Vec<u8>> = roles
        .iter()
        .map(|text| {
            let coded = der::constructed(
                der::SET,
                &[
                    tlv(context(0), &der::oid(HPKI_ROLE_SCHEME)),
                    tlv(context(2), &tlv(der::UTF8_STRING, text.as_bytes())),
                ],
            );
            tlv(der::SEQUENCE, &tlv(context(0), &coded))
        })
        .collect();
    actors.sort();
    let actor_data = der::constructed(der::SET, &actors);
    let attribute = der::constructed(
        der::SEQUENCE,
        &[der::oid(HCROLE_ATTRIBUTE), tlv(der::SET, &actor_data)],
    );
    tlv(der::SEQUENCE, &attribute)
}

fn crl_of(
    ca: &TestCa,
    entries: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, CaError> {
    Ok(crl::build(
        &ca.issuer,
        &ca.key_id,
        entries,
        crl_number,
        this_update,
        next_update,
    )?
    .der)
}

fn subject_key_id(der: &[u8]) -> Result<Vec<u8>, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::BadCertificate("CA certificate without key identifier".into()))
}

fn serial_of(der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    Ok(serial_hex_from_raw(cert.raw_serial()))
}

fn now_seconds() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
}

/// The last midnight in Japan (UTC+9) at or before `t`, as UTC: real HPKI validity periods
/// start at 15:00:00Z.
fn jst_midnight(t: OffsetDateTime) -> OffsetDateTime {
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

    #[test]
    fn sda_matches_the_parser() {
        let v = hcrole_sda(&["Pharmacist".into(), "Director of Hospital".into()]);
        let roles = super::super::parse_subject_directory_attributes(&v)
            .unwrap()
            .unwrap();
        let mut texts = roles.free_texts();
        texts.sort();
        assert_eq!(texts, ["Director of Hospital", "Pharmacist"]);
    }
}
