//! The hcRole (healthcare actor role, ISO 17090-3) of an HPKI certificate: the holder's
//! national qualification or management role, in the SubjectDirectoryAttributes extension
//! (2.5.29.9):
//!
//! ```text
//! SEQUENCE OF Attribute
//!   Attribute { type 1.0.17090.0.1, values SET { HCActorData ::= SET OF HCActor } }
//!   HCActor   ::= SEQUENCE { codedData [0] EXPLICIT CodedData OPTIONAL,
//!                            regionalHCActorData [1] EXPLICIT ... OPTIONAL }
//!   CodedData ::= SET { codingSchemeReference [0] EXPLICIT OBJECT IDENTIFIER
//!                                                  -- 1.2.392.100495.1.6.1.1 in HPKI
//!                       codeDataValue         [1] EXPLICIT UTF8String OPTIONAL,
//!                       codeDataFreeText      [2] EXPLICIT DirectoryString OPTIONAL }
//! ```
//!
//! HPKI puts the qualification in English in `codeDataFreeText` ("Medical Doctor"). The parser
//! walks exactly this structure, one TLV at a time: its depth is fixed by the schema (never by
//! the input), every length is checked against the bytes present before anything is read, and
//! the sizes and counts are bounded. Attributes other than hcRole are skipped unread.

use std::borrow::Cow;
use std::fmt;

use x509_parser::asn1_rs::{Any, Class, FromDer, Oid};

use super::text::{self, TextError};

/// Attribute type of hcRole: 1.0.17090.0.1.
pub const HCROLE_ATTRIBUTE: &[u64] = &[1, 0, 17_090, 0, 1];
/// The HPKI coding scheme of hcRole values: 1.2.392.100495.1.6.1.1.
pub const HPKI_ROLE_SCHEME: &[u64] = &[1, 2, 392, 100_495, 1, 6, 1, 1];
/// SubjectDirectoryAttributes: 2.5.29.9.
pub const SUBJECT_DIRECTORY_ATTRIBUTES: &[u64] = &[2, 5, 29, 9];

/// Larger SubjectDirectoryAttributes values are refused unread (a real one is under 100 bytes).
pub const MAX_SDA_BYTES: usize = 4096;
/// At most this many attributes in the extension.
pub const MAX_ATTRIBUTES: usize = 32;
/// At most this many roles in one certificate.
pub const MAX_ROLES: usize = 16;
/// Longest OBJECT IDENTIFIER accepted (content bytes).
const MAX_OID_BYTES: usize = 64;

const TAG_OID: u32 = 6;
const TAG_SEQUENCE: u32 = 16;
const TAG_SET: u32 = 17;

/// One role of the certificate holder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HcRole {
    /// The coding scheme, dotted ("1.2.392.100495.1.6.1.1" in HPKI).
    pub scheme: String,
    /// The text as written in the certificate, checked (see [`HcRoleError::BadText`]).
    pub free_text: String,
    hpki_scheme: bool,
}

impl HcRole {
    /// Whether the role is coded in the HPKI scheme (1.2.392.100495.1.6.1.1).
    pub fn is_hpki_scheme(&self) -> bool {
        self.hpki_scheme
    }

    /// The qualification this role names. Only roles in the HPKI scheme are mapped to a known
    /// qualification; others are [`Qualification::Other`].
    pub fn qualification(&self) -> Qualification {
        if self.hpki_scheme {
            Qualification::from_free_text(&self.free_text)
        } else {
            Qualification::Other(self.free_text.clone())
        }
    }
}

/// All roles of a certificate (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HcRoles {
    pub roles: Vec<HcRole>,
}

impl HcRoles {
    /// The free texts, in certificate order.
    pub fn free_texts(&self) -> Vec<&str> {
        self.roles.iter().map(|r| r.free_text.as_str()).collect()
    }

    /// The qualifications, in certificate order.
    pub fn qualifications(&self) -> Vec<Qualification> {
        self.roles.iter().map(HcRole::qualification).collect()
    }

    pub fn has(&self, q: &Qualification) -> bool {
        self.roles.iter().any(|r| &r.qualification() == q)
    }
}

