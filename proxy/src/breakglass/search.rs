//! Finding the patient by name (R-BG-1: "searches the patient by name"): a route that exists
//! only under a declaration in progress by this session, returns at most `search_limit`
//! patients, and is itself on record with the query and how many it found.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use sekisho_audit::Decision;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::PatientMatch;
use sekisho_store::break_glass::status;
use sekisho_store::patients;
use tracing::warn;

use super::EmergencyDesk;
use crate::body::Body;
use crate::endpoint::{error, json};
use crate::headers::escape_text;
use crate::sessions::Session;
use crate::signin::Caller;

/// Longest query, in characters.
const MAX_QUERY: usize = 64;

impl EmergencyDesk {
    /// `GET /.sekisho/emergency/search?declaration=ID&q=NAME`.
    pub(super) async fn search(
        &self,
        req: &Request<Incoming>,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let field = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        match self
            .find_by_name(field("declaration"), field("q"), session, caller)
            .await
        {
            Ok(found) => json(StatusCode::OK, &found),
            Err(reason) => error(reason),
        }
    }

    pub(super) async fn find_by_name(
        &self,
        declaration: &str,
        q: &str,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Result<Vec<PatientMatch>, Reason> {
        let in_progress = self.owned(declaration, session).await.is_ok_and(|d| {
            d.status == status::CHOOSE_PATIENT || d.status == status::AWAITING_SIGNATURE
        });
        let q = q.trim();
        let mut rec = self.record(
            caller,
            Some(session),
            Some(declaration).filter(|d| !d.is_empty()),
        );
        // Escaped once, like the other texts in details (`\u{5c71}` for 山), and quoted; a quote
        // in the query is escaped so the query cannot pass for the rest of the detail.
        rec.detail = Some(format!(
            "search \"{}\"",
            escape_text(q, MAX_QUERY * 4).replace('"', "\\\"")
        ));
        if !in_progress {
            rec.decision = Decision::Deny;
            rec.reason = Reason::BreakGlassSearchNotAllowed.code().into();
            let _ = self.audit.append(rec).await;
            return Err(Reason::BreakGlassSearchNotAllowed);
        }
        if q.is_empty() || q.chars().count() > MAX_QUERY || q.chars().any(char::is_control) {
            return Err(Reason::BadRequest);
        }
        let found =
            patients::search_by_name(&self.store, q, i64::from(self.cfg.break_glass.search_limit))
                .await
                .map_err(|e| {
                    warn!(error = %e, "cannot search patients by name");
                    Reason::Internal
                })?;
        // The search is on record, with what it returned, before anything is shown.
        rec.decision = Decision::Permit;
        rec.reason = "break_glass_search".into();
        rec.detail = Some(format!(
            "{}; {} found: {}",
            rec.detail.take().unwrap_or_default(),
            found.len(),
            found
                .iter()
                .map(|m| m.patient_id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
        if self.audit.append(rec).await.is_err() {
            return Err(Reason::AuditUnavailable);
        }
        Ok(found
            .into_iter()
            .map(|m| PatientMatch {
                patient: m.patient_id,
                name: m.name,
                kana: m.kana,
                birth_date: m.birth_date,
                sex: m.sex,
            })
            .collect())
    }
}
