//! The officers' and secretariat's console (`/.sekisho/console/`) over real TLS with terminal
//! certificates, curl as the browser with a cookie jar, on SQLite and PostgreSQL: who gets in
//! (the policy set's console actions), the headers that keep patient data out of caches and
//! frames, the audit search with its paging and each record's standing in the Merkle tree, a
//! patient's access history as a printable report and CSV, form tokens, and the idle timeout.
//! Break-glass review in the console is in `tests/breakglass/console.rs`; in a real browser
//! in `tests/browser.rs`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../notify_rig/mod.rs"]
mod notify_rig;
mod rig;

mod access;
mod anomaly;
mod history;
mod network;
mod registry;
mod search;
