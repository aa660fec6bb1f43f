//! `[[audit.witness]]`: where the audit log's signed checkpoints are copied as they are made
//! (`docs/audit.md`, "Witnesses"). Paths are relative to the data dir, like every path in
//! `sekisho.toml`; a directory witness is meant to be on other storage, so it is usually an
//! absolute path (a mount point).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sekisho_audit::witness::{DirWitness, HttpsWitness, PumpConfig, Witness};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its name in logs, metrics (`witness` label) and `audit verify`'s report; default: the
    /// directory or the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A directory on other storage. It must exist: if the storage is not mounted, copies
    /// fail (and are retried) instead of landing on the gateway's own disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// An HTTPS endpoint the signed checkpoint is POSTed to, e.g. another node running
    /// `sekisho audit witness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The CA certificates (PEM) the endpoint's certificate must chain to; the system's roots
    /// are never used. Required with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A file (mode 0600) holding the bearer token the endpoint wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl WitnessConfig {
    pub fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match (&self.dir, &self.url) {
            (Some(d), _) => d.display().to_string(),
            (_, Some(u)) => u.clone(),
            _ => "witness".into(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        match (&self.dir, &self.url) {
            (Some(_), Some(_)) | (None, None) => {
                bail!("each [[audit.witness]] has either dir or url")
            }
            (Some(_), None) => {
                if self.ca_file.is_some() || self.token_file.is_some() {
                    bail!(
                        "audit.witness {:?}: ca_file and token_file go with url",
                        self.name()
                    );
                }
            }
            (None, Some(url)) => {
                let u: http::Uri = url
                    .parse()
                    .with_context(|| format!("audit.witness url {url:?} is not a URL"))?;
                if u.scheme_str() != Some("https") || u.authority().is_none() {
                    bail!("audit.witness url {url:?} must be https://HOST[:PORT]/PATH");
                }
                if self.ca_file.is_none() {
                    bail!(
                        "audit.witness {url:?} needs ca_file (the system trust store is not used)"
                    );
                }
            }
        }
        if let Some(n) = &self.name
            && (n.is_empty() || n.chars().any(|c| c.is_control()))
        {
            bail!("audit.witness name {n:?} must be one non-empty line");
        }
        Ok(())
    }

    /// The witness, its files read (CA, token).
    pub fn build(&self, data_dir: &Path, timeout: Duration) -> Result<Witness> {
        let name = self.name();
        if let Some(dir) = &self.dir {
            return Ok(Witness::dir(name, DirWitness::new(data_dir.join(dir))));
        }
        let url = self.url.as_deref().unwrap_or_default();
        let ca = self
            .ca_file
            .as_ref()
            .map(|f| data_dir.join(f))
            .context("audit.witness with url needs ca_file")?;
        let ca_pem = std::fs::read(&ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let token = match &self.token_file {
            Some(f) => {
                let bytes = crate::notify::read_secret(data_dir, f)?;
                let text = std::str::from_utf8(&bytes)
                    .with_context(|| format!("{} is not UTF-8", f.display()))?;
                Some(zeroize::Zeroizing::new(text.to_string()))
            }
            None => None,
        };
        let w = HttpsWitness::new(&name, url, &ca_pem, token, timeout)
            .with_context(|| format!("audit.witness {name:?}"))?;
        Ok(Witness::https(w))
    }
}

/// Checks the list: each entry, and no two with one name.
pub fn validate(witnesses: &[WitnessConfig]) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for w in witnesses {
        w.validate()?;
        if !names.insert(w.name()) {
            bail!("two [[audit.witness]] are called {:?}", w.name());
        }
    }
    Ok(())
}

/// How often and how patiently checkpoints are copied.
pub fn pump_config(a: &super::Audit) -> PumpConfig {
    PumpConfig {
        interval: Duration::from_millis(a.witness_interval_ms),
        poll: Duration::from_millis(a.witness_poll_ms.max(100)),
        timeout: Duration::from_secs(a.witness_timeout_secs.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<WitnessConfig>> {
        #[derive(Deserialize)]
        struct A {
            witness: Vec<WitnessConfig>,
        }
        let a: A = toml::from_str(toml_text)?;
        validate(&a.witness)?;
        Ok(a.witness)
    }

    #[test]
    fn each_witness_is_a_directory_or_an_https_url_with_its_ca() {
        let ok = parse(
            r#"
[[witness]]
dir = "/mnt/witness/sekisho"
[[witness]]
name = "peer"
url = "https://gw2.example.jp:8445/witness"
ca_file = "witness-ca.pem"
token_file = "witness.token"
"#,
        )
        .unwrap();
        assert_eq!(ok[0].name(), "/mnt/witness/sekisho");
        assert_eq!(ok[1].name(), "peer");
        for (bad, says) in [
            ("[[witness]]\nname = \"x\"", "either dir or url"),
            (
                "[[witness]]\ndir = \"/a\"\nurl = \"https://h/\"\nca_file = \"c\"",
                "either dir or url",
            ),
            ("[[witness]]\nurl = \"https://h/w\"", "needs ca_file"),
            (
                "[[witness]]\nurl = \"http://h/w\"\nca_file = \"c\"",
                "https://",
            ),
            ("[[witness]]\ndir = \"/a\"\nca_file = \"c\"", "go with url"),
            (
                "[[witness]]\nname = \"n\"\ndir = \"/a\"\n[[witness]]\nname = \"n\"\ndir = \"/b\"",
                "two [[audit.witness]]",
            ),
            ("[[witness]]\ndir = \"/a\"\npath = \"/b\"", "unknown field"),
        ] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
