//! The witness side of `sekisho audit`: what `verify --witness` reads from each witness, and
//! `sekisho audit witness`, which makes this machine (another Sekisho node, or any host with
//! the binary) an HTTPS witness of a gateway's log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sekisho_audit::Verifier;
use sekisho_audit::witness::{DirWitness, Witness, WitnessCopy, receive};

use crate::config::witness::WitnessConfig;
use crate::config::{Config, DataDir};

/// Which witnesses `audit verify` checks the log against.
#[derive(Args, Debug, Default)]
pub struct VerifyWitnesses {
    /// Also check that the log holds every checkpoint this witness holds: a witness directory
    /// or an https:// URL; repeatable. A URL configured in `[[audit.witness]]` is reached with
    /// its ca_file and token_file.
    #[arg(long = "witness", value_name = "DIR|URL")]
    pub witness: Vec<String>,
    /// Every witness configured in `[[audit.witness]]`.
    #[arg(long)]
    pub all_witnesses: bool,
    /// For a `--witness` URL that is not configured: the CA certificates (PEM) of its
    /// certificate.
    #[arg(long, value_name = "FILE")]
    pub witness_ca: Option<PathBuf>,
    /// For a `--witness` URL that is not configured: a file (mode 0600) with its bearer token.
    #[arg(long, value_name = "FILE")]
    pub witness_token_file: Option<PathBuf>,
}

impl VerifyWitnesses {
    pub fn any(&self) -> bool {
        self.all_witnesses || !self.witness.is_empty()
    }

    /// Each witness's checkpoints, and a problem for each that cannot be read.
    pub async fn copies(&self, dd: &DataDir, cfg: &Config) -> (Vec<WitnessCopy>, Vec<String>) {
        let timeout = Duration::from_secs(cfg.audit.witness_timeout_secs.max(1));
        let mut wanted: Vec<(String, Result<Witness>)> = Vec::new();
        if self.all_witnesses {
            for w in &cfg.audit.witnesses {
                wanted.push((w.name(), w.build(&dd.root, timeout)));
            }
        }
        for arg in &self.witness {
            wanted.push((arg.clone(), self.resolve(arg, dd, cfg, timeout)));
        }
        let mut copies = Vec::new();
        let mut problems = Vec::new();
        for (name, w) in wanted {
            let read = match w {
                Ok(w) => w.notes().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(c) => copies.push(c),
                Err(e) => problems.push(format!("witness {name}: cannot be read: {e:#}")),
            }
        }
        (copies, problems)
    }

    fn resolve(&self, arg: &str, dd: &DataDir, cfg: &Config, timeout: Duration) -> Result<Witness> {
        if arg.starts_with("https://") {
            if let Some(w) = cfg
                .audit
                .witnesses
                .iter()
                .find(|w| w.url.as_deref() == Some(arg))
            {
                return w.build(&dd.root, timeout);
            }
            let ca = self.witness_ca.as_ref().with_context(|| {
                format!("{arg} is not in [[audit.witness]]: give --witness-ca (and --witness-token-file)")
            })?;
            let w = WitnessConfig {
                name: Some(arg.to_string()),
                dir: None,
                url: Some(arg.to_string()),
                ca_file: Some(std::path::absolute(ca)?),
                token_file: self
                    .witness_token_file
                    .as_ref()
                    .map(std::path::absolute)
                    .transpose()?,
            };
            return w.build(Path::new("/"), timeout);
        }
        if arg.contains("://") {
            bail!("{arg}: a witness is a directory or an https:// URL");
        }
        let dir = std::path::absolute(arg)?;
        // A configured directory keeps its configured name in the report.
        let same = |w: &&WitnessConfig| {
            w.dir.as_ref().is_some_and(|d| {
                let d = dd.root.join(d);
                d == dir || (d.exists() && d.canonicalize().ok() == dir.canonicalize().ok())
            })
        };
        let name = cfg
            .audit
            .witnesses
            .iter()
            .find(same)
            .map_or_else(|| arg.to_string(), |w| w.name());
        Ok(Witness::dir(name, DirWitness::new(dir)))
    }
}

/// `sekisho audit witness`: keep another gateway's checkpoints in a directory and take new
/// ones over HTTPS.
#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Where the checkpoints are kept (`checkpoints`, `latest`); must exist.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on, e.g. 0.0.0.0:8445.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM), e.g. this node's `tls/server.crt`.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM), e.g. this node's `tls/server.key`.
    #[arg(long)]
    pub key: PathBuf,
    /// The witnessed log's verifier key (its `audit/checkpoint.pub`): only checkpoints it
    /// signed are taken.
    #[arg(long)]
    pub log_key: PathBuf,
    /// A file (mode 0600) with the bearer token the gateway presents (its `token_file`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

pub async fn serve(a: WitnessArgs) -> Result<i32> {
    let keys = std::fs::read_to_string(&a.log_key)
        .with_context(|| format!("cannot read {}", a.log_key.display()))?;
    let verifiers = keys
        .split_whitespace()
        .map(Verifier::parse)
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("{} is not a verifier key", a.log_key.display()))?;
    if verifiers.is_empty() {
        bail!("{} holds no verifier key", a.log_key.display());
    }
    if !a.dir.is_dir() {
        bail!("{} is not a directory", a.dir.display());
    }
    let witness = DirWitness::new(&a.dir).require_signature(verifiers);
    let token: Option<Arc<str>> = match &a.token_file {
        Some(f) => {
            let t = crate::notify::read_secret(Path::new(""), f)?;
            Some(Arc::from(
                std::str::from_utf8(&t).context("the token file is not UTF-8")?,
            ))
        }
        None => None,
    };
    let chain = CertificateDer::pem_file_iter(&a.cert)
        .with_context(|| format!("cannot read {}", a.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", a.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&a.key)
        .with_context(|| format!("cannot read {}", a.key.display()))?;
    let tls = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not go together")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    tracing::info!(listen = %listener.local_addr()?, dir = %a.dir.display(), "audit witness is serving");
    let stop = crate::serve::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = &mut stop => return Ok(0),
        };
        let (acceptor, witness, token) = (acceptor.clone(), witness.clone(), token.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let (witness, token) = (witness.clone(), token.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        receive(&witness, token.as_deref(), req).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        });
    }
}
