//! HPKI trust: the anchors, intermediates and CRLs of `[hpki]` in `sekisho.toml` (files in the
//! data dir, and CRLs fetched from `crl_urls` into a cache), re-read when one of its files
//! changes (a new CRL dropped in place). A broken set is refused and the last good verifier
//! stays; its CRLs still expire, so stale trust fails closed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwapOption;
use aws_lc_rs::digest::{SHA256, digest};
use sekisho_ca::hpki::{HpkiTrustConfig, HpkiVerifier};
use tracing::{info, warn};

use crate::config::Hpki as HpkiConfig;
use crate::file_stamps::FileStamps;

/// HPKI trust, re-read when one of its files changes (a new CRL is dropped in place).
pub struct HpkiTrust {
    cfg: Option<HpkiConfig>,
    data_dir: PathBuf,
    verifier: ArcSwapOption<HpkiVerifier>,
    stamp: std::sync::Mutex<FileStamps>,
    last_error: std::sync::Mutex<String>,
}

impl HpkiTrust {
    pub fn load(cfg: Option<HpkiConfig>, data_dir: PathBuf) -> Result<HpkiTrust> {
        let t = HpkiTrust {
            cfg,
            data_dir,
            verifier: ArcSwapOption::empty(),
            stamp: Default::default(),
            last_error: Default::default(),
        };
        // Unreadable trust turns HPKI sign-in off (it answers `hpki_not_configured`) rather
        // than stopping the gateway; it is retried whenever the files change.
        if let Err(e) = t.reload_if_changed() {
            warn!("{e:#}: HPKI card sign-in is off until this is fixed");
        }
        Ok(t)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .cfg
            .iter()
            .flat_map(|c| c.anchors.iter().chain(&c.intermediates).chain(&c.crls))
            .map(|p| self.data_dir.join(p))
            .collect();
        files.extend(self.cached_crls());
        files
    }

    /// Where the CRL fetched from `url` is kept.
    pub fn cache_path(&self, url: &str) -> PathBuf {
        let h = hex::encode(&digest(&SHA256, url.as_bytes()).as_ref()[..12]);
        self.data_dir
            .join("hpki-crl-cache")
            .join(format!("{h}.crl"))
    }

    fn cached_crls(&self) -> Vec<PathBuf> {
        self.cfg
            .iter()
            .flat_map(|c| &c.crl_urls)
            .map(|u| self.cache_path(u))
            .filter(|p| p.exists())
            .collect()
    }

    pub fn crl_urls(&self) -> (Vec<String>, u32) {
        self.cfg
            .as_ref()
            .map(|c| (c.crl_urls.clone(), c.crl_refresh_minutes.max(1)))
            .unwrap_or_default()
    }

    /// Rebuilds the verifier when a file changed; a broken set is refused and the last good
    /// verifier stays (its CRLs still expire, so stale trust fails closed).
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(cfg) = &self.cfg else {
            return Ok(false);
        };
        let stamps = FileStamps::of(self.files());
        if *self.stamp.lock().expect("stamp lock") == stamps && self.verifier.load().is_some() {
            return Ok(false);
        }
        let read = |ps: &[PathBuf]| -> Result<Vec<Vec<u8>>> {
            ps.iter()
                .map(|p| {
                    let p = self.data_dir.join(p);
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
                })
                .collect()
        };
        let trust = HpkiTrustConfig {
            anchors: read(&cfg.anchors)?,
            intermediates: read(&cfg.intermediates)?,
            crls: {
                let mut crls = read(&cfg.crls)?;
                crls.extend(read(&self.cached_crls())?);
                crls
            },
            ..Default::default()
        };
        let v = HpkiVerifier::new(&trust)
            .map_err(|e| anyhow::anyhow!("HPKI trust is not usable: {e}"))?;
        self.verifier.store(Some(Arc::new(v)));
        *self.stamp.lock().expect("stamp lock") = stamps;
        Ok(true)
    }

    /// `reload_if_changed` for the watcher: a problem is logged once, not every poll.
    pub fn reload_logged(&self) {
        let mut last = self.last_error.lock().expect("error lock");
        match self.reload_if_changed() {
            Ok(true) => {
                info!("HPKI trust (re)loaded");
                last.clear();
            }
            Ok(false) => {}
            Err(e) => {
                let msg = format!("{e:#}");
                if *last != msg {
                    warn!("{msg}; the last good HPKI trust stays");
                    *last = msg;
                }
            }
        }
    }

    pub(crate) fn verifier(&self) -> Option<Arc<HpkiVerifier>> {
        self.verifier.load_full()
    }

    /// Checks a card certificate now (for registering a card to an account).
    pub fn verify(&self, der: &[u8]) -> Result<sekisho_ca::hpki::HpkiIdentity> {
        let v = self
            .verifier()
            .context("no [hpki] trust is configured in sekisho.toml")?;
        v.verify_now(der).map_err(|e| anyhow::anyhow!("{e}"))
    }
}
