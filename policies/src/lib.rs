//! Sekisho's authorization: request-path normalisation and the route map (method + path →
//! level, action, patient id), and the Cedar policy engine (`engine`) with its decision tables
//! (`table`).

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
