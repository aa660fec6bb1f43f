//! The follow-up of 004 8.2(4)(ウ): after the emergency, the physician records that the patient
//! gave permission — the patient's signature drawn on the terminal's page, or a scan of the
//! signed form. The evidence is kept whole in the data dir under its SHA-256, and the hash is in
//! the audit log, so it cannot be swapped later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sekisho_audit::Decision;
use sekisho_protocol::Reason;
use sekisho_store::break_glass as rows;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::EmergencyDesk;
use crate::body::Body;
use crate::endpoint::{error, json};
use crate::sessions::Session;
use crate::signin::Caller;

/// Largest evidence accepted (a signature image or a scanned page).
const MAX_EVIDENCE: usize = 2 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FollowUp {
    /// `signature` (drawn on the page) or `scan`.
    pub kind: String,
    /// `image/png`, `image/jpeg` or `application/pdf`.
    pub content_type: String,
    /// Base64 of the file.
    pub data: String,
}

#[derive(Serialize)]
struct Recorded<'a> {
    id: &'a str,
    follow_up: &'a str,
    sha256: &'a str,
}

impl EmergencyDesk {
    /// `POST /.sekisho/emergency/declarations/{id}/follow-up`.
    pub(super) async fn follow_up(
        &self,
        req: Request<Incoming>,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let body = match read_json_large(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match self.record_follow_up(&body, id, session, caller).await {
            Ok(sha) => json(
                StatusCode::OK,
                &Recorded {
                    id,
                    follow_up: &body.kind,
                    sha256: &sha,
                },
            ),
            Err(reason) => error(reason),
        }
    }

    pub(super) async fn record_follow_up(
        &self,
        f: &FollowUp,
        id: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<String, Reason> {
        let ext = match (f.kind.as_str(), f.content_type.as_str()) {
            ("signature" | "scan", "image/png") => "png",
            ("signature" | "scan", "image/jpeg") => "jpg",
            ("scan", "application/pdf") => "pdf",
            _ => return Err(Reason::BadRequest),
        };
        let data = B64
            .decode(f.data.trim().trim_start_matches("data:image/png;base64,"))
            .map_err(|_| Reason::BadRequest)?;
        let looks_right = match ext {
            "png" => data.starts_with(b"\x89PNG\r\n\x1a\n"),
            "jpg" => data.starts_with(&[0xFF, 0xD8, 0xFF]),
            _ => data.starts_with(b"%PDF-"),
        };
        if data.is_empty() || data.len() > MAX_EVIDENCE || !looks_right {
            return Err(Reason::BadRequest);
        }
        let d = self.owned(id, session).await?;
        if d.declared_at.is_none() {
            return Err(Reason::BreakGlassDeclarationState);
        }
        let sha = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
        let dir = self.evidence_dir.join(id);
        let path = dir.join(format!("{sha}.{ext}"));
        let written = std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|_| sekisho_store::durable::install_new_file(&dir, &path, &data, 0o600));
        if let Err(e) = written {
            warn!(error = %e, "cannot keep follow-up evidence");
            return Err(Reason::Internal);
        }
        let mut rec = self.record(caller, Some(session), Some(id));
        rec.patient = d.patient_id.clone();
        rec.decision = Decision::Permit;
        rec.reason = "break_glass_follow_up".into();
        rec.detail = Some(format!("{} {} sha256 {sha}", f.kind, f.content_type));
        if self.audit.append(rec).await.is_err() {
            return Err(Reason::AuditUnavailable);
        }
        match rows::follow_up(&self.store, id, &session.user_id, &f.kind, &sha).await {
            Ok(true) => Ok(sha),
            Ok(false) => Err(Reason::BreakGlassDeclarationState),
            Err(e) => {
                warn!(error = %e, "cannot record a follow-up");
                Err(Reason::Internal)
            }
        }
    }
}

/// The evidence is larger than other own endpoints' bodies.
async fn read_json_large(req: Request<Incoming>) -> Result<FollowUp, Response<Body>> {
    use http_body_util::{BodyExt, Limited};
    let limit = MAX_EVIDENCE * 4 / 3 + 4096;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(error(Reason::TooLarge)),
    };
    serde_json::from_slice(&body).map_err(|_| error(Reason::BadRequest))
}
