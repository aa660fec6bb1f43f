//! Sekisho's authorization: which route a request is, and whether this person may do it.
//!
//! The gateway (the `sekisho` crate in `proxy/`) asks this crate about every request, once it
//! has identified the terminal and before it forwards anything:
//!
//! 1. [`path`]: [`normalize`] puts the request path in one normal form, or refuses it
//!    ([`PathError`]), so that the path authorised is the path the upstream sees;
//! 2. [`routes`]: [`RouteMap::resolve`] maps method + normalised path (+ query, headers) to the
//!    configured `[[route]]`: its [`Level`] (terminal, user or patient), its [`Action`], and
//!    the patient id it extracts; a request no route maps is refused ([`RouteError`]);
//! 3. [`engine`]: [`PolicyEngine`] asks Cedar whether the principal may take the action on the
//!    resource, with the default policy set or the deployment's own policy directory;
//! 4. [`table`]: decision tables ([`run_table`]) that check a policy set against expected
//!    decisions, for `sekisho policy test` and the tests.
//!
//! Sessions, consent state and audit stay in the gateway, which passes in what a decision
//! needs; the only I/O here is reading policy files and tables.

pub mod engine;
pub mod path;
pub mod routes;
pub mod table;

pub use engine::{
    AdminKind, AdminObject, AuthMethod, Consent, Decision, DecisionRequest, PatientResource,
    PolicyAction, PolicyEngine, PolicyError, Principal, RequestContext, Resource,
    default_policy_dir, default_policy_files,
};
pub use table::{DecisionTable, TableError, TableReport, run_table, run_table_dir};

pub use path::{MAX_PATH_LEN, NormalizedPath, PathError, normalize};
pub use routes::{
    Action, AdminTarget, Level, PatientSource, RouteConfig, RouteError, RouteMap, RouteMapError,
    RouteMatch, RouteProblem, is_valid_patient_id,
};