/// A qualification named by an hcRole.
///
/// Which English texts HPKI uses: "Medical Doctor" and "Pharmacist" are seen in real
/// certificates; "Director of Hospital" and "Director of Clinic" in open-source code that reads
/// real cards. The others are the English names of the national qualifications and are
/// **guesses**: a certificate whose text differs yields [`Qualification::Other`] with the
/// text, never a wrong qualification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Qualification {
    /// 医師, "Medical Doctor".
    MedicalDoctor,
    /// 歯科医師, "Dentist" (guess).
    Dentist,
    /// 薬剤師, "Pharmacist".
    Pharmacist,
    /// 看護師, "Nurse" (guess).
    Nurse,
    /// 保健師, "Public Health Nurse" (guess).
    PublicHealthNurse,
    /// 助産師, "Midwife" (guess).
    Midwife,
    /// 病院長, "Director of Hospital" (management role).
    DirectorOfHospital,
    /// 診療所院長, "Director of Clinic" (management role).
    DirectorOfClinic,
    /// Any other text, as written in the certificate.
    Other(String),
}

impl Qualification {
    const KNOWN: [(Qualification, &'static str); 8] = [
        (Qualification::MedicalDoctor, "Medical Doctor"),
        (Qualification::Dentist, "Dentist"),
        (Qualification::Pharmacist, "Pharmacist"),
        (Qualification::Nurse, "Nurse"),
        (Qualification::PublicHealthNurse, "Public Health Nurse"),
        (Qualification::Midwife, "Midwife"),
        (Qualification::DirectorOfHospital, "Director of Hospital"),
        (Qualification::DirectorOfClinic, "Director of Clinic"),
    ];

    /// Maps a decoded hcRole text. The comparison is on the text, normalised: full-width
    /// letters and the ideographic space folded to ASCII, white space collapsed, ASCII case
    /// ignored. Only an exact match after that names a known qualification ("Assistant Nurse"
    /// is not a "Nurse").
    pub fn from_free_text(text: &str) -> Qualification {
        let key = normalise(text);
        Self::KNOWN
            .iter()
            .find(|(_, name)| normalise(name) == key)
            .map(|(q, _)| q.clone())
            .unwrap_or_else(|| Qualification::Other(text.to_owned()))
    }

    /// The English name ("Medical Doctor"), or the certificate's text for `Other`.
    pub fn as_str(&self) -> &str {
        match self {
            Qualification::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(q, _)| q == known)
                .map(|(_, name)| *name)
                .unwrap_or("unknown"),
        }
    }

    /// A physician (医師): what HPKI login for physicians is about.
    pub fn is_medical_doctor(&self) -> bool {
        matches!(self, Qualification::MedicalDoctor)
    }
}

impl fmt::Display for Qualification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn normalise(s: &str) -> String {
    let folded: String = s
        .chars()
        .map(|c| match c {
            // Full-width ASCII (！ to ～) to ASCII, ideographic space to space.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect();
    folded
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Why the hcRole could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HcRoleError {
    /// The extension is larger than [`MAX_SDA_BYTES`].
    TooLarge(usize),
    /// More attributes or roles than the limits allow.
    TooMany(&'static str),
    /// The DER does not have the expected structure.
    Structure(String),
    /// A text was refused.
    BadText(TextError),
    /// The certificate itself could not be parsed, or has the extension twice.
    Certificate(String),
}

impl fmt::Display for HcRoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HcRoleError::TooLarge(n) => write!(
                f,
                "the subject directory attributes are {n} bytes long, more than {MAX_SDA_BYTES}"
            ),
            HcRoleError::TooMany(what) => write!(f, "too many {what}"),
            HcRoleError::Structure(why) => write!(f, "malformed hcRole: {why}"),
            HcRoleError::BadText(e) => write!(f, "hcRole text refused: {e}"),
            HcRoleError::Certificate(why) => write!(f, "certificate: {why}"),
        }
    }
}

impl std::error::Error for HcRoleError {}

fn malformed(why: impl Into<String>) -> HcRoleError {
    HcRoleError::Structure(why.into())
}

/// Reads the hcRole of a DER certificate. `Ok(None)`: no SubjectDirectoryAttributes extension,
/// or no hcRole in it (a card of non-licensed staff).
pub fn hcrole_from_certificate(cert_der: &[u8]) -> Result<Option<HcRoles>, HcRoleError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| HcRoleError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(HcRoleError::Certificate(
            "trailing data after the certificate".into(),
        ));
    }
    hcrole_from_parsed(&cert)
}

