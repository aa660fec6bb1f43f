//! Matching paths and methods, the order of routes, and the attack table against the
//! default map.

use super::*;

fn single(pattern: &str) -> RouteMap {
    RouteMap::new(vec![route(&["GET"], pattern, Level::User, None)]).unwrap()
}

fn matches(pattern: &str, path: &str) -> bool {
    single(pattern)
        .resolve("GET", &p(path), None, &no_headers)
        .is_ok()
}

#[test]
fn pattern_matching_table() {
    let table: &[(&str, &str, bool)] = &[
        ("/", "/", true),
        ("/", "/a", false),
        ("/", "//", true),
        ("/static/**", "/static", true),
        ("/static/**", "/static/", true),
        ("/static/**", "/static/a", true),
        ("/static/**", "/static/a/b.css", true),
        ("/static/**", "/staticx", false),
        ("/static/**", "/", false),
        ("/static/**", "/Static/a", false),
        ("/**", "/", true),
        ("/**", "/a/b/c", true),
        ("/a/*", "/a/b", true),
        ("/a/*", "/a", false),
        ("/a/*", "/a/", false),
        ("/a/*", "/a/b/c", false),
        ("/a/{x}", "/a/b", true),
        ("/a/{x}", "/a/", false),
        ("/a/{x}", "/a", false),
        ("/a/{x}/c", "/a/b/c", true),
        ("/a/{x}/c", "/a//c", false),
        ("/a", "/a", true),
        ("/a", "/a/", false),
        ("/a", "/A", false),
        ("/a/", "/a/", true),
        ("/a/", "/a", false),
        ("/a/b", "/a/b/c", false),
        ("/%E6%97%A5", "/%e6%97%a5", true),
        ("/Api", "/%41pi", true),
    ];
    for (pattern, path, expected) in table {
        assert_eq!(matches(pattern, path), *expected, "{pattern} vs {path}");
    }
}

#[test]
fn default_map_table() {
    let map = default_map();
    let view = "/api/patients/{patient}/**";
    let table: &[(&str, &str, Expected)] = &[
        ("GET", "/", Ok(("portal", None))),
        ("HEAD", "/", Ok(("portal", None))),
        ("POST", "/", Err("route_method_not_allowed")),
        ("GET", "/index.html", Err("route_not_mapped")),
        ("GET", "/static", Ok(("/static/**", None))),
        ("GET", "/static/app/main.css", Ok(("/static/**", None))),
        (
            "DELETE",
            "/static/app/main.css",
            Err("route_method_not_allowed"),
        ),
        ("GET", "/api/patients/P-001", Ok((view, Some("P-001")))),
        (
            "GET",
            "/api/patients/P-001/notes/3",
            Ok((view, Some("P-001"))),
        ),
        (
            "POST",
            "/api/patients/P-001/notes",
            Ok((view, Some("P-001"))),
        ),
        (
            "OPTIONS",
            "/api/patients/P-001/notes",
            Err("route_method_not_allowed"),
        ),
        (
            "get",
            "/api/patients/P-001",
            Err("route_method_not_allowed"),
        ),
        ("GET", "/api/patients", Err("route_not_mapped")),
        ("GET", "/api/patients/", Err("route_not_mapped")),
        (
            "GET",
            "/api/patients/%E6%82%A3",
            Err("route_patient_id_malformed"),
        ),
        (
            "GET",
            "/api/patients/-1/x",
            Err("route_patient_id_malformed"),
        ),
        (
            "GET",
            "/api/patients/.hidden/x",
            Err("route_patient_id_malformed"),
        ),
        (
            "GET",
            "/api/patients/a%3Ab/x",
            Err("route_patient_id_malformed"),
        ),
        (
            "GET",
            "/api/patients/%50-%30%30%31/x",
            Ok((view, Some("P-001"))),
        ),
        ("GET", "/API/patients/1", Err("route_not_mapped")),
    ];
    for (method, path, expected) in table {
        let got = outcome(&map, method, path, None, &no_headers);
        let expected = expected.map(|(n, pt)| (n.to_owned(), pt.map(str::to_owned)));
        assert_eq!(got, expected, "{method} {path}");
    }
    // The write route is the fourth one (same pattern): check it by action.
    let m = map
        .resolve("PUT", &p("/api/patients/P-001/x"), None, &no_headers)
        .unwrap();
    assert_eq!(m.route.action, Action::Write);
    assert_eq!(m.route.level, Level::Patient);
    let m = map
        .resolve("GET", &p("/api/patients/P-001/x"), None, &no_headers)
        .unwrap();
    assert_eq!(m.route.action, Action::View);
}

#[test]
fn first_full_match_wins() {
    let mut a = route(&["GET"], "/a/**", Level::User, None);
    a.name = Some("first".into());
    let mut b = route(&["GET", "POST"], "/a/b", Level::Terminal, None);
    b.name = Some("second".into());
    let mut c = route(&["*"], "/**", Level::User, None);
    c.name = Some("catch-all".into());
    let map = RouteMap::new(vec![a, b, c]).unwrap();
    let name = |method: &str, path: &str| {
        map.resolve(method, &p(path), None, &no_headers)
            .map(|m| m.route.name().to_owned())
    };
    assert_eq!(name("GET", "/a/b").as_deref(), Ok("first"));
    // First route matches the path but not the method: the next full match wins.
    assert_eq!(name("POST", "/a/b").as_deref(), Ok("second"));
    assert_eq!(name("PUT", "/a/b").as_deref(), Ok("catch-all"));
    assert_eq!(name("BREW", "/x").as_deref(), Ok("catch-all"));
}

