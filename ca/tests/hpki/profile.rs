//! The test CA's certificates have the real HPKI profile (read back with openssl and the
//! hcRole parser), and the `sekisho-hpki-testca` binary writes the documented files.

use super::*;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(fx().dir.path())
        .output()
        .expect("openssl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn hcrole_of_each_test_certificate() {
    let h = &fx().hpki;
    let texts = |der: &[u8]| {
        hcrole_from_certificate(der).unwrap().map(|r| {
            r.free_texts()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
    };
    for cert in [
        &h.doctor,
        &h.expired,
        &h.revoked,
        &h.signature,
        &h.critical_policy,
    ] {
        assert_eq!(
            texts(&cert.der),
            Some(vec!["Medical Doctor".to_owned()]),
            "{}",
            cert.name
        );
        let roles = hcrole_from_certificate(&cert.der).unwrap().unwrap();
        assert_eq!(roles.qualifications(), [Qualification::MedicalDoctor]);
        assert_eq!(roles.roles[0].scheme, "1.2.392.100495.1.6.1.1");
    }
    assert_eq!(
        texts(&h.pharmacist.der),
        Some(vec!["Pharmacist".to_owned()])
    );
    assert!(
        hcrole_from_certificate(&h.pharmacist.der)
            .unwrap()
            .unwrap()
            .has(&Qualification::Pharmacist)
    );
    for cert in [&h.norole, &h.root, &h.auth_ca, &h.sign_ca] {
        assert_eq!(texts(&cert.der), None, "{}", cert.name);
    }
    assert!(matches!(
        hcrole_from_certificate(b"\x30\x03\x02\x01\x00"),
        Err(HcRoleError::Certificate(_))
    ));
}

#[test]
fn openssl_reads_the_profile() {
    let h = &fx().hpki;
    let text = |name: &str| {
        let (ok, out) = openssl(&[
            "x509",
            "-in",
            name,
            "-noout",
            "-text",
            "-nameopt",
            "utf8,sep_comma_plus",
        ]);
        assert!(ok, "{name}: {out}");
        out
    };
    for (name, role) in [
        ("doctor.crt", "Medical Doctor"),
        ("pharmacist.crt", "Pharmacist"),
    ] {
        let t = text(name);
        for want in [
            "X509v3 Subject Directory Attributes",
            role,
            "X509v3 Certificate Policies: \n",
            "Policy: 1.2.392.100495.1.5.1.2.0.1",
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            "DirName:",
            "URI:http://hpki-test.invalid/crl/auth-ca.crl",
            "Public-Key: (2048 bit)",
            "Signature Algorithm: sha256WithRSAEncryption",
            "Issuer: C=JP,O=SEKISHO TEST,OU=SEKISHO TEST HPKI CA,CN=HPKI-01-SekishoTestAuthCA-forAuthentication-forIndividual",
        ] {
            assert!(t.contains(want), "{name} lacks {want:?}:\n{t}");
        }
        assert!(!t.contains("Extended Key Usage"), "{name} has an EKU");
        assert!(
            t.contains("15:00:00 "),
            "{name}: validity starts at midnight JST\n{t}"
        );
    }
    let t = text("doctor.crt");
    assert!(
        t.contains("Subject: C=JP,O=SEKISHO TEST HOSPITAL,CN=Taro Yamada,serialNumber=T00000001"),
        "{t}"
    );
    let t = text("norole.crt");
    assert!(!t.contains("Subject Directory Attributes"), "{t}");
    let t = text("signature.crt");
    for want in [
        "Policy: 1.2.392.100495.1.5.1.1.0.1",
        "X509v3 Key Usage: critical\n                Non Repudiation\n",
        "Medical Doctor",
        "CN=HPKI-01-SekishoTestSignCA-forNonRepudiation",
    ] {
        assert!(t.contains(want), "signature.crt lacks {want:?}:\n{t}");
    }
    let t = text("critical-policy.crt");
    assert!(t.contains("X509v3 Certificate Policies: critical"), "{t}");
    let t = text("auth-ca.crt");
    assert!(t.contains("Policy: 1.2.392.100495.1.5.1.2.3.1"), "{t}");
    assert!(t.contains("CA:TRUE, pathlen:0"), "{t}");
    let t = text("sign-ca.crt");
    assert!(t.contains("Policy: 1.2.392.100495.1.5.1.1.3.1"), "{t}");
    let t = text("root.crt");
    assert!(t.contains("OU=TEST HPKI Root CA V2"), "{t}");
    assert!(t.contains("Public-Key: (2048 bit)"), "{t}");

    // The CRL lists the revoked certificate and has a next update.
    let (ok, t) = openssl(&["crl", "-in", "auth-ca.crl", "-noout", "-text"]);
    assert!(ok, "{t}");
    assert!(t.contains("Next Update:"), "{t}");
    assert!(
        t.to_lowercase()
            .contains(&format!("serial number: {}", h.revoked.serial_hex)),
        "{t}"
    );
    assert!(t.contains("Key Compromise"), "{t}");

    // openssl agrees on chains and revocation.
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "-crl_check_all",
        "-CRLfile",
        "auth-ca.crl",
        "-CRLfile",
        "root.crl",
        "doctor.crt",
        "pharmacist.crt",
        "norole.crt",
    ]);
    assert!(ok, "{t}");
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "-crl_check_all",
        "-CRLfile",
        "auth-ca.crl",
        "-CRLfile",
        "root.crl",
        "revoked.crt",
    ]);
    assert!(!ok && t.contains("certificate revoked"), "{t}");
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "expired.crt",
    ]);
    assert!(!ok && t.contains("certificate has expired"), "{t}");
}