pub(crate) fn hcrole_from_parsed(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Option<HcRoles>, HcRoleError> {
    let sda = Oid::from(SUBJECT_DIRECTORY_ATTRIBUTES).expect("constant OID");
    match cert.get_extension_unique(&sda) {
        Ok(Some(ext)) => parse_subject_directory_attributes(ext.value),
        Ok(None) => Ok(None),
        Err(e) => Err(HcRoleError::Certificate(e.to_string())),
    }
}

/// Parses the value (the content of the extnValue OCTET STRING) of a SubjectDirectoryAttributes
/// extension. `Ok(None)` when it holds no hcRole.
pub fn parse_subject_directory_attributes(value: &[u8]) -> Result<Option<HcRoles>, HcRoleError> {
    if value.len() > MAX_SDA_BYTES {
        return Err(HcRoleError::TooLarge(value.len()));
    }
    let attributes = only(value, "SubjectDirectoryAttributes")?;
    expect_universal(&attributes, TAG_SEQUENCE, "SubjectDirectoryAttributes")?;

    let mut roles = Vec::new();
    let mut count = 0;
    for attribute in tlvs(attributes.data, "Attribute") {
        let attribute = attribute?;
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(HcRoleError::TooMany("attributes"));
        }
        expect_universal(&attribute, TAG_SEQUENCE, "Attribute")?;
        let (attr_type, rest) = next(attribute.data, "Attribute type")?;
        let (values, rest) = next(rest, "Attribute values")?;
        if !rest.is_empty() {
            return Err(malformed("data after the attribute values"));
        }
        let attr_type = read_oid(&attr_type, "Attribute type")?;
        if !oid_is(&attr_type, HCROLE_ATTRIBUTE) {
            continue;
        }
        expect_universal(&values, TAG_SET, "hcRole values")?;
        for actor_data in tlvs(values.data, "HCActorData") {
            let actor_data = actor_data?;
            expect_universal(&actor_data, TAG_SET, "HCActorData")?;
            for actor in tlvs(actor_data.data, "HCActor") {
                let actor = actor?;
                if let Some(role) = parse_actor(&actor)? {
                    if roles.len() == MAX_ROLES {
                        return Err(HcRoleError::TooMany("roles"));
                    }
                    roles.push(role);
                }
            }
        }
    }
    Ok(if roles.is_empty() {
        None
    } else {
        Some(HcRoles { roles })
    })
}

/// One HCActor; `None` when it has no codedData (allowed by ISO 17090-3, unused by HPKI).
fn parse_actor(actor: &Any<'_>) -> Result<Option<HcRole>, HcRoleError> {
    expect_universal(actor, TAG_SEQUENCE, "HCActor")?;
    let mut coded = None;
    for member in tlvs(actor.data, "HCActor member") {
        let member = member?;
        if member.class() == Class::ContextSpecific && member.tag().0 == 0 {
            if !member.header.is_constructed() {
                return Err(malformed("codedData is not EXPLICIT"));
            }
            if coded.is_some() {
                return Err(malformed("HCActor has codedData twice"));
            }
            coded = Some(only(member.data, "codedData")?);
        } else if member.class() != Class::ContextSpecific {
            return Err(malformed("unexpected member in HCActor"));
        }
        // [1] regionalHCActorData and later extensions are not used by HPKI: skipped unread.
    }
    let Some(coded) = coded else {
        return Ok(None);
    };
    expect_universal(&coded, TAG_SET, "CodedData")?;

    let mut scheme = None;
    let mut free_text = None;
    let mut seen = [false; 3];
    for member in tlvs(coded.data, "CodedData member") {
        let member = member?;
        let tag = member.tag().0;
        if !(member.class() == Class::ContextSpecific && member.header.is_constructed() && tag < 3)
        {
            return Err(malformed("unexpected member in CodedData"));
        }
        if std::mem::replace(&mut seen[tag as usize], true) {
            return Err(malformed(format!("CodedData has [{tag}] twice")));
        }
        let inner = only(member.data, "CodedData value")?;
        match tag {
            0 => scheme = Some(read_oid(&inner, "codingSchemeReference")?),
            // codeDataValue: a code rather than text; HPKI uses the free text.
            1 => {}
            _ => {
                if inner.class() != Class::Universal || inner.header.is_constructed() {
                    return Err(malformed("codeDataFreeText is not a DirectoryString"));
                }
                free_text =
                    Some(text::decode(inner.tag().0, inner.data).map_err(HcRoleError::BadText)?);
            }
        }
    }
    let scheme = scheme.ok_or_else(|| malformed("CodedData has no codingSchemeReference"))?;
    let free_text = free_text.ok_or_else(|| malformed("CodedData has no codeDataFreeText"))?;
    let hpki_scheme = oid_is(&scheme, HPKI_ROLE_SCHEME);
    Ok(Some(HcRole {
        scheme: oid_dotted(&scheme)?,
        free_text,
        hpki_scheme,
    }))
}

