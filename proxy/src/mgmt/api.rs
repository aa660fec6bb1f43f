//! The management API under `/api/v1/` (issue 13, R-OPS-4: remote maintenance goes through
//! here and is on record). Every call needs `Authorization: Bearer <token>` with a live token
//! made by `sekisho operator-token add`; a call without one is refused (401) and the attempt is
//! on record. A token may only what its scopes say ([`SCOPES`]; 403 otherwise, on record). Each call is recorded before it is answered or acted on, naming the token
//! (`token:NAME`) and the peer; a change goes through the same store functions as the CLI.
//!
//! ```text
//! GET  /api/v1/status                      node, readiness, audit log size, maintenance in force
//! GET  /api/v1/audit/records?…             the audit search (fields as the console's; times in ms)
//! GET  /api/v1/notices                     notices and maintenance windows current now
//! POST /api/v1/maintenance/start           {"end": RFC 3339, "ja", "en", "facilities"?, "exempt_terminals"?, "exempt_users"?}
//! POST /api/v1/maintenance/end             {"id"?}: one window, or every one in force
//! POST /api/v1/facilities/{id}/suspend     {"reason"}
//! POST /api/v1/facilities/{id}/resume      {"reason"}
//! ```

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sekisho_audit::search::{Cursor, Filter, latest_checkpoint, search};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use sekisho_store::facilities::Change;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Management, text};
use crate::body::Body;
use crate::notices::{NoticeAsk, end_window, in_force, operation_record, parse_time};
use crate::oversight::{NotMade, act_over, recorded};

pub const PREFIX: &str = "/api/";

/// What a token may be given: `status` (the status call), `audit` (read the audit log),
/// `notices` (read notices and windows), `maintenance` (start and end windows), `facilities`
/// (suspend and resume facilities).
pub const SCOPES: [&str; 5] = ["status", "audit", "notices", "maintenance", "facilities"];

/// Largest request body the API reads.
const MAX_BODY: usize = 16 * 1024;
/// Largest page of records.
const MAX_PAGE: i64 = 200;

