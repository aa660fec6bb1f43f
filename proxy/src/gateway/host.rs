//! Right after identify (for forwarded requests and the own endpoints alike): the request must
//! say which host it is for exactly once. An HTTP/1.1 request without `Host`, or any request
//! with two `Host` headers or one that is not an authority, is refused (RFC 9112 §3.2): proxies
//! and applications differ on which one they read, and the origin check (`crate::origin`)
//! depends on it. A target in absolute form (HTTP/1.1) or an HTTP/2 `:authority` names the
//! host too: with a `Host` that says otherwise, or with userinfo, it is refused as well (RFC
//! 9112 §3.2.2 lets the target win; the origin check and any upstream reading `Host` would not).

use http::uri::Authority;
use http::{Request, Version, header};
use sekisho_protocol::Reason;

use super::Gateway;

impl Gateway {
    pub(super) fn host<B>(&self, req: &Request<B>) -> Result<(), Reason> {
        let target = req.uri().authority();
        if target.is_some_and(|a| a.as_str().contains('@')) {
            return Err(Reason::RequestHostInvalid);
        }
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => Err(Reason::RequestHostInvalid),
            (None, _) if req.version() == Version::HTTP_11 => Err(Reason::RequestHostInvalid),
            (None, _) => Ok(()),
            (Some(h), None) => match h.to_str().ok().map(str::parse::<Authority>) {
                // `Authority` compares the host case-insensitively.
                Some(Ok(a)) if !a.as_str().contains('@') && target.is_none_or(|t| *t == a) => {
                    Ok(())
                }
                _ => Err(Reason::RequestHostInvalid),
            },
        }
    }
}
