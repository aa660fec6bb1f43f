//! Terminal administration (R-TERM-1, R-TERM-4): issuing, revoking, suspending and resuming,
//! each a single store transaction together with the CRL it changes, so a failure leaves
//! nothing half-done and a running gateway sees the change on its next poll.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sekisho_ca::{Authority, IssuedCert, RevocationReason, RevokedEntry, TerminalId};
use time::OffsetDateTime;

use crate::config::{CaConfig, DataDir, ca_passphrase};
use sekisho_store::crl::{self as crl_store, StoredCrl};
use sekisho_store::terminals::{self as rows, NewCert, TerminalStatus};
use sekisho_store::{Store, now};

pub fn load_authority(dd: &DataDir) -> Result<Authority> {
    Authority::load(&dd.ca_dir(), ca_passphrase().as_deref()).with_context(|| {
        format!(
            "cannot load the CA in {} (if its keys are encrypted, set SEKISHO_CA_PASSPHRASE)",
            dd.ca_dir().display()
        )
    })
}

pub fn terminal_lifetime(cfg: &CaConfig) -> Duration {
    Duration::from_secs(u64::from(cfg.terminal_lifetime_days) * 86_400)
}

/// Records a certificate the CA has just issued.
pub async fn register(store: &Store, id: &TerminalId, cert: &IssuedCert) -> Result<()> {
    let mut tx = store.begin_write().await?;
    register_in(&mut tx, id, cert).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn register_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &TerminalId,
    cert: &IssuedCert,
) -> Result<()> {
    rows::add_certificate(
        tx,
        &id.facility,
        &id.terminal,
        &NewCert {
            serial: &cert.serial_hex,
            not_before: cert.not_before.unix_timestamp(),
            not_after: cert.not_after.unix_timestamp(),
        },
    )
    .await
}

/// Checks, before the CA signs anything, that `id` may get a certificate.
pub async fn check_can_issue(store: &Store, id: &TerminalId) -> Result<()> {
    let mut tx = store.begin_write().await?;
    let existing = rows::get(&mut tx, &id.terminal).await?;
    tx.rollback().await?;
    rows::ensure_can_issue(existing.as_ref(), &id.facility, &id.terminal)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Revoke(RevocationReason),
    Suspend,
    Resume,
}

/// Applies a status change; returns the terminal's facility. Revocation re-signs the CRL in
/// the same transaction (so it needs the CA); suspension and resumption act through the
/// registry, which gateways re-read within a second.
pub async fn change_status(
    store: &Store,
    ca: Option<&Authority>,
    ca_cfg: &CaConfig,
    terminal: &str,
    change: Change,
) -> Result<String> {
    let mut tx = store.begin_write().await?;
    let Some((facility, status)) = rows::get(&mut tx, terminal).await? else {
        bail!("no terminal {terminal:?} is registered (see `sekisho terminal list`)");
    };
    let new = match (change, status) {
        (_, TerminalStatus::Revoked) => bail!("terminal {terminal} is already revoked"),
        (Change::Revoke(_), _) => TerminalStatus::Revoked,
        (Change::Suspend, TerminalStatus::Active) => TerminalStatus::Suspended,
        (Change::Suspend, TerminalStatus::Suspended) => {
            bail!("terminal {terminal} is already suspended")
        }
        (Change::Resume, TerminalStatus::Suspended) => TerminalStatus::Active,
        (Change::Resume, TerminalStatus::Active) => bail!("terminal {terminal} is not suspended"),
    };
    let reason = match change {
        Change::Revoke(r) => Some(r.as_str()),
        _ => None,
    };
    rows::set_status(&mut tx, terminal, new, reason).await?;
    if new == TerminalStatus::Revoked {
        let ca = ca.context("revoking needs the CA to sign a new CRL")?;
        resign_crl(&mut tx, ca, ca_cfg).await?;
    }
    tx.commit().await?;
    Ok(facility)
}

