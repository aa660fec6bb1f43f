//! The route map: method + normalised path (+ query, headers) → route (level, action, patient).
//!
//! Routes come from the gateway's configuration (`[[route]]` tables) and are tried in order; the
//! first route whose path pattern *and* method list match wins. A request that no route maps is
//! refused. Everything is validated when the map is built, so a bad configuration is refused at
//! load (or reload) rather than at the first request.
//!
//! Pattern syntax (matched segment by segment against a [`NormalizedPath`], case-sensitive):
//!
//! - a literal segment matches itself (it must be in normal form: `%2e` or `%41` can never
//!   appear in a normalised path, so a literal containing them is a configuration error);
//! - `{name}` matches exactly one non-empty segment and captures it;
//! - `*` matches exactly one non-empty segment;
//! - `**`, only as the last segment, matches zero or more remaining segments, so `/static/**`
//!   matches `/static`, `/static/` and `/static/a/b.css`;
//! - the pattern `/` matches only `/`; a pattern ending in `/` matches only paths with that
//!   trailing slash.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::path::{NormalizedPath, hex_value, normalize};

/// Authentication level a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A registered terminal (mutual TLS) is enough.
    Terminal,
    /// A person must be signed in on the terminal.
    User,
    /// A signed-in person acting on one patient, whose id the route extracts.
    Patient,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Terminal => "terminal",
            Level::User => "user",
            Level::Patient => "patient",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The action a route performs, as the policy engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    View,
    Write,
    /// An assistant's entry, pending until a physician confirms it (R-ROLE-2).
    Enter,
    Confirm,
    BreakGlass,
    Admin,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Write => "write",
            Action::Enter => "enter",
            Action::Confirm => "confirm",
            Action::BreakGlass => "break_glass",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a `level = "patient"` route finds the patient id.
/// TOML: `patient = { from = "path", name = "patient" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum PatientSource {
    /// A `{name}` capture of the route's path pattern.
    Path { name: String },
    /// A query parameter (name compared after percent-decoding, ASCII case-insensitively).
    Query { name: String },
    /// A request header (name case-insensitive; all its values, comma-separated lists split).
    Header { name: String },
}

impl PatientSource {
    /// `"path"`, `"query"` or `"header"`, as in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            PatientSource::Path { .. } => "path",
            PatientSource::Query { .. } => "query",
            PatientSource::Header { .. } => "header",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            PatientSource::Path { name }
            | PatientSource::Query { name }
            | PatientSource::Header { name } => name,
        }
    }
}

/// One `[[route]]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// For logs and audit records; defaults to the path pattern (see [`RouteConfig::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Methods this route accepts (case-sensitive, as HTTP methods are); `"*"` = any.
    pub methods: Vec<String>,
    /// Path pattern; see the module documentation.
    pub path: String,
    pub level: Level,
    pub action: Action,
    /// Whether `Upgrade: websocket` is permitted on this route.
    #[serde(default)]
    pub websocket: bool,
    /// Required when `level = "patient"`, forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientSource>,
    /// For `action = "confirm"` on a patient route (required there): where the id of the
    /// assistant's entry being confirmed is. The gateway issued that id on the `enter` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<PatientSource>,
    /// For `action = "admin"` on a user route (required there): what is administered and where
    /// the id of the facility that owns it is (R-ACCT-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminTarget>,
}

/// What an admin route administers. TOML:
/// `admin = { kind = "user", facility = { from = "path", name = "facility" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTarget {
    pub kind: crate::engine::AdminKind,
    pub facility: PatientSource,
}

impl RouteConfig {
    /// The route's name for logs, audit records and metrics: `name`, or the path pattern.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.path)
    }
}

/// A configuration problem found while building a [`RouteMap`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route[{index}] {name:?}: {problem}")]
pub struct RouteMapError {
    /// Position of the route in the configuration, from 0.
    pub index: usize,
    /// The route's name (or its path pattern when it has none).
    pub name: String,
    pub problem: RouteProblem,
}