/// The SHA-256 of a token, as the store keeps it.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A new token: `skm_` and 256 random bits, base64url.
pub fn new_token() -> String {
    use base64::Engine;
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
    format!(
        "skm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

fn json_response(status: StatusCode, v: Value) -> Response<Body> {
    text(status, "application/json", v.to_string())
}

fn refused(n: &NotMade) -> Response<Body> {
    let status = match n.reason {
        Reason::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Reason::NotFound => StatusCode::NOT_FOUND,
        Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json_response(
        status,
        json!({"error": n.reason.code(), "message": n.detail}),
    )
}

impl Management {
    pub(super) async fn api(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let base = AuditRecord {
            request_id: sekisho_protocol::new_request_id(),
            peer: Some(peer.to_string()),
            method: Some(req.method().to_string()),
            path: Some(crate::headers::escape_text(req.uri().path(), 200)),
            ..Default::default()
        };
        let Some((name, scopes)) = self.authenticate(&req).await else {
            // On record: a wrong token at the management listener is someone trying.
            let rec = AuditRecord {
                event: Event::Auth,
                decision: Decision::Deny,
                reason: "management_token_invalid".into(),
                ..base
            };
            if let Err(e) = self.audit.append(rec).await {
                tracing::warn!(error = %e, "cannot record a refused management call");
            }
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "management_token_invalid", "message": "a live operator token is needed: Authorization: Bearer <token> (sekisho operator-token add)"}),
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        };
        let actor = format!("token:{name} (management from {peer})");
        if let Err(l) = self
            .throttle
            .check(crate::throttle::Scope::ManagementToken, &name)
        {
            return self.limited(&l, peer, Some(actor));
        }
        let base = AuditRecord {
            actor: Some(actor.clone()),
            ..base
        };
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        // `/api/v1/…`: the version is part of the match.
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        let needs = match segments.as_slice() {
            ["v1", "status"] => "status",
            ["v1", "audit", ..] => "audit",
            ["v1", "notices"] => "notices",
            ["v1", "maintenance", ..] => "maintenance",
            ["v1", "facilities", ..] => "facilities",
            _ => "",
        };
        if !needs.is_empty() && !scopes.iter().any(|s| s == needs) {
            let rec = AuditRecord {
                event: Event::Auth,
                decision: Decision::Deny,
                reason: "management_scope".into(),
                detail: Some(format!("the token has no scope {needs}")),
                ..base
            };
            if let Err(e) = self.audit.append(rec).await {
                tracing::warn!(error = %e, "cannot record a refused management call");
            }
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"error": "management_scope", "message": format!("this token may not {needs}: see `sekisho operator-token list`")}),
            );
        }
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "status"]) => self.status(base).await,
            (&Method::GET, ["v1", "audit", "records"]) => self.records(base, &query).await,
            (&Method::GET, ["v1", "notices"]) => self.notices_now(base).await,
            (&Method::POST, ["v1", "maintenance", "start"]) => {
                self.maintenance_start(base, &actor, &body).await
            }
            (&Method::POST, ["v1", "maintenance", "end"]) => {
                self.maintenance_end(base, &body).await
            }
            (&Method::POST, ["v1", "facilities", id, act @ ("suspend" | "resume")]) => {
                self.facility(base, id, act, &body).await
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": "no such API call (see docs/operations.md)"}),
            ),
        }
    }

    async fn authenticate(&self, req: &Request<Incoming>) -> Option<(String, Vec<String>)> {
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        if !token.starts_with("skm_") || token.len() > 100 {
            return None;
        }
        // Looked up by its hash: the token itself is never compared or kept.
        match sekisho_store::operator_tokens::check(&self.store, &token_hash(token)).await {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check an operator token");
                None
            }
        }
    }

    /// Reads are on record too: what was asked, before it is answered.
    async fn on_record(
        &self,
        base: AuditRecord,
        reason: &str,
        detail: String,
    ) -> Result<(), Response<Body>> {
        let rec = AuditRecord {
            event: Event::Report,
            decision: Decision::Permit,
            reason: reason.into(),
            detail: Some(detail),
            ..base
        };
        match self.audit.append(rec).await {
            Ok(_) => Ok(()),
            Err(e) => Err(refused(&NotMade::new(
                Reason::AuditUnavailable,
                format!("nothing is answered: the call could not be recorded: {e}"),
            ))),
        }
    }

    async fn status(&self, base: AuditRecord) -> Response<Body> {
        if let Err(r) = self
            .on_record(base, "management_status", String::new())
            .await
        {
            return r;
        }
        let t = sekisho_store::now();
        let read = async {
            let cp = latest_checkpoint(&self.store, &self.verifiers).await?;
            let current = sekisho_store::notices::current(&self.store).await?;
            anyhow::Ok((cp, current))
        };
        let (cp, current) = match read.await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the gateway's status");
                return refused(&NotMade::new(Reason::Internal, "cannot read the store"));
            }
        };
        let windows: Vec<Value> = current
            .into_iter()
            .filter(|n| n.in_force(t))
            .map(|n| json!({"id": n.id, "ends_at": n.ends_at, "facilities": n.audience}))
            .collect();
        json_response(
            StatusCode::OK,
            json!({
                "node": self.node,
                "version": env!("CARGO_PKG_VERSION"),
                "ready": self.ready.load(std::sync::atomic::Ordering::Acquire),
                "audit": cp.map(|c| json!({"tree_size": c.tree_size, "checkpoint_at": c.created_at, "signature_valid": c.signature_valid})),
                "maintenance_in_force": windows,
            }),
        )
    }

    async fn records(&self, base: AuditRecord, query: &str) -> Response<Body> {
        let (filter, before, limit) = match parse_search(query) {
            Ok(x) => x,
            Err(m) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bad_request", "message": m}),
                );
            }
        };
        let asked = crate::headers::escape_text(query, 500);
        if let Err(r) = self
            .on_record(base, "audit_search", format!("audit search: {asked}"))
            .await
        {
            return r;
        }
        // Records made durable a moment ago (this node's journal) reach the tables first.
        self.audit
            .caught_up(std::time::Duration::from_secs(2))
            .await;
        let found = async {
            let cp = latest_checkpoint(&self.store, &self.verifiers).await?;
            search(&self.store, &filter, before, limit, cp.as_ref()).await
        }
        .await;
        match found {
            Ok(page) => json_response(
                StatusCode::OK,
                json!({
                    "records": page.rows.iter().map(|f| json!({
                        "idx": f.idx,
                        "leaf_matches": f.leaf_matches,
                        "in_signed_checkpoint": f.in_signed_checkpoint,
                        "pruned": f.pruned,
                        "record": f.record,
                    })).collect::<Vec<_>>(),
                    "older": page.older.map(|c| c.to_string()),
                }),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot search the audit log");
                refused(&NotMade::new(
                    Reason::Internal,
                    "cannot search the audit log",
                ))
            }
        }
    }

    async fn notices_now(&self, base: AuditRecord) -> Response<Body> {
        if let Err(r) = self.on_record(base, "notices_read", String::new()).await {
            return r;
        }
        match sekisho_store::notices::current(&self.store).await {
            Ok(list) => json_response(
                StatusCode::OK,
                json!({"notices": list.iter().map(|n| json!({
                    "id": n.id, "kind": n.kind, "text_ja": n.text_ja, "text_en": n.text_en,
                    "starts_at": n.window_start(), "ends_at": n.ends_at, "facilities": n.audience,
                    "exempt_terminals": n.exempt_terminals, "exempt_users": n.exempt_users,
                    "in_force": n.in_force(sekisho_store::now()),
                })).collect::<Vec<_>>()}),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notices");
                refused(&NotMade::new(Reason::Internal, "cannot read the notices"))
            }
        }
    }

    async fn maintenance_start(
        &self,
        base: AuditRecord,
        actor: &str,
        body: &[u8],
    ) -> Response<Body> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            end: String,
            ja: String,
            en: String,
            #[serde(default)]
            facilities: Vec<String>,
            #[serde(default)]
            exempt_terminals: Vec<String>,
            #[serde(default)]
            exempt_users: Vec<String>,
        }
        let ask = serde_json::from_slice::<Ask>(body)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                let end = parse_time(&a.end).map_err(|e| e.to_string())?;
                NoticeAsk {
                    maintenance: true,
                    ja: a.ja,
                    en: a.en,
                    start: 0,
                    end,
                    facilities: a.facilities,
                    exempt_terminals: a.exempt_terminals,
                    exempt_users: a.exempt_users,
                    now: true,
                }
                .checked()
                .map_err(|e| e.to_string())
            });
        let ask = match ask {
            Ok(a) => a,
            Err(m) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bad_request", "message": m}),
                );
            }
        };
        let rec = act_over(ask.record(), base);
        match recorded(&self.audit, rec, ask.open(&self.store, actor)).await {
            Ok(id) => json_response(StatusCode::OK, json!({"id": id, "ends_at": ask.end})),
            Err(n) => refused(&n),
        }
    }

    async fn maintenance_end(&self, base: AuditRecord, body: &[u8]) -> Response<Body> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            id: Option<String>,
        }
        let ask: Ask = if body.is_empty() {
            Ask::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(a) => a,
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "bad_request", "message": e.to_string()}),
                    );
                }
            }
        };
        let ids = match ask.id {
            Some(id) if sekisho_protocol::ids::is_valid_id(&id) => vec![id],
            Some(_) => {
                return refused(&NotMade::new(
                    Reason::NotFound,
                    "no such maintenance window",
                ));
            }
            None => match in_force(&self.store).await {
                Ok(ids) if !ids.is_empty() => ids,
                Ok(_) => {
                    return refused(&NotMade::new(
                        Reason::NotFound,
                        "no maintenance window is in force",
                    ));
                }
                Err(e) => return refused(&NotMade::new(Reason::Internal, e.to_string())),
            },
        };
        for id in &ids {
            let rec = act_over(
                operation_record("maintenance_ended", id.clone()),
                base.clone(),
            );
            if let Err(n) = recorded(&self.audit, rec, end_window(&self.store, id)).await {
                return refused(&n);
            }
        }
        json_response(StatusCode::OK, json!({"ended": ids}))
    }

    async fn facility(
        &self,
        base: AuditRecord,
        id: &str,
        act: &str,
        body: &[u8],
    ) -> Response<Body> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            reason: String,
        }
        let reason = match serde_json::from_slice::<Ask>(body) {
            Ok(a) => a.reason,
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bad_request", "message": e.to_string()}),
                );
            }
        };
        let note = match crate::facilities::check_note(&reason) {
            Ok(n) => n.to_string(),
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bad_request", "message": e.to_string()}),
                );
            }
        };
        if !sekisho_protocol::ids::is_valid_id(id) {
            return refused(&NotMade::new(Reason::NotFound, "no such facility"));
        }
        let change = if act == "suspend" {
            Change::Suspend
        } else {
            Change::Resume
        };
        let rec = act_over(crate::facilities::record(id, change, &note), base);
        let changed = recorded(
            &self.audit,
            rec,
            crate::facilities::change_status(&self.store, None, id, change, &note),
        )
        .await;
        match changed {
            Ok(c) => json_response(
                StatusCode::OK,
                json!({"facility": id, "sessions_ended": c.sessions_ended}),
            ),
            Err(n) => refused(&n),
        }
    }
}

