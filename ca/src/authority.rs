//! The CA itself: a root (kept offline in spirit: only read when the CA is created) and an
//! issuing CA that signs terminal certificates, the gateway's server certificate and CRLs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData,
    RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use zeroize::{Zeroize, Zeroizing};

use crate::cadir::{self, NewFile};
use crate::crl::{self, Crl, RevokedEntry};
use crate::csr;
use crate::encoding::{pem_encode, random_serial, serial_hex_from_raw};
use crate::keyfile::{KeyPem, decode_key_file, encode_key_file};
use crate::{CaError, TerminalId};

const ROOT_LIFETIME_DAYS: i64 = 3653; // 10 years
pub(crate) const ISSUING_LIFETIME_DAYS: i64 = 1827; // 5 years
/// Back-dating of not_before, so a device whose clock is a little behind accepts a new cert.
pub(crate) const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
const MAX_CA_NAME_CHARS: usize = 54; // + " Issuing CA" stays within X.520's 64 for a CN

/// Key type of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: small, fast, accepted by every current TLS stack.
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, for devices that cannot use EC keys.
    Rsa2048,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa2048",
        }
    }

    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        Ok(match self {
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?
            }
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ec" | "ecdsa" | "p256" | "p-256" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa2048" | "rsa" | "rsa-2048" => Ok(KeyAlgorithm::Rsa2048),
            _ => Err(format!(
                "{s:?} is not a key algorithm; use \"ecdsa-p256\" or \"rsa2048\""
            )),
        }
    }
}

/// How to create a CA.
#[derive(Clone)]
pub struct CaOptions {
    pub algorithm: KeyAlgorithm,
    /// Encrypts both CA keys on disk; `None` stores them unencrypted (mode 0600 either way).
    pub passphrase: Option<String>,
    /// The network's name, e.g. "Sekisho Demo Network": the O of both CA certificates, and the
    /// start of their CNs ("… Root CA", "… Issuing CA").
    pub name: String,
}

// Hand-written so that a logged CaOptions never shows the passphrase.
impl fmt::Debug for CaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaOptions")
            .field("algorithm", &self.algorithm)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .field("name", &self.name)
            .finish()
    }
}