/// What is wrong with a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteProblem {
    #[error("name is empty")]
    EmptyName,
    #[error("methods is empty")]
    EmptyMethods,
    #[error("method {0:?} is not an upper-case HTTP method token (or \"*\")")]
    BadMethod(String),
    #[error("path pattern {0:?} does not start with '/'")]
    PatternNotAbsolute(String),
    #[error("path pattern has an empty segment (only a trailing '/' is allowed)")]
    PatternEmptySegment,
    #[error("'**' must be the last segment of the path pattern")]
    RestNotLast,
    #[error("capture {0:?} is not a valid name (letters, digits, '_'; not starting with a digit)")]
    BadCaptureName(String),
    #[error("capture {{{0}}} appears more than once")]
    DuplicateCapture(String),
    #[error(
        "segment {0:?} mixes wildcards or braces with text ('*', '**' and '{{name}}' must be whole segments)"
    )]
    PartialWildcard(String),
    #[error("literal segment {0:?} is a dot segment, which never appears in a normalised path")]
    DotSegment(String),
    #[error("literal segment {segment:?} is not a valid normalised path segment ({reason})")]
    LiteralInvalid {
        segment: String,
        reason: &'static str,
    },
    #[error(
        "literal segment {segment:?} can never match: normalised paths spell it {normalized:?}"
    )]
    LiteralNotNormalized { segment: String, normalized: String },
    #[error(
        "level \"patient\" requires a patient extractor (patient = {{ from = ..., name = ... }})"
    )]
    PatientSourceMissing,
    #[error("level {0:?} must not have a patient extractor")]
    PatientSourceUnexpected(Level),
    #[error("patient.name is empty")]
    PatientNameEmpty,
    #[error("patient.name {0:?} is not a capture of the path pattern")]
    PatientCaptureUnknown(String),
    #[error("patient.name {0:?} is not a valid header name")]
    PatientHeaderInvalid(String),
    #[error("a confirm route on level \"patient\" requires entry = {{ from = ..., name = ... }}")]
    EntrySourceMissing,
    #[error("only a confirm route on level \"patient\" has an entry extractor")]
    EntrySourceUnexpected,
    #[error(
        "an admin route on level \"user\" requires admin = {{ kind = ..., facility = {{ ... }} }}"
    )]
    AdminTargetMissing,
    #[error("only an admin route on level \"user\" has an admin target")]
    AdminTargetUnexpected,
    #[error(
        "{field}.name {name:?} is empty, not a capture of the path pattern or not a header name"
    )]
    IdSourceInvalid { field: &'static str, name: String },
}

/// Why a request could not be mapped. [`RouteError::reason`] gives the stable code used in
/// audit records and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RouteError {
    #[error("no route maps this path")]
    NotMapped,
    #[error("a route maps this path, but not for this method")]
    MethodNotAllowed,
    #[error("the route needs a patient id and the request has none")]
    PatientIdMissing,
    #[error("the patient id is malformed")]
    PatientIdMalformed,
    #[error("the request carries several different patient ids")]
    PatientIdConflict,
    #[error("protocol upgrade (Upgrade header) not permitted on this route")]
    UpgradeNotAllowed,
    #[error("the route needs an entry id and the request has none, a malformed one or several")]
    EntryIdInvalid,
    #[error("the route needs a facility id and the request has none, a malformed one or several")]
    FacilityIdInvalid,
}

impl RouteError {
    /// Stable reason code for audit records and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::NotMapped => "route_not_mapped",
            RouteError::MethodNotAllowed => "route_method_not_allowed",
            RouteError::PatientIdMissing => "route_patient_id_missing",
            RouteError::PatientIdMalformed => "route_patient_id_malformed",
            RouteError::PatientIdConflict => "route_patient_id_conflict",
            RouteError::UpgradeNotAllowed => "route_upgrade_not_allowed",
            RouteError::EntryIdInvalid => "route_entry_id_invalid",
            RouteError::FacilityIdInvalid => "route_facility_id_invalid",
        }
    }
}

/// The route a request maps to, with the patient id for `level = "patient"` routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a RouteConfig,
    /// Always `Some` (and valid, see [`is_valid_patient_id`]) for `level = "patient"` routes;
    /// always `None` otherwise.
    pub patient: Option<String>,
    /// The entry being confirmed (`entry` extractor), validated like a patient id.
    pub entry: Option<String>,
    /// For admin routes: what is administered and the owning facility's id.
    pub admin: Option<(crate::engine::AdminKind, String)>,
}

pub use sekisho_protocol::is_valid_patient_id;

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// `{name}` or `*`: one non-empty segment.
    One,
    /// `**`: zero or more remaining segments.
    Rest,
}

