//! The default policy set against its decision tables, loading errors, and deployment policies.

use std::collections::BTreeSet;
use std::path::Path;

use sekisho_policies::{
    AuthMethod, Consent, DecisionRequest, DecisionTable, PatientResource, PolicyAction,
    PolicyEngine, PolicyError, Principal, RequestContext, Resource, default_policy_dir,
    default_policy_files, run_table, run_table_dir,
};

fn default_engine() -> PolicyEngine {
    PolicyEngine::load(&default_policy_dir()).expect("default policy set loads")
}

/// Write the embedded default set into a fresh directory.
fn write_default(dir: &Path) {
    for (name, text) in default_policy_files() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn tables() -> Vec<DecisionTable> {
    let dir = default_policy_dir().join("tests");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| DecisionTable::load(p).unwrap())
        .collect()
}

#[test]
fn default_tables_pass() {
    let engine = default_engine();
    let report = run_table_dir(&engine, &default_policy_dir().join("tests")).unwrap();
    println!("{report}");
    assert!(report.ok(), "{report}");
    assert!(report.rows >= 60, "only {} rows", report.rows);
}

/// Every shipped policy is the determining reason of at least one expected-allow or
/// expected-deny row, and every table has both allow and deny rows.
#[test]
fn default_tables_cover_every_policy() {
    let engine = default_engine();
    let mut covered = BTreeSet::new();
    for table in tables() {
        let allows = table
            .row
            .iter()
            .filter(|r| r.expect == sekisho_policies::table::Expect::Allow);
        assert!(allows.count() > 0, "{}: no allow rows", table.source);
        let denies = table
            .row
            .iter()
            .filter(|r| r.expect == sekisho_policies::table::Expect::Deny);
        assert!(denies.count() > 0, "{}: no deny rows", table.source);
        for row in &table.row {
            covered.extend(row.reasons.iter().flatten().cloned());
        }
    }
    let missing: Vec<_> = engine
        .policy_ids()
        .into_iter()
        .filter(|(id, _)| !covered.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "policies no table row names: {missing:?}"
    );
}

#[test]
fn embedded_files_match_the_directory_and_load() {
    for (name, text) in default_policy_files() {
        let on_disk = std::fs::read_to_string(default_policy_dir().join(name)).unwrap();
        assert_eq!(on_disk, text, "{name} differs from the embedded copy");
    }
    let cedar_on_disk = std::fs::read_dir(default_policy_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cedar")
        })
        .count();
    let cedar_embedded = default_policy_files()
        .iter()
        .filter(|(n, _)| n.ends_with(".cedar"))
        .count();
    assert_eq!(
        cedar_on_disk, cedar_embedded,
        "a .cedar file is not embedded"
    );

    let dir = tempfile::tempdir().unwrap();
    write_default(dir.path());
    let engine = PolicyEngine::load(dir.path()).unwrap();
    let report = run_table_dir(&engine, &dir.path().join("tests")).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn every_policy_has_an_id_and_a_requirement_comment() {
    for (name, text) in default_policy_files() {
        if !name.ends_with(".cedar") {
            continue;
        }
        let ids = text.matches("@id(").count();
        let effects = text
            .lines()
            .filter(|l| l.starts_with("permit") || l.starts_with("forbid"))
            .count();
        assert_eq!(ids, effects, "{name}: a policy lacks @id");
        // The comment just above each @id names a requirement.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("@id(") {
                let comment = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|c| c.starts_with("//"))
                    .any(|c| c.contains("R-"));
                assert!(comment, "{name}: {l} has no comment naming a requirement");
            }
        }
    }
}

fn broken_dir(file: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_default(dir.path());
    std::fs::write(dir.path().join(file), text).unwrap();
    dir
}

