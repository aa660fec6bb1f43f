//! The `[[route]]` configuration: the documented example, serde round trips, typos.

use super::*;

const EXAMPLE_TOML: &str = r#"
[[route]]
name = "portal"                 # optional, for logs; default = the path pattern
methods = ["GET", "HEAD"]       # required, non-empty; "*" = any
path = "/"                      # pattern
level = "terminal"              # terminal | user | patient
action = "view"                 # view | write | confirm | break_glass | admin  (string enum)
websocket = false               # whether an Upgrade: websocket is permitted on this route (default false)

[[route]]
methods = ["GET", "HEAD"]
path = "/static/**"
level = "terminal"
action = "view"

[[route]]
methods = ["GET", "HEAD"]
path = "/api/patients/{patient}/**"
level = "patient"
action = "view"
patient = { from = "path", name = "patient" }     # or { from = "query", name = "pid" } or { from = "header", name = "X-Patient-Id" }

[[route]]                       # R-ROLE-2: an assistant's entry, pending until confirmed
name = "entry"
methods = ["POST"]
path = "/api/patients/{patient}/entries"
level = "patient"
action = "enter"
patient = { from = "path", name = "patient" }

[[route]]                       # a physician confirms it; the gateway knows who entered it
name = "entry-confirm"
methods = ["POST"]
path = "/api/patients/{patient}/entries/{entry}/confirm"
level = "patient"
action = "confirm"
patient = { from = "path", name = "patient" }
entry = { from = "path", name = "entry" }

[[route]]
methods = ["POST", "PUT", "PATCH", "DELETE"]
path = "/api/patients/{patient}/**"
level = "patient"
action = "write"
patient = { from = "path", name = "patient" }
"#;

#[test]
fn default_routes_are_the_documented_example() {
    let parsed: ConfigFile = toml::from_str(EXAMPLE_TOML).unwrap();
    assert_eq!(parsed.route, RouteMap::default_routes());
    assert_eq!(RouteMap::default_routes().len(), 6);
    RouteMap::new(RouteMap::default_routes()).unwrap();
}

#[test]
fn default_routes_round_trip_through_toml() {
    let file = ConfigFile {
        route: RouteMap::default_routes(),
    };
    let text = toml::to_string(&file).unwrap();
    let back: ConfigFile = toml::from_str(&text).unwrap();
    assert_eq!(back.route, RouteMap::default_routes());
}

#[test]
fn all_levels_actions_and_sources_deserialize() {
    let text = r#"
[[route]]
methods = ["*"]
path = "/a"
level = "user"
action = "confirm"

[[route]]
methods = ["POST"]
path = "/b"
level = "patient"
action = "break_glass"
patient = { from = "query", name = "pid" }

[[route]]
methods = ["GET"]
path = "/c"
level = "patient"
action = "admin"
websocket = true
patient = { from = "header", name = "X-Patient-Id" }
"#;
    let parsed: ConfigFile = toml::from_str(text).unwrap();
    let r = &parsed.route;
    assert_eq!((r[0].level, r[0].action), (Level::User, Action::Confirm));
    assert_eq!(
        (r[1].level, r[1].action),
        (Level::Patient, Action::BreakGlass)
    );
    assert_eq!(r[1].patient, query_source("pid"));
    assert_eq!((r[2].action, r[2].websocket), (Action::Admin, true));
    assert_eq!(r[2].patient, header_source("X-Patient-Id"));
    assert!(!r[0].websocket);
    RouteMap::new(parsed.route).unwrap();
}

#[test]
fn config_typos_are_rejected_by_serde() {
    for text in [
        // unknown field
        "[[route]]\nmethods=[\"GET\"]\npath=\"/\"\nlevel=\"user\"\naction=\"view\"\nwebsockets=true\n",
        // unknown level
        "[[route]]\nmethods=[\"GET\"]\npath=\"/\"\nlevel=\"admin\"\naction=\"view\"\n",
        // unknown action
        "[[route]]\nmethods=[\"GET\"]\npath=\"/\"\nlevel=\"user\"\naction=\"read\"\n",
        // unknown source
        "[[route]]\nmethods=[\"GET\"]\npath=\"/{p}\"\nlevel=\"patient\"\naction=\"view\"\npatient={from=\"cookie\",name=\"p\"}\n",
        // unknown field in the source
        "[[route]]\nmethods=[\"GET\"]\npath=\"/{p}\"\nlevel=\"patient\"\naction=\"view\"\npatient={from=\"path\",name=\"p\",x=1}\n",
        // missing methods
        "[[route]]\npath=\"/\"\nlevel=\"user\"\naction=\"view\"\n",
    ] {
        assert!(toml::from_str::<ConfigFile>(text).is_err(), "{text}");
    }
}

#[test]
fn as_str_matches_serde() {
    for level in [Level::Terminal, Level::User, Level::Patient] {
        let v = toml::Value::try_from(level).unwrap();
        assert_eq!(v.as_str(), Some(level.as_str()));
        assert_eq!(level.to_string(), level.as_str());
    }
    for action in [
        Action::View,
        Action::Write,
        Action::Confirm,
        Action::BreakGlass,
        Action::Admin,
    ] {
        let v = toml::Value::try_from(action).unwrap();
        assert_eq!(v.as_str(), Some(action.as_str()));
        assert_eq!(action.to_string(), action.as_str());
    }
    assert_eq!(Action::BreakGlass.as_str(), "break_glass");
}

#[test]
fn route_name_defaults_to_pattern() {
    let routes = RouteMap::default_routes();
    assert_eq!(routes[0].name(), "portal");
    assert_eq!(routes[1].name(), "/static/**");
}