#[derive(Debug, Clone)]
enum Methods {
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone)]
enum Extractor {
    None,
    /// Index of the path segment holding the patient id.
    PathSegment(usize),
    Query(String),
    Header(String),
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    config: RouteConfig,
    segments: Vec<Segment>,
    methods: Methods,
    extractor: Extractor,
    entry: Extractor,
    facility: Extractor,
}

impl CompiledRoute {
    fn path_matches(&self, path: &NormalizedPath) -> bool {
        let mut actual = path.segments();
        for expected in &self.segments {
            match expected {
                Segment::Rest => return true,
                Segment::Literal(lit) => match actual.next() {
                    Some(seg) if seg == lit => {}
                    _ => return false,
                },
                Segment::One => match actual.next() {
                    Some(seg) if !seg.is_empty() => {}
                    _ => return false,
                },
            }
        }
        actual.next().is_none()
    }

    fn method_matches(&self, method: &str) -> bool {
        match &self.methods {
            Methods::Any => true,
            Methods::List(list) => list.iter().any(|m| m == method),
        }
    }
}

/// The validated, ordered route map.
#[derive(Debug, Clone)]
pub struct RouteMap {
    routes: Vec<CompiledRoute>,
}

impl RouteMap {
    /// Validate and compile the routes, in configuration order.
    pub fn new(routes: Vec<RouteConfig>) -> Result<Self, RouteMapError> {
        let routes = routes
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                compile(&config)
                    .map(|c| CompiledRoute {
                        config: config.clone(),
                        segments: c.segments,
                        methods: c.methods,
                        extractor: c.patient,
                        entry: c.entry,
                        facility: c.facility,
                    })
                    .map_err(|problem| RouteMapError {
                        index,
                        name: config.name().to_owned(),
                        problem,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteMap { routes })
    }

    /// The routes written by `sekisho init`: the portal, static files, and patient-scoped API
    /// reads and writes.
    pub fn default_routes() -> Vec<RouteConfig> {
        let methods = |list: &[&str]| list.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>();
        let patient_from_path = || {
            Some(PatientSource::Path {
                name: "patient".to_owned(),
            })
        };
        vec![
            RouteConfig {
                name: Some("portal".to_owned()),
                methods: methods(&["GET", "HEAD"]),
                path: "/".to_owned(),
                level: Level::Terminal,
                action: Action::View,
                websocket: false,
                patient: None,
                entry: None,
                admin: None,
            },
            RouteConfig {
                name: None,
                methods: methods(&["GET", "HEAD"]),
                path: "/static/**".to_owned(),
                level: Level::Terminal,
                action: Action::View,
                websocket: false,
                patient: None,
                entry: None,
                admin: None,
            },
            RouteConfig {
                name: None,
                methods: methods(&["GET", "HEAD"]),
                path: "/api/patients/{patient}/**".to_owned(),
                level: Level::Patient,
                action: Action::View,
                websocket: false,
                patient: patient_from_path(),
                entry: None,
                admin: None,
            },
            // R-ROLE-2: an assistant's entry, and a physician's confirmation of it, before the
            // general write route.
            RouteConfig {
                name: Some("entry".to_owned()),
                methods: methods(&["POST"]),
                path: "/api/patients/{patient}/entries".to_owned(),
                level: Level::Patient,
                action: Action::Enter,
                websocket: false,
                patient: patient_from_path(),
                entry: None,
                admin: None,
            },
            RouteConfig {
                name: Some("entry-confirm".to_owned()),
                methods: methods(&["POST"]),
                path: "/api/patients/{patient}/entries/{entry}/confirm".to_owned(),
                level: Level::Patient,
                action: Action::Confirm,
                websocket: false,
                patient: patient_from_path(),
                entry: Some(PatientSource::Path {
                    name: "entry".to_owned(),
                }),
                admin: None,
            },
            RouteConfig {
                name: None,
                methods: methods(&["POST", "PUT", "PATCH", "DELETE"]),
                path: "/api/patients/{patient}/**".to_owned(),
                level: Level::Patient,
                action: Action::Write,
                websocket: false,
                patient: patient_from_path(),
                entry: None,
                admin: None,
            },
        ]
    }

    /// The routes, in order.
    pub fn routes(&self) -> impl ExactSizeIterator<Item = &RouteConfig> {
        self.routes.iter().map(|r| &r.config)
    }

    /// Map a request to its route.
    ///
    /// - `path`: the already-normalised path ([`crate::normalize`]);
    /// - `query`: the raw query string (without `?`), if any;
    /// - `header`: returns *all* values of a header, name matched case-insensitively. Values
    ///   that are not valid UTF-8 should be passed lossily converted, not dropped, so that they
    ///   are refused as malformed rather than hidden.
    ///
    /// The first route matching both path and method wins; its patient-id and upgrade checks
    /// are final (a failure there does not fall through to later routes). When no route
    /// matches both but one matches the path, the error is [`RouteError::MethodNotAllowed`].
    ///
    /// Any `Upgrade` header is refused ([`RouteError::UpgradeNotAllowed`]) unless the route
    /// has `websocket = true` and every protocol offered is `websocket`.
    pub fn resolve<'a>(
        &'a self,
        method: &str,
        path: &NormalizedPath,
        query: Option<&str>,
        header: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<RouteMatch<'a>, RouteError> {
        let mut path_matched = false;
        for route in &self.routes {
            if !route.path_matches(path) {
                continue;
            }
            if !route.method_matches(method) {
                path_matched = true;
                continue;
            }
            check_upgrade(route.config.websocket, header)?;
            let patient = extract(&route.extractor, path, query, header)?;
            let entry = extract(&route.entry, path, query, header)
                .map_err(|_| RouteError::EntryIdInvalid)?;
            let facility = extract(&route.facility, path, query, header)
                .map_err(|_| RouteError::FacilityIdInvalid)?;
            let admin = match (&route.config.admin, facility) {
                (Some(t), Some(f)) => Some((t.kind, f)),
                _ => None,
            };
            return Ok(RouteMatch {
                route: &route.config,
                patient,
                entry,
                admin,
            });
        }
        Err(if path_matched {
            RouteError::MethodNotAllowed
        } else {
            RouteError::NotMapped
        })
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_capture_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

struct Compiled {
    segments: Vec<Segment>,
    methods: Methods,
    patient: Extractor,
    entry: Extractor,
    facility: Extractor,
}

fn compile(config: &RouteConfig) -> Result<Compiled, RouteProblem> {
    if config.name.as_deref() == Some("") {
        return Err(RouteProblem::EmptyName);
    }

    // Methods.
    if config.methods.is_empty() {
        return Err(RouteProblem::EmptyMethods);
    }
    let mut methods = Vec::new();
    let mut any = false;
    for m in &config.methods {
        if m == "*" {
            any = true;
        } else if is_token(m) && !m.bytes().any(|b| b.is_ascii_lowercase()) {
            methods.push(m.clone());
        } else {
            return Err(RouteProblem::BadMethod(m.clone()));
        }
    }
    let methods = if any {
        Methods::Any
    } else {
        Methods::List(methods)
    };

    // Pattern.
    let pattern = &config.path;
    let Some(body) = pattern.strip_prefix('/') else {
        return Err(RouteProblem::PatternNotAbsolute(pattern.clone()));
    };
    let raw_segments: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    let mut segments = Vec::with_capacity(raw_segments.len());
    let mut captures: Vec<(&str, usize)> = Vec::new();
    for (i, &seg) in raw_segments.iter().enumerate() {
        let last = i + 1 == raw_segments.len();
        let compiled = if seg == "**" {
            if !last {
                return Err(RouteProblem::RestNotLast);
            }
            Segment::Rest
        } else if seg == "*" {
            Segment::One
        } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !is_capture_name(name) {
                return Err(RouteProblem::BadCaptureName(name.to_owned()));
            }
            if captures.iter().any(|(n, _)| *n == name) {
                return Err(RouteProblem::DuplicateCapture(name.to_owned()));
            }
            captures.push((name, i));
            Segment::One
        } else if seg.is_empty() {
            if !last {
                return Err(RouteProblem::PatternEmptySegment);
            }
            Segment::Literal(String::new())
        } else if seg == "." || seg == ".." {
            return Err(RouteProblem::DotSegment(seg.to_owned()));
        } else if seg.contains(['*', '{', '}']) {
            return Err(RouteProblem::PartialWildcard(seg.to_owned()));
        } else {
            // Normalise the segment under a dummy parent, so that encoded dot segments show
            // up as such instead of as a climb above the root.
            let as_path = format!("/_/{seg}");
            match normalize(&as_path) {
                Ok(n) if n.as_str() == as_path => {}
                Ok(n) => {
                    let normalized = n.as_str().strip_prefix("/_/");
                    return Err(match normalized {
                        Some(normalized) if !normalized.is_empty() => {
                            RouteProblem::LiteralNotNormalized {
                                segment: seg.to_owned(),
                                normalized: normalized.to_owned(),
                            }
                        }
                        _ => RouteProblem::DotSegment(seg.to_owned()),
                    });
                }
                Err(e) => {
                    return Err(RouteProblem::LiteralInvalid {
                        segment: seg.to_owned(),
                        reason: e.reason(),
                    });
                }
            }
            Segment::Literal(seg.to_owned())
        };
        segments.push(compiled);
    }

    // Id extractors: the patient, the confirmed entry, the administered object's facility.
    let source = |field: &'static str, source: &PatientSource| -> Result<Extractor, RouteProblem> {
        id_extractor(&captures, source).ok_or_else(|| RouteProblem::IdSourceInvalid {
            field,
            name: source.name().to_owned(),
        })
    };
    let extractor = match (config.level, &config.patient) {
        (Level::Patient, None) => return Err(RouteProblem::PatientSourceMissing),
        (Level::Patient, Some(source)) => {
            if source.name().is_empty() {
                return Err(RouteProblem::PatientNameEmpty);
            }
            match source {
                PatientSource::Path { name } => {
                    let (_, index) = captures
                        .iter()
                        .find(|(n, _)| *n == name.as_str())
                        .ok_or_else(|| RouteProblem::PatientCaptureUnknown(name.clone()))?;
                    Extractor::PathSegment(*index)
                }
                PatientSource::Query { name } => Extractor::Query(name.clone()),
                PatientSource::Header { name } => {
                    if !is_token(name) {
                        return Err(RouteProblem::PatientHeaderInvalid(name.clone()));
                    }
                    Extractor::Header(name.clone())
                }
            }
        }
        (level, Some(_)) => return Err(RouteProblem::PatientSourceUnexpected(level)),
        (_, None) => Extractor::None,
    };
    let confirms = config.level == Level::Patient && config.action == Action::Confirm;
    let entry = match (&config.entry, confirms) {
        (Some(e), true) => source("entry", e)?,
        (None, true) => return Err(RouteProblem::EntrySourceMissing),
        (Some(_), false) => return Err(RouteProblem::EntrySourceUnexpected),
        (None, false) => Extractor::None,
    };
    let administers = config.level == Level::User && config.action == Action::Admin;
    let facility = match (&config.admin, administers) {
        (Some(t), true) => source("admin.facility", &t.facility)?,
        (None, true) => return Err(RouteProblem::AdminTargetMissing),
        (Some(_), false) => return Err(RouteProblem::AdminTargetUnexpected),
        (None, false) => Extractor::None,
    };

