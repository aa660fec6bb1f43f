//! The ids a route extracts (patient, entry, facility) from the path, the query and headers,
//! the `Upgrade` check, and the reason codes.

use super::*;

#[test]
fn patient_id_alphabet() {
    for ok in [
        "1",
        "a",
        "Z",
        "P-001",
        "a.b_c-d",
        "0123456789",
        &"x".repeat(64),
    ] {
        assert!(is_valid_patient_id(ok), "{ok}");
    }
    for bad in [
        "",
        "-1",
        ".a",
        "_a",
        "a b",
        "a/b",
        "a%2Fb",
        "a:b",
        "患者",
        "a\n",
        " a",
        &"x".repeat(65),
    ] {
        assert!(!is_valid_patient_id(bad), "{bad:?}");
    }
}

#[test]
fn patient_from_query() {
    let map = RouteMap::new(vec![route(
        &["GET"],
        "/records",
        Level::Patient,
        query_source("pid"),
    )])
    .unwrap();
    let q = |query: Option<&str>| outcome(&map, "GET", "/records", query, &no_headers);
    let ok = |id: &str| Ok(("/records".to_owned(), Some(id.to_owned())));
    assert_eq!(q(Some("pid=P-1")), ok("P-1"));
    assert_eq!(q(Some("x=1&pid=P-1&y=2")), ok("P-1"));
    assert_eq!(q(Some("pid=%50-1")), ok("P-1"));
    assert_eq!(q(Some("&&pid=1&")), ok("1"));
    // Given twice, even with the same value, as a list, or again after a `;`: refused.
    for twice in [
        "pid=1&pid=1",
        "pid=1&pid=%31",
        "pid=1&PID=1",
        "pid[]=1",
        "pid%5B%5D=1",
        "pid[0]=1",
        "pid=1&pid[]=1",
        "x=1;pid=1&pid=1",
        "x=1;pid=2&pid=1",
        "pid=1&%20pid=1",
    ] {
        assert_eq!(q(Some(twice)), Err("route_patient_id_repeated"), "{twice}");
    }
    assert_eq!(q(Some("pid=1&pid[]=2")), Err("route_patient_id_conflict"));
    assert_eq!(q(Some("pid=1;x=2")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=1&pid=2")), Err("route_patient_id_conflict"));
    assert_eq!(
        q(Some("pid=1&x=3&pid=2&pid=1")),
        Err("route_patient_id_conflict")
    );
    // Keys are decoded and compared case-insensitively: no smuggling a second id.
    assert_eq!(q(Some("pid=1&p%69d=2")), Err("route_patient_id_conflict"));
    assert_eq!(q(Some("pid=1&PID=2")), Err("route_patient_id_conflict"));
    assert_eq!(q(Some("Pid=7")), ok("7"));
    assert_eq!(q(None), Err("route_patient_id_missing"));
    assert_eq!(q(Some("")), Err("route_patient_id_missing"));
    assert_eq!(q(Some("pidx=1&xpid=2")), Err("route_patient_id_missing"));
    assert_eq!(q(Some("pid=")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=a+b")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=1%2F2")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=1%00")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=%zz")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=%E6%82%A3")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=%FF")), Err("route_patient_id_malformed"));
    assert_eq!(q(Some("pid=1&pid=-2")), Err("route_patient_id_malformed"));
    // An undecodable key might be the parameter: fail closed.
    assert_eq!(q(Some("pid=1&p%zzd=2")), Err("route_patient_id_malformed"));
    let long = format!("pid={}", "9".repeat(65));
    assert_eq!(q(Some(&long)), Err("route_patient_id_malformed"));
}