/// A certificate this CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// Lowercase hex of the serial number, without DER's leading 00 byte.
    pub serial_hex: String,
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl IssuedCert {
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

/// The CA, loaded from its directory, with the issuing key in memory.
pub struct Authority {
    dir: PathBuf,
    name: String,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    issuing_not_after: OffsetDateTime,
    issuing_key_id: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    /// Issuing CAs replaced by `rotate_issuing` whose certificates have not all expired yet
    /// (`crate::rotate`).
    pub(crate) retired: Vec<crate::rotate::Retired>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("issuing_not_after", &self.issuing_not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Creates a new CA in `dir` (made if missing): root.crt, root.key (root CA, 10 years,
    /// path length 1) and issuing.crt, issuing.key (issuing CA, 5 years, path length 0).
    /// Refuses if any of these files already exists; writes all four or none.
    pub fn create(dir: &Path, opts: &CaOptions) -> Result<Authority, CaError> {
        let name = opts.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_CA_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(CaError::InvalidCaName(opts.name.clone()));
        }
        let passphrase = opts.passphrase.as_deref();
        if passphrase == Some("") {
            return Err(CaError::EmptyPassphrase);
        }
        cadir::prepare(dir)?;

        let now = now_seconds();
        let not_before = now - CLOCK_SKEW;

        let mut root_key = opts.algorithm.generate()?;
        let mut root_params = ca_params(
            name,
            &format!("{name} Root CA"),
            1,
            not_before,
            now + time::Duration::days(ROOT_LIFETIME_DAYS),
        )?;
        root_params.use_authority_key_identifier_extension = false;
        let root_cert = root_params.self_signed(&root_key)?;

        let mut issuing_key = opts.algorithm.generate()?;
        let mut issuing_params = ca_params(
            name,
            &format!("{name} Issuing CA"),
            0,
            not_before,
            now + time::Duration::days(ISSUING_LIFETIME_DAYS),
        )?;
        issuing_params.use_authority_key_identifier_extension = true;
        let root_issuer = Issuer::from_params(&root_params, &root_key);
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root_issuer)?;

        let root_pem = pem_encode("CERTIFICATE", root_cert.der());
        let issuing_pem = pem_encode("CERTIFICATE", issuing_cert.der());
        let root_key_file = encode_key_file(&Zeroizing::new(root_key.serialize_der()), passphrase)?;
        let issuing_key_der = Zeroizing::new(issuing_key.serialize_der());
        let issuing_key_file = encode_key_file(&issuing_key_der, passphrase)?;
        root_key.zeroize();
        issuing_key.zeroize();

        cadir::write_all_or_nothing(
            dir,
            &[
                NewFile {
                    name: cadir::ROOT_KEY,
                    contents: root_key_file.as_bytes(),
                    mode: cadir::KEY_MODE,
                },
                NewFile {
                    name: cadir::ISSUING_KEY,
                    contents: issuing_key_file.as_bytes(),
                    mode: cadir::KEY_MODE,
                },
                NewFile {
                    name: cadir::ROOT_CERT,
                    contents: root_pem.as_bytes(),
                    mode: cadir::CERT_MODE,
                },
                NewFile {
                    name: cadir::ISSUING_CERT,
                    contents: issuing_pem.as_bytes(),
                    mode: cadir::CERT_MODE,
                },
            ],
        )?;
        Self::from_parts(
            dir,
            root_cert.der().to_vec(),
            issuing_cert.der().to_vec(),
            &issuing_key_der,
        )
    }

    /// Loads the CA from `dir`. Only the issuing key is read (the root key is needed only to
    /// make a new issuing CA); it must match issuing.crt, and issuing.crt must be signed by
    /// root.crt.
    pub fn load(dir: &Path, passphrase: Option<&str>) -> Result<Authority, CaError> {
        let cert = |name: &str| -> Result<Vec<u8>, CaError> {
            let bytes = cadir::read(dir, name)?;
            crate::encoding::pem_or_der(&bytes, &["CERTIFICATE"], "certificate").map_err(|e| {
                CaError::Inconsistent {
                    dir: dir.to_path_buf(),
                    reason: format!("{name}: {e}"),
                }
            })
        };
        let root_der = cert(cadir::ROOT_CERT)?;
        let issuing_der = cert(cadir::ISSUING_CERT)?;
        let key_path = dir.join(cadir::ISSUING_KEY);
        let key_text = Zeroizing::new(cadir::read(dir, cadir::ISSUING_KEY)?);
        let key_text = std::str::from_utf8(&key_text)
            .map_err(|_| CaError::BadKey(format!("{}: not a PEM file", key_path.display())))?;
        let key_der = decode_key_file(key_text, passphrase, &key_path)?;
        let mut ca = Self::from_parts(dir, root_der, issuing_der, &key_der)?;
        ca.retired = crate::rotate::load_retired(dir, passphrase, &ca.root_der)?;
        Ok(ca)
    }

    fn from_parts(
        dir: &Path,
        root_der: Vec<u8>,
        issuing_der: Vec<u8>,
        issuing_key_pkcs8: &[u8],
    ) -> Result<Authority, CaError> {
        let inconsistent = |reason: String| CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        let root = parse_cert(&root_der).map_err(|e| inconsistent(format!("root.crt: {e}")))?;
        let issuing =
            parse_cert(&issuing_der).map_err(|e| inconsistent(format!("issuing.crt: {e}")))?;
        issuing
            .verify_signature(Some(root.public_key()))
            .map_err(|_| inconsistent("issuing.crt is not signed by root.crt".into()))?;
        if !issuing.is_ca() {
            return Err(inconsistent("issuing.crt is not a CA certificate".into()));
        }

        let key = KeyPair::try_from(issuing_key_pkcs8)
            .map_err(|e| CaError::BadKey(format!("issuing.key: {e}")))?;
        if key.public_key_raw() != issuing.public_key().subject_public_key.data.as_ref() {
            return Err(inconsistent(
                "issuing.key is not the key of issuing.crt".into(),
            ));
        }
        let issuing_key_id = issuing
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| inconsistent("issuing.crt has no subject key identifier".into()))?;
        let name = issuing
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .unwrap_or("Sekisho")
            .to_owned();
        let issuing_not_after = issuing.validity().not_after.to_datetime();
        drop((root, issuing));

        // rcgen takes the issuer's subject, key usages and key identifier from the certificate,
        // so issued certificates' issuer and authority key identifier match it exactly.
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(issuing_der.as_slice()), key)
            .map_err(|e| inconsistent(format!("issuing.crt: {e}")))?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            name,
            root_der,
            issuing_der,
            issuing_not_after,
            issuing_key_id,
            issuer,
            retired: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network name (O of the CA certificates).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn root_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root_der)
    }

    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    pub fn issuing_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.issuing_der)
    }

    /// When the issuing CA expires: no certificate is issued beyond it.
    pub fn issuing_not_after(&self) -> OffsetDateTime {
        self.issuing_not_after
    }

    /// What a client or server presents after its own certificate: issuing CA, then root.
    pub fn chain_pem(&self) -> String {
        self.issuing_pem() + &self.root_pem()
    }

    /// A new key pair and a terminal certificate for it.
    pub fn issue_terminal(
        &self,
        id: &TerminalId,
        lifetime: Duration,
        alg: KeyAlgorithm,
    ) -> Result<(IssuedCert, KeyPem), CaError> {
        let mut key = alg.generate()?;
        let cert = self.sign_terminal(id, &key, alg == KeyAlgorithm::Rsa2048, lifetime);
        let pem = KeyPem::from_pkcs8_der(&Zeroizing::new(key.serialize_der()));
        key.zeroize();
        Ok((cert?, pem?))
    }

    /// A terminal certificate for the key in `csr` (PEM or DER). Only the key is taken from the
    /// request, after its signature is checked; names and extensions come from `id`.
    pub fn sign_csr(
        &self,
        csr: &[u8],
        id: &TerminalId,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        let key = csr::verified_public_key(csr)?;
        let is_rsa = key.is_rsa;
        self.sign_terminal(id, &key, is_rsa, lifetime)
    }

    fn sign_terminal(
        &self,
        id: &TerminalId,
        key: &impl PublicKeyData,
        is_rsa: bool,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        // The fields are public, so the id may not have come through `TerminalId::new`.
        let id = TerminalId::new(&id.facility, &id.terminal)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, id.facility.as_str());
        dn.push(DnType::CommonName, id.terminal.as_str());
        let urn = id
            .urn()
            .try_into()
            .map_err(|e| CaError::Signing(format!("terminal URN: {e}")))?;
        let mut key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if is_rsa {
            // Lets old TLS 1.2 stacks use RSA key exchange; harmless otherwise.
            key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        self.sign_leaf(
            dn,
            vec![SanType::URI(urn)],
            key_usages,
            ExtendedKeyUsagePurpose::ClientAuth,
            key,
            lifetime,
        )
    }

    /// A key pair (ECDSA P-256) and a TLS server certificate for the gateway, valid for the
    /// given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<(IssuedCert, KeyPem), CaError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(CaError::InvalidServerName(
                "give at least one DNS name or IP address".into(),
            ));
        }
        let mut sans = Vec::with_capacity(dns_names.len() + ips.len());
        for name in dns_names {
            // Same rules as the TLS clients that will check the name.
            let valid = rustls_pki_types::DnsName::try_from(name.as_str()).is_ok()
                && name.parse::<IpAddr>().is_err();
            if !valid {
                return Err(CaError::InvalidServerName(format!(
                    "{name:?} is not a DNS name"
                )));
            }
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| CaError::InvalidServerName(format!("{name:?} is not a DNS name")))?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));

        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.name.as_str());
        let cn = dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| ips[0].to_string());
        dn.push(DnType::CommonName, cn);

        let mut key = KeyAlgorithm::EcdsaP256.generate()?;
        let cert = self.sign_leaf(
            dn,
            sans,
            vec![KeyUsagePurpose::DigitalSignature],
            ExtendedKeyUsagePurpose::ServerAuth,
            &key,
            lifetime,
        );
        let pem = KeyPem::from_pkcs8_der(&Zeroizing::new(key.serialize_der()));
        key.zeroize();
        Ok((cert?, pem?))
    }

    /// The end-entity profile shared by terminal and server certificates.
    fn sign_leaf(
        &self,
        dn: DistinguishedName,
        sans: Vec<SanType>,
        key_usages: Vec<KeyUsagePurpose>,
        eku: ExtendedKeyUsagePurpose,
        key: &impl PublicKeyData,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        let (not_before, not_after) = self.validity(lifetime)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.key_usages = key_usages;
        params.extended_key_usages = vec![eku];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(key, &self.issuer)?;
        issued(cert.der().to_vec(), not_before, not_after)
    }

    fn validity(&self, lifetime: Duration) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
        validity(lifetime, self.issuing_not_after, "issuing CA")
    }

    /// A CRL signed by the issuing CA, listing `entries`.
    pub fn crl(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl, CaError> {
        crl::build(
            &self.issuer,
            &self.issuing_key_id,
            entries,
            crl_number,
            this_update,
            next_update,
        )
    }
}

