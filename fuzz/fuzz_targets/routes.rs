//! The route map from configuration: `[[route]]` tables as `sekisho.toml` holds them, compiled
//! by `RouteMap::new`, then one request resolved against them.
//!
//! Input: `TOML NUL method NUL path [NUL query [NUL header-value]]`.
//! Invariants: routes that parse serialise back to TOML that parses to the same routes, and
//! compile the same way; a compiled map keeps the routes in order; a request that resolves to
//! a patient route has a valid patient id, any other route none; an admin route names a valid
//! facility id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_policies::{Level, RouteConfig, RouteMap, is_valid_patient_id, normalize};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    route: Vec<RouteConfig>,
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let mut parts = text.split('\0');
    let Some(toml_text) = parts.next() else {
        return;
    };
    let Ok(file) = toml::from_str::<File>(toml_text) else {
        return;
    };
    let back: File = toml::from_str(&toml::to_string(&file).expect("routes serialise"))
        .expect("serialised routes parse");
    assert_eq!(back, file);

    let compiled = RouteMap::new(file.route.clone());
    assert_eq!(
        compiled.is_ok(),
        RouteMap::new(back.route).is_ok(),
        "the round trip changed whether the routes compile"
    );
    let Ok(map) = compiled else {
        return;
    };
    assert!(map.routes().eq(file.route.iter()));

    let (Some(method), Some(raw)) = (parts.next(), parts.next()) else {
        return;
    };
    let query = parts.next();
    let header_value = parts.next().map(str::to_owned);
    let Ok(path) = normalize(raw) else {
        return;
    };
    let header = |_: &str| header_value.iter().cloned().collect::<Vec<_>>();
    if let Ok(m) = map.resolve(method, &path, query, &header) {
        match m.route.level {
            Level::Patient => {
                let id = m
                    .patient
                    .as_deref()
                    .expect("a patient route names its patient");
                assert!(is_valid_patient_id(id), "{id:?}");
            }
            _ => assert!(m.patient.is_none()),
        }
        if let Some((_, facility)) = &m.admin {
            assert!(sekisho_protocol::ids::is_valid_id(facility), "{facility:?}");
        }
        assert!(m.route.methods.iter().any(|x| x == "*" || x == method));
    }
});