    Ok(Compiled {
        segments,
        methods,
        patient: extractor,
        entry,
        facility,
    })
}

/// The extractor for an id source; `None` when the source names nothing usable.
fn id_extractor(captures: &[(&str, usize)], source: &PatientSource) -> Option<Extractor> {
    match source {
        _ if source.name().is_empty() => None,
        PatientSource::Path { name } => captures
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, index)| Extractor::PathSegment(*index)),
        PatientSource::Query { name } => Some(Extractor::Query(name.clone())),
        PatientSource::Header { name } => is_token(name).then(|| Extractor::Header(name.clone())),
    }
}

/// The id an extractor finds (patient-id errors; callers relabel them for other ids).
fn extract(
    extractor: &Extractor,
    path: &NormalizedPath,
    query: Option<&str>,
    header: &dyn Fn(&str) -> Vec<String>,
) -> Result<Option<String>, RouteError> {
    Ok(match extractor {
        Extractor::None => None,
        Extractor::PathSegment(index) => Some(patient_from_path(path, *index)?),
        Extractor::Query(name) => Some(patient_from_query(query, name)?),
        Extractor::Header(name) => Some(patient_from_header(header(name))?),
    })
}

/// Refuse any `Upgrade` unless the route permits WebSocket and only `websocket` is offered.
fn check_upgrade(websocket: bool, header: &dyn Fn(&str) -> Vec<String>) -> Result<(), RouteError> {
    let values = header("upgrade");
    if values.is_empty() {
        return Ok(());
    }
    let protocols: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty())
        .collect();
    // A protocol may carry a version: `websocket/13`.
    let only_websocket = !protocols.is_empty()
        && protocols.iter().all(|p| {
            let name = p.split_once('/').map_or(*p, |(n, _)| n);
            name.eq_ignore_ascii_case("websocket")
        });
    if websocket && only_websocket {
        Ok(())
    } else {
        Err(RouteError::UpgradeNotAllowed)
    }
}

