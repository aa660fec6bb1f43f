//! Which terminal this agent is: the terminal URN its certificate names, as the gateway reads
//! it (`urn:sekisho:terminal:<facility>:<terminal>`, the one such URI among the subject
//! alternative names). A text the card is asked to sign must name this terminal.

use std::path::Path;

use sekisho_protocol::{TERMINAL_URN_PREFIX, TerminalId};
use x509_parser::extensions::GeneralName;

use crate::error::AgentError;
use crate::http::load_certs;

/// The URN of the terminal named by the first certificate in `cert` (PEM).
pub(crate) fn terminal_urn(cert: &Path) -> Result<String, AgentError> {
    let bad = |reason: &str| AgentError::Config {
        path: cert.display().to_string(),
        reason: reason.to_string(),
    };
    let certs = load_certs(cert)?;
    let (_, x509) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|_| bad("the terminal certificate cannot be read"))?;
    let san = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| bad("the terminal certificate names no terminal"))?;
    // Counted without regard to case, as the gateway does, so that a look-alike is an error.
    let mut urns = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u)
            if u.len() >= TERMINAL_URN_PREFIX.len()
                && u.as_bytes()[..TERMINAL_URN_PREFIX.len()]
                    .eq_ignore_ascii_case(TERMINAL_URN_PREFIX.as_bytes()) =>
        {
            Some(*u)
        }
        _ => None,
    });
    let urn = urns
        .next()
        .ok_or_else(|| bad("the terminal certificate names no terminal"))?;
    if urns.next().is_some() {
        return Err(bad("the terminal certificate names two terminals"));
    }
    let id = TerminalId::from_urn(urn)
        .map_err(|_| bad("the terminal certificate's terminal name is not valid"))?;
    Ok(id.urn())
}
