//! The route configuration (`[[route]]` tables), and why a route is refused when the map is
//! built.

use std::fmt;

use serde::{Deserialize, Serialize};

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
    /// Wait for the decision record to be durable before anything reaches the upstream, even
    /// for a safe method (GET, HEAD, OPTIONS), which by default is forwarded while its record
    /// commits and has its answer held until then. Unsafe methods always wait.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_audit: bool,
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

/// A configuration problem found while building a [`RouteMap`](super::RouteMap).
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

/// The routes written by `sekisho init`: the portal, static files, and patient-scoped API
/// reads and writes.
pub(super) fn default_routes() -> Vec<RouteConfig> {
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
            strict_audit: false,
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
            strict_audit: false,
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
            strict_audit: false,
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
            strict_audit: false,
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
            strict_audit: false,
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
            strict_audit: false,
        },
    ]
}
