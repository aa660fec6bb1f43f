//! Issuing the test CA's certificates and CRLs: [`TestCa`] (a CA with its key) and
//! [`TestCert`] (a certificate with its key), with the extensions rcgen cannot build (written
//! with `hpki::der`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, DnValue, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize,
    SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use super::spec::{CaSpec, EeKind, EeSpec, RawExtension};
use crate::crl::{self, RevokedEntry};
use crate::encoding::{pem_encode, random_serial, serial_hex_from_raw};
use crate::hpki::der::{self, context, tlv};
use crate::hpki::hcrole::{HCROLE_ATTRIBUTE, HPKI_ROLE_SCHEME, SUBJECT_DIRECTORY_ATTRIBUTES};
use crate::hpki::{AUTH_EE_POLICY_GUESS, SIGNATURE_EE_POLICY};
use crate::{CaError, KeyPem};

const CERTIFICATE_POLICIES: &[u64] = &[2, 5, 29, 32];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const ID_QT_CPS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 2, 1];

/// A certificate of the test CA, with its key.
#[derive(Clone)]
pub struct TestCert {
    /// File stem in the output directory ("doctor": doctor.crt, doctor.key).
    pub name: String,
    pub der: Vec<u8>,
    pub key: KeyPem,
    pub serial_hex: String,
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("name", &self.name)
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

impl TestCert {
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// What the card does at login: an RSASSA-PKCS1-v1_5 / SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        let key = RsaKeyPair::from_pkcs8(self.key.der())
            .map_err(|e| CaError::BadKey(format!("{}: {e}", self.name)))?;
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| CaError::Signing(format!("{}: RSA signature failed", self.name)))?;
        Ok(sig)
    }
}

/// A CA of the test hierarchy, with its key: issues more certificates and CRLs (in memory
/// only).
pub struct TestCa {
    pub cert: TestCert,
    issuer: Issuer<'static, KeyPair>,
    key_id: Vec<u8>,
    /// The URL of its own CRL (the CRL distribution point of what it issues).
    pub(super) crl_url: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed root from `spec` (its subject: `C=JP, O=SEKISHO TEST,
    /// OU=SEKISHO TEST HPKI CA, CN=<common_name>`); `crl_url` is where its CRL would be.
    pub fn root(spec: &CaSpec, name: &str, crl_url: &str) -> Result<TestCa, CaError> {
        make_ca(
            None,
            &issuing_dn(&spec.common_name)?,
            spec,
            name,
            crl_url.into(),
        )
    }

    /// An end-entity certificate shaped by `spec`, whatever `spec.kind` says (the kind only
    /// chooses the default policy and key usage).
    pub fn issue(&self, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
        issue_ee(self, spec, name)
    }

    /// A CA certificate shaped by `spec`, issued by this CA. Its CRL URL is
    /// `<this CA's CRL URL>.<name>.crl`.
    pub fn issue_ca(&self, spec: &CaSpec, name: &str) -> Result<TestCa, CaError> {
        make_ca(
            Some(self),
            &issuing_dn(&spec.common_name)?,
            spec,
            name,
            format!("{}.{name}.crl", self.crl_url),
        )
    }

    /// A CRL (DER) of this CA.
    pub fn crl(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        crl_of(self, entries, crl_number, this_update, next_update)
    }
}

pub(super) fn printable(s: &str) -> Result<DnValue, CaError> {
    Ok(DnValue::PrintableString(s.try_into().map_err(
        |e: rcgen::Error| CaError::Signing(format!("{s:?} as PrintableString: {e}")),
    )?))
}

fn rsa_key() -> Result<KeyPair, CaError> {
    Ok(KeyPair::generate_rsa_for(
        &PKCS_RSA_SHA256,
        RsaKeySize::_2048,
    )?)
}

fn policies_extension(policy: &[u64], critical: bool) -> CustomExtension {
    let qualifier = der::constructed(
        der::SEQUENCE,
        &[
            der::oid(ID_QT_CPS),
            tlv(der::IA5_STRING, b"http://hpki-test.invalid/cps/"),
        ],
    );
    let info = der::constructed(
        der::SEQUENCE,
        &[der::oid(policy), tlv(der::SEQUENCE, &qualifier)],
    );
    let mut ext =
        CustomExtension::from_oid_content(CERTIFICATE_POLICIES, tlv(der::SEQUENCE, &info));
    ext.set_criticality(critical);
    ext
}

/// The subject of the test CA's issuing CAs, with the given CN.
pub(super) fn issuing_dn(cn: &str) -> Result<Vec<(DnType, DnValue)>, CaError> {
    Ok(vec![
        (DnType::CountryName, printable("JP")?),
        (DnType::OrganizationName, "SEKISHO TEST".into()),
        (
            DnType::OrganizationalUnitName,
            "SEKISHO TEST HPKI CA".into(),
        ),
        (DnType::CommonName, cn.into()),
    ])
}

