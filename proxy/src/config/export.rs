//! `[[audit.export]]`: where the audit log is streamed as its records become durable
//! (`docs/audit.md`, "Export"). Each destination keeps its own cursor in the store under its
//! name, so renaming one starts it again from `start`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sekisho_export::{
    Destination, FhirServer, Format, Identity, PumpConfig, Sink, Start, SyslogSink, SyslogTarget,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The destination's cursor, and its label in logs and metrics. Required: a cursor must
    /// not move because an address changed.
    pub name: String,
    /// `atna` (IHE ATNA / DICOM audit message; over `syslog`), `fhir` (FHIR R4 AuditEvent; to
    /// a FHIR server `url` or a `file` of NDJSON) or `jsonl` (the record as stored; to a `file`
    /// or `syslog`).
    pub format: String,
    /// `HOST:PORT` of an RFC 5425 syslog receiver (TLS; port 6514 by convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,
    /// The base URL of a FHIR server (a `batch` Bundle is POSTed there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file appended to, one JSON object per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The CA certificates (PEM) the receiver's certificate must chain to (`syslog`, `url`);
    /// the system's roots are never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for a syslog receiver that authenticates senders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// A file (mode 0600) holding the bearer token the FHIR server wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Where a new destination starts: `beginning` (default: the whole log) or `now`.
    #[serde(default = "beginning")]
    pub start: String,
}

fn beginning() -> String {
    "beginning".into()
}

impl ExportConfig {
    fn format(&self) -> Result<Format> {
        Format::parse(&self.format).with_context(|| {
            format!(
                "audit.export {:?}: format {:?} is not atna, fhir or jsonl",
                self.name, self.format
            )
        })
    }

    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bail!("audit.export name {n:?}: 1-64 letters, digits, '-', '_' or '.'");
        }
        let format = self.format()?;
        let target = match (&self.syslog, &self.url, &self.file) {
            (Some(_), None, None) => "syslog",
            (None, Some(_), None) => "url",
            (None, None, Some(_)) => "file",
            _ => bail!("audit.export {n:?}: give one of syslog, url or file"),
        };
        match (format, target) {
            (Format::Atna, "syslog") | (Format::Jsonl, "syslog" | "file") => {}
            (Format::Fhir, "url" | "file") => {}
            (f, t) => bail!(
                "audit.export {n:?}: format {} does not go to a {t} (atna: syslog; fhir: url or file; jsonl: file or syslog)",
                f.as_str()
            ),
        }
        if target == "file" && (self.ca_file.is_some() || self.token_file.is_some()) {
            bail!("audit.export {n:?}: ca_file and token_file go with syslog or url");
        }
        if target != "file" && self.ca_file.is_none() {
            bail!("audit.export {n:?}: needs ca_file (the system trust store is not used)");
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            bail!("audit.export {n:?}: client_cert and client_key go together");
        }
        if self.client_cert.is_some() && target != "syslog" {
            bail!("audit.export {n:?}: client_cert is for syslog receivers");
        }
        if self.token_file.is_some() && target != "url" {
            bail!("audit.export {n:?}: token_file is for a FHIR server url");
        }
        if let Some(u) = &self.url {
            let uri: http::Uri = u
                .parse()
                .with_context(|| format!("audit.export {n:?}: url {u:?} is not a URL"))?;
            if uri.scheme_str() != Some("https") || uri.authority().is_none() {
                bail!("audit.export {n:?}: url {u:?} must be https://HOST[:PORT]/BASE");
            }
        }
        if let Some(a) = &self.syslog
            && !a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            bail!("audit.export {n:?}: syslog {a:?} is not HOST:PORT");
        }
        self.start()?;
        Ok(())
    }

    fn start(&self) -> Result<Start> {
        match self.start.as_str() {
            "beginning" => Ok(Start::Beginning),
            "now" => Ok(Start::Now),
            s => bail!(
                "audit.export {:?}: start {s:?} is not beginning or now",
                self.name
            ),
        }
    }

    /// The destination, its files read (CA, client key, token).
    pub fn build(&self, data_dir: &Path, host: &str, cfg: &super::Audit) -> Result<Destination> {
        let format = self.format()?;
        let read = |f: &PathBuf| {
            let p = data_dir.join(f);
            std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
        };
        let timeout = Duration::from_secs(cfg.export_timeout_secs.max(1));
        let sink = if let Some(f) = &self.file {
            Sink::file(data_dir.join(f), format)
        } else {
            let ca = read(self.ca_file.as_ref().context("ca_file")?)?;
            if let Some(addr) = &self.syslog {
                let client = match (&self.client_cert, &self.client_key) {
                    (Some(c), Some(k)) => {
                        Some((read(c)?, crate::notify::read_secret(data_dir, k)?))
                    }
                    _ => None,
                };
                let target = SyslogTarget {
                    address: addr,
                    ca_pem: &ca,
                    client: client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
                };
                Sink::syslog(
                    SyslogSink::new(
                        host,
                        target,
                        timeout,
                        Duration::from_millis(cfg.export_confirm_ms),
                    )
                    .with_context(|| format!("audit.export {:?}", self.name))?,
                )
            } else {
                let token = match &self.token_file {
                    Some(f) => {
                        let bytes = crate::notify::read_secret(data_dir, f)?;
                        let text = std::str::from_utf8(&bytes)
                            .with_context(|| format!("{} is not UTF-8", f.display()))?;
                        Some(zeroize::Zeroizing::new(text.to_string()))
                    }
                    None => None,
                };
                Sink::fhir(
                    FhirServer::new(self.url.as_deref().unwrap_or_default(), &ca, token, timeout)
                        .with_context(|| format!("audit.export {:?}", self.name))?,
                )
            }
        };
        Ok(Destination {
            name: self.name.clone(),
            format,
            sink,
            start: self.start()?,
        })
    }
}