/// The next TLV of `input`, and what follows it.
fn next<'a>(input: &'a [u8], what: &str) -> Result<(Any<'a>, &'a [u8]), HcRoleError> {
    if input.is_empty() {
        return Err(malformed(format!("{what} is missing")));
    }
    match Any::from_der(input) {
        Ok((rest, any)) => Ok((any, rest)),
        Err(e) => Err(malformed(format!("{what}: {e}"))),
    }
}

/// Exactly one TLV filling `input`.
fn only<'a>(input: &'a [u8], what: &str) -> Result<Any<'a>, HcRoleError> {
    let (any, rest) = next(input, what)?;
    if !rest.is_empty() {
        return Err(malformed(format!("data after {what}")));
    }
    Ok(any)
}

/// The TLVs that fill `input`, one after another.
fn tlvs<'a>(
    mut input: &'a [u8],
    what: &'static str,
) -> impl Iterator<Item = Result<Any<'a>, HcRoleError>> {
    std::iter::from_fn(move || {
        if input.is_empty() {
            return None;
        }
        match next(input, what) {
            Ok((any, rest)) => {
                input = rest;
                Some(Ok(any))
            }
            Err(e) => {
                input = &[];
                Some(Err(e))
            }
        }
    })
}

fn expect_universal(any: &Any<'_>, tag: u32, what: &str) -> Result<(), HcRoleError> {
    if any.class() == Class::Universal && any.tag().0 == tag && any.header.is_constructed() {
        Ok(())
    } else {
        Err(malformed(format!("{what} has the wrong type")))
    }
}

/// An OBJECT IDENTIFIER, with its encoding checked (non-empty, every arc minimally encoded and
/// terminated, no arc beyond 64 bits).
fn read_oid<'a>(any: &Any<'a>, what: &str) -> Result<Oid<'a>, HcRoleError> {
    let bad = || malformed(format!("{what} is not a valid OBJECT IDENTIFIER"));
    if any.class() != Class::Universal || any.tag().0 != TAG_OID || any.header.is_constructed() {
        return Err(bad());
    }
    let data = any.data;
    if data.is_empty() || data.len() > MAX_OID_BYTES || data[data.len() - 1] & 0x80 != 0 {
        return Err(bad());
    }
    let mut arc_start = true;
    for b in data {
        if arc_start && *b == 0x80 {
            return Err(bad());
        }
        arc_start = b & 0x80 == 0;
    }
    let oid = Oid::new(Cow::Borrowed(data));
    if oid.iter().is_none() {
        return Err(bad());
    }
    Ok(oid)
}

fn oid_is(oid: &Oid<'_>, arcs: &[u64]) -> bool {
    oid.iter().is_some_and(|it| it.eq(arcs.iter().copied()))
}

fn oid_dotted(oid: &Oid<'_>) -> Result<String, HcRoleError> {
    let arcs: Vec<u64> = oid
        .iter()
        .ok_or_else(|| malformed("OBJECT IDENTIFIER arc too large"))?
        .collect();
    Ok(super::oid_string(&arcs))
}

#[cfg(test)]
mod tests {
    use super::super::der::{self, context, tlv};
    use super::*;

    fn coded(scheme: &[u64], text: Vec<u8>) -> Vec<u8> {
        der::constructed(
            der::SET,
            &[tlv(context(0), &der::oid(scheme)), tlv(context(2), &text)],
        )
    }

    fn actor(coded: Vec<u8>) -> Vec<u8> {
        tlv(der::SEQUENCE, &tlv(context(0), &coded))
    }

