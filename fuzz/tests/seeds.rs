//! The seed generator for the corpora that need keys and signatures: certificates of a test
//! HPKI and of a Sekisho CA (with the fixed trust the `cert` target checks them against),
//! CSRs, enrollment bodies, and transcripts of the virtual HPKI and patient cards. The other
//! seeds are inputs of the crates' unit tests, copied by hand.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --test seeds -- --ignored` rewrites
//! `fuzz/fixtures/` and the generated files of `fuzz/corpus/` (names starting with `gen-`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sekisho_ca::hpki::TestHpki;
use sekisho_ca::{Authority, CaOptions, KeyAlgorithm, TerminalId, ensure_patient_card_ca};
use sekisho_cardreader::vcard::{AppFiles, CardEngine, PatientCardEngine, Quirks, RsaKey};
use sekisho_cardreader::{CardError, Transport};
use sekisho_fuzz::{PIN, drive_card, push_reply};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn corpus(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// Passes commands to a virtual card and keeps its answers as a card script.
struct Recorder<T: Transport> {
    card: T,
    script: Vec<u8>,
}

impl<T: Transport> Transport for Recorder<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let reply = self.card.transmit(apdu)?;
        push_reply(&mut self.script, &reply);
        Ok(reply)
    }
}

fn transcript<T: Transport>(card: T, flags: u8) -> Vec<u8> {
    let rec = drive_card(
        Recorder {
            card,
            script: Vec::new(),
        },
        flags,
    );
    let mut out = vec![flags];
    out.extend_from_slice(&rec.script);
    out
}

fn csr(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, String) {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    let req = rcgen::CertificateParams::new(vec!["reception-1.clinic.example".to_owned()])
        .unwrap()
        .serialize_request(&kp)
        .unwrap();
    (req.der().to_vec(), req.pem().unwrap())
}

