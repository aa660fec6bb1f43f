//! The in-test gateway's emergency desk: declarations begun by the agent or prepared "on the
//! page", their texts (or a hostile stand-in for them), and the signature checks the real
//! gateway makes (one nonce, the session's card, the signature over the exact bytes).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use hyper::Method;
use sekisho_protocol::wire::{CardAnswer, Declaration, DeclarationRequest, DeclarationState};

use super::gateway::{GatewayState, refusal};
use super::pki::TERMINAL_URN;

/// Turns the declaration's real text into what the gateway sends instead (a hostile gateway).
pub type Tamper = Box<dyn Fn(&Declaration) -> Vec<u8> + Send>;

pub struct Drafted {
    pub declaration: Declaration,
    /// What was sent to be signed.
    pub to_sign: Vec<u8>,
    pub status: String,
    pub expires_at: Option<i64>,
}

/// A signature the desk accepted.
pub struct Signed {
    pub id: String,
    pub to_sign: Vec<u8>,
    pub certificate: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Default)]
pub struct EmergencyDesk {
    pub declarations: BTreeMap<String, Drafted>,
    /// Declarations begun through the API (not prepared on the page).
    pub begun: usize,
    pub signed: Vec<Signed>,
    /// Applied to the next texts made.
    pub tamper: Option<Tamper>,
    /// Refuse the next declarations with this status and code.
    pub refuse: Option<(u16, &'static str)>,
    next: u32,
}

/// The category that waits for a second person's approval.
pub const APPROVAL_CATEGORY: &str = "child_protection";
/// How long a grant lasts here.
pub const GRANT_SECS: i64 = 4 * 3600;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl EmergencyDesk {
    /// A declaration as the terminal's page prepares it: waiting for the card.
    pub fn prepare(&mut self, patient: &str, category: &str, justification: &str) -> String {
        self.next += 1;
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).unwrap();
        let declared_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let declaration = Declaration {
            gateway: "127.0.0.1".into(),
            terminal: TERMINAL_URN.into(),
            declaration: format!("bg-{:04}", self.next),
            user: "yamada.taro".into(),
            patient: patient.into(),
            category: category.into(),
            justification: justification.into(),
            declared_at,
            nonce: B64URL.encode(nonce),
        };
        let to_sign = match &self.tamper {
            Some(f) => f(&declaration),
            None => declaration.to_sign(),
        };
        let id = declaration.declaration.clone();
        self.declarations.insert(
            id.clone(),
            Drafted {
                declaration,
                to_sign,
                status: "awaiting_signature".into(),
                expires_at: None,
            },
        );
        id
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let d = &self.declarations[id];
        let awaiting = d.status == "awaiting_signature";
        serde_json::to_value(DeclarationState {
            id: id.to_string(),
            status: d.status.clone(),
            patient: Some(d.declaration.patient.clone()),
            category: d.declaration.category.clone(),
            to_sign: awaiting.then(|| B64.encode(&d.to_sign)),
            nonce: awaiting.then(|| d.declaration.nonce.clone()),
            expires_at: d.expires_at,
            allows: (d.status == "active").then(|| "view".to_string()),
        })
        .unwrap()
    }
}

/// `/.sekisho/emergency/…` for the terminal whose state is `st`.
pub fn handle(
    st: &mut GatewayState,
    method: Method,
    path: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    if !st.signed_in {
        return refusal(403, "break_glass_not_permitted");
    }
    match (method, path) {
        (Method::POST, "/.sekisho/emergency/declarations") => {
            let Ok(req) = serde_json::from_slice::<DeclarationRequest>(body) else {
                return refusal(400, "bad_request");
            };
            if let Some((status, code)) = st.emergency.refuse {
                return refusal(status, code);
            }
            let Some(patient) = req.patient else {
                return refusal(400, "bad_request");
            };
            let desk = &mut st.emergency;
            desk.begun += 1;
            let id = desk.prepare(&patient, &req.category, &req.justification);
            (201, desk.state(&id))
        }
        (Method::GET, "/.sekisho/emergency/pending") => {
            let desk = &st.emergency;
            let pending: Vec<_> = desk
                .declarations
                .iter()
                .filter(|(_, d)| d.status == "awaiting_signature")
                .map(|(id, _)| desk.state(id))
                .collect();
            (200, serde_json::Value::Array(pending))
        }
        (Method::POST, p) => {
            let Some(id) = p
                .strip_prefix("/.sekisho/emergency/declarations/")
                .and_then(|r| r.strip_suffix("/signature"))
            else {
                return refusal(404, "not_found");
            };
            let Ok(answer) = serde_json::from_slice::<CardAnswer>(body) else {
                return refusal(400, "bad_request");
            };
            let session_card = st.logins.last().cloned();
            let desk = &mut st.emergency;
            let Some(d) = desk.declarations.get_mut(id) else {
                return refusal(404, "break_glass_declaration_not_found");
            };
            if d.status != "awaiting_signature" {
                return refusal(409, "break_glass_declaration_state");
            }
            if answer.nonce != d.declaration.nonce {
                return refusal(401, "break_glass_signature_invalid");
            }
            let certificate = B64.decode(&answer.certificate).unwrap();
            let signature = B64.decode(&answer.signature).unwrap();
            if session_card.as_deref() != Some(certificate.as_slice()) {
                return refusal(403, "break_glass_card_mismatch");
            }
            let (_, x509) = x509_parser::parse_x509_certificate(&certificate).unwrap();
            let spki = &x509.tbs_certificate.subject_pki.subject_public_key.data;
            if aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                spki,
            )
            .verify(&d.to_sign, &signature)
            .is_err()
            {
                return refusal(401, "break_glass_signature_invalid");
            }
            if d.declaration.category == APPROVAL_CATEGORY {
                d.status = "awaiting_approval".into();
            } else {
                d.status = "active".into();
                d.expires_at = Some(now() + GRANT_SECS);
            }
            desk.signed.push(Signed {
                id: id.to_string(),
                to_sign: d.to_sign.clone(),
                certificate,
                signature,
            });
            (200, desk.state(id))
        }
        _ => refusal(404, "not_found"),
    }
}
