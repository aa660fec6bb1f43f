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

mod issue;
mod spec;

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::DnType;
use time::{Duration, OffsetDateTime};

pub use self::issue::{TestCa, TestCert};
use self::issue::{crl_of, issue_ee, issuing_dn, make_ca, printable};
pub use self::spec::{CaSpec, EeKind, EeSpec, RawExtension};
use self::spec::{EE_LIFETIME, jst_midnight};
use super::verify::{HpkiTrustConfig, RevocationScope};
use super::{AUTH_CA_POLICY, SIGNATURE_CA_POLICY};
use crate::authority::now_seconds;
use crate::crl::{self, RevocationReason, RevokedEntry};
use crate::{CaError, write_private_file};

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
