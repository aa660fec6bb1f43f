//! One audit record: what the gateway decided about one request (or one TLS, enrollment or
//! registry event). Its canonical form is the compact JSON of the struct in field order with
//! absent optional fields left out; those exact bytes are stored and hashed into the tree.

use sekisho_store::direct::SharedText;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// What kind of happening a record is about.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A request through the terminal listener, decided (the durable decision record).
    #[default]
    Request,
    /// What became of a permitted request: the upstream's status, or why it failed.
    Outcome,
    /// A TLS handshake that was refused.
    Tls,
    /// A live connection closed because its terminal lost access.
    Connection,
    /// Sign-in, sign-out and password changes.
    Auth,
    /// A consent window from the patient card or an attestation.
    Consent,
    /// A terminal enrollment with an access code.
    Enrollment,
    /// A change to the registry made by the CLI or the gateway itself.
    Registry,
    /// An emergency access declaration and what follows it (R-BG-1..3).
    BreakGlass,
    /// A report produced from the audit log itself (a patient's access history for a
    /// disclosure request): who asked for it, and about whom.
    Report,
    /// An operation record (the networks' rules: maintenance, notices to users, backups):
    /// who did it and when.
    Operation,
}

impl Event {
    /// Every event, for the console's search form.
    pub const ALL: [Event; 11] = [
        Event::Request,
        Event::Outcome,
        Event::Tls,
        Event::Connection,
        Event::Auth,
        Event::Consent,
        Event::Enrollment,
        Event::Registry,
        Event::Report,
        Event::BreakGlass,
        Event::Operation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Request => "request",
            Event::Outcome => "outcome",
            Event::Tls => "tls",
            Event::Connection => "connection",
            Event::Auth => "auth",
            Event::Consent => "consent",
            Event::Enrollment => "enrollment",
            Event::Registry => "registry",
            Event::Report => "report",
            Event::BreakGlass => "break_glass",
            Event::Operation => "operation",
        }
    }
}

/// The gateway's answer. A record that says nothing else reads as a refusal.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Permit,
    #[default]
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// UTC, RFC 3339 with milliseconds; set when the record is appended if empty.
    pub time: String,
    pub request_id: String,
    pub event: Event,
    /// Gateway node name; set when the record is appended if empty.
    pub node: String,
    /// Client ip:port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Who made an administrative change, when that is not `user` (whom it is about): the
    /// operator named at the command line with the operating-system account, `name (os:root)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub decision: Decision,
    /// Stable reason code, e.g. "ok", "terminal_suspended", "route_not_mapped".
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Short free text; never request or response bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// The canonical bytes: what is stored and hashed.
    pub fn canonical_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).expect("an audit record serialises")
    }
}

/// A record ready for the writer: time and node filled in, canonical bytes computed, and the
/// query columns beside them, each shared so that binding it to the insert copies nothing
/// (`SharedText`).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub json: SharedText,
    pub ts_ms: i64,
    pub request_id: SharedText,
    pub event: Event,
    pub decision: Decision,
    pub node: SharedText,
    pub terminal: Option<SharedText>,
    pub user: Option<SharedText>,
    pub patient: Option<SharedText>,
    pub break_glass_id: Option<SharedText>,
    pub facility: Option<SharedText>,
    pub reason: SharedText,
    pub route: Option<SharedText>,
}

impl Prepared {
    pub fn new(mut rec: AuditRecord, node: &SharedText) -> Prepared {
        Prepared::stamp(&mut rec, node)
    }

    /// Fills in `rec`'s time (if empty) and node (if empty) in place, and takes what the log
    /// needs from it: the record itself stays with the caller, who may go on using it (a
    /// request's outcome record repeats its decision record).
    pub fn stamp(rec: &mut AuditRecord, node: &SharedText) -> Prepared {
        let now = OffsetDateTime::now_utc();
        let ts = if rec.time.is_empty() {
            rec.time = format_time(now);
            now
        } else {
            OffsetDateTime::parse(&rec.time, &Rfc3339).unwrap_or(now)
        };
        if rec.node.is_empty() {
            rec.node = node.as_str().to_string();
        }
        let json = canonical_text(rec);
        Prepared::of(rec, json, ts, node)
    }

    /// The query columns of `rec`, beside its canonical bytes.
    fn of(rec: &AuditRecord, json: SharedText, ts: OffsetDateTime, node: &SharedText) -> Prepared {
        let text = |s: &str| SharedText::from(s);
        let opt = |s: &Option<String>| s.as_deref().map(SharedText::from);
        Prepared {
            json,
            ts_ms: (ts.unix_timestamp_nanos() / 1_000_000) as i64,
            request_id: text(&rec.request_id),
            event: rec.event,
            decision: rec.decision,
            // The gateway's own node name, shared by all its records.
            node: if rec.node == node.as_str() {
                node.clone()
            } else {
                text(&rec.node)
            },
            terminal: opt(&rec.terminal),
            user: opt(&rec.user),
            patient: opt(&rec.patient),
            break_glass_id: opt(&rec.break_glass_id),
            facility: opt(&rec.facility),
            reason: text(&rec.reason),
            route: opt(&rec.route),
        }
    }

    /// A record read back from the journal: its bytes are kept exactly as they were hashed
    /// and journaled; the query columns are read from them.
    pub fn from_json(json: &str, node: &SharedText) -> anyhow::Result<Prepared> {
        let rec: AuditRecord = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("a journaled audit record does not parse: {e}"))?;
        let ts = OffsetDateTime::parse(&rec.time, &Rfc3339).map_err(|e| {
            anyhow::anyhow!(
                "a journaled audit record has a bad time {:?}: {e}",
                rec.time
            )
        })?;
        Ok(Prepared::of(&rec, SharedText::from(json), ts, node))
    }
}