#[test]
fn entry_and_admin_targets() {
    let text = r#"
[[route]]
methods = ["POST"]
path = "/p/{patient}/entries/{entry}/confirm"
level = "patient"
action = "confirm"
patient = { from = "path", name = "patient" }
entry = { from = "path", name = "entry" }

[[route]]
methods = ["*"]
path = "/admin/facilities/{facility}/users/**"
level = "user"
action = "admin"
admin = { kind = "user", facility = { from = "path", name = "facility" } }

[[route]]
methods = ["*"]
path = "/admin/terminals"
level = "user"
action = "admin"
admin = { kind = "terminal", facility = { from = "query", name = "facility" } }
"#;
    let parsed: ConfigFile = toml::from_str(text).unwrap();
    let map = RouteMap::new(parsed.route).unwrap();
    let m = map
        .resolve("POST", &p("/p/taro/entries/e-1/confirm"), None, &no_headers)
        .unwrap();
    assert_eq!(m.patient.as_deref(), Some("taro"));
    assert_eq!(m.entry.as_deref(), Some("e-1"));
    assert_eq!(
        map.resolve(
            "POST",
            &p("/p/taro/entries/a%20b/confirm"),
            None,
            &no_headers
        )
        .map(|m| m.entry),
        Err(RouteError::EntryIdInvalid)
    );
    let m = map
        .resolve(
            "GET",
            &p("/admin/facilities/clinic-a/users/u1"),
            None,
            &no_headers,
        )
        .unwrap();
    assert_eq!(
        m.admin,
        Some((crate::AdminKind::User, "clinic-a".to_owned()))
    );
    let m = map
        .resolve(
            "GET",
            &p("/admin/terminals"),
            Some("facility=c-b"),
            &no_headers,
        )
        .unwrap();
    assert_eq!(
        m.admin,
        Some((crate::AdminKind::Terminal, "c-b".to_owned()))
    );
    for q in [None, Some("facility=a&facility=b"), Some("facility=a%2Fb")] {
        assert_eq!(
            map.resolve("GET", &p("/admin/terminals"), q, &no_headers)
                .map(|m| m.admin),
            Err(RouteError::FacilityIdInvalid),
            "{q:?}"
        );
    }

    // A confirm route without an entry id, an admin route without a target, and either
    // where it does not belong, are configuration errors.
    let mut confirm = route(
        &["POST"],
        "/p/{patient}/c",
        Level::Patient,
        Some(PatientSource::Path {
            name: "patient".into(),
        }),
    );
    confirm.action = Action::Confirm;
    assert_eq!(
        err_of(RouteMap::new(vec![confirm.clone()])).problem,
        RouteProblem::EntrySourceMissing
    );
    confirm.entry = Some(PatientSource::Path {
        name: "nope".into(),
    });
    assert!(matches!(
        err_of(RouteMap::new(vec![confirm])).problem,
        RouteProblem::IdSourceInvalid { field: "entry", .. }
    ));
    let mut admin = route(&["GET"], "/a", Level::User, None);
    admin.action = Action::Admin;
    assert_eq!(
        err_of(RouteMap::new(vec![admin])).problem,
        RouteProblem::AdminTargetMissing
    );
    let mut view = route(&["GET"], "/v/{e}", Level::User, None);
    view.entry = Some(PatientSource::Path { name: "e".into() });
    assert_eq!(
        err_of(RouteMap::new(vec![view])).problem,
        RouteProblem::EntrySourceUnexpected
    );
    let mut view = route(&["GET"], "/v", Level::User, None);
    view.admin = Some(AdminTarget {
        kind: crate::AdminKind::User,
        facility: PatientSource::Query { name: "f".into() },
    });
    assert_eq!(
        err_of(RouteMap::new(vec![view])).problem,
        RouteProblem::AdminTargetUnexpected
    );
}

