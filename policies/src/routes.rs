//! The route map: method + normalised path (+ query, headers) → route (level, action, patient).
//!
//! Routes come from the gateway's configuration (`[[route]]` tables) and are tried in order; the
//! first route whose path pattern *and* method list match wins. A request that no route maps is
//! refused. Everything is validated when the map is built, so a bad configuration is refused at
//! load (or reload) rather than at the first request.
//!
//! Pattern syntax (matched segment by segment against a
//! [`NormalizedPath`](crate::NormalizedPath), case-sensitive):
//!
//! - a literal segment matches itself (it must be in normal form: `%2e` or `%41` can never
//!   appear in a normalised path, so a literal containing them is a configuration error);
//! - `{name}` matches exactly one non-empty segment and captures it;
//! - `*` matches exactly one non-empty segment;
//! - `**`, only as the last segment, matches zero or more remaining segments, so `/static/**`
//!   matches `/static`, `/static/` and `/static/a/b.css`;
//! - the pattern `/` matches only `/`; a pattern ending in `/` matches only paths with that
//!   trailing slash.
//!
//! Parts: `config` (the `[[route]]` types and what can be wrong with one), `compile` (a route
//! compiled into the matcher), `map` ([`RouteMap`]: building it, and resolving a request),
//! `extract` (the ids a route takes from the path, query or headers).

mod compile;
mod config;
mod extract;
mod map;
#[cfg(test)]
mod tests;

pub use config::{
    Action, AdminTarget, Level, PatientSource, RouteConfig, RouteMapError, RouteProblem,
};
pub use map::RouteMap;

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
    #[error("the request gives the patient id more than once, or as a list")]
    PatientIdRepeated,
    #[error("protocol upgrade (Upgrade header) not permitted on this route")]
    UpgradeNotAllowed,
    #[error("the route needs an entry id and the request has none, a malformed one or several")]
    EntryIdInvalid,
    #[error("the route needs a facility id and the request has none, a malformed one or several")]
    FacilityIdInvalid,
}

impl RouteError {
    /// Why the request is refused: the person's page, the audit reason, the metrics label.
    pub fn refusal(&self) -> Reason {
        match self {
            RouteError::NotMapped => Reason::RouteNotMapped,
            RouteError::MethodNotAllowed => Reason::RouteMethodNotAllowed,
            RouteError::PatientIdMissing => Reason::RoutePatientIdMissing,
            RouteError::PatientIdMalformed => Reason::RoutePatientIdMalformed,
            RouteError::PatientIdConflict => Reason::RoutePatientIdConflict,
            RouteError::PatientIdRepeated => Reason::RoutePatientIdRepeated,
            RouteError::UpgradeNotAllowed => Reason::RouteUpgradeNotAllowed,
            RouteError::EntryIdInvalid => Reason::RouteEntryIdInvalid,
            RouteError::FacilityIdInvalid => Reason::RouteFacilityIdInvalid,
        }
    }

    /// Stable reason code for audit records and metrics labels.
    pub fn reason(&self) -> &'static str {
        self.refusal().code()
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

use sekisho_protocol::Reason;
pub use sekisho_protocol::is_valid_patient_id;