fn patient_from_path(path: &NormalizedPath, index: usize) -> Result<String, RouteError> {
    // The pattern matched, so the segment exists and is not empty.
    let seg = path
        .segments()
        .nth(index)
        .filter(|s| !s.is_empty())
        .ok_or(RouteError::PatientIdMissing)?;
    // A normalised path has every unreserved character decoded; anything still encoded is
    // outside the patient-id alphabet, so no decoding is needed before validating.
    if is_valid_patient_id(seg) {
        Ok(seg.to_owned())
    } else {
        Err(RouteError::PatientIdMalformed)
    }
}

/// The single value of the occurrences, all validated: none → missing, any malformed →
/// malformed, several different → conflict.
fn single_patient_id(
    values: impl IntoIterator<Item = Result<String, RouteError>>,
) -> Result<String, RouteError> {
    let mut found: Option<String> = None;
    let mut conflict = false;
    for value in values {
        let value = value?;
        if !is_valid_patient_id(&value) {
            return Err(RouteError::PatientIdMalformed);
        }
        match &found {
            None => found = Some(value),
            Some(first) if *first == value => {}
            Some(_) => conflict = true,
        }
    }
    // Malformed takes precedence over conflict (it is reported wherever it occurs).
    match (found, conflict) {
        (None, _) => Err(RouteError::PatientIdMissing),
        (Some(_), true) => Err(RouteError::PatientIdConflict),
        (Some(id), false) => Ok(id),
    }
}

