//! Test certificates and signature checks shared by the card tests.

#![allow(dead_code)]

use sekisho_cardreader::vcard::{AppFiles, CardEngine, Quirks};

pub const PIN: &str = "1234";

/// An RSA-2048 key and a self-signed certificate for it.
pub struct TestIdentity {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestIdentity {
    pub fn new(common_name: &str) -> TestIdentity {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("RSA-2048 key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TestIdentity {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn files(&self) -> AppFiles {
        AppFiles::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).expect("card files")
    }
}

/// One authentication and one signature identity, generated once per test binary.
pub fn identities() -> &'static (TestIdentity, TestIdentity) {
    static IDS: std::sync::OnceLock<(TestIdentity, TestIdentity)> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        (
            TestIdentity::new("YAMADA TARO (auth)"),
            TestIdentity::new("YAMADA TARO (sign)"),
        )
    })
}

pub fn engine(quirks: Quirks) -> CardEngine {
    let (auth, sign) = identities();
    CardEngine::new(auth.files(), Some(sign.files()), PIN, quirks).expect("card engine")
}

/// Checks an RSASSA-PKCS1-v1_5 / SHA-256 signature with the public key of `cert_der`, parsed
/// by x509-parser and checked by aws-lc-rs (neither is the code under test).
pub fn verify_signature(cert_der: &[u8], message: &[u8], signature: &[u8]) {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).expect("certificate parses");
    let public_key = &cert.tbs_certificate.subject_pki.subject_public_key.data;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(message, signature)
    .expect("the card's signature verifies with the certificate's key");
}
