//! Compiling a route's configuration into the matcher: its path pattern as segments, its
//! methods and its id extractors, each checked; and matching a normalised path and a method.

use super::config::{Action, Level, PatientSource, RouteConfig, RouteProblem};
use crate::path::{NormalizedPath, normalize};

/// One segment of a compiled path pattern.
#[derive(Debug, Clone)]
pub(super) enum Segment {
    Literal(String),
    /// `{name}` or `*`: one non-empty segment.
    One,
    /// `**`: zero or more remaining segments.
    Rest,
}

/// The methods a route accepts.
#[derive(Debug, Clone)]
pub(super) enum Methods {
    Any,
    List(Vec<String>),
}

/// Where a route finds an id (patient, entry or facility) in the request.
#[derive(Debug, Clone)]
pub(super) enum Extractor {
    None,
    /// Index of the path segment holding the patient id.
    PathSegment(usize),
    Query(String),
    Header(String),
}

/// A route of the map: its configuration and what [`compile`] made of it.
#[derive(Debug, Clone)]
pub(super) struct CompiledRoute {
    pub(super) config: RouteConfig,
    pub(super) segments: Vec<Segment>,
    pub(super) methods: Methods,
    pub(super) extractor: Extractor,
    pub(super) entry: Extractor,
    pub(super) facility: Extractor,
}

impl CompiledRoute {
    pub(super) fn path_matches(&self, path: &NormalizedPath) -> bool {
        let mut actual = path.segments();
        for expected in &self.segments {
            match expected {
                Segment::Rest => return true,
                Segment::Literal(lit) => match actual.next() {
                    Some(seg) if seg == lit => {}
                    _ => return false,
                },
                Segment::One => match actual.next() {
                    Some(seg) if !seg.is_empty() => {}
                    _ => return false,
                },
            }
        }
        actual.next().is_none()
    }

