//! Between route and authorize (and before the gateway's own endpoints): a request that changes
//! something — an unsafe method (not GET, HEAD or OPTIONS), or an upgrade — is refused when the
//! browser says a page of another origin sent it (`crate::origin`). The terminal's browser
//! presents its client certificate to any page, and a card session needs no cookie, so without
//! this any site the browser opens could act for the physician signed in. Requests that carry
//! neither `Origin` nor `Sec-Fetch-Site` (the agent, API clients) are not a browser page's.

use http::{Method, Request, header};
use sekisho_protocol::Reason;

use super::Gateway;

impl Gateway {
    pub(super) fn cross_site<B>(&self, req: &Request<B>) -> Result<(), Reason> {
        let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            || req.headers().contains_key(header::UPGRADE);
        if changes && crate::origin::from_elsewhere(req.headers(), req.uri(), &self.cfg.hostname) {
            return Err(Reason::CrossSiteRequest);
        }
        Ok(())
    }
}