#[test]
fn method_not_allowed_only_when_no_route_matches_both() {
    let map = RouteMap::new(vec![
        route(&["GET"], "/a", Level::User, None),
        route(&["POST"], "/a", Level::User, None),
    ])
    .unwrap();
    assert!(map.resolve("GET", &p("/a"), None, &no_headers).is_ok());
    assert!(map.resolve("POST", &p("/a"), None, &no_headers).is_ok());
    assert_eq!(
        map.resolve("PUT", &p("/a"), None, &no_headers),
        Err(RouteError::MethodNotAllowed)
    );
    assert_eq!(
        map.resolve("PUT", &p("/b"), None, &no_headers),
        Err(RouteError::NotMapped)
    );
}

#[test]
fn empty_map_maps_nothing() {
    let map = RouteMap::new(Vec::new()).unwrap();
    assert_eq!(
        map.resolve("GET", &p("/"), None, &no_headers),
        Err(RouteError::NotMapped)
    );
}

#[test]
fn extraction_failure_does_not_fall_through() {
    let map = RouteMap::new(vec![
        route(&["GET"], "/p", Level::Patient, query_source("pid")),
        route(&["GET"], "/p", Level::User, None),
    ])
    .unwrap();
    assert_eq!(
        map.resolve("GET", &p("/p"), None, &no_headers),
        Err(RouteError::PatientIdMissing)
    );
}

/// Attack table against the default map plus a query and a header route: raw request →
/// exact outcome (route name and patient, or the reason code of the refusal).
#[test]
fn attacks() {
    let mut routes = RouteMap::default_routes();
    routes.push(route(
        &["GET"],
        "/search",
        Level::Patient,
        query_source("pid"),
    ));
    routes.push(route(
        &["GET"],
        "/hdr",
        Level::Patient,
        header_source("X-Patient-Id"),
    ));
    let map = RouteMap::new(routes).unwrap();
    let view = "/api/patients/{patient}/**";
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        Expected<'a>,
    );
    let table: &[Case] = &[
        (
            "/static/../api/patients/1/x",
            None,
            &[],
            Ok((view, Some("1"))),
        ),
        (
            "/static/%2e%2e/api/patients/x",
            None,
            &[],
            Ok((view, Some("x"))),
        ),
        ("//api//patients/1", None, &[], Ok((view, Some("1")))),
        ("/api/patients/1/../2/x", None, &[], Ok((view, Some("2")))),
        (
            "/api/patients/%2F..",
            None,
            &[],
            Err(PathError::EncodedSlash.reason()),
        ),
        (
            "/api/patients/1%2F..%2F2/x",
            None,
            &[],
            Err("path_encoded_slash"),
        ),
        ("/api/patients/..", None, &[], Err("route_not_mapped")),
        (
            "/static/../../api/patients/1",
            None,
            &[],
            Err("path_above_root"),
        ),
        (
            "/static/..%5capi/patients/1",
            None,
            &[],
            Err("path_encoded_backslash"),
        ),
        ("/api/patients/1%00/x", None, &[], Err("path_encoded_nul")),
        ("/api/patients/./1", None, &[], Ok((view, Some("1")))),
        ("/api/patients/1;2/x", None, &[], Err("path_semicolon")),
        (
            "/search",
            Some("pid=1&pid=2"),
            &[],
            Err("route_patient_id_conflict"),
        ),
        (
            "/search",
            Some("pid=1&pid=1"),
            &[],
            Err("route_patient_id_repeated"),
        ),
        (
            "/search",
            Some("pid=1&PiD=2"),
            &[],
            Err("route_patient_id_conflict"),
        ),
        (
            "/search",
            Some("pid=1&%70id=2"),
            &[],
            Err("route_patient_id_conflict"),
        ),
        (
            "/search",
            Some("pid=..%2F2"),
            &[],
            Err("route_patient_id_malformed"),
        ),
        (
            "/hdr",
            None,
            &[("X-Patient-Id", "1"), ("X-Patient-Id", "2")],
            Err("route_patient_id_conflict"),
        ),
        (
            "/hdr",
            None,
            &[("X-Patient-Id", "1,2")],
            Err("route_patient_id_conflict"),
        ),
        ("/hdr", Some("pid=1"), &[], Err("route_patient_id_missing")),
        (
            "/",
            None,
            &[("Upgrade", "h2c")],
            Err("route_upgrade_not_allowed"),
        ),
    ];
    for (path, query, hdrs, expected) in table {
        let lookup = headers(hdrs);
        let got = outcome(&map, "GET", path, *query, &lookup);
        let expected = expected.map(|(n, pt)| (n.to_owned(), pt.map(str::to_owned)));
        assert_eq!(got, expected, "{path} ? {query:?} {hdrs:?}");
    }
}
