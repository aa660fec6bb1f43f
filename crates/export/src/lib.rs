//! Audit export (issue 13, R-LOG-1): the audit log streamed to the tools a network already
//! uses, as its records become durable, each destination from its own cursor in the store
//! (`docs/audit.md`, "Export").
//!
//! - `source`: the log read in leaf order from a cursor (committed records only: batches
//!   commit in leaf order, so what one reads has no holes);
//! - `codes`: what a record is in DICOM's and FHIR's vocabularies (one table for both);
//! - `atna`, `fhir`, `jsonl`: the three forms — an IHE ATNA / DICOM audit message, a FHIR R4
//!   AuditEvent, the record as stored with its leaf index and hash;
//! - `syslog`, `file`, `http`: where they go — RFC 5424 syslog over TLS (RFC 5425), an
//!   append-only file (NDJSON), a FHIR server (a `batch` Bundle);
//! - `pump`: one task per destination, on the replica that holds its lease.
//!
//! Delivery is at least once and made idempotent where the receiver allows: a file resumes
//! after the last line it holds, a FHIR server gets each event under a fixed id (PUT), and a
//! syslog message carries the leaf index (`[meta sequenceId]`) for the rare repeat after a
//! broken connection (see `syslog`).

pub mod atna;
pub mod codes;
pub mod fhir;
mod file;
mod http;
pub mod jsonl;
mod pump;
pub mod source;
pub mod syslog;

use aws_lc_rs::digest::{SHA256, digest};
use sekisho_audit::AuditRecord;

pub use http::FhirServer;
pub use pump::{Destination, ExportMetrics, ExportPump, PumpConfig, Sink, Start};
pub use syslog::{SyslogSink, SyslogTarget};

/// The three forms a record is exported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IHE ATNA / DICOM PS3.15 A.5 audit message (XML).
    Atna,
    /// FHIR R4 AuditEvent (JSON).
    Fhir,
    /// The record as the log holds it, with its leaf index and hash (JSON lines).
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "atna" => Some(Format::Atna),
            "fhir" => Some(Format::Fhir),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Atna => "atna",
            Format::Fhir => "fhir",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Who is speaking, in every exported form.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The network (ATNA AuditEnterpriseSiteID, FHIR source.site).
    pub site: String,
    /// This gateway node, for records that do not name theirs.
    pub node: String,
    /// The log's checkpoint origin (`sekisho.<host>/audit`).
    pub origin: String,
    /// A short, stable name of the log: the first 16 hex digits of the origin's SHA-256. In
    /// FHIR ids, so two networks' events never collide on one server.
    pub log: String,
    /// The OID of the network's patient identifiers (`urn:oid:…` in FHIR, the assigning
    /// authority of the CX in ATNA); none: Sekisho's own namespace.
    pub patient_oid: Option<String>,
}

impl Identity {
    pub fn new(site: &str, node: &str, origin: &str, patient_oid: Option<String>) -> Identity {
        let h = digest(&SHA256, origin.as_bytes());
        Identity {
            site: site.to_string(),
            node: node.to_string(),
            origin: origin.to_string(),
            log: hex::encode(&h.as_ref()[..8]),
            patient_oid,
        }
    }

    pub fn node_or(&self, rec: &AuditRecord) -> String {
        if rec.node.is_empty() {
            self.node.clone()
        } else {
            rec.node.clone()
        }
    }

    /// The FHIR id of the record at `idx` (`[A-Za-z0-9.-]{1,64}`).
    pub fn resource_id(&self, idx: u64) -> String {
        format!("{}-{idx}", self.log)
    }

    /// The identifier system of Sekisho's own names (`user`, `terminal`, `request`).
    pub fn system(&self, kind: &str) -> String {
        format!("urn:sekisho:{kind}")
    }

    pub fn patient_system(&self) -> String {
        match &self.patient_oid {
            Some(oid) => format!("urn:oid:{oid}"),
            None => self.system("patient"),
        }
    }

    /// A patient id as an HL7 v2 CX (ATNA's ParticipantObjectID for a patient), with the
    /// network's assigning authority when it has one. `^` and `&` in the id are escaped as HL7
    /// says (`\S\`, `\T\`), so an id cannot forge components.
    pub fn patient_cx(&self, id: &str) -> String {
        let esc = id
            .replace('\\', "\\E\\")
            .replace('^', "\\S\\")
            .replace('&', "\\T\\")
            .replace('~', "\\R\\")
            .replace('|', "\\F\\");
        match &self.patient_oid {
            Some(oid) => format!("{esc}^^^&{oid}&ISO"),
            None => esc,
        }
    }
}

/// Whether `s` is an OID (dotted decimal, no leading zeros), as the config demands.
pub fn is_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').count() >= 2
        && s.split('.').all(|arc| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc == "0" || !arc.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_short_and_fhir_shaped() {
        let id = Identity::new("net", "gw1", "sekisho.example/audit", None);
        assert_eq!(id.log.len(), 16);
        let rid = id.resource_id(123_456);
        assert!(rid.len() <= 64 && rid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(
            id.resource_id(1),
            Identity::new("x", "y", "sekisho.example/audit", None).resource_id(1)
        );
    }

    #[test]
    fn patient_ids_cannot_forge_cx_components() {
        let id = Identity::new("n", "g", "o", Some("1.2.392.200119.6.102".into()));
        assert_eq!(id.patient_cx("P1"), "P1^^^&1.2.392.200119.6.102&ISO");
        assert_eq!(
            id.patient_cx("P^1&x"),
            "P\\S\\1\\T\\x^^^&1.2.392.200119.6.102&ISO"
        );
        assert!(is_oid("1.2.392.200119") && !is_oid("1.02") && !is_oid("1") && !is_oid("1.a"));
    }
}

#[cfg(test)]
mod pump_tests;
#[cfg(test)]
mod schema_tests;