    fn sda(actors: &[Vec<u8>]) -> Vec<u8> {
        let actor_data = der::constructed(der::SET, actors);
        let attr = der::constructed(
            der::SEQUENCE,
            &[der::oid(HCROLE_ATTRIBUTE), tlv(der::SET, &actor_data)],
        );
        tlv(der::SEQUENCE, &attr)
    }

    fn utf8(s: &str) -> Vec<u8> {
        tlv(der::UTF8_STRING, s.as_bytes())
    }

    /// The extension value of a real HPKI signature certificate (MEDIS test card).
    const REAL: &[u8] = &[
        0x30, 0x34, 0x30, 0x32, 0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01, 0x31, 0x28, 0x31,
        0x26, 0x30, 0x24, 0xa0, 0x22, 0x31, 0x20, 0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86,
        0x91, 0x0f, 0x01, 0x06, 0x01, 0x01, 0xa2, 0x10, 0x0c, 0x0e, b'M', b'e', b'd', b'i', b'c',
        b'a', b'l', b' ', b'D', b'o', b'c', b't', b'o', b'r',
    ];

    #[test]
    fn reads_the_real_structure() {
        let roles = parse_subject_directory_attributes(REAL).unwrap().unwrap();
        assert_eq!(roles.free_texts(), ["Medical Doctor"]);
        assert_eq!(roles.roles[0].scheme, "1.2.392.100495.1.6.1.1");
        assert!(roles.roles[0].is_hpki_scheme());
        assert_eq!(roles.qualifications(), [Qualification::MedicalDoctor]);
        // Our own encoder produces the same bytes.
        assert_eq!(
            sda(&[actor(coded(HPKI_ROLE_SCHEME, utf8("Medical Doctor")))]),
            REAL
        );
    }

    #[test]
    fn several_roles_and_other_schemes() {
        let v = sda(&[
            actor(coded(HPKI_ROLE_SCHEME, utf8("Medical Doctor"))),
            actor(coded(HPKI_ROLE_SCHEME, utf8("Director of Hospital"))),
            actor(coded(&[1, 2, 3, 4], utf8("Pharmacist"))),
        ]);
        let roles = parse_subject_directory_attributes(&v).unwrap().unwrap();
        assert_eq!(
            roles.qualifications(),
            [
                Qualification::MedicalDoctor,
                Qualification::DirectorOfHospital,
                // Not the HPKI scheme: not mapped, whatever the text says.
                Qualification::Other("Pharmacist".into()),
            ]
        );
        assert_eq!(roles.roles[2].scheme, "1.2.3.4");
    }

    #[test]
    fn no_role() {
        // An SDA with another attribute only (dateOfBirth-like), and an empty one.
        let other = der::constructed(
            der::SEQUENCE,
            &[der::oid(&[1, 3, 6, 1, 5, 5, 7, 9, 1]), tlv(der::SET, &[])],
        );
        assert_eq!(
            parse_subject_directory_attributes(&tlv(der::SEQUENCE, &other)),
            Ok(None)
        );
        assert_eq!(
            parse_subject_directory_attributes(&tlv(der::SEQUENCE, &[])),
            Ok(None)
        );
        // An HCActor without codedData.
        assert_eq!(
            parse_subject_directory_attributes(&sda(&[tlv(der::SEQUENCE, &[])])),
            Ok(None)
        );
    }

    #[test]
    fn qualification_mapping_is_on_text() {
        for (text, q) in [
            ("Medical Doctor", Qualification::MedicalDoctor),
            ("medical  doctor", Qualification::MedicalDoctor),
            ("Ｍｅｄｉｃａｌ　Ｄｏｃｔｏｒ", Qualification::MedicalDoctor),
            (" Pharmacist ", Qualification::Pharmacist),
            ("Dentist", Qualification::Dentist),
            ("Public Health Nurse", Qualification::PublicHealthNurse),
            (
                "Assistant Nurse",
                Qualification::Other("Assistant Nurse".into()),
            ),
            (
                "Medical Doctors",
                Qualification::Other("Medical Doctors".into()),
            ),
            ("医師", Qualification::Other("医師".into())),
        ] {
            assert_eq!(Qualification::from_free_text(text), q, "{text}");
        }
        assert_eq!(Qualification::MedicalDoctor.to_string(), "Medical Doctor");
        assert_eq!(Qualification::Other("x".into()).as_str(), "x");
        // A BMPString free text decodes to the same qualification.
        let bmp: Vec<u8> = "Pharmacist"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        let v = sda(&[actor(coded(HPKI_ROLE_SCHEME, tlv(0x1e, &bmp)))]);
        let roles = parse_subject_directory_attributes(&v).unwrap().unwrap();
        assert!(roles.has(&Qualification::Pharmacist));
    }

