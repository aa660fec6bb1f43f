//! `sekisho.toml`: the whole `Config` from TOML, then its validation (upstream URL, the route
//! map, break-glass categories, anomaly hours, notification channels, witnesses, exports,
//! retention, the tunnel's subnet), as `Config::load` does after reading the file.
//!
//! Invariants: a configuration that parses serialises back to TOML that parses again,
//! serialises to the same text (a fixed point after one round) and validates the same way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(cfg) = toml::from_str::<Config>(text) else {
        return;
    };
    let valid = cfg.validate();

    let once = toml::to_string(&cfg).expect("a parsed configuration serialises");
    let back: Config = toml::from_str(&once)
        .unwrap_or_else(|e| panic!("serialised configuration does not parse: {e}\n{once}"));
    let twice = toml::to_string(&back).expect("serialises");
    assert_eq!(once, twice, "not a fixed point");
    assert_eq!(
        valid.is_ok(),
        back.validate().is_ok(),
        "the round trip changed whether it validates: {valid:?}"
    );
});
