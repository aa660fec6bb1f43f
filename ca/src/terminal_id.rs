//! A terminal's identity (facility id + terminal id) and its URN form in certificates.

use std::fmt;

use x509_parser::extensions::GeneralName;

use crate::CaError;

const URN_PREFIX: &str = "urn:sekisho:terminal:";
const MAX_ID_LEN: usize = 64;

/// A registered facility terminal. Both parts are restricted to `[A-Za-z0-9._-]{1,64}` so they
/// can be put into a URN, a file name, a log line or a subject name without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId {
    pub facility: String,
    pub terminal: String,
}

impl TerminalId {
    pub fn new(facility: &str, terminal: &str) -> Result<Self, CaError> {
        check_id("facility id", facility)?;
        check_id("terminal id", terminal)?;
        Ok(TerminalId {
            facility: facility.to_owned(),
            terminal: terminal.to_owned(),
        })
    }

    /// `urn:sekisho:terminal:<facility>:<terminal>`
    pub fn urn(&self) -> String {
        format!("{URN_PREFIX}{}:{}", self.facility, self.terminal)
    }

    /// Exactly the form `urn()` writes: the ids cannot contain ':', so the split is unambiguous.
    pub fn from_urn(s: &str) -> Result<Self, CaError> {
        let not_urn = || CaError::NotTerminalUrn(s.to_owned());
        let rest = s.strip_prefix(URN_PREFIX).ok_or_else(not_urn)?;
        let (facility, terminal) = rest.split_once(':').ok_or_else(not_urn)?;
        TerminalId::new(facility, terminal).map_err(|_| not_urn())
    }

    /// The terminal named by a certificate: exactly one `urn:sekisho:terminal:` URI in its
    /// subject alternative names. Other URIs are ignored; two terminal URNs are an error, since
    /// such a certificate could stand for either terminal.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, CaError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CaError::BadCertificate(
                "trailing data after the certificate".into(),
            ));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CaError::BadCertificate(format!("subject alternative names: {e}")))?
            .ok_or(CaError::NoTerminalUrn)?;
        let mut urns = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                // Compared without regard to case so that a look-alike spelling is counted (and
                // then refused by `from_urn`) rather than silently ignored.
                GeneralName::URI(uri)
                    if uri.len() >= URN_PREFIX.len()
                        && uri.as_bytes()[..URN_PREFIX.len()]
                            .eq_ignore_ascii_case(URN_PREFIX.as_bytes()) =>
                {
                    Some(*uri)
                }
                _ => None,
            });
        let first = urns.next().ok_or(CaError::NoTerminalUrn)?;
        if urns.next().is_some() {
            return Err(CaError::SeveralTerminalUrns);
        }
        TerminalId::from_urn(first)
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.facility, self.terminal)
    }
}

fn check_id(what: &'static str, value: &str) -> Result<(), CaError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidId {
            what,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_round_trip() {
        let id = TerminalId::new("okayama-hp.01", "reception_2").unwrap();
        assert_eq!(id.urn(), "urn:sekisho:terminal:okayama-hp.01:reception_2");
        assert_eq!(TerminalId::from_urn(&id.urn()).unwrap(), id);
    }

    #[test]
    fn bad_ids_refused() {
        for (f, t) in [
            ("", "t"),
            ("f", ""),
            ("f:x", "t"),
            ("f", "t/1"),
            ("f", "t 1"),
            ("病院", "t"),
            ("f", "t\n"),
            (&"a".repeat(65), "t"),
        ] {
            let err = TerminalId::new(f, t).unwrap_err();
            assert!(matches!(err, CaError::InvalidId { .. }), "{f:?}/{t:?}");
        }
        assert!(TerminalId::new(&"a".repeat(64), "t").is_ok());
        let msg = TerminalId::new("bad id", "t").unwrap_err().to_string();
        assert!(
            msg.contains("facility id") && msg.contains("bad id"),
            "{msg}"
        );
    }

    #[test]
    fn bad_urns_refused() {
        for s in [
            "urn:sekisho:terminal:f",
            "urn:sekisho:terminal:f:t:u",
            "urn:sekisho:terminal::t",
            "URN:SEKISHO:TERMINAL:f:t",
            "urn:sekisho:user:f:t",
            "",
        ] {
            assert!(
                matches!(TerminalId::from_urn(s), Err(CaError::NotTerminalUrn(_))),
                "{s:?}"
            );
        }
    }
}
