//! The audit record as the log's readers read it (`verify`, `search`, the export's source:
//! `serde_json` from the stored canonical JSON), and the exporters' renderings of any record:
//! the IHE ATNA message, the FHIR R4 AuditEvent and the JSON line.
//!
//! Invariants: a record that parses has canonical JSON that parses back to the same record
//! and is a fixed point; the ATNA message is well-formed XML (a strict parser reads it) with
//! `AuditMessage` as its root; the FHIR AuditEvent has no control characters but tab, CR and
//! LF in any string, no empty string, and its id is FHIR-shaped; the JSON line is one line of
//! JSON that carries the record's exact canonical bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_audit::AuditRecord;
use sekisho_export::source::Entry;
use sekisho_export::{Identity, atna, fhir, jsonl};
use serde_json::Value;

fn check_fhir_strings(v: &Value) {
    match v {
        Value::String(s) => {
            assert!(!s.is_empty(), "an empty FHIR string");
            assert!(
                !s.chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')),
                "a control character in a FHIR string: {s:?}"
            );
        }
        Value::Array(a) => a.iter().for_each(check_fhir_strings),
        Value::Object(o) => o.values().for_each(check_fhir_strings),
        _ => {}
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(rec) = serde_json::from_slice::<AuditRecord>(input) else {
        return;
    };
    let canonical = rec.canonical_json();
    let back: AuditRecord = serde_json::from_slice(&canonical).expect("canonical JSON parses");
    assert_eq!(back, rec);
    assert_eq!(
        back.canonical_json(),
        canonical,
        "canonical JSON is not a fixed point"
    );

    let id = Identity::new(
        "Sekisho Fuzz Network",
        "gw-1",
        "sekisho.fuzz.example/audit",
        Some("1.2.392.200119.6.102".into()),
    );

    let xml = atna::message(&rec, &id);
    let doc = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("ATNA message is not well-formed XML: {e}\n{xml}"));
    assert_eq!(doc.root_element().tag_name().name(), "AuditMessage");

    let idx = u64::from(input.len() as u32);
    let event = fhir::audit_event(&rec, idx, &id);
    check_fhir_strings(&event);
    let fhir_id = event["id"].as_str().expect("an id");
    assert!(
        (1..=64).contains(&fhir_id.len())
            && fhir_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        "{fhir_id:?}"
    );
    let text = serde_json::to_string(&fhir::batch(&[event])).expect("serialises");
    serde_json::from_str::<Value>(&text).expect("the FHIR batch is JSON");

    let json = String::from_utf8(canonical).expect("JSON is UTF-8");
    let entry = Entry {
        idx,
        leaf_hash: [7; 32],
        json: json.clone(),
        record: Some(rec),
    };
    let line = jsonl::line(&entry, &id);
    assert!(!line.contains('\n'), "a JSON line with a line break");
    let v: Value = serde_json::from_str(&line).expect("a JSON line is JSON");
    let embedded = serde_json::to_string(&v["record"]).expect("serialises");
    let reparsed: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        embedded,
        serde_json::to_string(&reparsed).expect("serialises")
    );
});
