//! The validated, ordered route map, and the resolution of a request to its route.

use super::compile::{CompiledRoute, compile};
use super::config::{RouteConfig, RouteMapError, default_routes};
use super::extract::{check_upgrade, extract};
use super::{RouteError, RouteMatch};
use crate::path::NormalizedPath;

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
        default_routes()
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
