//! Writes a test HPKI CA (root, authentication and signature CAs, CRLs, and card certificates
//! for a doctor, a pharmacist, staff without a role, an expired, a revoked and a
//! signature-application certificate) to a directory, for the demo and for tests of other
//! components. The file names are listed in `sekisho_ca::hpki::testca`.
//!
//! Usage: sekisho-hpki-testca --out DIR [--crl-base-url URL] [--crl-days N]
//!
//! Test support, built only with the `test-util` feature:
//! `cargo run -p sekisho-ca --features test-util --bin sekisho-hpki-testca -- --out DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use sekisho_ca::hpki::{TestHpki, TestHpkiOptions};

const USAGE: &str = "usage: sekisho-hpki-testca --out DIR [--crl-base-url URL] [--crl-days N]

Writes a TEST HPKI CA and card certificates to DIR (replacing existing files).
  --crl-base-url URL  prefix of the CRL distribution point URLs (default http://hpki-test.invalid/crl/)
  --crl-days N        CRL validity in days (default 7)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sekisho-hpki-testca: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut out: Option<PathBuf> = None;
    let mut opts = TestHpkiOptions::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--crl-base-url" => {
                let url = value("--crl-base-url")?
                    .into_string()
                    .map_err(|_| "--crl-base-url must be UTF-8".to_owned())?;
                if !url.is_ascii() || url.chars().any(|c| c.is_ascii_control() || c == ' ') {
                    return Err(format!("{url:?} is not a URL"));
                }
                opts.crl_base_url = url;
            }
            "--crl-days" => {
                let days: i64 = value("--crl-days")?
                    .to_string_lossy()
                    .parse()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .ok_or_else(|| "--crl-days must be a number of days, 1 to 3650".to_owned())?;
                opts.crl_validity = time::Duration::days(days);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n\n{USAGE}"))?;
    let hpki = TestHpki::generate_with(&out, &opts).map_err(|e| e.to_string())?;
    println!("test HPKI CA written to {}", out.display());
    for cert in hpki.certificates() {
        println!(
            "  {:<16} {}.crt {}.key  serial {}",
            cert.name, cert.name, cert.name, cert.serial_hex
        );
    }
    println!("  CRLs             root.crl auth-ca.crl (lists revoked) sign-ca.crl");
    Ok(())
}
