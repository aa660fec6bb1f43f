//! An in-test gateway: the HPKI sign-in, patient-consent and emergency-declaration contracts
//! over mutual TLS, with the checks that matter (one-time nonces, signatures verified against
//! the certificate sent).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sekisho_protocol::wire;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::pki::{Pki, TERMINAL_URN, server_tls};

pub type Handler =
    Arc<dyn Fn(Method, String, Bytes, bool) -> (u16, serde_json::Value) + Send + Sync>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `handler` on 127.0.0.1:`port` (0: any); the handler is told whether the client
    /// presented a (verified) certificate.
    pub async fn start(tls: Arc<rustls::ServerConfig>, port: u16, handler: Handler) -> TestServer {
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
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// What the in-test gateway saw and decided.
#[derive(Default)]
pub struct GatewayState {
    pub challenges: HashMap<String, Vec<u8>>,
    pub challenges_issued: usize,
    /// The certificates of successful logins.
    pub logins: Vec<Vec<u8>>,
    pub logouts: Vec<(Instant, String)>,
    pub signed_in: bool,
    /// A `to_sign` to send instead of a sign-in challenge (a hostile gateway).
    pub login_to_sign: Option<Vec<u8>>,
    /// Refuse the next logins with this status and code.
    pub refuse: Option<(u16, &'static str)>,
    /// Requests that came without a client certificate (must stay 0).
    pub anonymous: usize,
    /// Consent: open challenges, how many were issued, the windows opened (patient, basis).
    pub consent_challenges: HashMap<String, Vec<u8>>,
    pub consent_challenges_issued: usize,
    pub consents: Vec<(String, String)>,
    /// Consent: whether staff attestation is allowed; a `to_sign` to send instead of a consent
    /// challenge (a hostile gateway).
    pub allow_attest: bool,
    pub consent_to_sign: Option<Vec<u8>>,
    /// Emergency declarations (break-glass).
    pub emergency: super::emergency::EmergencyDesk,
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

pub fn refusal(status: u16, code: &str) -> (u16, serde_json::Value) {
    (
        status,
        serde_json::json!({"error": code, "message_en": format!("refused: {code}"), "message_ja": "拒否されました"}),
    )
}

/// The gateway's side of the contract, with the checks that matter: the nonce is one-time, the
/// signature verifies with the key of the certificate the agent sent.
pub fn gateway_handler(state: Arc<Mutex<GatewayState>>) -> Handler {
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
                let to_sign = st
                    .login_to_sign
                    .clone()
                    .unwrap_or_else(|| wire::hpki_login_to_sign("127.0.0.1", TERMINAL_URN, &nonce));
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
            (method, p) if p.starts_with("/.sekisho/emergency/") => {
                super::emergency::handle(&mut st, method, p, &body)
            }
            _ => refusal(404, "not_found"),
        }
    })
}

pub async fn start_gateway(pki: &Pki, port: u16, state: &Arc<Mutex<GatewayState>>) -> TestServer {
    TestServer::start(
        server_tls(pki, true),
        port,
        gateway_handler(Arc::clone(state)),
    )
    .await
}

pub fn lock(state: &Mutex<GatewayState>) -> MutexGuard<'_, GatewayState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
