//! `sekisho ca …`: Sekisho's CA: its certificate revocation lists, and replacing the issuing CA.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_ca::Authority;

use super::admin_audit::{Operator, change, cli_record};
use super::data_dir::open;
use crate::config::{DataDir, ca_passphrase};
use crate::terminals;

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Print the current CRLs (PEM) on stdout: the issuing CA's, then any retired CA's.
    Crl {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// A new issuing CA, signed by the root (whose key is read for this only), in place of
    /// the current one — before its five years run out, or when its key is in doubt. The old
    /// one is kept as retired: its terminals keep working, and it keeps signing the CRL for
    /// them until it expires. The gateway's server certificate is re-issued under the new one.
    /// Gateways use the new CA from their next start (`docs/operations.md`).
    RotateIssuing {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub(super) async fn run(cmd: CaCmd, op: &Operator) -> Result<i32> {
    match cmd {
        CaCmd::Crl { data_dir } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let ca = terminals::load_authority(&dd).ok();
            let crl = terminals::ensure_crl(&store, ca.as_ref(), &cfg.ca).await?;
            for der in crl.all() {
                print!("{}", sekisho_ca::crl_pem(&der));
            }
            Ok(0)
        }
        CaCmd::RotateIssuing { data_dir } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let before = terminals::load_authority(&dd)?;
            let old = sekisho_ca::serial_hex(before.issuing_der())?;
            let rec = AuditRecord {
                event: Event::Registry,
                action: Some("issuing_ca_rotated".into()),
                decision: Decision::Permit,
                reason: "ok".into(),
                detail: Some(format!(
                    "issuing CA {old} retired; a new one signed by the root"
                )),
                ..cli_record()
            };
            let (old, new) = change(&dd, &cfg, &store, op, rec, async {
                let pass = ca_passphrase();
                let (old, new) = Authority::rotate_issuing(&dd.ca_dir(), pass.as_deref())?;
                let ca = terminals::load_authority(&dd)?;
                reissue_server(&dd, &ca)?;
                // The CRLs of both CAs, at once, for every replica.
                let mut tx = store.begin_write().await?;
                terminals::resign_crl(&mut tx, &ca, &cfg.ca).await?;
                tx.commit().await?;
                Ok((old, new))
            })
            .await?;
            println!("issuing CA {old} retired; the new issuing CA is {new}");
            println!(
                "the server certificate was re-issued under it. Restart every gateway (other replicas: copy ca/ and tls/ first)."
            );
            Ok(0)
        }
    }
}

/// The gateway's server certificate again, for the names the current one carries, from `ca`.
fn reissue_server(dd: &DataDir, ca: &Authority) -> Result<()> {
    let pem = std::fs::read(dd.server_cert())
        .with_context(|| format!("cannot read {}", dd.server_cert().display()))?;
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .context("the server certificate file holds no certificate")??;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("the server certificate: {e}"))?;
    let (mut dns, mut ips) = (Vec::new(), Vec::<IpAddr>::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b)?)),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b)?)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let (server, key) = ca.issue_server(&dns, &ips, Duration::from_secs(397 * 86_400))?;
    sekisho_ca::write_private_file(&dd.server_key(), key.as_str().as_bytes())?;
    sekisho_ca::write_private_file(
        &dd.server_cert(),
        (server.pem() + &ca.issuing_pem()).as_bytes(),
    )?;
    Ok(())
}