#[test]
fn syntax_error_is_rejected_naming_file_and_line() {
    let dir = broken_dir(
        "local.cedar",
        "// local rule\n@id(\"local-broken\")\npermit (principal, action == Action::\"view\", resource)\nwhen { principal.qualification == };\n",
    );
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, PolicyError::Parse { .. }), "{err:?}");
    assert!(msg.starts_with("local.cedar: syntax error"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn schema_violation_is_rejected_naming_file_and_policy() {
    let dir = broken_dir(
        "local.cedar",
        "// R-PAT-1 typo\n@id(\"local-typo\")\nforbid (principal, action == Action::\"view\", resource)\nwhen { resource.consnet == \"none\" };\n",
    );
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, PolicyError::Validation { .. }), "{err:?}");
    assert!(msg.contains("local.cedar: policy \"local-typo\""), "{msg}");
    assert!(msg.contains("consnet"), "{msg}");
}

#[test]
fn missing_and_duplicate_ids_are_rejected() {
    let dir = broken_dir(
        "local.cedar",
        "@id(\"ok\")\nforbid (principal, action, resource) when { context.hour > 99 };\npermit (principal, action, resource);\n",
    );
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "local.cedar: policy #2 has no @id(\"...\") annotation"
    );

    let dir = broken_dir(
        "local.cedar",
        "@id(\"pat1-consent-required\")\nforbid (principal, action, resource) when { context.hour > 99 };\n",
    );
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patients.cedar: policy id \"pat1-consent-required\" is already used in local.cedar"
    );
}

#[test]
fn broken_schema_is_rejected() {
    let dir = broken_dir(
        "schema.cedarschema",
        "entity User = { qualification: Strin };\n",
    );
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.starts_with("schema.cedarschema: invalid schema"),
        "{msg}"
    );
}

#[test]
fn deployment_policy_is_picked_up() {
    let dir = broken_dir(
        "local-office-hours.cedar",
        "// Deployment rule (R-ROLE-1): clerks work office hours, through the tunnel only.\n\
         @id(\"local-clerk-office-hours\")\n\
         forbid (principal, action, resource)\n\
         when { principal.qualification == \"clerk\" && (context.hour < 8 || context.hour >= 19 || !context.tunnel) };\n",
    );
    let engine = PolicyEngine::load(dir.path()).unwrap();
    assert!(engine.policy_ids().contains(&(
        "local-clerk-office-hours".into(),
        "local-office-hours.cedar".into()
    )));
    let table = DecisionTable::from_toml_str(
        "local.toml",
        r#"
[context]
patient_card_present = true
[principals.clerk]
qualification = "clerk"
facility = "clinic-a"
[principals.nurse]
qualification = "nurse"
facility = "clinic-a"
[patients.taro]
consent = "granted"
care_team_facilities = ["clinic-a"]

[[row]]
name = "clerk in office hours"
principal = "clerk"
action = "view"
resource = "taro"
context = { hour = 10 }
expect = "allow"

[[row]]
name = "clerk at night"
principal = "clerk"
action = "view"
resource = "taro"
context = { hour = 22 }
expect = "deny"
reasons = ["local-clerk-office-hours"]

[[row]]
name = "clerk outside the tunnel"
principal = "clerk"
action = "view"
resource = "taro"
context = { tunnel = false }
expect = "deny"
reasons = ["local-clerk-office-hours"]

[[row]]
name = "nurse at night is unaffected"
principal = "nurse"
action = "view"
resource = "taro"
context = { hour = 22 }
expect = "allow"
"#,
    )
    .unwrap();
    let report = run_table(&engine, &table);
    assert!(report.ok(), "{report}");
    // The default tables still pass with the extra file in place.
    let report = run_table_dir(&engine, &dir.path().join("tests")).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn failing_rows_are_named() {
    let engine = default_engine();
    let table = DecisionTable::from_toml_str(
        "wrong.toml",
        r#"
[principals.clerk]
qualification = "clerk"
facility = "clinic-a"
[patients.taro]
consent = "granted"
care_team_facilities = ["clinic-a"]

[[row]]
name = "clerk writes (wrong expectation)"
principal = "clerk"
action = "write"
resource = "taro"
expect = "allow"

[[row]]
name = "clerk views with card"
principal = "clerk"
action = "view"
resource = "taro"
context = { patient_card_present = true }
expect = "allow"
"#,
    )
    .unwrap();
    let report = run_table(&engine, &table);
    assert_eq!(
        (report.rows, report.passed, report.failures.len()),
        (2, 1, 1)
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "wrong.toml: row \"clerk writes (wrong expectation)\": expected allow, got deny"
        ),
        "{text}"
    );
    let err = DecisionTable::from_toml_str(
        "bad.toml",
        "[[row]]\nname = \"x\"\nprincipal = \"nobody\"\naction = \"view\"\nresource = \"p\"\nexpect = \"allow\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad.toml: row \"x\": unknown principal \"nobody\""
    );
}

