//! What a Sekisho audit record is in the vocabularies the receivers know: DICOM audit event
//! codes (PS3.16 CID 400-ish, the `DCM` coding scheme that IHE ATNA and FHIR's
//! `audit-event-type` share), the CRUDE action code and the outcome. One classification for
//! both the ATNA message and the FHIR AuditEvent, so the two never disagree.

use sekisho_audit::{AuditRecord, Decision, Event};

/// A coded value of the DICOM controlled terminology (`DCM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dcm {
    pub code: &'static str,
    pub display: &'static str,
}

const fn dcm(code: &'static str, display: &'static str) -> Dcm {
    Dcm { code, display }
}

pub const PATIENT_RECORD: Dcm = dcm("110110", "Patient Record");
pub const QUERY: Dcm = dcm("110112", "Query");
pub const SECURITY_ALERT: Dcm = dcm("110113", "Security Alert");
pub const USER_AUTHENTICATION: Dcm = dcm("110114", "User Authentication");
pub const APPLICATION_ACTIVITY: Dcm = dcm("110100", "Application Activity");
pub const EXPORT: Dcm = dcm("110106", "Export");
pub const LOGIN: Dcm = dcm("110122", "Login");
pub const LOGOUT: Dcm = dcm("110123", "Logout");
pub const NODE_AUTHENTICATION: Dcm = dcm("110126", "Node Authentication");
pub const EMERGENCY_OVERRIDE_STARTED: Dcm = dcm("110127", "Emergency Override Started");
pub const SECURITY_CONFIGURATION: Dcm = dcm("110129", "Security Configuration");
pub const USE_OF_RESTRICTED_FUNCTION: Dcm = dcm("110132", "Use of a restricted function");
pub const SOURCE_ROLE: Dcm = dcm("110153", "Source Role ID");
pub const DESTINATION_ROLE: Dcm = dcm("110152", "Destination Role ID");

/// DICOM's EventActionCode and FHIR's AuditEvent.action: Create, Read, Update, Delete, Execute.
pub fn action(rec: &AuditRecord) -> &'static str {
    match rec.event {
        Event::Request | Event::Outcome => match rec.method.as_deref().unwrap_or("") {
            "GET" | "HEAD" => "R",
            "POST" => "C",
            "PUT" | "PATCH" => "U",
            "DELETE" => "D",
            _ => "E",
        },
        Event::Consent => "C",
        Event::Report => "R",
        _ => "E",
    }
}

/// DICOM's EventOutcomeIndicator and FHIR R4's AuditEvent.outcome: 0 success, 4 minor failure
/// (a refusal: the gateway did what it should), 8 serious failure (the application failed or
/// could not be reached).
pub fn outcome(rec: &AuditRecord) -> &'static str {
    match (rec.decision, rec.upstream_status) {
        (Decision::Deny, _) => "4",
        (Decision::Permit, Some(s)) if s >= 500 => "8",
        (Decision::Permit, _) if rec.event == Event::Outcome && rec.upstream_status.is_none() => {
            "8"
        }
        (Decision::Permit, _) => "0",
    }
}

/// The event (DICOM EventID, FHIR AuditEvent.type) and, where DICOM has one, its type
/// (EventTypeCode, FHIR AuditEvent.subtype).
pub fn event(rec: &AuditRecord) -> (Dcm, Option<Dcm>) {
    match rec.event {
        // A request that names a patient is about the patient's record; one that does not (a
        // terminal-level page, a search) is a query of the application.
        Event::Request | Event::Outcome | Event::Consent => {
            if rec.patient.is_some() {
                (PATIENT_RECORD, None)
            } else {
                (QUERY, None)
            }
        }
        Event::Auth => {
            let logout = rec.detail.as_deref().is_some_and(|d| d.contains("110123"));
            (
                USER_AUTHENTICATION,
                Some(if logout { LOGOUT } else { LOGIN }),
            )
        }
        Event::Tls | Event::Connection | Event::Enrollment => {
            (SECURITY_ALERT, Some(NODE_AUTHENTICATION))
        }
        Event::Registry => (SECURITY_ALERT, Some(SECURITY_CONFIGURATION)),
        Event::BreakGlass => (SECURITY_ALERT, Some(EMERGENCY_OVERRIDE_STARTED)),
        // A disclosure report (a patient's access history) leaves the log for someone.
        Event::Report if rec.patient.is_some() => (EXPORT, None),
        Event::Report => (SECURITY_ALERT, Some(USE_OF_RESTRICTED_FUNCTION)),
        Event::Operation => (APPLICATION_ACTIVITY, None),
    }
}

/// The DICOM roles of (the terminal, the application): the Source is where the data comes
/// from. A read brings data from the application to the terminal, as in IHE ITI-43 and BALP's
/// Read; anything else (a create, an update, a query, a sign-in) goes from the terminal.
pub fn roles(rec: &AuditRecord) -> (Dcm, Dcm) {
    if action(rec) == "R" {
        (DESTINATION_ROLE, SOURCE_ROLE)
    } else {
        (SOURCE_ROLE, DESTINATION_ROLE)
    }
}

/// Emergency access is the one purpose of use a record states; the rest are treatment.
pub fn emergency(rec: &AuditRecord) -> bool {
    rec.break_glass_id.is_some() || rec.event == Event::BreakGlass
}

/// The client's address without its port, and its DICOM NetworkAccessPointTypeCode / FHIR
/// network type: 2 for an IP address.
pub fn peer_address(rec: &AuditRecord) -> Option<String> {
    let p = rec.peer.as_deref()?;
    let host = match p.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => p.to_string(),
    };
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(event: Event, method: &str, patient: bool, decision: Decision) -> AuditRecord {
        AuditRecord {
            event,
            method: Some(method.into()),
            patient: patient.then(|| "P1".into()),
            decision,
            ..Default::default()
        }
    }

    #[test]
    fn requests_map_by_method_patient_and_decision() {
        let r = rec(Event::Request, "GET", true, Decision::Permit);
        assert_eq!(
            (event(&r).0, action(&r), outcome(&r)),
            (PATIENT_RECORD, "R", "0")
        );
        let r = rec(Event::Request, "DELETE", false, Decision::Deny);
        assert_eq!((event(&r).0, action(&r), outcome(&r)), (QUERY, "D", "4"));
        let mut r = rec(Event::Outcome, "POST", true, Decision::Permit);
        r.upstream_status = Some(502);
        assert_eq!((action(&r), outcome(&r)), ("C", "8"));
        r.upstream_status = Some(201);
        assert_eq!(outcome(&r), "0");
        r.upstream_status = None;
        assert_eq!(
            outcome(&r),
            "8",
            "an outcome with no upstream status failed"
        );
    }

    #[test]
    fn sign_in_and_out_are_told_apart() {
        let mut r = rec(Event::Auth, "card", false, Decision::Permit);
        r.detail = Some("DCM 110114 User Authentication / 110123 Logout".into());
        assert_eq!(event(&r), (USER_AUTHENTICATION, Some(LOGOUT)));
        r.detail = Some("DCM 110114 User Authentication / 110122 Login".into());
        assert_eq!(event(&r), (USER_AUTHENTICATION, Some(LOGIN)));
    }

    #[test]
    fn peer_loses_its_port() {
        let mut r = AuditRecord {
            peer: Some("[2001:db8::1]:443".into()),
            ..Default::default()
        };
        assert_eq!(peer_address(&r).as_deref(), Some("2001:db8::1"));
        r.peer = Some("10.0.0.5:51234".into());
        assert_eq!(peer_address(&r).as_deref(), Some("10.0.0.5"));
    }
}