/// The serial of a DER certificate, spelled as `IssuedCert::serial_hex`.
pub fn serial_hex(der_cert: &[u8]) -> Result<String, CaError> {
    let cert = parse_cert(der_cert).map_err(CaError::BadCertificate)?;
    Ok(serial_hex_from_raw(cert.raw_serial()))
}

fn issued(
    der: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<IssuedCert, CaError> {
    Ok(IssuedCert {
        serial_hex: serial_hex(&der)?,
        der,
        not_before,
        not_after,
    })
}

/// notBefore (back-dated by [`CLOCK_SKEW`]) and notAfter of a certificate issued now for
/// `lifetime` by a CA (named `ca` in messages) that expires at `ca_not_after`.
pub(crate) fn validity(
    lifetime: Duration,
    ca_not_after: OffsetDateTime,
    ca: &str,
) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
    let lifetime = time::Duration::try_from(lifetime)
        .map_err(|_| CaError::InvalidLifetime("far too long".into()))?;
    if lifetime < time::Duration::minutes(1) {
        return Err(CaError::InvalidLifetime(
            "a certificate must be valid for at least a minute".into(),
        ));
    }
    let now = now_seconds();
    let not_after = now
        .checked_add(lifetime)
        .ok_or_else(|| CaError::InvalidLifetime("far too long".into()))?;
    if not_after > ca_not_after {
        return Err(CaError::InvalidLifetime(format!(
            "it would end after the {ca} itself expires ({}); shorten the lifetime or renew the CA",
            ca_not_after.date()
        )));
    }
    Ok((now - CLOCK_SKEW, not_after))
}

pub(crate) fn ca_params(
    org: &str,
    cn: &str,
    path_len: u8,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    Ok(cert)
}

/// Certificate times are whole seconds; keep the values we report equal to the encoded ones.
pub(crate) fn now_seconds() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
}
