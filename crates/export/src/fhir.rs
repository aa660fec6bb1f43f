//! A record as a FHIR R4 `AuditEvent`, following the agent and entity patterns of IHE Basic
//! Audit Log Patterns (BALP): the person (the requestor), the client terminal (DICOM Source
//! Role ID) and the gateway's application route (Destination Role ID) as agents; the patient
//! and the request as entities. Validated in the tests against the FHIR R4 schema.
//!
//! Its `id` is the log's and the leaf index's (`<log>-<idx>`), so a record sent again (after
//! an outage, by another replica) replaces itself instead of appearing twice.

use serde_json::{Value, json};

use sekisho_audit::AuditRecord;

use crate::Identity;
use crate::codes::{self, Dcm};

pub const DCM_SYSTEM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

pub fn audit_event(rec: &AuditRecord, idx: u64, id: &Identity) -> Value {
    let (event, event_type) = codes::event(rec);
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": id.resource_id(idx),
        "type": coding(event),
        "action": codes::action(rec),
        "recorded": rec.time,
        "outcome": codes::outcome(rec),
        "agent": agents(rec, id),
        "source": {
            "site": id.site,
            "observer": { "display": id.node_or(rec) },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server"
            }]
        },
        "entity": entities(rec, id),
    });
    if let Some(t) = event_type {
        ev["subtype"] = json!([coding(t)]);
    }
    if !rec.reason.is_empty() {
        ev["outcomeDesc"] = json!(rec.reason);
    }
    ev["purposeOfEvent"] = json!([{
        "coding": [if codes::emergency(rec) {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT", "display": "Emergency Treatment"})
        } else {
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT", "display": "treatment"})
        }]
    }]);
    clean(&mut ev);
    ev
}

fn bad(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\r' | '\n')
}

/// FHIR strings hold no control characters but tab, CR and LF, and are never empty: what a
/// terminal sent is made to fit (U+FFFD), and an empty value is left out.
fn clean(v: &mut Value) {
    match v {
        Value::String(s) if s.chars().any(bad) => {
            *s = s
                .chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect();
        }
        Value::Array(a) => a.iter_mut().for_each(clean),
        Value::Object(o) => {
            o.retain(|_, v| v.as_str() != Some(""));
            o.values_mut().for_each(clean);
        }
        _ => {}
    }
}

fn coding(c: Dcm) -> Value {
    json!({ "system": DCM_SYSTEM, "code": c.code, "display": c.display })
}

fn network(rec: &AuditRecord) -> Option<Value> {
    codes::peer_address(rec).map(|a| json!({ "address": a, "type": "2" }))
}

fn agents(rec: &AuditRecord, id: &Identity) -> Vec<Value> {
    let mut agents = Vec::new();
    if let Some(user) = &rec.user {
        let mut a = json!({
            // BALP: the information recipient of a read or a query, the author otherwise.
            "type": { "coding": [if matches!(codes::action(rec), "R" | "E") {
                json!({ "system": PARTICIPATION, "code": "IRCP", "display": "information recipient" })
            } else {
                json!({ "system": PARTICIPATION, "code": "AUT", "display": "author (originator)" })
            }]},
            "who": { "identifier": { "system": id.system("user"), "value": user } },
            "requestor": true,
        });
        if let Some(q) = &rec.qualification {
            a["role"] = json!([{ "text": q }]);
        }
        agents.push(a);
    }
    // BALP's client and server agents; which is the DICOM Source follows the data.
    let (terminal_role, application_role) = codes::roles(rec);
    let source = rec.terminal.as_deref().or(rec.actor.as_deref());
    let mut client = json!({
        "type": { "coding": [coding(terminal_role)] },
        "requestor": rec.user.is_none(),
    });
    if let Some(t) = source {
        client["who"] = json!({ "identifier": { "system": id.system("terminal"), "value": t } });
    }
    if let Some(f) = &rec.facility {
        client["altId"] = json!(f);
    }
    if let Some(n) = network(rec) {
        client["network"] = n;
    }
    agents.push(client);
    agents.push(json!({
        "type": { "coding": [coding(application_role)] },
        "who": { "display": rec.route.clone().unwrap_or_else(|| id.node_or(rec)) },
        "requestor": false,
    }));
    agents
}

fn entities(rec: &AuditRecord, id: &Identity) -> Vec<Value> {
    let mut entities = Vec::new();
    if let Some(p) = &rec.patient {
        entities.push(json!({
            "what": { "identifier": { "system": id.patient_system(), "value": p } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" },
        }));
    }
    let mut request = json!({
        "what": { "identifier": { "system": id.system("request"), "value": rec.request_id } },
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "3", "display": "Report" },
    });
    let details: Vec<Value> = [
        ("method", rec.method.as_deref()),
        ("path", rec.path.as_deref()),
        ("action", rec.action.as_deref()),
        ("break_glass_id", rec.break_glass_id.as_deref()),
        ("cert_serial", rec.cert_serial.as_deref()),
        ("actor", rec.actor.as_deref()),
        ("detail", rec.detail.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| json!({ "type": k, "valueString": v })))
    .chain(
        rec.upstream_status
            .map(|s| json!({ "type": "upstream_status", "valueString": s.to_string() })),
    )
    .collect();
    if !details.is_empty() {
        request["detail"] = json!(details);
    }
    entities.push(request);
    entities
}

/// A FHIR `batch` Bundle that PUTs each event under its own id (ITI-20's FHIR feed accepts a
/// batch; PUT makes a repeat harmless).
pub fn batch(events: &[Value]) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": events.iter().map(|e| json!({
            "resource": e,
            "request": { "method": "PUT", "url": format!("AuditEvent/{}", e["id"].as_str().unwrap_or_default()) }
        })).collect::<Vec<_>>()
    })
}