#[test]
fn the_binary_writes_the_documented_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sekisho-hpki-testca"))
        .arg("--out")
        .arg(dir.path())
        .args([
            "--crl-base-url",
            "http://127.0.0.1:8099/hpki/",
            "--crl-days",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |name: &str| dir.path().join(name);
    for name in [
        "root",
        "auth-ca",
        "sign-ca",
        "doctor",
        "pharmacist",
        "norole",
        "expired",
        "revoked",
        "signature",
        "critical-policy",
    ] {
        assert!(p(&format!("{name}.crt")).is_file(), "{name}.crt");
        let mode = std::fs::metadata(p(&format!("{name}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}.key");
    }
    // A verifier configured from the files (PEM) accepts the doctor's card.
    let cert = |name: &str| std::fs::read(p(name)).unwrap();
    let cfg = HpkiTrustConfig {
        anchors: vec![cert("root.crt")],
        intermediates: vec![cert("auth-ca.crt"), cert("sign-ca.crt")],
        crls: vec![cert("root.crl"), cert("auth-ca.crl"), cert("sign-ca.crl")],
        revocation: RevocationScope::Chain,
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    let doctor = CertificateDer::from_pem_file(p("doctor.crt")).unwrap();
    let id = v.verify(&doctor, now()).unwrap();
    assert!(id.is_medical_doctor());
    let revoked = CertificateDer::from_pem_file(p("revoked.crt")).unwrap();
    assert_eq!(v.verify(&revoked, now()), Err(HpkiError::Revoked));
    // The CRL is valid for the requested two days, and the URL is the one asked for.
    let crl = CertificateRevocationListDer::from_pem_file(p("auth-ca.crl")).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    let left = crl.next_update().unwrap().to_datetime() - OffsetDateTime::now_utc();
    assert!(
        left > Duration::hours(47) && left <= Duration::days(2),
        "{left}"
    );
    let (ok, text) = {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
            .arg(p("doctor.crt"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(
        ok && text.contains("URI:http://127.0.0.1:8099/hpki/auth-ca.crl"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sekisho-hpki-testca"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