/// [`AuditRecord::canonical_json`], shared. Serialised into a buffer kept by the thread and
/// copied out once: serde_json's own `Vec` starts at 128 bytes and grew three times for a
/// request's record (500-900 bytes), each growth a copy.
fn canonical_text(rec: &AuditRecord) -> SharedText {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        // A struct of strings and integers always serialises.
        serde_json::to_writer(&mut *buf, rec).expect("an audit record serialises");
        let json = SharedText::from(std::str::from_utf8(buf).expect("JSON is UTF-8"));
        // A rare large record (a long detail) does not keep its buffer on the thread.
        if buf.capacity() > 16 * 1024 {
            *buf = Vec::new();
        }
        json
    })
}

/// UTC, RFC 3339, milliseconds: `2025-04-01T09:30:00.123Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .expect("a UTC time formats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_in_field_order_and_skips_absent_fields() {
        let rec = AuditRecord {
            time: "2025-04-01T09:30:00.123Z".into(),
            request_id: "r1".into(),
            event: Event::Request,
            node: "gw1".into(),
            terminal: Some("t1".into()),
            decision: Decision::Deny,
            reason: "terminal_suspended".into(),
            upstream_status: Some(200),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(rec.canonical_json()).unwrap(),
            r#"{"time":"2025-04-01T09:30:00.123Z","request_id":"r1","event":"request","node":"gw1","terminal":"t1","decision":"deny","reason":"terminal_suspended","upstream_status":200}"#
        );
        let back: AuditRecord = serde_json::from_slice(&rec.canonical_json()).unwrap();
        assert_eq!(back, rec);
    }

    /// The thread's buffer is emptied between records: a short record after a long one is its
    /// own canonical bytes and nothing of the other's.
    #[test]
    fn prepared_json_is_the_records_canonical_bytes_each_time() {
        let long = AuditRecord {
            time: "2025-04-01T09:30:00.123Z".into(),
            node: "gw1".into(),
            request_id: "r-long".into(),
            detail: Some("x".repeat(20_000)),
            ..Default::default()
        };
        let short = AuditRecord {
            request_id: "r-short".into(),
            detail: None,
            ..long.clone()
        };
        for rec in [&long, &short, &long, &short] {
            let p = Prepared::new(rec.clone(), &"gw1".into());
            assert_eq!(p.json.as_bytes(), rec.canonical_json().as_slice());
        }
    }

    #[test]
    fn time_and_node_are_filled_in() {
        let p = Prepared::new(
            AuditRecord {
                request_id: "r".into(),
                ..Default::default()
            },
            &"gw9".into(),
        );
        let rec: AuditRecord = serde_json::from_str(&p.json).unwrap();
        assert_eq!(rec.node, "gw9");
        assert_eq!(
            rec.time.len(),
            "2025-04-01T09:30:00.123Z".len(),
            "{}",
            rec.time
        );
        assert!(rec.time.ends_with('Z'));
        let parsed = OffsetDateTime::parse(&rec.time, &Rfc3339).unwrap();
        assert_eq!((parsed.unix_timestamp_nanos() / 1_000_000) as i64, p.ts_ms);
        // A caller's time is kept.
        let p = Prepared::new(
            AuditRecord {
                time: "2025-04-01T09:30:00.123Z".into(),
                node: "a".into(),
                ..Default::default()
            },
            &"gw9".into(),
        );
        assert_eq!(p.ts_ms, 1_743_499_800_123);
        assert_eq!(p.node.as_str(), "a");
    }

    /// A record stamped in place keeps its time and node for the caller (the outcome record
    /// that repeats a decision), and the log's copy has the same bytes and columns.
    #[test]
    fn stamping_fills_the_callers_record_and_copies_its_columns() {
        let node: SharedText = "gw9".into();
        let mut rec = AuditRecord {
            request_id: "r1".into(),
            terminal: Some("t1".into()),
            facility: Some("f1".into()),
            route: Some("chart".into()),
            reason: "ok".into(),
            decision: Decision::Permit,
            ..Default::default()
        };
        let p = Prepared::stamp(&mut rec, &node);
        assert_eq!(rec.node, "gw9");
        assert!(!rec.time.is_empty());
        assert_eq!(p.json.as_bytes(), rec.canonical_json().as_slice());
        assert_eq!((p.request_id.as_str(), p.reason.as_str()), ("r1", "ok"));
        assert_eq!(p.terminal.as_deref(), Some("t1"));
        assert_eq!(p.facility.as_deref(), Some("f1"));
        assert_eq!(p.route.as_deref(), Some("chart"));
        assert_eq!((p.user.as_deref(), p.patient.as_deref()), (None, None));
        assert!(
            std::sync::Arc::ptr_eq(&p.node.0, &node.0),
            "the node's name is shared"
        );
        // Stamped again (the outcome), the decision's time is not reused once it is cleared.
        let first = rec.time.clone();
        rec.time.clear();
        rec.event = Event::Outcome;
        let again = Prepared::stamp(&mut rec, &node);
        assert!(again.ts_ms >= p.ts_ms);
        assert_eq!(again.event, Event::Outcome);
        assert_eq!(rec.time.len(), first.len());
    }

    #[test]
    fn format_time_uses_utc_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_743_499_800_123_456_789).unwrap();
        assert_eq!(format_time(t), "2025-04-01T09:30:00.123Z");
        let jst = t.to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
        assert_eq!(format_time(jst), "2025-04-01T09:30:00.123Z");
    }
}
