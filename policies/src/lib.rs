//! Sekisho's authorization: request-path normalisation and the route map (method + path →
//! level, action, patient id). The Cedar policy engine follows.

pub mod path;
pub mod routes;

pub use path::{MAX_PATH_LEN, NormalizedPath, PathError, normalize};
pub use routes::{
    Action, Level, PatientSource, RouteConfig, RouteError, RouteMap, RouteMapError, RouteMatch,
    RouteProblem, is_valid_patient_id,
};
