//! HPKI: the test CA produces certificates with the real profile (checked with openssl), the
//! hcRole parser reads them, and the verifier accepts the good cards and refuses the others
//! with the error a physician or the secretariat can act on.
//!
//! One test binary, so the test CA is generated once for all the tests; here the shared
//! fixture and helpers, in the modules the tests by topic.

mod chain;
mod crl;
mod profile;
mod proptests;
mod verify;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;

use proptest::prelude::*;
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use sekisho_ca::hpki::{
    AUTH_CA_POLICY, CaSpec, EeKind, EeSpec, HcRoleError, HpkiError, HpkiTrustConfig, HpkiVerifier,
    Qualification, RawExtension, RevocationScope, TestCa, TestCert, TestHpki,
    hcrole_from_certificate, parse_subject_directory_attributes,
};
use sekisho_ca::{RevocationReason, RevokedEntry, crl_pem};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

struct Fixture {
    dir: TempDir,
    hpki: TestHpki,
    verifier: HpkiVerifier,
}

/// One test CA for the whole file: generating one takes a dozen RSA keys.
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let hpki = TestHpki::generate(dir.path()).unwrap();
        let verifier = HpkiVerifier::new(&hpki.trust_config()).unwrap();
        Fixture {
            dir,
            hpki,
            verifier,
        }
    })
}

/// A second, unrelated test CA.
fn other() -> &'static TestHpki {
    static OTHER: OnceLock<(TempDir, TestHpki)> = OnceLock::new();
    &OTHER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let hpki = TestHpki::generate(dir.path()).unwrap();
            (dir, hpki)
        })
        .1
}

fn now() -> UnixTime {
    UnixTime::now()
}

/// An authentication end entity for the path tests.
fn card(name: &str) -> EeSpec {
    EeSpec::authentication(name, "試験　太郎", "T00000100", &["Medical Doctor"])
}

/// A fresh, empty CRL of `ca`, valid for a day.
fn fresh_crl(ca: &TestCa) -> Vec<u8> {
    let t0 = OffsetDateTime::now_utc();
    ca.crl(&[], 1, t0 - Duration::hours(1), t0 + Duration::days(1))
        .unwrap()
}

/// The test CA's configuration with `ca` (and its CRL) added as an intermediate.
fn config_with(ca: &TestCa) -> HpkiTrustConfig {
    let h = &fx().hpki;
    let mut cfg = h.trust_config();
    cfg.intermediates.push(ca.cert.der.clone());
    cfg.crls.push(fresh_crl(ca));
    cfg
}

/// Writes certificates (PEM) to a new directory of the fixture, for openssl.
fn write_pems(dir: &str, certs: &[&TestCert], crls: &[(&str, &[u8])]) -> std::path::PathBuf {
    let d = fx().dir.path().join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for c in certs {
        std::fs::write(d.join(format!("{}.crt", c.name)), c.pem()).unwrap();
    }
    for (name, der) in crls {
        std::fs::write(d.join(name), crl_pem(der)).unwrap();
    }
    d
}

/// `openssl verify -crl_check_all -policy_check` of `ee` with `root` as the anchor, `ca` as the
/// untrusted intermediate and the given CRL files, all in `dir`.
fn openssl_verify(
    dir: &std::path::Path,
    root: &str,
    ca: &str,
    crls: &[&str],
    ee: &str,
) -> (bool, String) {
    let mut args = vec![
        "verify".to_owned(),
        "-CAfile".into(),
        format!("{root}.crt"),
        "-untrusted".into(),
        format!("{ca}.crt"),
        "-crl_check_all".into(),
        "-policy_check".into(),
    ];
    for crl in crls {
        args.push("-CRLfile".into());
        args.push((*crl).to_owned());
    }
    args.push(format!("{ee}.crt"));
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
