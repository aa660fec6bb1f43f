//! Every kind of record, and records full of hostile text, as ATNA messages validated by
//! xmllint against the DICOM schema (and IHE's, which adds PurposeOfUse), and as FHIR
//! AuditEvents validated against HL7's R4 JSON schema — each check shown to fail on a broken
//! message first, so a validator that accepts anything cannot pass this.

use std::path::{Path, PathBuf};
use std::process::Command;

use sekisho_audit::{AuditRecord, Decision, Event};

use crate::{Identity, atna, fhir};

fn records() -> Vec<AuditRecord> {
    let base = AuditRecord {
        time: "2026-12-04T09:30:00.123Z".into(),
        request_id: "01JEXAMPLE".into(),
        node: "gw1".into(),
        peer: Some("192.0.2.10:51234".into()),
        terminal: Some("t-0042".into()),
        facility: Some("f-hosp-a".into()),
        cert_serial: Some("4f2a".into()),
        ..Default::default()
    };
    let mut all: Vec<AuditRecord> = Event::ALL
        .iter()
        .flat_map(|&event| {
            [Decision::Permit, Decision::Deny].map(|decision| AuditRecord {
                event,
                decision,
                reason: if decision == Decision::Permit {
                    "ok"
                } else {
                    "no_consent"
                }
                .into(),
                ..base.clone()
            })
        })
        .collect();
    all.push(AuditRecord {
        user: Some("dr.tanaka".into()),
        qualification: Some("physician".into()),
        patient: Some("P-0001".into()),
        method: Some("GET".into()),
        route: Some("patient-records".into()),
        path: Some("/api/patients/P-0001/records".into()),
        action: Some("view".into()),
        decision: Decision::Permit,
        reason: "ok".into(),
        upstream_status: Some(200),
        ..base.clone()
    });
    // Emergency access: PurposeOfUse in ATNA, ETREAT in FHIR.
    all.push(AuditRecord {
        event: Event::Request,
        user: Some("dr.tanaka".into()),
        patient: Some("P-0002".into()),
        method: Some("POST".into()),
        break_glass_id: Some("bg-1".into()),
        decision: Decision::Permit,
        reason: "break_glass".into(),
        ..base.clone()
    });
    // What a terminal or an operator could put in a record.
    let hostile = "<x a=\"1\">&amp;]]>\u{0}\u{1b}\u{7f}\t\n\r'\"\\ ]\u{FFFE}日本語";
    all.push(AuditRecord {
        event: Event::Request,
        peer: Some(hostile.into()),
        terminal: Some(hostile.into()),
        facility: Some(hostile.into()),
        user: Some(hostile.into()),
        actor: Some(hostile.into()),
        qualification: Some(hostile.into()),
        patient: Some(hostile.into()),
        method: Some(hostile.into()),
        route: Some(hostile.into()),
        path: Some(hostile.into()),
        action: Some(hostile.into()),
        reason: hostile.into(),
        request_id: hostile.into(),
        break_glass_id: Some(hostile.into()),
        detail: Some(hostile.into()),
        ..base.clone()
    });
    // As little as a record can say.
    all.push(AuditRecord {
        time: "2026-12-04T09:30:00.123Z".into(),
        ..Default::default()
    });
    all
}

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn xmllint(schema_flag: &str, schema: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg(schema_flag)
        .arg(schema)
        .args(files)
        .output()
        .expect("xmllint (Debian package libxml2-utils) runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn atna_messages_are_valid_dicom_audit_messages() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::new(
        "net",
        "gw1",
        "sekisho.test/audit",
        Some("1.2.392.100".into()),
    );
    let (mut all, mut plain) = (Vec::new(), Vec::new());
    for (i, r) in records().iter().enumerate() {
        let xml = atna::message(r, &id);
        let f = dir.path().join(format!("{i}.xml"));
        std::fs::write(&f, &xml).unwrap();
        if !xml.contains("<PurposeOfUse") {
            plain.push(f.clone());
        }
        all.push(f);
    }
    assert!(
        plain.len() < all.len(),
        "an emergency message is among them"
    );
    // The validators catch a broken message: no EventID.
    let broken = dir.path().join("broken.xml");
    let xml = atna::message(&records()[0], &id);
    let cut = xml.replace(
        r#"<EventID csd-code="110112" codeSystemName="DCM" originalText="Query"/>"#,
        "",
    );
    assert_ne!(cut, xml);
    std::fs::write(&broken, cut).unwrap();
    let xsd = schemas().join("dicom-audit-ihe.xsd");
    let rng = schemas().join("dicom-audit.rng");
    assert!(!xmllint("--schema", &xsd, std::slice::from_ref(&broken)).0);
    assert!(!xmllint("--relaxng", &rng, std::slice::from_ref(&broken)).0);
    let (ok, why) = xmllint("--schema", &xsd, &all);
    assert!(ok, "{why}");
    let (ok, why) = xmllint("--relaxng", &rng, &plain);
    assert!(ok, "{why}");
}

/// HL7's schema, fetched (and checked) by the script beside the validator.
fn fhir_schema() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("sh")
        .arg(root.join("tests/tools/fhir-schema.sh"))
        .arg(root.join("target/fhir-schema"))
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "cannot get the FHIR R4 schema (npm must reach its registry): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub(crate) fn fhir_validate(files: &[&Path]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(root.join("tests/tools/fhir_validate.py"))
        .arg("--schema")
        .arg(fhir_schema())
        .args(files)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn fhir_audit_events_are_valid_r4_resources() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::new("net", "gw1", "sekisho.test/audit", None);
    let events: Vec<_> = records()
        .iter()
        .enumerate()
        .map(|(i, r)| fhir::audit_event(r, i as u64, &id))
        .collect();
    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        events.iter().map(|e| format!("{e}\n")).collect::<String>(),
    )
    .unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, fhir::batch(&events).to_string()).unwrap();
    // The validator catches a broken event: an outcome R4 does not have.
    let mut bad = events[0].clone();
    bad["outcome"] = "3".into();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, bad.to_string()).unwrap();
    let (ok, why) = fhir_validate(&[&broken]);
    assert!(!ok && why.contains("outcome"), "{why}");
    let (ok, why) = fhir_validate(&[&ndjson, &bundle]);
    assert!(ok, "{why}");
    // BALP's patterns: the person is the requestor and carries no network address; the
    // terminal's address is on the client agent.
    let read = &events[events.len() - 4];
    assert_eq!(read["agent"][0]["requestor"], true);
    assert!(read["agent"][0].get("network").is_none());
    assert_eq!(read["agent"][1]["network"]["address"], "192.0.2.10");
    assert_eq!(read["entity"][0]["what"]["identifier"]["value"], "P-0001");
    let hostile = events[events.len() - 2].to_string();
    assert!(
        !hostile.contains("\\u0000") && !hostile.contains("\\u001b"),
        "{hostile}"
    );
    let emergency = &events[events.len() - 3];
    assert_eq!(
        emergency["purposeOfEvent"][0]["coding"][0]["code"],
        "ETREAT"
    );
}
