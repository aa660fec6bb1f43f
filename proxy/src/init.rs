//! `sekisho init`: a new data dir with everything the gateway needs. Built in a staging
//! directory beside the target and renamed into place, so wrong input or a failure halfway
//! leaves nothing behind.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sekisho_ca::{Authority, CaOptions, KeyAlgorithm};
use sekisho_policies::RouteMap;

use crate::config::{
    Audit, CaConfig, Config, DataDir, Enrollment, Limits, Listen, StoreConfig, Upstream,
    ca_passphrase, resolve_store_url,
};
use sekisho_store::Store;

pub struct InitOptions {
    pub data_dir: PathBuf,
    pub upstream: String,
    pub listen: SocketAddr,
    pub mgmt_listen: SocketAddr,
    pub enroll_listen: SocketAddr,
    pub hostname: String,
    pub network_name: String,
    pub store_url: Option<String>,
    pub ca_key: KeyAlgorithm,
    pub extra_ips: Vec<IpAddr>,
}

pub fn config_for(o: &InitOptions) -> Config {
    Config {
        hostname: o.hostname.clone(),
        node: o.hostname.clone(),
        listen: Listen {
            gateway: o.listen,
            enroll: o.enroll_listen,
            management: o.mgmt_listen,
        },
        upstream: Upstream {
            url: o.upstream.clone(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout_secs: 30,
            assertion_audience: None,
        },
        store: o
            .store_url
            .clone()
            .map(|url| StoreConfig { url })
            .unwrap_or_default(),
        limits: Limits::default(),
        ca: CaConfig::default(),
        enrollment: Enrollment::default(),
        audit: Audit::default(),
        signin: Default::default(),
        policy: Default::default(),
        hpki: None,
        tunnel: None,
        break_glass: Default::default(),
        console: Default::default(),
        anomaly: Default::default(),
        notify: None,
        rate_limits: Default::default(),
        routes: RouteMap::default_routes(),
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub async fn init(o: &InitOptions) -> Result<DataDir> {
    // All input is checked before anything is written.
    let cfg = config_for(o);
    let host_ip: Option<IpAddr> = o.hostname.parse().ok();
    if host_ip.is_none() && !valid_hostname(&o.hostname) {
        bail!("--hostname {:?} is not a valid host name", o.hostname);
    }
    cfg.validate()?;
    let target = &o.data_dir;
    if target.join(crate::config::CONFIG_FILE).exists() {
        bail!(
            "{} already holds a Sekisho data dir; choose another --data-dir",
            target.display()
        );
    }
    if target.exists() && std::fs::read_dir(target)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose a new or empty --data-dir",
            target.display()
        );
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".sekisho-init-")
        .tempdir_in(&parent)?;
    build(stage.path(), o, &cfg).await?;
    if target.exists() {
        std::fs::remove_dir(target)?;
    }
    let staged = stage.keep();
    std::fs::rename(&staged, target)
        .with_context(|| format!("cannot move the new data dir into {}", target.display()))?;
    // The data dir holds keys: only its owner reads it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700))?;
    Ok(DataDir::new(target.clone()))
}

async fn build(dir: &Path, o: &InitOptions, cfg: &Config) -> Result<()> {
    let dd = DataDir::new(dir);
    let ca = Authority::create(
        &dd.ca_dir(),
        &CaOptions {
            algorithm: o.ca_key,
            passphrase: ca_passphrase(),
            name: o.network_name.clone(),
        },
    )?;
    // The server certificate answers to the configured name and to loopback.
    let mut dns = vec![o.hostname.clone()];
    if o.hostname != "localhost" {
        dns.push("localhost".into());
    }
    dns.retain(|d| d.parse::<IpAddr>().is_err());
    let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse()?, "::1".parse()?];
    ips.extend(o.extra_ips.iter().copied());
    for a in [o.listen, o.enroll_listen] {
        if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if let Ok(ip) = o.hostname.parse::<IpAddr>()
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    let (server, key) = ca.issue_server(&dns, &ips, Duration::from_secs(397 * 86_400))?;
    std::fs::create_dir_all(dd.tls_dir())?;
    std::fs::write(dd.server_cert(), server.pem() + &ca.issuing_pem())?;
    sekisho_ca::write_private_file(&dd.server_key(), key.as_str().as_bytes())?;
    std::fs::write(dd.root.join("ca.crt"), ca.root_pem())?;
    let text = format!(
        "# Sekisho gateway configuration. Paths are relative to this directory.\n{}",
        toml::to_string_pretty(cfg).context("cannot write the configuration")?
    );
    std::fs::write(dd.config(), text)?;
    // Keys for the assertion and the audit checkpoints, the database and the first CRL.
    crate::assertion::AssertionSigner::load_or_create(
        &dd.assertion_key(),
        &dd.jwks(),
        String::new(),
        String::new(),
    )?;
    crate::policy::write_default_policies(&dir.join(&cfg.policy.dir))?;
    sekisho_audit::CheckpointKey::load_or_create(
        &dd.audit_dir(),
        &crate::serve::audit_origin(cfg),
    )?;
    // Made here, so that replicas copied from this data dir share it.
    crate::enrollment::PinKey::load_or_create(dir)?;
    let store = Store::open(&resolve_store_url(&cfg.store.url, dir)).await?;
    crate::terminals::ensure_crl(&store, Some(&ca), &cfg.ca).await?;
    store.close().await;
    Ok(())
}
