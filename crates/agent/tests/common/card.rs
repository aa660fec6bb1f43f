//! The physician's virtual HPKI card: test identities (RSA-2048, self-signed) and the engine.

use sekisho_cardreader::vcard::{AppFiles, CardEngine, Chip, Quirks};

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

/// The virtual HPKI card, keeping every signature it gave: what the card signed, whoever asked.
pub struct RecordingCard {
    pub engine: CardEngine,
    pub signatures: Vec<Vec<u8>>,
}

impl RecordingCard {
    pub fn new() -> std::sync::Arc<std::sync::Mutex<RecordingCard>> {
        std::sync::Arc::new(std::sync::Mutex::new(RecordingCard {
            engine: engine(Quirks::default()),
            signatures: Vec::new(),
        }))
    }
}

impl Chip for RecordingCard {
    fn atr(&self) -> &[u8] {
        self.engine.atr()
    }
    fn power_on(&mut self) {
        self.engine.power_on()
    }
    fn power_off(&mut self) {
        self.engine.power_off()
    }
    fn reset(&mut self) {
        self.engine.reset()
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let answer = self.engine.process(apdu);
        // PSO: COMPUTE DIGITAL SIGNATURE (or the card-pads variant) that succeeded.
        if apdu.len() > 4 && apdu[1] == 0x2A && answer.ends_with(&[0x90, 0x00]) {
            self.signatures.push(answer[..answer.len() - 2].to_vec());
        }
        answer
    }
}

/// Whether `signature` is the authentication key's RSASSA-PKCS1-v1_5 SHA-256 signature of
/// exactly `message`.
pub fn signed_by_auth_key(message: &[u8], signature: &[u8]) -> bool {
    let (auth, _) = identities();
    let (_, x509) = x509_parser::parse_x509_certificate(&auth.cert_der).unwrap();
    let spki = &x509.tbs_certificate.subject_pki.subject_public_key.data;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        spki,
    )
    .verify(message, signature)
    .is_ok()
}
