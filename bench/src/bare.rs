//! The floor of the stack Sekisho is built on: an mTLS reverse proxy with nothing of Sekisho in
//! it (no terminal registry, session, policy, audit record or assertion), made of the crates the
//! gateway uses the way it uses them: tokio's multi-thread runtime, rustls checking the client
//! certificate against the same CAs and CRLs as nginx, hyper 1's HTTP/1.1 server, and
//! hyper-util's pooled client to the upstream. jemalloc is not in it (the benchmark's own
//! allocator is the system's).
//!
//! It answers "how much of the distance to nginx is Sekisho's own work, and how much the
//! stack's": it runs as a child process of the benchmark (`--bare-child`), so its CPU is read
//! from `/proc` like the others', and it is measured beside them in every keep-alive run. It
//! has no target of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::pki::Pki;
use crate::process::{self, ChildGuard};

/// What the child needs, as its command-line arguments (after `--bare-child`).
pub struct ChildArgs {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cas: Vec<PathBuf>,
    pub crl: PathBuf,
}

impl ChildArgs {
    fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            self.listen.to_string(),
            self.upstream.to_string(),
            self.server_cert.display().to_string(),
            self.server_key.display().to_string(),
            self.crl.display().to_string(),
        ];
        v.extend(self.client_cas.iter().map(|p| p.display().to_string()));
        v
    }

    pub fn parse(args: &[String]) -> Result<Self> {
        let [listen, upstream, cert, key, crl, cas @ ..] = args else {
            return Err(anyhow!(
                "--bare-child LISTEN UPSTREAM CERT KEY CRL CA...: {} arguments",
                args.len()
            ));
        };
        Ok(ChildArgs {
            listen: listen.parse().context("LISTEN")?,
            upstream: upstream.parse().context("UPSTREAM")?,
            server_cert: cert.into(),
            server_key: key.into(),
            crl: crl.into(),
            client_cas: cas.iter().map(PathBuf::from).collect(),
        })
    }
}

/// The running child.
pub struct Bare {
    pub addr: SocketAddr,
    child: ChildGuard,
}

impl Bare {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Starts this executable again as the bare proxy, in front of `upstream`, with the PKI nginx
/// uses; returns once it accepts connections.
pub fn start(pki: &Pki, upstream: SocketAddr, log: &Path) -> Result<Bare> {
    let listen = SocketAddr::from(([127, 0, 0, 1], process::free_port()?));
    let args = ChildArgs {
        listen,
        upstream,
        server_cert: pki.server_cert.clone(),
        server_key: pki.server_key.clone(),
        client_cas: vec![pki.issuing_ca.clone(), pki.root_ca.clone()],
        crl: pki.crl.clone(),
    };
    let mut cmd = Command::new(std::env::current_exe().context("this executable's path")?);
    cmd.arg("--bare-child").args(args.to_args());
    let mut child = ChildGuard::spawn("bare proxy", cmd, log)?;
    process::wait_for_tcp(listen, &mut child, std::time::Duration::from_secs(10))?;
    Ok(Bare {
        addr: listen,
        child,
    })
}

/// The child's whole life: serve until killed.
pub fn run_child(args: ChildArgs) -> Result<()> {
    let tls = server_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, tls))
}

fn server_config(args: &ChildArgs) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in &args.client_cas {
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
    }
    let crls = CertificateRevocationListDer::pem_file_iter(&args.crl)?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the CRLs")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()?;
    let certs = CertificateDer::pem_file_iter(&args.server_cert)?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the server certificate")?;
    let key = PrivateKeyDer::from_pem_file(&args.server_key).context("reading the server key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn serve(args: ChildArgs, tls: Arc<rustls::ServerConfig>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let acceptor = TlsAcceptor::from(tls);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let upstream = Arc::new(format!("http://{}", args.upstream));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let upstream = upstream.clone();
                async move { forward(&client, &upstream, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Forwards the request as nginx's `proxy_pass` does here: same method, path and headers, to
/// the upstream over a pooled keep-alive connection; the answer streamed back.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &str,
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>>> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse()?;
    let resp = client.request(Request::from_parts(parts, body)).await?;
    Ok(resp.map(|b| b.boxed()))
}
