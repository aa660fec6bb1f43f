//! The certificate files both proxies and the load generator use, and the self-test PKI
//! (root → issuing → server / terminal, plus empty CRLs) made with rcgen when Sekisho's own CA
//! is not used.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;

/// Paths of every PEM file the benchmark needs.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Server certificate followed by the issuing CA.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub issuing_ca: PathBuf,
    pub root_ca: PathBuf,
    /// Terminal (client) certificate.
    pub client_cert: PathBuf,
    /// Terminal key, PKCS#8 PEM.
    pub client_key: PathBuf,
    /// What the client trusts for the server (the root CA).
    pub client_trust: PathBuf,
    /// CRLs, one per CA in the client chain (nginx checks every level).
    pub crl: PathBuf,
}

const CRL_BEGIN: &str = "-----BEGIN X509 CRL-----";

/// Number of PEM CRLs in `pem`.
pub fn count_crls(pem: &str) -> usize {
    pem.matches(CRL_BEGIN).count()
}

/// Writes issuing + root concatenated to `out` (nginx's `ssl_client_certificate`).
pub fn write_client_ca_bundle(pki: &Pki, out: &Path) -> Result<()> {
    let mut bundle = read(&pki.issuing_ca)?;
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&read(&pki.root_ca)?);
    fs::write(out, bundle).with_context(|| format!("writing {}", out.display()))
}

/// An empty CRL signed by the CA whose certificate and key are given (PEM). Its authority key
/// identifier is the CA certificate's subject key identifier, whatever method made that one
/// (OpenSSL matches the two when it looks for a CA's CRL).
pub fn empty_crl(ca_cert_pem: &str, ca_key_pem: &str) -> Result<String> {
    let key = KeyPair::from_pem(ca_key_pem).context("parsing CA key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key).context("parsing CA certificate")?;
    let mut params = crl_params();
    if let Some(ski) = subject_key_id(ca_cert_pem)? {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    }
    Ok(params.signed_by(&issuer)?.pem()?)
}

fn subject_key_id(cert_pem: &str) -> Result<Option<Vec<u8>>> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("CA certificate PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("CA certificate DER")?;
    Ok(cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        }))
}

fn crl_params() -> CertificateRevocationListParams {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(7),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn ca_params(cn: &str, constraint: BasicConstraints) -> CertificateParams {
    let mut params = validity(CertificateParams::default());
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(constraint);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn validity(mut params: CertificateParams) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.use_authority_key_identifier_extension = true;
    params
}

/// Self-test PKI in `dir`, laid out like Sekisho's (ECDSA P-256 everywhere):
/// root CA → issuing CA → server cert (localhost, 127.0.0.1) and terminal cert `t1`
/// (clientAuth, `urn:sekisho:terminal:bench:t1`), with an empty CRL from each CA.
pub fn self_test(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir)?;
    let root = CertifiedIssuer::self_signed(
        ca_params(
            "Sekisho bench self-test root",
            BasicConstraints::Unconstrained,
        ),
        KeyPair::generate()?,
    )?;
    let issuing_key = KeyPair::generate()?;
    let issuing = CertifiedIssuer::signed_by(
        ca_params(
            "Sekisho bench self-test issuing",
            BasicConstraints::Constrained(0),
        ),
        issuing_key,
        &root,
    )?;

    let server_key = KeyPair::generate()?;
    let mut server = validity(CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ])?);
    server.distinguished_name.remove(DnType::CommonName);
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuing)?;

    let client_key = KeyPair::generate()?;
    let mut client = validity(CertificateParams::default());
    client.distinguished_name = rcgen::DistinguishedName::new();
    client
        .distinguished_name
        .push(DnType::OrganizationName, "bench");
    client.distinguished_name.push(DnType::CommonName, "t1");
    client.subject_alt_names = vec![SanType::URI("urn:sekisho:terminal:bench:t1".try_into()?)];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuing)?;

    let crls = format!(
        "{}{}",
        crl_params().signed_by(&issuing)?.pem()?,
        crl_params().signed_by(&root)?.pem()?
    );

    let pki = Pki {
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        issuing_ca: dir.join("issuing.crt"),
        root_ca: dir.join("root.crt"),
        client_cert: dir.join("t1.crt"),
        client_key: dir.join("t1.key"),
        client_trust: dir.join("ca.crt"),
        crl: dir.join("crl.pem"),
    };
    write(
        &pki.server_cert,
        &format!("{}{}", server_cert.pem(), issuing.pem()),
    )?;
    write(&pki.server_key, &server_key.serialize_pem())?;
    write(&pki.issuing_ca, &issuing.pem())?;
    write(&pki.root_ca, &root.pem())?;
    write(&pki.client_cert, &client_cert.pem())?;
    write(&pki.client_key, &client_key.serialize_pem())?;
    write(&pki.client_trust, &root.pem())?;
    write(&pki.crl, &crls)?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_pki_has_both_crls() {
        let dir = tempfile::tempdir().unwrap();
        let pki = self_test(dir.path()).unwrap();
        assert_eq!(count_crls(&read(&pki.crl).unwrap()), 2);
        let chain = read(&pki.server_cert).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn empty_crl_from_pem() {
        let key = KeyPair::generate().unwrap();
        let key_pem = key.serialize_pem();
        let root =
            CertifiedIssuer::self_signed(ca_params("r", BasicConstraints::Unconstrained), key)
                .unwrap();
        let crl = empty_crl(&root.pem(), &key_pem).unwrap();
        assert_eq!(count_crls(&crl), 1);
    }
}