#[test]
fn decide_reports_reasons_directly() {
    let engine = default_engine();
    let request = DecisionRequest {
        principal: Principal {
            id: "dr-sato".into(),
            qualification: "physician".into(),
            facility: "clinic-a".into(),
            roles: vec![],
        },
        action: PolicyAction::View,
        resource: Resource::Patient(PatientResource {
            id: "taro".into(),
            consent: Consent::Withdrawn,
            care_team_users: vec!["dr-sato".into()],
            care_team_facilities: vec![],
        }),
        context: RequestContext {
            auth_method: AuthMethod::Hpki,
            patient_card_present: true,
            ..RequestContext::default()
        },
    };
    let d = engine.decide(&request);
    assert!(!d.allowed);
    assert_eq!(d.reasons, vec!["pat1-consent-required".to_string()]);
    assert!(d.errors.is_empty());
}

#[test]
fn schema_not_fitting_the_gateway_requests_is_rejected() {
    // A deployment renames an attribute the gateway supplies: policies still validate, but the
    // requests would not fit, so loading fails.
    let schema = default_policy_files()
        .into_iter()
        .find(|(n, _)| *n == "schema.cedarschema")
        .unwrap()
        .1
        .replace("  tunnel: Bool,", "  tunnel: Bool,\n  vpn: Bool,");
    let dir = broken_dir("schema.cedarschema", &schema);
    let err = PolicyEngine::load(dir.path()).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.starts_with("schema.cedarschema: invalid schema: does not fit"),
        "{msg}"
    );
}

#[test]
fn deployment_action_groups_work() {
    // A deployment groups the clinical actions and forbids them all at night for clerks.
    let schema = default_policy_files()
        .into_iter()
        .find(|(n, _)| *n == "schema.cedarschema")
        .unwrap()
        .1
        .replace(
            "action view, write, enter, confirm, break_glass appliesTo {",
            "action clinical;\naction view, write, enter, confirm, break_glass in [clinical] appliesTo {",
        );
    let dir = broken_dir("schema.cedarschema", &schema);
    std::fs::write(
        dir.path().join("local.cedar"),
        "// R-ROLE-1 deployment rule\n@id(\"local-night\")\nforbid (principal, action in Action::\"clinical\", resource)\nwhen { principal.qualification == \"clerk\" && context.hour >= 20 };\n",
    )
    .unwrap();
    let engine = PolicyEngine::load(dir.path()).unwrap();
    let mut request = DecisionRequest {
        principal: Principal {
            id: "clerk".into(),
            qualification: "clerk".into(),
            facility: "clinic-a".into(),
            roles: vec![],
        },
        action: PolicyAction::View,
        resource: Resource::Patient(PatientResource {
            id: "taro".into(),
            consent: Consent::Granted,
            care_team_users: vec![],
            care_team_facilities: vec!["clinic-a".into()],
        }),
        context: RequestContext {
            patient_card_present: true,
            hour: 10,
            ..RequestContext::default()
        },
    };
    assert!(engine.decide(&request).allowed);
    request.context.hour = 21;
    let d = engine.decide(&request);
    assert!(!d.allowed);
    assert_eq!(d.reasons, vec!["local-night".to_string()]);
    let report = run_table_dir(&engine, &dir.path().join("tests")).unwrap();
    assert!(report.ok(), "{report}");
}
