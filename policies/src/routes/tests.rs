//! Tests of the route map. Shared helpers here; the tests by topic in the submodules.

mod config;
mod extraction;
mod matching;
mod validation;

use super::*;
use crate::path::{NormalizedPath, PathError, normalize};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

fn p(raw: &str) -> NormalizedPath {
    normalize(raw).unwrap()
}

fn no_headers(_: &str) -> Vec<String> {
    Vec::new()
}

fn default_map() -> RouteMap {
    RouteMap::new(RouteMap::default_routes()).unwrap()
}

fn route(
    methods: &[&str],
    path: &str,
    level: Level,
    patient: Option<PatientSource>,
) -> RouteConfig {
    RouteConfig {
        name: None,
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        path: path.to_owned(),
        level,
        action: Action::View,
        websocket: false,
        patient,
        entry: None,
        admin: None,
        strict_audit: false,
    }
}

fn query_source(name: &str) -> Option<PatientSource> {
    Some(PatientSource::Query {
        name: name.to_owned(),
    })
}

fn header_source(name: &str) -> Option<PatientSource> {
    Some(PatientSource::Header {
        name: name.to_owned(),
    })
}

/// Headers from a list of (name, value) pairs, looked up case-insensitively.
fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Vec<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| {
        pairs
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// (route name, patient) or the error's reason code.
fn outcome(
    map: &RouteMap,
    method: &str,
    path: &str,
    query: Option<&str>,
    header: &dyn Fn(&str) -> Vec<String>,
) -> Result<(String, Option<String>), &'static str> {
    let path = normalize(path).map_err(|e| e.reason())?;
    map.resolve(method, &path, query, header)
        .map(|m| (m.route.name().to_owned(), m.patient))
        .map_err(|e| e.reason())
}

/// Expected outcome: (route name, patient) or the reason code of the refusal.
type Expected<'a> = Result<(&'a str, Option<&'a str>), &'a str>;

fn err_of(result: Result<RouteMap, RouteMapError>) -> RouteMapError {
    result.expect_err("route map should be refused")
}

/// A configuration file's `[[route]]` tables.
#[derive(Debug, Deserialize, Serialize)]
struct ConfigFile {
    route: Vec<RouteConfig>,
}