#[test]
#[ignore = "writes the seed corpora; run by hand"]
fn generate() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = fuzz_dir().join("fixtures");
    let made_at = time::OffsetDateTime::now_utc().unix_timestamp();

    // The test HPKI: its CAs and CRLs are the cert target's fixed trust.
    let hpki = TestHpki::generate(&tmp.path().join("hpki")).unwrap();
    write(&fixtures, "hpki-root.der", &hpki.root.der);
    write(&fixtures, "hpki-auth-ca.der", &hpki.auth_ca.der);
    write(&fixtures, "hpki-sign-ca.der", &hpki.sign_ca.der);
    write(&fixtures, "hpki-root.crl", &hpki.root_crl);
    write(&fixtures, "hpki-auth-ca.crl", &hpki.auth_crl);
    write(&fixtures, "hpki-sign-ca.crl", &hpki.sign_crl);
    write(&fixtures, "made-at", format!("{made_at}\n").as_bytes());
    for cert in hpki.certificates() {
        write(
            &corpus("cert"),
            &format!("gen-hpki-{}", cert.name),
            &cert.der,
        );
    }

    // A Sekisho CA: its root and patient-card CA are the other fixed trust.
    let ca_dir = tmp.path().join("ca");
    let ca = Authority::create(
        &ca_dir,
        &CaOptions {
            algorithm: KeyAlgorithm::EcdsaP256,
            passphrase: None,
            name: "Sekisho Seed Network".into(),
        },
    )
    .unwrap();
    let patient_ca = ensure_patient_card_ca(&ca_dir, None).unwrap();
    write(&fixtures, "root.der", ca.root_der());
    write(&fixtures, "patient-card-ca.der", patient_ca.ca_der());
    let (card_cert, card_key) = patient_ca
        .issue_patient_card("P-0001", Duration::from_secs(365 * 86_400))
        .unwrap();
    write(&corpus("cert"), "gen-patient-card", &card_cert.der);
    let id = TerminalId::new("clinic-01", "reception-1").unwrap();
    let (terminal, _) = ca
        .issue_terminal(&id, Duration::from_secs(86_400), KeyAlgorithm::EcdsaP256)
        .unwrap();
    write(&corpus("cert"), "gen-terminal", &terminal.der);

    // CSRs: the accepted key types, and Ed25519, which is refused.
    let (p256_der, p256_pem) = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    write(&corpus("csr"), "gen-p256.der", &p256_der);
    write(&corpus("csr"), "gen-p256.pem", p256_pem.as_bytes());
    let (p384_der, _) = csr(&rcgen::PKCS_ECDSA_P384_SHA384);
    write(&corpus("csr"), "gen-p384.der", &p384_der);
    let (rsa_der, _) = csr(&rcgen::PKCS_RSA_SHA256);
    write(&corpus("csr"), "gen-rsa2048.der", &rsa_der);
    let (ed_der, _) = csr(&rcgen::PKCS_ED25519);
    write(&corpus("csr"), "gen-ed25519.der", &ed_der);

    // Enrollment bodies, as the agent sends them.
    let body = |code: &str, wg: Option<&str>| {
        let mut v = serde_json::json!({ "code": code, "pin": "482913", "csr": p256_pem });
        if let Some(k) = wg {
            v["wg_public_key"] = k.into();
        }
        serde_json::to_vec(&v).unwrap()
    };
    write(
        &corpus("enrollment"),
        "gen-plain",
        &body("7K3M-Q9XT-2HDA", None),
    );
    write(
        &corpus("enrollment"),
        "gen-wireguard",
        &body(
            "7k3m q9xt 2hda",
            Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="),
        ),
    );

    // Card transcripts: the HPKI card as each kind of card behaves, and the patient card.
    let auth = || {
        AppFiles::new(
            hpki.doctor.der.clone(),
            RsaKey::from_pem(hpki.doctor.key.as_str().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let sign = || {
        AppFiles::new(
            hpki.signature.der.clone(),
            RsaKey::from_pem(hpki.signature.key.as_str().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let kinds = [
        ("plain", Quirks::default()),
        (
            "t0",
            Quirks {
                t0: true,
                ..Quirks::default()
            },
        ),
        (
            "short",
            Quirks {
                short_only: true,
                ..Quirks::default()
            },
        ),
        (
            "pads",
            Quirks {
                card_pads: true,
                ..Quirks::default()
            },
        ),
        (
            "partial",
            Quirks {
                partial_select_only: true,
                ..Quirks::default()
            },
        ),
    ];
    for (name, quirks) in kinds {
        for flags in [0u8, 1, 2] {
            let card = CardEngine::new(auth(), Some(sign()), PIN, quirks).unwrap();
            write(
                &corpus("card"),
                &format!("gen-hpki-{name}-{flags}"),
                &transcript(card, flags),
            );
        }
    }
    let card = PatientCardEngine::new("P-0001", card_cert.der.clone(), card_key.der()).unwrap();
    write(&corpus("card"), "gen-patient", &transcript(card, 4));

    // sekisho.toml: what `sekisho init` writes, alone and with each TOML example of the docs
    // added (the sections init leaves out: notify, tunnel, hpki, exports, witnesses, …).
    let init = sekisho::init::config_for(&sekisho::init::InitOptions {
        data_dir: tmp.path().join("data"),
        upstream: "http://127.0.0.1:8080".into(),
        listen: "0.0.0.0:8443".parse().unwrap(),
        mgmt_listen: "127.0.0.1:9090".parse().unwrap(),
        enroll_listen: "0.0.0.0:8444".parse().unwrap(),
        hostname: "gw.example.jp".into(),
        network_name: "Sekisho Seed Network".into(),
        store_url: None,
        ca_key: KeyAlgorithm::EcdsaP256,
        extra_ips: Vec::new(),
    });
    let init = toml::to_string_pretty(&init).unwrap();
    write(&corpus("config"), "gen-init", init.as_bytes());
    let docs = fuzz_dir().join("../docs");
    let mut names: Vec<_> = fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = fs::read_to_string(&path).unwrap_or_default();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, block) in text.split("```toml\n").skip(1).enumerate() {
            let block = block.split("```").next().unwrap_or_default();
            // Whole files stand alone; sections are added to init's file.
            let seed = if block.contains("hostname") {
                block.to_owned()
            } else {
                format!("{init}\n{block}")
            };
            write(
                &corpus("config"),
                &format!("gen-{stem}-{i}"),
                seed.as_bytes(),
            );
        }
    }
}
