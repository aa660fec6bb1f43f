//! The plumbing of the gateway's own endpoints — sign-in, consent, enrollment: bodies read with
//! a bound, JSON answers that are never cached, and refusals as the JSON the terminal agent
//! reads (`{"error","message_en","message_ja"}`, [`sekisho_protocol::wire::ErrorBody`]).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::ErrorBody;
use serde::Serialize;

use crate::body::{Body, full};

/// Largest JSON body an own endpoint reads.
const MAX_JSON: usize = 64 * 1024;
/// Largest form an own page accepts.
const MAX_FORM: usize = 16 * 1024;

/// A bounded JSON body; a body too large or malformed is answered for the caller.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let body: Bytes = match Limited::new(req.into_body(), MAX_JSON).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(error(Reason::TooLarge)),
    };
    serde_json::from_slice(&body).map_err(|_| error(Reason::BadRequest))
}

/// A bounded `application/x-www-form-urlencoded` body.
pub async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<Body>> {
    match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(b) => Ok(form_urlencoded::parse(&b.to_bytes()).into_owned().collect()),
        Err(_) => Err(error(Reason::TooLarge)),
    }
}

/// A form field's value, or "" when absent.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub fn json(status: StatusCode, v: &impl Serialize) -> Response<Body> {
    // Our own types: serialising them cannot fail.
    let text = serde_json::to_string(v).expect("an answer serialises");
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A refusal as JSON, with the reason's status.
pub fn error(reason: Reason) -> Response<Body> {
    error_with(reason, reason.en().to_string())
}

/// A refusal whose English text carries a detail (e.g. why a CSR was not accepted).
pub fn error_with(reason: Reason, message_en: String) -> Response<Body> {
    json(
        reason.status(),
        &ErrorBody {
            error: reason.code().to_string(),
            message_en,
            message_ja: reason.ja().to_string(),
        },
    )
}

/// A form post must come from this gateway's own page: no `Origin` or `Sec-Fetch-Site` that
/// names another origin (`crate::origin`; scheme, host and port compared whole).
pub fn same_origin(req: &Request<Incoming>, hostname: &str) -> bool {
    !crate::origin::from_elsewhere(req.headers(), req.uri(), hostname)
}
