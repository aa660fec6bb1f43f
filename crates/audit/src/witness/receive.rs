//! The receiving side of the HTTPS witness protocol (`https.rs`), on a directory witness: what
//! `sekisho audit witness` serves on another node, and what a test receiver can run.

use std::fmt::Display;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use super::{DirWitness, Outcome};
use crate::checkpoint::SignedCheckpoint;

/// Says why a checkpoint was refused: `older`, `fork` or `other-log`.
pub const REFUSAL_HEADER: &str = "sekisho-witness-refusal";
const MAX_NOTE: usize = 64 * 1024;

/// Answers one request on `witness`. `token`: the bearer token callers must present, if any.
pub async fn receive(
    witness: &DirWitness,
    token: Option<&str>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(want) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), want.as_bytes())
            .is_err()
        {
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                "a bearer token is needed\n".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    match *req.method() {
        Method::GET | Method::HEAD => {
            let w = witness.clone();
            match tokio::task::spawn_blocking(move || w.latest()).await {
                Ok(Ok(Some(cp))) => answer(StatusCode::OK, cp.note),
                Ok(Ok(None)) => answer(StatusCode::NOT_FOUND, "no checkpoint yet\n".into()),
                Ok(Err(e)) => failed(e),
                Err(e) => failed(e),
            }
        }
        Method::POST => {
            let body = match Limited::new(req.into_body(), MAX_NOTE).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            let Ok(text) = String::from_utf8(body.to_vec()) else {
                return answer(StatusCode::BAD_REQUEST, "the note is not UTF-8\n".into());
            };
            let cp = match SignedCheckpoint::parse(&text) {
                Ok(cp) => cp,
                Err(e) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        format!("not a signed checkpoint: {e:#}\n"),
                    );
                }
            };
            if !witness.signed_by_log(&cp.note) {
                return answer(
                    StatusCode::FORBIDDEN,
                    "the checkpoint is not signed by the log's key\n".into(),
                );
            }
            let w = witness.clone();
            let size = cp.size();
            match tokio::task::spawn_blocking(move || w.submit(&cp)).await {
                Ok(Ok(Outcome::Accepted)) => {
                    tracing::info!(witness = %witness.dir().display(), size, "witness: checkpoint taken");
                    answer(StatusCode::OK, text)
                }
                Ok(Ok(Outcome::Refused { refusal, held })) => {
                    tracing::error!(witness = %witness.dir().display(), size, %refusal, "witness: checkpoint REFUSED");
                    let mut r = answer(
                        StatusCode::CONFLICT,
                        held.map(|h| h.note).unwrap_or_default(),
                    );
                    r.headers_mut()
                        .insert(REFUSAL_HEADER, HeaderValue::from_static(refusal.code()));
                    r
                }
                Ok(Err(e)) => failed(e),
                Err(e) => failed(e),
            }
        }
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n".into()),
    }
}

fn failed(e: impl Display) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "witness: cannot read or write the directory");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "the witness cannot use its storage\n".into(),
    )
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
