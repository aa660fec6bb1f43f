//! What tests set up through the CLI: a consented patient with a care team, an enrollment
//! code, a terminal's CSR.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use super::*;

/// Registers a consented patient with a care team of `members`: `f:ID` a facility, `u:ID` a user.
pub fn consented_patient(g: &Gateway, id: &str, members: &[&str]) {
    let d = g.data_str();
    run_ok(&[
        "patient",
        "add",
        "--data-dir",
        d,
        "--id",
        id,
        "--name",
        "山田 花子",
        "--consent",
        "granted",
    ]);
    for m in members {
        let (flag, member) = match m.split_once(':') {
            Some(("f", f)) => ("--facility", f),
            Some(("u", u)) => ("--user", u),
            _ => panic!("member {m:?}: f:FACILITY or u:USER"),
        };
        run_ok(&[
            "careteam",
            "add",
            "--data-dir",
            d,
            "--patient",
            id,
            flag,
            member,
        ]);
    }
}

/// A one-time access code and its PIN for enrolling `terminal` of `facility`.
pub fn enroll_code(g: &Gateway, facility: &str, terminal: &str) -> (String, String) {
    let out = run_ok(&[
        "terminal",
        "enroll-code",
        "--data-dir",
        g.data_str(),
        "--facility",
        facility,
        "--terminal",
        terminal,
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .trim()
            .to_string()
    };
    (field("code:"), field("PIN:"))
}

/// A P-256 key made by openssl in `dir` (`NAME.key`) and its CSR (PEM), as a terminal makes them.
pub fn new_csr(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let (ok, csr) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{csr}");
    let csr = csr[csr.find("-----BEGIN").expect("a CSR")..].to_string();
    (key, csr)
}
