//! Where a browser says a request was sent from. A terminal's browser presents its client
//! certificate to any page that asks, and a card session needs no cookie, so a page of another
//! site could otherwise make that browser act for the person signed in. Browsers say where a
//! request comes from with `Origin` (on every POST, and on WebSocket handshakes) and
//! `Sec-Fetch-Site`; a request that carries neither is not from a browser page (the terminal
//! agent, an API client) and is taken as it is.
//!
//! The gateway's own origin is `https://<hostname>` with the port the request was addressed to
//! (its `Host` or `:authority`, 443 when it names none): exactly the origin of a page the
//! gateway served on that connection. Scheme, host and port are compared whole: no prefix,
//! no other port, no `http`, no `null`.

use http::uri::Authority;
use http::{HeaderMap, Uri, header};

/// Whether the browser says this request was sent by a page of another origin: a
/// `Sec-Fetch-Site` other than `same-origin` or `none` (a typed address), or an `Origin` other
/// than the gateway's own. Repeated headers count as foreign.
pub fn from_elsewhere(headers: &HeaderMap, uri: &Uri, hostname: &str) -> bool {
    let single = |name: header::HeaderName| -> Result<Option<String>, ()> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| ()),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let fetch_site = match single(header::HeaderName::from_static("sec-fetch-site")) {
        Ok(v) => v,
        Err(()) => return true,
    };
    if let Some(site) = fetch_site
        && !matches!(site.trim(), "same-origin" | "none")
    {
        return true;
    }
    match single(header::ORIGIN) {
        Ok(None) => false,
        Ok(Some(origin)) => !is_own(&origin, headers, uri, hostname),
        Err(()) => true,
    }
}

/// Whether `origin` is the gateway's own origin for this request.
fn is_own(origin: &str, headers: &HeaderMap, uri: &Uri, hostname: &str) -> bool {
    let Some(port) = addressed_port(headers, uri) else {
        return false;
    };
    let own = if port == 443 {
        format!("https://{hostname}")
    } else {
        format!("https://{hostname}:{port}")
    };
    origin.eq_ignore_ascii_case(&own)
}

/// The port the request was addressed to: its `:authority` (HTTP/2, absolute form) or its one
/// `Host` header; 443 when it names none. `None` when there is no single, valid authority.
fn addressed_port(headers: &HeaderMap, uri: &Uri) -> Option<u16> {
    let authority = match uri.authority() {
        Some(a) => a.clone(),
        None => {
            let mut hosts = headers.get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(h), None) => h.to_str().ok()?.parse::<Authority>().ok()?,
                _ => return None,
            }
        }
    };
    Some(authority.port_u16().unwrap_or(443))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elsewhere(pairs: &[(&str, &str)], uri: &str) -> bool {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        from_elsewhere(&h, &uri.parse().unwrap(), "gw.example.jp")
    }

    #[test]
    fn the_whole_origin_must_be_the_gateways() {
        let host = ("host", "gw.example.jp");
        assert!(!elsewhere(&[host], "/"), "no claim: the agent, API clients");
        assert!(!elsewhere(
            &[host, ("origin", "https://gw.example.jp")],
            "/"
        ));
        assert!(!elsewhere(
            &[host, ("origin", "https://GW.example.jp")],
            "/"
        ));
        for foreign in [
            "https://gw.example.jp.evil.example",
            "https://gw.example.jpx",
            "https://gw.example.jp:8443",
            "https://gw.example.jp:443",
            "http://gw.example.jp",
            "https://evil.example",
            "https://x.gw.example.jp",
            "null",
            "",
            "https://gw.example.jp/",
        ] {
            assert!(elsewhere(&[host, ("origin", foreign)], "/"), "{foreign}");
        }
        // The port the request was addressed to counts.
        let h = ("host", "gw.example.jp:8443");
        assert!(!elsewhere(
            &[h, ("origin", "https://gw.example.jp:8443")],
            "/"
        ));
        assert!(elsewhere(&[h, ("origin", "https://gw.example.jp")], "/"));
        assert!(elsewhere(
            &[h, ("origin", "https://gw.example.jp:9443")],
            "/"
        ));
        // HTTP/2: the authority is in the URI.
        assert!(!elsewhere(
            &[("origin", "https://gw.example.jp:8443")],
            "https://gw.example.jp:8443/x"
        ));
        // No authority, or two Host headers: nothing is the own origin.
        assert!(elsewhere(&[("origin", "https://gw.example.jp")], "/"));
        assert!(elsewhere(
            &[host, host, ("origin", "https://gw.example.jp")],
            "/"
        ));
        // Two Origin headers.
        assert!(elsewhere(
            &[
                host,
                ("origin", "https://gw.example.jp"),
                ("origin", "https://gw.example.jp")
            ],
            "/"
        ));
    }

    #[test]
    fn fetch_metadata_from_another_site_is_foreign() {
        let host = ("host", "gw.example.jp");
        assert!(!elsewhere(&[host, ("sec-fetch-site", "same-origin")], "/"));
        assert!(!elsewhere(&[host, ("sec-fetch-site", "none")], "/"));
        for site in ["cross-site", "same-site", "something-new", ""] {
            assert!(elsewhere(&[host, ("sec-fetch-site", site)], "/"), "{site}");
        }
        // Both must hold.
        assert!(elsewhere(
            &[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example")
            ],
            "/"
        ));
        assert!(elsewhere(
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://gw.example.jp")
            ],
            "/"
        ));
    }
}
