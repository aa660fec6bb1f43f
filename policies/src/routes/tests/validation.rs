//! Route validation when the map is built: every refused configuration names its problem.

use super::*;

#[test]
fn validation_errors_name_the_route_and_problem() {
    let mut routes = RouteMap::default_routes();
    routes.push(route(&[], "/x", Level::User, None));
    let err = err_of(RouteMap::new(routes));
    assert_eq!(err.index, 6);
    assert_eq!(err.name, "/x");
    assert_eq!(err.problem, RouteProblem::EmptyMethods);
    assert_eq!(err.to_string(), "route[6] \"/x\": methods is empty");

    let mut named = route(&["GET"], "/a/**/b", Level::User, None);
    named.name = Some("files".to_owned());
    let err = err_of(RouteMap::new(vec![named]));
    assert_eq!((err.index, err.name.as_str()), (0, "files"));
    assert_eq!(err.problem, RouteProblem::RestNotLast);
    assert!(err.to_string().contains("route[0] \"files\""), "{err}");
}

#[test]
fn validation_table() {
    use RouteProblem as P;
    let path_src = |n: &str| Some(PatientSource::Path { name: n.to_owned() });
    let cases: Vec<(RouteConfig, RouteProblem)> = vec![
        (route(&[], "/", Level::User, None), P::EmptyMethods),
        (
            route(&["get"], "/", Level::User, None),
            P::BadMethod("get".into()),
        ),
        (
            route(&["GET "], "/", Level::User, None),
            P::BadMethod("GET ".into()),
        ),
        (
            route(&[""], "/", Level::User, None),
            P::BadMethod("".into()),
        ),
        (
            route(&["GET", "P/ST"], "/", Level::User, None),
            P::BadMethod("P/ST".into()),
        ),
        (
            route(&["GET"], "", Level::User, None),
            P::PatternNotAbsolute("".into()),
        ),
        (
            route(&["GET"], "api", Level::User, None),
            P::PatternNotAbsolute("api".into()),
        ),
        (
            route(&["GET"], "/a//b", Level::User, None),
            P::PatternEmptySegment,
        ),
        (
            route(&["GET"], "//", Level::User, None),
            P::PatternEmptySegment,
        ),
        (route(&["GET"], "/**/x", Level::User, None), P::RestNotLast),
        (route(&["GET"], "/a/**/", Level::User, None), P::RestNotLast),
        (
            route(&["GET"], "/{}", Level::User, None),
            P::BadCaptureName("".into()),
        ),
        (
            route(&["GET"], "/{1x}", Level::User, None),
            P::BadCaptureName("1x".into()),
        ),
        (
            route(&["GET"], "/{a-b}", Level::User, None),
            P::BadCaptureName("a-b".into()),
        ),
        (
            route(&["GET"], "/{a}/{a}", Level::User, None),
            P::DuplicateCapture("a".into()),
        ),
        (
            route(&["GET"], "/a*", Level::User, None),
            P::PartialWildcard("a*".into()),
        ),
        (
            route(&["GET"], "/***", Level::User, None),
            P::PartialWildcard("***".into()),
        ),
        (
            route(&["GET"], "/x{a}", Level::User, None),
            P::PartialWildcard("x{a}".into()),
        ),
        (
            route(&["GET"], "/{a}x", Level::User, None),
            P::PartialWildcard("{a}x".into()),
        ),
        (
            route(&["GET"], "/a}", Level::User, None),
            P::PartialWildcard("a}".into()),
        ),
        (
            route(&["GET"], "/a/../b", Level::User, None),
            P::DotSegment("..".into()),
        ),
        (
            route(&["GET"], "/./b", Level::User, None),
            P::DotSegment(".".into()),
        ),
        (
            route(&["GET"], "/..", Level::User, None),
            P::DotSegment("..".into()),
        ),
        (
            route(&["GET"], "/a/%2e%2E", Level::User, None),
            P::DotSegment("%2e%2E".into()),
        ),
        (
            route(&["GET"], "/%2e/a", Level::User, None),
            P::DotSegment("%2e".into()),
        ),
        (
            route(&["GET"], "/%41pi", Level::User, None),
            P::LiteralNotNormalized {
                segment: "%41pi".into(),
                normalized: "Api".into(),
            },
        ),
        (
            route(&["GET"], "/a%3fb", Level::User, None),
            P::LiteralNotNormalized {
                segment: "a%3fb".into(),
                normalized: "a%3Fb".into(),
            },
        ),
        (
            route(&["GET"], "/a%2Fb", Level::User, None),
            P::LiteralInvalid {
                segment: "a%2Fb".into(),
                reason: "path_encoded_slash",
            },
        ),
        (
            route(&["GET"], "/a\\b", Level::User, None),
            P::LiteralInvalid {
                segment: "a\\b".into(),
                reason: "path_backslash",
            },
        ),
        (
            route(&["GET"], "/a b", Level::User, None),
            P::LiteralInvalid {
                segment: "a b".into(),
                reason: "path_forbidden_character",
            },
        ),
        (
            route(&["GET"], "/a%zz", Level::User, None),
            P::LiteralInvalid {
                segment: "a%zz".into(),
                reason: "path_invalid_percent_encoding",
            },
        ),
        (
            route(&["GET"], "/日本", Level::User, None),
            P::LiteralInvalid {
                segment: "日本".into(),
                reason: "path_non_ascii",
            },
        ),
        (
            route(&["GET"], "/p/{patient}", Level::Patient, None),
            P::PatientSourceMissing,
        ),
        (
            route(&["GET"], "/p/{patient}", Level::User, path_src("patient")),
            P::PatientSourceUnexpected(Level::User),
        ),
        (
            route(&["GET"], "/p", Level::Terminal, query_source("pid")),
            P::PatientSourceUnexpected(Level::Terminal),
        ),
        (
            route(&["GET"], "/p/{patient}", Level::Patient, path_src("pid")),
            P::PatientCaptureUnknown("pid".into()),
        ),
        (
            route(&["GET"], "/p/*", Level::Patient, path_src("patient")),
            P::PatientCaptureUnknown("patient".into()),
        ),
        (
            route(&["GET"], "/p", Level::Patient, path_src("")),
            P::PatientNameEmpty,
        ),
        (
            route(&["GET"], "/p", Level::Patient, query_source("")),
            P::PatientNameEmpty,
        ),
        (
            route(&["GET"], "/p", Level::Patient, header_source("")),
            P::PatientNameEmpty,
        ),
        (
            route(&["GET"], "/p", Level::Patient, header_source("X Patient")),
            P::PatientHeaderInvalid("X Patient".into()),
        ),
        (
            route(&["GET"], "/p", Level::Patient, header_source("X-Patient:")),
            P::PatientHeaderInvalid("X-Patient:".into()),
        ),
    ];
    for (config, expected) in cases {
        let desc = format!("{config:?}");
        let err = err_of(RouteMap::new(vec![config]));
        assert_eq!(err.index, 0, "{desc}");
        assert_eq!(err.problem, expected, "{desc}");
    }

    let mut empty_name = route(&["GET"], "/", Level::User, None);
    empty_name.name = Some(String::new());
    assert_eq!(
        err_of(RouteMap::new(vec![empty_name])).problem,
        P::EmptyName
    );
}

#[test]
fn valid_patterns() {
    for pattern in [
        "/",
        "/**",
        "/*",
        "/a/",
        "/a/*/b",
        "/{x}/{y_2}/**",
        "/a:b/@c/v1.0/~u/%E6%97%A5/%20",
        "/{_x}",
    ] {
        RouteMap::new(vec![route(
            &["GET", "X-CUSTOM", "*"],
            pattern,
            Level::User,
            None,
        )])
        .unwrap_or_else(|e| panic!("{pattern}: {e}"));
    }
}