/// `rec`'s own fields, with the caller's (request id, peer, actor, method, path) from `base`.
async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, Response<Body>> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(b) => Ok(b.to_bytes().to_vec()),
        Err(_) => Err(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "body_too_large", "message": "at most 16 KiB"}),
        )),
    }
}

/// The audit search's query: the console's fields (`user`, `terminal`, `facility`, `patient`,
/// `route`, `event`, `decision`, `reason`, `bg`, `request`), times `from_ms`/`to_ms` (Unix
/// milliseconds), `before` (a page cursor) and `limit` (at most 200).
fn parse_search(query: &str) -> Result<(Filter, Option<Cursor>, i64), String> {
    let mut f = Filter::default();
    let mut before = None;
    let mut limit = 50;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        let ms = || {
            v.parse::<i64>()
                .map_err(|_| format!("{k} is Unix milliseconds"))
        };
        match k.as_ref() {
            "user" => f.user = Some(v),
            "terminal" => f.terminal = Some(v),
            "facility" => f.facility = Some(v),
            "patient" => f.patient = Some(v),
            "route" => f.route = Some(v),
            "event" => f.event = Some(v),
            "decision" => f.decision = Some(v),
            "reason" => f.reason = Some(v),
            "bg" => f.break_glass_id = Some(v),
            "request" => f.request_id = Some(v),
            "from_ms" => f.from_ms = Some(ms()?),
            "to_ms" => f.to_ms = Some(ms()?),
            "before" => before = Some(v.parse::<Cursor>().map_err(|e| e.to_string())?),
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit is 1 to {MAX_PAGE}"))?;
            }
            other => return Err(format!("unknown search field {other:?}")),
        }
    }
    Ok((f, before, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_queries() {
        let (f, b, l) = parse_search("facility=f1&from_ms=5&before=7.3&limit=10").unwrap();
        assert_eq!(f.facility.as_deref(), Some("f1"));
        assert_eq!(f.from_ms, Some(5));
        assert_eq!(b, Some(Cursor { ts: 7, idx: 3 }));
        assert_eq!(l, 10);
        assert!(parse_search("limit=500").is_err());
        assert!(parse_search("nope=1").is_err());
        assert!(parse_search("from_ms=yesterday").is_err());
    }

    #[test]
    fn tokens_are_random_and_kept_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("skm_") && a.len() == 4 + 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
