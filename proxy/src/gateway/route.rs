//! Phase 4, route: the normalised path and the method mapped by the route map to a level,
//! an action and the patient (or entry, or facility) the request is about. Anything unmapped
//! is refused. The route's level then says who must be at the terminal, and the body limit
//! what the request may carry; both are checked before any policy is asked.

use http::Request;
use hyper::body::Incoming;
use sekisho_policies::{Level, NormalizedPath, PathError};
use sekisho_protocol::Reason;

use super::Gateway;
use super::context::{RequestCtx, Routed};

impl Gateway {
    pub(super) fn route<'a>(
        &'a self,
        req: &Request<Incoming>,
        path: Result<NormalizedPath, PathError>,
        ctx: &mut RequestCtx<'a>,
    ) -> Result<(), Reason> {
        let path = path.map_err(|e| e.refusal())?;
        ctx.record.path = Some(path.as_str().to_string());
        let query = req.uri().query();
        let header = |name: &str| -> Vec<String> {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect()
        };
        let m = self
            .routes
            .resolve(req.method().as_str(), &path, query, &header)
            .map_err(|e| e.refusal())?;
        ctx.record.route = Some(m.route.name().to_string());
        ctx.record.action = Some(m.route.action.as_str().to_string());
        ctx.record.patient = m.patient.clone();
        if let Some((_, facility)) = &m.admin {
            ctx.record.detail = Some(format!("admin facility {facility}"));
        }
        // Who the route needs at the terminal. Patient routes are decided by the policy set
        // once the patient's facts are read (authorize).
        match (m.route.level, &ctx.session) {
            (Level::Terminal, _) => {}
            (Level::User | Level::Patient, None) => return Err(Reason::SigninRequired),
            (Level::User | Level::Patient, Some(s)) if s.must_change_password => {
                return Err(Reason::PasswordChangeRequired);
            }
            (Level::User | Level::Patient, Some(_)) => {}
        }
        if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH) {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Reason::BadContentLength)?;
            if len > self.cfg.limits.max_body_bytes {
                return Err(Reason::BodyTooLarge);
            }
        }
        let path_and_query = match query {
            Some(q) => format!("{}?{}", path.as_str(), q),
            None => path.into_string(),
        };
        ctx.route = Some(Routed {
            config: m.route,
            patient: m.patient,
            entry_id: m.entry,
            admin: m.admin,
            path_and_query,
        });
        Ok(())
    }
}
