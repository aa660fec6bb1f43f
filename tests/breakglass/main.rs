//! Emergency access (break-glass, R-PAT-4, R-BG-1..3) end to end with real parts: the gateway
//! (`sekisho serve`, on SQLite and on PostgreSQL, and a second replica on one PostgreSQL store),
//! real TLS with terminal certificates, pcscd with the vsmartcard vpcd reader and a virtual HPKI
//! card signing through `sekisho_agent` (the library of `sekisho-agent emergency`), the officers'
//! `sekisho breakglass` commands, and the local webhook and SMTP receivers of `notify_rig`.
//!
//! Where a test needs a signature the agent would never produce (another card's, a replayed
//! one, one for a timed-out draft), it signs the gateway's words with the test card's key itself
//! (the same RSASSA-PKCS1-v1_5 / SHA-256 the card computes). Time is not waited for: a grant's
//! end or a draft's timeout is moved in the store (the triggers tell every gateway, as for any
//! other change). Needs pcscd and vsmartcard-vpcd (tests/run.sh installs them); fails, never
//! skips, without them.

#[path = "../common/mod.rs"]
mod common;
#[path = "../notify_rig/mod.rs"]
mod notify_rig;
mod rig;

mod console;
mod declare;
mod follow_up;
mod officers;
mod refusals;
mod search;