    #[test]
    fn hostile_input_is_refused() {
        let bad = |v: &[u8]| parse_subject_directory_attributes(v).unwrap_err();
        // Invalid UTF-8, control characters, over-long text.
        assert!(matches!(
            bad(&sda(&[actor(coded(
                HPKI_ROLE_SCHEME,
                tlv(0x0c, &[0xc3, 0x28])
            ))])),
            HcRoleError::BadText(TextError::BadEncoding)
        ));
        assert!(matches!(
            bad(&sda(&[actor(coded(
                HPKI_ROLE_SCHEME,
                utf8("Medical\r\nDoctor")
            ))])),
            HcRoleError::BadText(TextError::ForbiddenChar(13))
        ));
        assert!(matches!(
            bad(&sda(&[actor(coded(
                HPKI_ROLE_SCHEME,
                utf8(&"a".repeat(129))
            ))])),
            HcRoleError::BadText(TextError::TooLong)
        ));
        // A length far beyond the data.
        assert!(matches!(
            bad(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00]),
            HcRoleError::Structure(_)
        ));
        // Indefinite length (BER, not DER).
        assert!(matches!(
            bad(&[0x30, 0x80, 0x00, 0x00]),
            HcRoleError::Structure(_)
        ));
        // Deep nesting: 2000 nested SEQUENCEs (would overflow a recursive parser's stack).
        let mut deep = Vec::new();
        for _ in 0..2000 {
            deep = tlv(der::SEQUENCE, &deep);
        }
        assert!(matches!(
            bad(&deep),
            HcRoleError::TooLarge(_) | HcRoleError::Structure(_)
        ));
        let mut deep = tlv(der::SEQUENCE, &[]);
        for _ in 0..500 {
            deep = tlv(der::SEQUENCE, &deep);
        }
        assert!(deep.len() < MAX_SDA_BYTES);
        assert!(matches!(bad(&deep), HcRoleError::Structure(_)));
        // Too big, too many.
        assert!(matches!(
            bad(&vec![0u8; MAX_SDA_BYTES + 1]),
            HcRoleError::TooLarge(_)
        ));
        let many: Vec<Vec<u8>> = (0..=MAX_ROLES)
            .map(|_| actor(coded(HPKI_ROLE_SCHEME, utf8("Nurse"))))
            .collect();
        assert_eq!(bad(&sda(&many)), HcRoleError::TooMany("roles"));
        // Structure errors: trailing data, wrong types, missing fields, duplicates.
        let mut trailing = REAL.to_vec();
        trailing.push(0);
        assert!(matches!(bad(&trailing), HcRoleError::Structure(_)));
        assert!(matches!(
            bad(&sda(&[tlv(der::SEQUENCE, &tlv(context(0), &utf8("x")))])),
            HcRoleError::Structure(_)
        ));
        let no_text = der::constructed(der::SET, &[tlv(context(0), &der::oid(HPKI_ROLE_SCHEME))]);
        assert!(matches!(
            bad(&sda(&[actor(no_text)])),
            HcRoleError::Structure(_)
        ));
        let twice = der::constructed(
            der::SET,
            &[
                tlv(context(0), &der::oid(HPKI_ROLE_SCHEME)),
                tlv(context(2), &utf8("Nurse")),
                tlv(context(2), &utf8("Medical Doctor")),
            ],
        );
        assert!(matches!(
            bad(&sda(&[actor(twice)])),
            HcRoleError::Structure(_)
        ));
        // A malformed OID (unterminated arc).
        let bad_oid = der::constructed(
            der::SET,
            &[
                tlv(context(0), &tlv(der::OID, &[0x2a, 0x83])),
                tlv(context(2), &utf8("Nurse")),
            ],
        );
        assert!(matches!(
            bad(&sda(&[actor(bad_oid)])),
            HcRoleError::Structure(_)
        ));
        // Every truncation of a valid value fails cleanly.
        for n in 0..REAL.len() {
            assert!(
                parse_subject_directory_attributes(&REAL[..n]).is_err(),
                "{n}"
            );
        }
    }
}
