//! The physician's virtual HPKI card: test identities (RSA-2048, self-signed) and the engine.

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
