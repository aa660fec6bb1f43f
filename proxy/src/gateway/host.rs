//! Right after identify (for forwarded requests and the own endpoints alike): the request must
//! say which host it is for exactly once. An HTTP/1.1 request without `Host`, or any request
//! with two `Host` headers or one that is not an authority, is refused (RFC 9112 §3.2): proxies
//! and applications differ on which one they read, and the origin check (`crate::origin`)
//! depends on it.

use http::uri::Authority;
use http::{Request, Version, header};
use sekisho_protocol::Reason;

use super::Gateway;

impl Gateway {
    pub(super) fn host<B>(&self, req: &Request<B>) -> Result<(), Reason> {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => Err(Reason::RequestHostInvalid),
            (None, _) if req.version() == Version::HTTP_11 => Err(Reason::RequestHostInvalid),
            (None, _) => Ok(()),
            (Some(h), None) => match h.to_str().ok().map(str::parse::<Authority>) {
                Some(Ok(a)) if !a.as_str().contains('@') => Ok(()),
                _ => Err(Reason::RequestHostInvalid),
            },
        }
    }
}