/// Checks the list: each entry, no two with one name, and the export identity.
pub fn validate(a: &super::Audit) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for e in &a.exports {
        e.validate()?;
        if !names.insert(e.name.as_str()) {
            bail!("two [[audit.export]] are called {:?}", e.name);
        }
    }
    if let Some(oid) = &a.patient_id_oid
        && !sekisho_export::is_oid(oid)
    {
        bail!("audit.patient_id_oid {oid:?} is not an OID (like 1.2.392.200119.6.102)");
    }
    if a.export_batch == 0 || a.export_batch > 10_000 {
        bail!("audit.export_batch must be 1 to 10000");
    }
    Ok(())
}

/// Who the exported records say is speaking.
pub fn identity(cfg: &super::Config, node: &str, origin: &str) -> Identity {
    let site = cfg
        .audit
        .site
        .clone()
        .unwrap_or_else(|| cfg.hostname.clone());
    Identity::new(&site, node, origin, cfg.audit.patient_id_oid.clone())
}

/// Where retention must stop so that no destination loses a record it has not got: the lowest
/// cursor of the configured destinations (0 for one that starts at the beginning and has not
/// started yet); `None` when nothing is exported.
pub async fn keep_from(store: &sekisho_store::Store, a: &super::Audit) -> Result<Option<u64>> {
    if a.exports.is_empty() {
        return Ok(None);
    }
    let cursors = sekisho_store::export_cursors::list(store).await?;
    Ok(a.exports
        .iter()
        .filter_map(|e| match cursors.iter().find(|c| c.destination == e.name) {
            Some(c) => Some(c.next_idx),
            None if e.start().ok() == Some(Start::Now) => None,
            None => Some(0),
        })
        .min())
}

pub fn pump_config(a: &super::Audit) -> PumpConfig {
    PumpConfig {
        poll: Duration::from_millis(a.export_poll_ms.max(50)),
        lease: Duration::from_secs(a.export_lease_secs.max(3)),
        batch: a.export_batch,
        confirm_after: Duration::from_millis(a.export_confirm_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<ExportConfig>> {
        #[derive(Deserialize)]
        struct A {
            export: Vec<ExportConfig>,
        }
        let a: A = toml::from_str(toml_text)?;
        let audit = super::super::Audit {
            exports: a.export,
            ..Default::default()
        };
        validate(&audit)?;
        Ok(audit.exports)
    }

    #[test]
    fn each_form_goes_where_it_can_and_says_what_is_wrong_otherwise() {
        let ok = parse(
            r#"
[[export]]
name = "siem"
format = "atna"
syslog = "siem.example.jp:6514"
ca_file = "siem-ca.pem"
[[export]]
name = "arr"
format = "fhir"
url = "https://arr.example.jp/fhir"
ca_file = "arr-ca.pem"
token_file = "arr.token"
[[export]]
name = "archive"
format = "jsonl"
file = "/mnt/archive/audit.jsonl"
start = "now"
"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        for (bad, says) in [
            (
                "name = \"a\"\nformat = \"xml\"\nfile = \"f\"",
                "not atna, fhir or jsonl",
            ),
            (
                "name = \"a\"\nformat = \"atna\"\nfile = \"f\"",
                "does not go to a file",
            ),
            (
                "name = \"a\"\nformat = \"fhir\"\nsyslog = \"h:6514\"\nca_file = \"c\"",
                "does not go to a syslog",
            ),
            (
                "name = \"a\"\nformat = \"jsonl\"\nfile = \"f\"\nurl = \"https://h/\"",
                "one of syslog, url or file",
            ),
            (
                "name = \"a\"\nformat = \"atna\"\nsyslog = \"h:6514\"",
                "needs ca_file",
            ),
            (
                "name = \"a\"\nformat = \"atna\"\nsyslog = \"h\"\nca_file = \"c\"",
                "HOST:PORT",
            ),
            (
                "name = \"a\"\nformat = \"fhir\"\nurl = \"http://h/\"\nca_file = \"c\"",
                "https://",
            ),
            (
                "name = \"a b\"\nformat = \"jsonl\"\nfile = \"f\"",
                "letters, digits",
            ),
            (
                "name = \"a\"\nformat = \"jsonl\"\nfile = \"f\"\nstart = \"yesterday\"",
                "beginning or now",
            ),
            (
                "name = \"a\"\nformat = \"atna\"\nsyslog = \"h:1\"\nca_file = \"c\"\nclient_cert = \"x\"",
                "go together",
            ),
            (
                "name = \"a\"\nformat = \"jsonl\"\nfile = \"f\"\n[[export]]\nname = \"a\"\nformat = \"jsonl\"\nfile = \"g\"",
                "two [[audit.export]]",
            ),
            (
                "name = \"a\"\nformat = \"jsonl\"\nfile = \"f\"\npath = \"g\"",
                "unknown field",
            ),
        ] {
            let err = format!("{:#}", parse(&format!("[[export]]\n{bad}")).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