/// Percent-decode a query component (`+` is a space, as in form encoding). Invalid encodings
/// give `None`.
fn decode_query_component(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_value)?;
                let lo = b.get(i + 2).copied().and_then(hex_value)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// All occurrences of the parameter `name` in the query. Keys are compared after
/// percent-decoding and ASCII case-insensitively, so that `p%69d=2` or `PID=2` cannot smuggle a
/// second patient id past the gateway to an upstream that decodes keys or ignores their case.
/// A key that cannot be decoded makes the whole lookup fail closed (malformed).
fn patient_from_query(query: Option<&str>, name: &str) -> Result<String, RouteError> {
    let mut values = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_component(key).ok_or(RouteError::PatientIdMalformed)?;
        if !key.eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        values.push(
            decode_query_component(value)
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or(RouteError::PatientIdMalformed),
        );
    }
    single_patient_id(values)
}

/// All values of the header, each comma-separated list split into its elements (a header
/// repeated and a header with a list are the same thing in HTTP). An empty element is
/// malformed.
fn patient_from_header(values: Vec<String>) -> Result<String, RouteError> {
    let elements: Vec<Result<String, RouteError>> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|e| Ok(e.trim_matches([' ', '\t']).to_owned()))
        .collect();
    single_patient_id(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;
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

    // ---- configuration ----

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

    #[derive(Debug, Deserialize, Serialize)]
    struct ConfigFile {
        route: Vec<RouteConfig>,
    }

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

    // ---- validation ----

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

    // ---- matching ----

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
        assert_eq!(q(Some("pid=1&pid=1")), ok("1"));
        assert_eq!(q(Some("pid=1&pid=%31")), ok("1"));
        assert_eq!(q(Some("&&pid=1&")), ok("1"));
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
        assert_eq!(h(&[("X-Patient-Id", "1"), ("x-patient-id", "1")]), ok("1"));
        assert_eq!(h(&[("X-Patient-Id", " 1 ")]), ok("1"));
        assert_eq!(
            h(&[("X-Patient-Id", "1"), ("X-Patient-Id", "2")]),
            Err("route_patient_id_conflict")
        );
        assert_eq!(
            h(&[("X-Patient-Id", "1, 2")]),
            Err("route_patient_id_conflict")
        );
        assert_eq!(h(&[("X-Patient-Id", "1,1")]), ok("1"));
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
            (RouteError::UpgradeNotAllowed, "route_upgrade_not_allowed"),
        ];
        for (err, code) in all {
            assert_eq!(err.reason(), code);
        }
        let codes: HashSet<_> = all.iter().map(|(e, _)| e.reason()).collect();
        assert_eq!(codes.len(), all.len());
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
            (
                "/api/patients/1;2/x",
                None,
                &[],
                Err("route_patient_id_malformed"),
            ),
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
                Ok(("/search", Some("1"))),
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
}