#[test]
fn patient_from_header() {
    let map = RouteMap::new(vec![route(
        &["GET"],
        "/records",
        Level::Patient,
        header_source("X-Patient-Id"),
    )])
    .unwrap();
    let h = |pairs: &[(&str, &str)]| {
        let lookup = headers(pairs);
        outcome(&map, "GET", "/records", Some("pid=9"), &lookup)
    };
    let ok = |id: &str| Ok(("/records".to_owned(), Some(id.to_owned())));
    assert_eq!(h(&[("X-Patient-Id", "P-1")]), ok("P-1"));
    assert_eq!(h(&[("x-patient-id", "P-1")]), ok("P-1"));
    assert_eq!(
        h(&[("X-Patient-Id", "1"), ("x-patient-id", "1")]),
        Err("route_patient_id_repeated")
    );
    assert_eq!(h(&[("X-Patient-Id", " 1 ")]), ok("1"));
    assert_eq!(
        h(&[("X-Patient-Id", "1"), ("X-Patient-Id", "2")]),
        Err("route_patient_id_conflict")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "1, 2")]),
        Err("route_patient_id_conflict")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "1,1")]),
        Err("route_patient_id_repeated")
    );
    assert_eq!(h(&[]), Err("route_patient_id_missing"));
    assert_eq!(h(&[("X-Other", "1")]), Err("route_patient_id_missing"));
    assert_eq!(
        h(&[("X-Patient-Id", "")]),
        Err("route_patient_id_malformed")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "1,")]),
        Err("route_patient_id_malformed")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "%31")]),
        Err("route_patient_id_malformed")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "a b")]),
        Err("route_patient_id_malformed")
    );
    assert_eq!(
        h(&[("X-Patient-Id", "1"), ("X-Patient-Id", "\u{fffd}")]),
        Err("route_patient_id_malformed")
    );
}

#[test]
fn upgrade_checks() {
    let mut ws = route(&["GET"], "/ws", Level::User, None);
    ws.websocket = true;
    let plain = route(&["GET"], "/plain", Level::User, None);
    let map = RouteMap::new(vec![ws, plain]).unwrap();
    let u = |path: &str, pairs: &[(&str, &str)]| {
        let lookup = headers(pairs);
        outcome(&map, "GET", path, None, &lookup).map(|(n, _)| n)
    };
    assert_eq!(u("/ws", &[]).as_deref(), Ok("/ws"));
    assert_eq!(u("/ws", &[("Upgrade", "websocket")]).as_deref(), Ok("/ws"));
    assert_eq!(u("/ws", &[("upgrade", "WebSocket")]).as_deref(), Ok("/ws"));
    assert_eq!(
        u("/ws", &[("Upgrade", "websocket/13")]).as_deref(),
        Ok("/ws")
    );
    assert_eq!(
        u("/ws", &[("Upgrade", "h2c")]),
        Err("route_upgrade_not_allowed")
    );
    assert_eq!(
        u("/ws", &[("Upgrade", "websocket, h2c")]),
        Err("route_upgrade_not_allowed")
    );
    assert_eq!(
        u("/ws", &[("Upgrade", "websocket"), ("Upgrade", "h2c")]),
        Err("route_upgrade_not_allowed")
    );
    assert_eq!(u("/plain", &[]).as_deref(), Ok("/plain"));
    assert_eq!(
        u("/plain", &[("Upgrade", "websocket")]),
        Err("route_upgrade_not_allowed")
    );
    assert_eq!(
        u("/plain", &[("Upgrade", "h2c")]),
        Err("route_upgrade_not_allowed")
    );
    assert_eq!(
        u("/ws", &[("Upgrade", "")]),
        Err("route_upgrade_not_allowed")
    );
}

#[test]
fn reason_codes() {
    let all = [
        (RouteError::NotMapped, "route_not_mapped"),
        (RouteError::MethodNotAllowed, "route_method_not_allowed"),
        (RouteError::PatientIdMissing, "route_patient_id_missing"),
        (RouteError::PatientIdMalformed, "route_patient_id_malformed"),
        (RouteError::PatientIdConflict, "route_patient_id_conflict"),
        (RouteError::PatientIdRepeated, "route_patient_id_repeated"),
        (RouteError::UpgradeNotAllowed, "route_upgrade_not_allowed"),
    ];
    for (err, code) in all {
        assert_eq!(err.reason(), code);
    }
    let codes: HashSet<_> = all.iter().map(|(e, _)| e.reason()).collect();
    assert_eq!(codes.len(), all.len());
}
