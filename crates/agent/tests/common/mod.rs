//! Shared by the agent's tests: an in-test gateway and enrollment listener, the test PKI, the
//! vpcd reader rig with virtual cards, and a way to run the `sekisho-agent` binary.
//!
//! The card tests use the real path: pcscd + the vsmartcard vpcd reader `Virtual PCD 00 01`
//! (port 35964) + an in-process virtual HPKI card; the consent tests also put a patient card in
//! `Virtual PCD 00 00` (port 35963). Without pcscd and vsmartcard-vpcd they fail, saying what
//! is missing.

// Each test binary uses a part of this.
#![allow(dead_code, unused_imports)]

pub mod card;
pub mod emergency;
pub mod gateway;
pub mod pki;
pub mod rig;

pub use card::{PIN, RecordingCard, engine, identities, signed_by_auth_key};
pub use emergency::{APPROVAL_CATEGORY, EmergencyDesk, GRANT_SECS, Tamper};
pub use gateway::*;
pub use pki::*;
pub use rig::*;

/// Runs `sekisho-agent` with `stdin`; (exit code, stdout, stderr).
pub async fn agent_cli(args: Vec<String>, stdin: &'static str) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho-agent"))
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sekisho-agent");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}
