//! The one per-request context the phases read and fill in, in order: who asked (the
//! connection, then the terminal and the person), what for (the route), on what grounds (the
//! grant), and the decision record that says all of it.

use std::sync::Arc;
use std::time::Instant;

use http::Request;
use hyper::body::Incoming;
use sekisho_audit::{AuditRecord, Event};
use sekisho_policies::{AdminKind, RouteConfig};
use sekisho_protocol::{TerminalId, new_request_id};
use sekisho_store::consent::Entry;

use super::connection::Connection;
use crate::headers;
use crate::metrics::Metrics;
use crate::patients::Grant;
use crate::sessions::Session;

pub(super) struct RequestCtx<'a> {
    pub conn: &'a Connection,
    /// Names the request in the audit log, on the refusal page and in the assertion.
    pub id: String,
    pub started: Instant,
    /// The client prefers JSON to HTML for a refusal.
    pub wants_json: bool,
    /// The decision record, filled in as facts become known.
    pub record: AuditRecord,
    /// identify: the registered, active terminal and its certificate serial.
    pub terminal: Option<(&'a str, &'a TerminalId)>,
    /// identify: the connection came through this terminal's own tunnel.
    pub via_own_tunnel: bool,
    /// session: the person signed in on the terminal, if any.
    pub session: Option<Arc<Session>>,
    /// route: what the request asks for.
    pub route: Option<Routed<'a>>,
    /// authorize: what a patient's permission rests on ("registry", or a consent window's
    /// "patient_card" / "staff_attested").
    pub consent_basis: Option<&'static str>,
    /// authorize: on `enter`, the entry recorded for this request; on `confirm`, the entry
    /// confirmed, as the gateway recorded it (R-ROLE-2).
    pub entry: Option<Entry>,
    /// authorize: the emergency grant the access rests on (R-PAT-4, R-BG-1).
    pub grant: Option<Grant>,
    /// maintenance: the notices the terminal's facility is shown (the `sekisho-notices`
    /// header forward and outcome set).
    pub notices_shown: usize,
    /// fan-out: the terminal's count of requests holding an upstream connection, kept until
    /// the answer has been passed on (`fanout.rs`).
    pub upstream_permit: Option<super::fanout::LoadPermit>,
}

/// A request mapped to a route of the route map.
pub(super) struct Routed<'a> {
    pub config: &'a RouteConfig,
    pub patient: Option<String>,
    /// The entry a `confirm` route names.
    pub entry_id: Option<String>,
    /// Admin routes: what is administered and the owning facility (R-ACCT-8).
    pub admin: Option<(AdminKind, String)>,
    /// The normalised path (and the query as sent): matched and forwarded, the same bytes.
    pub path_and_query: String,
}

impl<'a> RequestCtx<'a> {
    /// Before anything reads the request: identity headers a client could have sent are
    /// removed, the request gets its id, and its record its first facts.
    pub fn accept(conn: &'a Connection, req: &mut Request<Incoming>, metrics: &Metrics) -> Self {
        let removed = headers::strip_spoofable(req.headers_mut());
        if removed > 0 {
            metrics.spoofed_headers_removed.inc_by(removed as u64);
        }
        let id = new_request_id();
        let record = AuditRecord {
            request_id: id.clone(),
            event: Event::Request,
            peer: Some(conn.peer.to_string()),
            cert_serial: conn.serial().map(str::to_string),
            method: Some(headers::escape_text(req.method().as_str(), 16)),
            path: Some(headers::escape_text(req.uri().path(), 512)),
            ..Default::default()
        };
        RequestCtx {
            conn,
            id,
            started: Instant::now(),
            wants_json: super::refusal::wants_json(req.headers()),
            record,
            terminal: None,
            via_own_tunnel: false,
            session: None,
            route: None,
            consent_basis: None,
            entry: None,
            grant: None,
            notices_shown: 0,
            upstream_permit: None,
        }
    }

    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
