//! The ids a matched route extracts from the request (patient, confirmed entry, administered
//! facility), from a path segment, the query or a header, and the check of `Upgrade`.

use super::compile::Extractor;
use super::{RouteError, is_valid_patient_id};
use crate::path::{NormalizedPath, hex_value};

/// The id an extractor finds (patient-id errors; callers relabel them for other ids).
pub(super) fn extract(
    extractor: &Extractor,
    path: &NormalizedPath,
    query: Option<&str>,
    header: &dyn Fn(&str) -> Vec<String>,
) -> Result<Option<String>, RouteError> {
    Ok(match extractor {
        Extractor::None => None,
        Extractor::PathSegment(index) => Some(patient_from_path(path, *index)?),
        Extractor::Query(name) => Some(patient_from_query(query, name)?),
        Extractor::Header(name) => Some(patient_from_header(header(name))?),
    })
}

/// Refuse any `Upgrade` unless the route permits WebSocket and only `websocket` is offered.
pub(super) fn check_upgrade(
    websocket: bool,
    header: &dyn Fn(&str) -> Vec<String>,
) -> Result<(), RouteError> {
    let values = header("upgrade");
    if values.is_empty() {
        return Ok(());
    }
    let protocols: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty())
        .collect();
    // A protocol may carry a version: `websocket/13`.
    let only_websocket = !protocols.is_empty()
        && protocols.iter().all(|p| {
            let name = p.split_once('/').map_or(*p, |(n, _)| n);
            name.eq_ignore_ascii_case("websocket")
        });
    if websocket && only_websocket {
        Ok(())
    } else {
        Err(RouteError::UpgradeNotAllowed)
    }
}

fn patient_from_path(path: &NormalizedPath, index: usize) -> Result<String, RouteError> {
    // The pattern matched, so the segment exists and is not empty.
    let seg = path
        .segments()
        .nth(index)
        .filter(|s| !s.is_empty())
        .ok_or(RouteError::PatientIdMissing)?;
    // A normalised path has every unreserved character decoded; anything still encoded is
    // outside the patient-id alphabet, so no decoding is needed before validating.
    if is_valid_patient_id(seg) {
        Ok(seg.to_owned())
    } else {
        Err(RouteError::PatientIdMalformed)
    }
}

/// The single value of the occurrences, all validated: none → missing, any malformed →
/// malformed, several different → conflict, the same one several times → repeated. An
/// identifier given twice is refused even when the values agree: upstream frameworks differ on
/// which occurrence they take (the first, the last, a list), and a second, agreeing copy is
/// what a smuggled one looks like once a parser folds names the gateway does not.
fn single_patient_id(
    values: impl IntoIterator<Item = Result<String, RouteError>>,
) -> Result<String, RouteError> {
    let mut found: Option<String> = None;
    let mut conflict = false;
    let mut repeated = false;
    for value in values {
        let value = value?;
        if !is_valid_patient_id(&value) {
            return Err(RouteError::PatientIdMalformed);
        }
        match &found {
            None => found = Some(value),
            Some(first) if *first == value => repeated = true,
            Some(_) => conflict = true,
        }
    }
    // Malformed takes precedence over conflict (it is reported wherever it occurs).
    match (found, conflict, repeated) {
        (None, _, _) => Err(RouteError::PatientIdMissing),
        (Some(_), true, _) => Err(RouteError::PatientIdConflict),
        (Some(_), false, true) => Err(RouteError::PatientIdRepeated),
        (Some(id), false, false) => Ok(id),
    }
}

/// Percent-decode a query component (`+` is a space, as in form encoding). Invalid encodings
/// give `None`.
fn decode_query_component(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_value)?;
                let lo = b.get(i + 2).copied().and_then(hex_value)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A query key as the most lenient upstream parser reads it: ASCII lower case, leading spaces
/// dropped, `.` and space read as `_` (PHP).
fn fold_key(key: &[u8]) -> Vec<u8> {
    key.iter()
        .skip_while(|&&b| b == b' ')
        .map(|&b| match b {
            b'.' | b' ' => b'_',
            b => b.to_ascii_lowercase(),
        })
        .collect()
}

/// How a decoded key names the parameter: not at all, as itself, or as a list (`pid[]`,
/// `pid[0]`, `pid[x]`: PHP, Rails and `qs` turn those into an array or a map).
fn key_names(key: &[u8], name: &[u8]) -> (bool, bool) {
    let (key, name) = (fold_key(key), fold_key(name));
    match key.strip_prefix(name.as_slice()) {
        Some([]) => (true, false),
        Some([b'[', ..]) => (true, true),
        _ => (false, false),
    }
}

/// All occurrences of the parameter `name` in the query. Keys are compared after
/// percent-decoding and folding as lenient parsers do ([`fold_key`]), so that `p%69d=2`,
/// `PID=2` or `p.id` cannot smuggle a second patient id past the gateway to an upstream that
/// decodes keys, ignores their case or folds them. A key that cannot be decoded makes the whole
/// lookup fail closed (malformed). The parameter given twice (`pid=1&pid=1`), as a list
/// (`pid[]=1`), or again after a `;` (which some parsers take for `&`) is refused.
fn patient_from_query(query: Option<&str>, name: &str) -> Result<String, RouteError> {
    let query = query.unwrap_or("");
    let mut values = Vec::new();
    let mut list = false;
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_component(key).ok_or(RouteError::PatientIdMalformed)?;
        let (named, as_list) = key_names(&key, name.as_bytes());
        if !named {
            continue;
        }
        list |= as_list;
        values.push(
            decode_query_component(value)
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or(RouteError::PatientIdMalformed),
        );
    }
    // Read with `;` as a separator too: the same number of occurrences, or it is ambiguous.
    let mut with_semicolons = 0;
    for pair in query.split(['&', ';']) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if decode_query_component(key).is_some_and(|k| key_names(&k, name.as_bytes()).0) {
            with_semicolons += 1;
        }
    }
    let id = single_patient_id(values)?;
    if list || with_semicolons > 1 {
        return Err(RouteError::PatientIdRepeated);
    }
    Ok(id)
}

/// All values of the header, each comma-separated list split into its elements (a header
/// repeated and a header with a list are the same thing in HTTP). An empty element is
/// malformed; more than one element is refused (conflict, or repeated when they agree).
fn patient_from_header(values: Vec<String>) -> Result<String, RouteError> {
    let elements: Vec<Result<String, RouteError>> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|e| Ok(e.trim_matches([' ', '\t']).to_owned()))
        .collect();
    single_patient_id(elements)
}
