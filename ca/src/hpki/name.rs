//! Names in certificates as text: one attribute of a name (the holder's common name,
//! organisation, …), and a whole name in RFC 4514 form for messages and account mapping. The
//! values are the CA's untrusted text, decoded and checked by [`super::text`].

use x509_parser::asn1_rs::{Any, Class, ToDer};
use x509_parser::x509::X509Name;

use super::text;
use super::{HpkiError, arcs, oid_string};

fn bad_text(what: &str) -> impl Fn(text::TextError) -> HpkiError + '_ {
    move |e| HpkiError::Malformed(format!("the {what} is refused: {e}"))
}

fn attr_text(value: &Any<'_>, what: &str) -> Result<String, HpkiError> {
    if value.class() != Class::Universal || value.header.is_constructed() {
        return Err(HpkiError::Malformed(format!("the {what} is not a string")));
    }
    text::decode(value.tag().0, value.data).map_err(bad_text(what))
}

/// The one value of an attribute type in a name; a name that repeats it is refused, since it
/// would be ambiguous which one identifies the holder.
pub(crate) fn single_attr(
    name: &X509Name<'_>,
    arcs: &[u64],
    what: &str,
) -> Result<Option<String>, HpkiError> {
    let mut found = None;
    for atv in name.iter_attributes() {
        if atv
            .attr_type()
            .iter()
            .is_some_and(|it| it.eq(arcs.iter().copied()))
        {
            if found.is_some() {
                return Err(HpkiError::Malformed(format!("the name has two {what}s")));
            }
            found = Some(attr_text(atv.attr_value(), what)?);
        }
    }
    Ok(found)
}

/// A name as text: attributes in certificate order, ", " between RDNs, "+" inside one, short
/// names for the usual types and dotted OIDs otherwise, values escaped as in RFC 4514, and
/// non-string values as '#' and the hex of their DER.
pub(crate) fn dn_string(name: &X509Name<'_>) -> Result<String, HpkiError> {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let arcs = arcs(atv.attr_type())?;
            let label = match arcs.as_slice() {
                [2, 5, 4, 3] => "CN".to_owned(),
                [2, 5, 4, 5] => "serialNumber".to_owned(),
                [2, 5, 4, 6] => "C".to_owned(),
                [2, 5, 4, 7] => "L".to_owned(),
                [2, 5, 4, 8] => "ST".to_owned(),
                [2, 5, 4, 10] => "O".to_owned(),
                [2, 5, 4, 11] => "OU".to_owned(),
                a => oid_string(a),
            };
            out.push_str(&label);
            out.push('=');
            let value = atv.attr_value();
            match attr_text(value, "name attribute") {
                Ok(s) => escape_rfc4514(&s, &mut out),
                Err(_) if value.class() != Class::Universal || value.header.is_constructed() => {
                    let der = value.to_der_vec().map_err(|e| {
                        HpkiError::Malformed(format!("a name attribute cannot be encoded: {e}"))
                    })?;
                    out.push('#');
                    out.push_str(&hex::encode(der));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

fn escape_rfc4514(s: &str, out: &mut String) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_rfc4514(" a,b+c\\ ", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c\\\\\\ ");
        let mut s = String::new();
        escape_rfc4514("#神楽坂　三十四", &mut s);
        assert_eq!(s, "\\#神楽坂　三十四");
    }
}