    pub(super) fn method_matches(&self, method: &str) -> bool {
        match &self.methods {
            Methods::Any => true,
            Methods::List(list) => list.iter().any(|m| m == method),
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_capture_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What [`compile`] built from a route's configuration, once checked.
pub(super) struct Compiled {
    pub(super) segments: Vec<Segment>,
    pub(super) methods: Methods,
    pub(super) patient: Extractor,
    pub(super) entry: Extractor,
    pub(super) facility: Extractor,
}

pub(super) fn compile(config: &RouteConfig) -> Result<Compiled, RouteProblem> {
    if config.name.as_deref() == Some("") {
        return Err(RouteProblem::EmptyName);
    }

    // Methods.
    if config.methods.is_empty() {
        return Err(RouteProblem::EmptyMethods);
    }
    let mut methods = Vec::new();
    let mut any = false;
    for m in &config.methods {
        if m == "*" {
            any = true;
        } else if is_token(m) && !m.bytes().any(|b| b.is_ascii_lowercase()) {
            methods.push(m.clone());
        } else {
            return Err(RouteProblem::BadMethod(m.clone()));
        }
    }
    let methods = if any {
        Methods::Any
    } else {
        Methods::List(methods)
    };

    // Pattern.
    let pattern = &config.path;
    let Some(body) = pattern.strip_prefix('/') else {
        return Err(RouteProblem::PatternNotAbsolute(pattern.clone()));
    };
    let raw_segments: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    let mut segments = Vec::with_capacity(raw_segments.len());
    let mut captures: Vec<(&str, usize)> = Vec::new();
    for (i, &seg) in raw_segments.iter().enumerate() {
        let last = i + 1 == raw_segments.len();
        let compiled = if seg == "**" {
            if !last {
                return Err(RouteProblem::RestNotLast);
            }
            Segment::Rest
        } else if seg == "*" {
            Segment::One
        } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !is_capture_name(name) {
                return Err(RouteProblem::BadCaptureName(name.to_owned()));
            }
            if captures.iter().any(|(n, _)| *n == name) {
                return Err(RouteProblem::DuplicateCapture(name.to_owned()));
            }
            captures.push((name, i));
            Segment::One
        } else if seg.is_empty() {
            if !last {
                return Err(RouteProblem::PatternEmptySegment);
            }
            Segment::Literal(String::new())
        } else if seg == "." || seg == ".." {
            return Err(RouteProblem::DotSegment(seg.to_owned()));
        } else if seg.contains(['*', '{', '}']) {
            return Err(RouteProblem::PartialWildcard(seg.to_owned()));
        } else {
            // Normalise the segment under a dummy parent, so that encoded dot segments show
            // up as such instead of as a climb above the root.
            let as_path = format!("/_/{seg}");
            match normalize(&as_path) {
                Ok(n) if n.as_str() == as_path => {}
                Ok(n) => {
                    let normalized = n.as_str().strip_prefix("/_/");
                    return Err(match normalized {
                        Some(normalized) if !normalized.is_empty() => {
                            RouteProblem::LiteralNotNormalized {
                                segment: seg.to_owned(),
                                normalized: normalized.to_owned(),
                            }
                        }
                        _ => RouteProblem::DotSegment(seg.to_owned()),
                    });
                }
                Err(e) => {
                    return Err(RouteProblem::LiteralInvalid {
                        segment: seg.to_owned(),
                        reason: e.reason(),
                    });
                }
            }
            Segment::Literal(seg.to_owned())
        };
        segments.push(compiled);
    }

    // Id extractors: the patient, the confirmed entry, the administered object's facility.
    let source = |field: &'static str, source: &PatientSource| -> Result<Extractor, RouteProblem> {
        id_extractor(&captures, source).ok_or_else(|| RouteProblem::IdSourceInvalid {
            field,
            name: source.name().to_owned(),
        })
    };
    let extractor = match (config.level, &config.patient) {
        (Level::Patient, None) => return Err(RouteProblem::PatientSourceMissing),
        (Level::Patient, Some(source)) => {
            if source.name().is_empty() {
                return Err(RouteProblem::PatientNameEmpty);
            }
            match source {
                PatientSource::Path { name } => {
                    let (_, index) = captures
                        .iter()
                        .find(|(n, _)| *n == name.as_str())
                        .ok_or_else(|| RouteProblem::PatientCaptureUnknown(name.clone()))?;
                    Extractor::PathSegment(*index)
                }
                PatientSource::Query { name } => Extractor::Query(name.clone()),
                PatientSource::Header { name } => {
                    // Headers with '_' in their name never reach the route map (the gateway
                    // removes them: CGI upstreams merge them with their '-' spelling).
                    if !is_token(name) || name.contains('_') {
                        return Err(RouteProblem::PatientHeaderInvalid(name.clone()));
                    }
                    Extractor::Header(name.clone())
                }
            }
        }
        (level, Some(_)) => return Err(RouteProblem::PatientSourceUnexpected(level)),
        (_, None) => Extractor::None,
    };
    let confirms = config.level == Level::Patient && config.action == Action::Confirm;
    let entry = match (&config.entry, confirms) {
        (Some(e), true) => source("entry", e)?,
        (None, true) => return Err(RouteProblem::EntrySourceMissing),
        (Some(_), false) => return Err(RouteProblem::EntrySourceUnexpected),
        (None, false) => Extractor::None,
    };
    let administers = config.level == Level::User && config.action == Action::Admin;
    let facility = match (&config.admin, administers) {
        (Some(t), true) => source("admin.facility", &t.facility)?,
        (None, true) => return Err(RouteProblem::AdminTargetMissing),
        (Some(_), false) => return Err(RouteProblem::AdminTargetUnexpected),
        (None, false) => Extractor::None,
    };

    Ok(Compiled {
        segments,
        methods,
        patient: extractor,
        entry,
        facility,
    })
}

/// The extractor for an id source; `None` when the source names nothing usable.
fn id_extractor(captures: &[(&str, usize)], source: &PatientSource) -> Option<Extractor> {
    match source {
        _ if source.name().is_empty() => None,
        PatientSource::Path { name } => captures
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, index)| Extractor::PathSegment(*index)),
        PatientSource::Query { name } => Some(Extractor::Query(name.clone())),
        PatientSource::Header { name } => {
            (is_token(name) && !name.contains('_')).then(|| Extractor::Header(name.clone()))
        }
    }
}