pub(super) fn make_ca(
    parent: Option<&TestCa>,
    dn: &[(DnType, DnValue)],
    spec: &CaSpec,
    name: &str,
    own_crl_url: String,
) -> Result<TestCa, CaError> {
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    let mut name_dn = DistinguishedName::new();
    for (ty, value) in dn {
        name_dn.push(ty.clone(), value.clone());
    }
    params.distinguished_name = name_dn;
    params.is_ca = if spec.is_ca {
        IsCa::Ca(match spec.path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        })
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = spec.key_usages.clone();
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    if let Some(policy) = &spec.policy {
        params
            .custom_extensions
            .push(policies_extension(policy, spec.critical_policies));
    }
    params
        .custom_extensions
        .extend(spec.extra_extensions.iter().map(RawExtension::to_rcgen));
    let cert = match parent {
        Some(parent) => {
            params.use_authority_key_identifier_extension = true;
            // An intermediate is covered by the root's authority revocation list.
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![parent.crl_url.clone()],
            }];
            params.signed_by(&key, &parent.issuer)?
        }
        None => params.self_signed(&key)?,
    };
    let der = cert.der().to_vec();
    let key_id = subject_key_id(&der)?;
    let key_pem = KeyPem::from_pkcs8_der(&key.serialize_der())?;
    Ok(TestCa {
        cert: TestCert {
            name: name.into(),
            serial_hex: serial_of(&der)?,
            der,
            key: key_pem,
        },
        issuer: Issuer::new(params, key),
        key_id,
        crl_url: own_crl_url,
    })
}

pub(super) fn issue_ee(ca: &TestCa, spec: &EeSpec, name: &str) -> Result<TestCert, CaError> {
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable("JP")?);
    dn.push(DnType::OrganizationName, spec.organization.as_str());
    dn.push(DnType::CommonName, spec.common_name.as_str());
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        printable(&spec.holder_id)?,
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.use_authority_key_identifier_extension = true;
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![ca.crl_url.clone()],
    }];
    let (policy, key_usage) = match spec.kind {
        EeKind::Authentication => (AUTH_EE_POLICY_GUESS, KeyUsagePurpose::DigitalSignature),
        EeKind::Signature => (SIGNATURE_EE_POLICY, KeyUsagePurpose::ContentCommitment),
    };
    let policy = spec.policy.as_deref().unwrap_or(policy);
    params.key_usages = spec.key_usages.clone().unwrap_or_else(|| vec![key_usage]);
    params.extended_key_usages = spec.extended_key_usages.clone();

    // SAN directoryName: C=JP, O=<facility in kanji>, CN=<name in kanji>, serialNumber=<id>.
    let atv = |arcs: &[u64], tag: u8, value: &str| {
        tlv(
            der::SET,
            &der::constructed(der::SEQUENCE, &[der::oid(arcs), tlv(tag, value.as_bytes())]),
        )
    };
    let kanji_dn = der::constructed(
        der::SEQUENCE,
        &[
            atv(&[2, 5, 4, 6], der::PRINTABLE_STRING, "JP"),
            atv(&[2, 5, 4, 10], der::UTF8_STRING, &spec.kanji_organization),
            atv(&[2, 5, 4, 3], der::UTF8_STRING, &spec.kanji_name),
            atv(&[2, 5, 4, 5], der::PRINTABLE_STRING, &spec.holder_id),
        ],
    );
    let san = tlv(der::SEQUENCE, &tlv(context(4), &kanji_dn));
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(SUBJECT_ALT_NAME, san));

    let sda = match &spec.raw_sda {
        Some(raw) => Some(raw.clone()),
        None if spec.roles.is_empty() => None,
        None => Some(hcrole_sda(&spec.roles)),
    };
    if let Some(sda) = sda {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                SUBJECT_DIRECTORY_ATTRIBUTES,
                sda,
            ));
    }
    params
        .custom_extensions
        .push(policies_extension(policy, spec.critical_policies));
    params
        .custom_extensions
        .extend(spec.extra_extensions.iter().map(RawExtension::to_rcgen));

    let cert = params.signed_by(&key, &ca.issuer)?;
    let der = cert.der().to_vec();
    let key_pem = KeyPem::from_pkcs8_der(&key.serialize_der())?;
    Ok(TestCert {
        name: name.into(),
        serial_hex: serial_of(&der)?,
        der,
        key: key_pem,
    })
}

/// The SubjectDirectoryAttributes value for the given hcRole free texts (UTF8String), in the
/// structure of real HPKI certificates; several roles are HCActors of one HCActorData, sorted
/// as DER wants a SET OF.
pub(crate) fn hcrole_sda(roles: &[String]) -> Vec<u8> {
    let mut actors: Vec<Vec<u8>> = roles
        .iter()
        .map(|text| {
            let coded = der::constructed(
                der::SET,
                &[
                    tlv(context(0), &der::oid(HPKI_ROLE_SCHEME)),
                    tlv(context(2), &tlv(der::UTF8_STRING, text.as_bytes())),
                ],
            );
            tlv(der::SEQUENCE, &tlv(context(0), &coded))
        })
        .collect();
    actors.sort();
    let actor_data = der::constructed(der::SET, &actors);
    let attribute = der::constructed(
        der::SEQUENCE,
        &[der::oid(HCROLE_ATTRIBUTE), tlv(der::SET, &actor_data)],
    );
    tlv(der::SEQUENCE, &attribute)
}

pub(super) fn crl_of(
    ca: &TestCa,
    entries: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, CaError> {
    Ok(crl::build(
        &ca.issuer,
        &ca.key_id,
        entries,
        crl_number,
        this_update,
        next_update,
    )?
    .der)
}

fn subject_key_id(der: &[u8]) -> Result<Vec<u8>, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::BadCertificate("CA certificate without key identifier".into()))
}

fn serial_of(der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    Ok(serial_hex_from_raw(cert.raw_serial()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sda_matches_the_parser() {
        let v = hcrole_sda(&["Pharmacist".into(), "Director of Hospital".into()]);
        let roles = crate::hpki::parse_subject_directory_attributes(&v)
            .unwrap()
            .unwrap();
        let mut texts = roles.free_texts();
        texts.sort();
        assert_eq!(texts, ["Director of Hospital", "Pharmacist"]);
    }
}