/// Signs a new CRL from the revoked certificates in the store, inside `tx`.
pub async fn resign_crl(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ca: &Authority,
    cfg: &CaConfig,
) -> Result<StoredCrl> {
    let number = crl_store::lock_next_number(tx).await?;
    let entries = rows::revoked(tx)
        .await?
        .into_iter()
        .map(|(serial, at, reason)| {
            Ok(RevokedEntry {
                serial_hex: serial,
                revoked_at: OffsetDateTime::from_unix_timestamp(at)?,
                reason: reason.parse().unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let this_update = OffsetDateTime::now_utc();
    let next_update = this_update + time::Duration::hours(i64::from(cfg.crl_lifetime_hours.max(1)));
    let crl = ca.crl(&entries, number as u64, this_update, next_update)?;
    // Retired issuing CAs sign theirs at the same time: their terminals stay checkable.
    let retired = ca
        .retired_crls(&entries, number as u64, this_update, next_update)?
        .into_iter()
        .map(|c| c.der)
        .collect();
    let stored = StoredCrl {
        number,
        der: crl.der,
        next_update: next_update.unix_timestamp(),
        retired,
    };
    crl_store::save(tx, &stored).await?;
    Ok(stored)
}

/// The current CRL, re-signed first when there is none or a third of its life is left.
pub async fn ensure_crl(
    store: &Store,
    ca: Option<&Authority>,
    cfg: &CaConfig,
) -> Result<StoredCrl> {
    let current = crl_store::current(store).await?;
    let refresh_margin = i64::from(cfg.crl_lifetime_hours.max(1)) * 3600 / 3;
    if let Some(c) = &current
        && c.next_update - now() > refresh_margin
    {
        return Ok(c.clone());
    }
    let Some(ca) = ca else {
        return current.context("no CRL in the store and no CA key to sign one");
    };
    let mut tx = store.begin_write().await?;
    // Another replica may have re-signed meanwhile; the number lock serialises us.
    let stored = resign_crl(&mut tx, ca, cfg).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A terminal's tunnel configuration: records `public` as its WireGuard key and gives it its
/// fixed address; returns the address and the wg-quick text (with `private_b64`, or the
/// placeholder for a key that stays on the terminal).
pub async fn tunnel_config(
    cfg: &crate::config::Config,
    store: &Store,
    terminal: &str,
    public: [u8; 32],
    private_b64: Option<&str>,
    gateway_public: [u8; 32],
) -> Result<(std::net::Ipv4Addr, String)> {
    use sekisho_tunnel::{keys, wgquick};
    let Some(t) = &cfg.tunnel else {
        bail!("no [tunnel] section in the configuration");
    };
    let subnet = t.subnet()?;
    let address =
        sekisho_store::tunnel_peers::assign(store, terminal, &keys::encode(&public), subnet)
            .await?;
    let conf = wgquick::render(&wgquick::TerminalTunnel {
        private_key: private_b64,
        address,
        gateway_public_key: gateway_public,
        endpoint: &t.endpoint,
        gateway_address: subnet.gateway,
    })?;
    Ok((address, conf))
}

/// A terminal's WireGuard tunnel: records its public key (a new key pair is made here when none
/// is given) and its fixed address, and writes `<terminal>.wg.conf` (0600 when it holds the
/// private key) and `<terminal>.wg.png` (a QR code of it for mobile WireGuard apps) into
/// `out`. The gateway adds the peer within one store poll.
pub async fn tunnel_bundle(
    dd: &DataDir,
    cfg: &crate::config::Config,
    store: &Store,
    terminal: &str,
    public_key: Option<&str>,
    out: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>> {
    use sekisho_tunnel::{keys, wgquick};
    let Some(t) = &cfg.tunnel else {
        bail!("no [tunnel] section in the configuration");
    };
    let gateway_key = keys::load_or_create_private_key(&dd.root.join(&t.private_key))?;
    let (secret, public) = match public_key {
        Some(k) => (
            None,
            keys::decode(k).context("--public-key is not a WireGuard key")?,
        ),
        None => {
            let (s, p) = keys::generate();
            (Some(keys::encode_secret(&s)), p)
        }
    };
    let (_, conf) = tunnel_config(
        cfg,
        store,
        terminal,
        public,
        secret.as_deref().map(|s| s.as_str()),
        keys::public_key(&gateway_key),
    )
    .await?;
    let png = wgquick::qr_png(&conf)?;
    let conf_path = out.join(format!("{terminal}.wg.conf"));
    let png_path = out.join(format!("{terminal}.wg.png"));
    if secret.is_some() {
        sekisho_ca::write_private_file(&conf_path, conf.as_bytes())?;
        sekisho_ca::write_private_file(&png_path, &png)?;
    } else {
        std::fs::write(&conf_path, &conf)?;
        std::fs::write(&png_path, &png)?;
    }
    Ok(vec![conf_path, png_path])
}
