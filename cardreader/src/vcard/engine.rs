//! The virtual HPKI card's command processor: what a card does with an APDU.
//!
//! It follows `docs/hpki.md`: the two applications by AID or by RID with next-occurrence selection,
//! EF `0016` (certificate) and `000C` (key), VERIFY P2=`88` with a 15-try counter that locks,
//! MSE:SET, PSO as raw RSA over the host's block, extended length, READ BINARY with offsets.
//! Quirks switch on the behaviours of older or simpler cards so the reader's fallbacks can be
//! tested. Commands from the host are parsed as carefully as the host parses answers.

use zeroize::Zeroizing;

use super::rsa::{KeyError, RsaKey, certificate_rsa_public};
use crate::apdu::{CardError, Transport};
use crate::hpki::{
    AUTHENTICATION_AID, Application, EF_CERTIFICATE, EF_PRIVATE_KEY, PIN_REFERENCE, PIN_TRIES,
    SIGNATURE_AID,
};

/// `3B 88 80 01` + HPKI's contactless historical bytes `00 4E 00 00 F7 81 D1 00` + TCK: a
/// T=1 card, so PC/SC passes APDUs (not TPDUs) through.
pub const ATR: [u8; 13] = [
    0x3B, 0x88, 0x80, 0x01, 0x00, 0x4E, 0x00, 0x00, 0xF7, 0x81, 0xD1, 0x00, 0xE0,
];

/// Most data a chained command may accumulate.
const MAX_CHAINED: usize = 4096;
/// Most response data in one vpcd message (2-byte length, minus the SW).
const MAX_RESPONSE: usize = 0xFFFF - 2;

/// Behaviours of other cards, for testing the reader's fallbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Knows only the RID: a SELECT by full AID answers `6A82`.
    pub partial_select_only: bool,
    /// Older card: PSO answers `6D00`; `80 2A 00 80 <DigestInfo>` signs with card padding.
    pub card_pads: bool,
    /// No extended length (`6700`): long data must come chained.
    pub short_only: bool,
    /// T=0 style: answers with data come as `61xx` (GET RESPONSE), a wrong Le on a command
    /// without data gets `6Cxx`.
    pub t0: bool,
}

/// One application's certificate and key, as loaded.
pub struct AppFiles {
    pub certificate: Vec<u8>,
    pub key: RsaKey,
}

impl AppFiles {
    /// From PEM files' contents; refuses a certificate and key that do not belong together.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<AppFiles, KeyError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|_| KeyError("no certificate in PEM"))?;
        AppFiles::new(cert.to_vec(), RsaKey::from_pem(key_pem)?)
    }

    pub fn new(certificate: Vec<u8>, key: RsaKey) -> Result<AppFiles, KeyError> {
        if certificate_rsa_public(&certificate)? != key.public_parts() {
            return Err(KeyError("the certificate is not for this key"));
        }
        if certificate.len() > 0x7FFF {
            return Err(KeyError("certificate larger than READ BINARY can address"));
        }
        Ok(AppFiles { certificate, key })
    }
}

struct App {
    kind: Application,
    aid: [u8; 16],
    files: AppFiles,
    // Non-volatile: survives removal, like the card's own counter.
    tries_left: u8,
    // Volatile: lost on power-off, reset, or selecting the other application.
    verified: bool,
}

/// A parsed command APDU.
pub(super) struct Apdu<'a> {
    pub(super) cla: u8,
    pub(super) ins: u8,
    pub(super) p1: u8,
    pub(super) p2: u8,
    pub(super) data: &'a [u8],
    pub(super) le: Option<usize>,
    pub(super) extended: bool,
}

/// ISO 7816-3 §12.1 cases; `Err` is the status word for a malformed command.
pub(super) fn parse(raw: &[u8]) -> Result<Apdu<'_>, u16> {
    let Some((&[cla, ins, p1, p2], body)) = raw.split_first_chunk::<4>() else {
        return Err(0x6700);
    };
    let short_le = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    let ext_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65_536,
        n => usize::from(n),
    };
    let (data, le, extended) = match *body {
        [] => (&body[..0], None, false),
        [le] => (&body[..0], Some(short_le(le)), false),
        [0, hi, lo] => (&body[..0], Some(ext_le(hi, lo)), true),
        [0, hi, lo, ref rest @ ..] if body.len() > 3 => {
            let nc = usize::from(u16::from_be_bytes([hi, lo]));
            if nc == 0 {
                return Err(0x6700);
            }
            match rest.len().checked_sub(nc) {
                Some(0) => (&rest[..nc], None, true),
                Some(2) => (&rest[..nc], Some(ext_le(rest[nc], rest[nc + 1])), true),
                _ => return Err(0x6700),
            }
        }
        [nc, ref rest @ ..] => {
            if nc == 0 {
                return Err(0x6700);
            }
            let nc = usize::from(nc);
            match rest.len().checked_sub(nc) {
                Some(0) => (&rest[..nc], None, false),
                Some(1) => (&rest[..nc], Some(short_le(rest[nc])), false),
                _ => return Err(0x6700),
            }
        }
    };
    Ok(Apdu {
        cla,
        ins,
        p1,
        p2,
        data,
        le,
        extended,
    })
}

/// Data and status word of an answer.
pub(super) type Answer = (Vec<u8>, u16);

pub(super) fn sw(sw: u16) -> Answer {
    (Vec::new(), sw)
}

/// The card.
pub struct CardEngine {
    apps: Vec<App>,
    pin: Zeroizing<Vec<u8>>,
    quirks: Quirks,
    // Volatile state, cleared on power-off and reset.
    selected: Option<usize>,
    current_ef: Option<[u8; 2]>,
    key_set: bool,
    // The name of the last SELECT by DF name and the application it found, for P2=02.
    occurrence: Option<(Vec<u8>, usize)>,
    chain: Option<([u8; 3], Vec<u8>)>,
    pending: Vec<u8>,
}

impl CardEngine {
    /// A card with the authentication application and, if given, the signature application;
    /// both have `pin` and a fresh counter.
    pub fn new(
        auth: AppFiles,
        sign: Option<AppFiles>,
        pin: &str,
        quirks: Quirks,
    ) -> Result<CardEngine, KeyError> {
        if !(4..=16).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError(
                "the PIN must be 4 to 16 printable ASCII characters",
            ));
        }
        // Ordered by AID, as a card's next-occurrence selection would find them.
        let mut apps = Vec::new();
        if let Some(files) = sign {
            apps.push(App {
                kind: Application::Signature,
                aid: SIGNATURE_AID,
                files,
                tries_left: PIN_TRIES,
                verified: false,
            });
        }
        apps.push(App {
            kind: Application::Authentication,
            aid: AUTHENTICATION_AID,
            files: auth,
            tries_left: PIN_TRIES,
            verified: false,
        });
        Ok(CardEngine {
            apps,
            pin: Zeroizing::new(pin.as_bytes().to_vec()),
            quirks,
            selected: None,
            current_ef: None,
            key_set: false,
            occurrence: None,
            chain: None,
            pending: Vec::new(),
        })
    }

    pub fn atr(&self) -> &'static [u8] {
        &ATR
    }

    pub fn quirks(&self) -> Quirks {
        self.quirks
    }

    /// The PIN counter of `app` (`None` if the card lacks the application).
    pub fn tries_left(&self, app: Application) -> Option<u8> {
        self.apps
            .iter()
            .find(|a| a.kind == app)
            .map(|a| a.tries_left)
    }

    pub fn power_on(&mut self) {
        self.clear_volatile();
    }

    pub fn power_off(&mut self) {
        self.clear_volatile();
    }

    pub fn reset(&mut self) {
        self.clear_volatile();
    }

    fn clear_volatile(&mut self) {
        self.selected = None;
        self.current_ef = None;
        self.key_set = false;
        self.occurrence = None;
        self.chain = None;
        self.pending.clear();
        for app in &mut self.apps {
            app.verified = false;
        }
    }

    /// Answers one command APDU with response data + SW1 SW2.
    pub fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let (mut data, status) = self.answer(raw);
        data.truncate(MAX_RESPONSE);
        data.extend_from_slice(&status.to_be_bytes());
        data
    }

    fn answer(&mut self, raw: &[u8]) -> Answer {
        let cmd = match parse(raw) {
            Ok(c) => c,
            Err(status) => return sw(status),
        };
        if cmd.extended && self.quirks.short_only {
            return sw(0x6700);
        }
        let proprietary = cmd.cla == 0x80 && self.quirks.card_pads;
        if cmd.cla & !0x10 != 0x00 && !proprietary {
            return sw(0x6E00);
        }
        if cmd.ins == 0xC0 && cmd.cla == 0x00 {
            return self.get_response(&cmd);
        }
        self.pending.clear();

        // Command chaining: keep pieces until the last one (bit 0x10 clear) arrives.
        let header = [cmd.ins, cmd.p1, cmd.p2];
        let mut chained = Vec::new();
        if cmd.cla & 0x10 != 0 {
            match &mut self.chain {
                Some((h, buf)) if *h == header => {
                    if buf.len() + cmd.data.len() > MAX_CHAINED {
                        self.chain = None;
                        return sw(0x6700);
                    }
                    buf.extend_from_slice(cmd.data);
                }
                _ => self.chain = Some((header, cmd.data.to_vec())),
            }
            return sw(0x9000);
        }
        if let Some((h, buf)) = self.chain.take() {
            if h != header {
                // 6883: the last command of the chain was expected.
                return sw(0x6883);
            }
            chained = buf;
            chained.extend_from_slice(cmd.data);
        }
        let data: &[u8] = if chained.is_empty() {
            cmd.data
        } else {
            &chained
        };

        let (out, status) = match (cmd.cla, cmd.ins) {
            (0x00, 0xA4) => self.select(&cmd, data),
            (0x00, 0xB0) => self.read_binary(&cmd),
            (0x00, 0x20) => self.verify(&cmd, data),
            (0x00, 0x22) => self.manage_security_environment(&cmd, data),
            (0x00, 0x2A) => self.pso(&cmd, data),
            (0x80, 0x2A) => self.sign_card_pads(&cmd, data),
            _ => sw(0x6D00),
        };
        self.deliver(&cmd, data, out, status)
    }

    /// Applies Le and the T=0 habits to an answer.
    fn deliver(&mut self, cmd: &Apdu<'_>, data: &[u8], out: Vec<u8>, status: u16) -> Answer {
        if out.is_empty() {
            return (out, status);
        }
        let Some(le) = cmd.le else {
            // Case 1 and 3 commands get no data.
            return (Vec::new(), status);
        };
        if self.quirks.t0 {
            if data.is_empty() {
                // T=0 case 2: the right Le gets the data, a wrong one "6Cxx: I have xx".
                if le == out.len() {
                    return (out, status);
                }
                if out.len() <= 256 {
                    return sw(0x6C00 | (out.len() & 0xFF) as u16);
                }
            }
            let first = out.len().min(256);
            self.pending = out;
            return sw(0x6100 | (first & 0xFF) as u16);
        }
        if out.len() > le {
            return sw(0x6700);
        }
        (out, status)
    }

    fn get_response(&mut self, cmd: &Apdu<'_>) -> Answer {
        if self.pending.is_empty() || cmd.p1 != 0 || cmd.p2 != 0 {
            self.pending.clear();
            return sw(0x6985);
        }
        let le = cmd.le.unwrap_or(256).min(256);
        let n = le.min(self.pending.len());
        let out: Vec<u8> = self.pending.drain(..n).collect();
        match self.pending.len() {
            0 => (out, 0x9000),
            left => (out, 0x6100 | (left.min(256) & 0xFF) as u16),
        }
    }

    fn select(&mut self, cmd: &Apdu<'_>, data: &[u8]) -> Answer {
        match cmd.p1 {
            0x04 => self.select_application(cmd, data),
            0x02 => {
                if self.selected.is_none() {
                    return sw(0x6A82);
                }
                let Ok(fid) = <[u8; 2]>::try_from(data) else {
                    return sw(0x6700);
                };
                if fid != EF_CERTIFICATE && fid != EF_PRIVATE_KEY {
                    return sw(0x6A82);
                }
                self.current_ef = Some(fid);
                sw(0x9000)
            }
            _ => sw(0x6A86),
        }
    }

    fn select_application(&mut self, cmd: &Apdu<'_>, name: &[u8]) -> Answer {
        if name.is_empty() || name.len() > 16 {
            return sw(0x6700);
        }
        let start = match cmd.p2 & 0x03 {
            0x00 => 0,
            0x02 => match &self.occurrence {
                Some((last, index)) if last == name => index + 1,
                _ => return sw(0x6A82),
            },
            _ => return sw(0x6A86),
        };
        let full_allowed = !self.quirks.partial_select_only;
        let found = self
            .apps
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, a)| a.aid.starts_with(name) && (name.len() < 16 || full_allowed))
            .map(|(i, _)| i);
        let Some(index) = found else {
            self.occurrence = None;
            return sw(0x6A82);
        };
        if self.selected != Some(index) {
            // The security state belongs to the application that was left.
            for app in &mut self.apps {
                app.verified = false;
            }
        }
        self.selected = Some(index);
        self.current_ef = None;
        self.key_set = false;
        self.occurrence = Some((name.to_vec(), index));
        if cmd.p2 & 0x0C == 0x0C {
            return sw(0x9000);
        }
        // FCI with the DF name, so a host that selected by RID knows what it got.
        let aid = self.apps[index].aid;
        let mut fci = vec![0x6F, 2 + aid.len() as u8, 0x84, aid.len() as u8];
        fci.extend_from_slice(&aid);
        (fci, 0x9000)
    }

    fn read_binary(&mut self, cmd: &Apdu<'_>) -> Answer {
        let Some(app) = self.selected else {
            return sw(0x6986);
        };
        match self.current_ef {
            Some(ef) if ef == EF_CERTIFICATE => {}
            // The key never leaves the card.
            Some(_) => return sw(0x6982),
            None => return sw(0x6986),
        }
        read_binary(&self.apps[app].files.certificate, cmd, self.quirks.t0)
    }

    fn verify(&mut self, cmd: &Apdu<'_>, pin: &[u8]) -> Answer {
        if cmd.p1 != 0x00 || cmd.p2 != PIN_REFERENCE {
            return sw(0x6A86);
        }
        let Some(index) = self.selected else {
            return sw(0x6985);
        };
        let app = &mut self.apps[index];
        if app.tries_left == 0 {
            return sw(0x6983);
        }
        if pin.is_empty() {
            return if app.verified {
                sw(0x9000)
            } else {
                sw(0x63C0 | u16::from(app.tries_left))
            };
        }
        if !(4..=16).contains(&pin.len()) {
            return sw(0x6700);
        }
        if constant_time_eq(pin, &self.pin) {
            app.tries_left = PIN_TRIES;
            app.verified = true;
            sw(0x9000)
        } else {
            app.tries_left -= 1;
            app.verified = false;
            sw(0x63C0 | u16::from(app.tries_left))
        }
    }

    fn manage_security_environment(&mut self, cmd: &Apdu<'_>, data: &[u8]) -> Answer {
        if cmd.p1 != 0x41 || cmd.p2 != 0xB6 {
            return sw(0x6A86);
        }
        if self.selected.is_none() {
            return sw(0x6985);
        }
        if data != [0x84, 0x02, EF_PRIVATE_KEY[0], EF_PRIVATE_KEY[1]] {
            // 6A88: referenced data not found.
            return sw(0x6A88);
        }
        self.key_set = true;
        sw(0x9000)
    }

    /// Checks common to both ways of signing; the application index if signing may go on.
    fn may_sign(&self) -> Result<usize, u16> {
        let index = self.selected.ok_or(0x6985u16)?;
        if !self.key_set {
            return Err(0x6985);
        }
        if !self.apps[index].verified {
            return Err(0x6982);
        }
        Ok(index)
    }

    fn pso(&mut self, cmd: &Apdu<'_>, block: &[u8]) -> Answer {
        if self.quirks.card_pads {
            return sw(0x6D00);
        }
        if cmd.p1 != 0x9E || cmd.p2 != 0x9A {
            return sw(0x6A86);
        }
        let index = match self.may_sign() {
            Ok(i) => i,
            Err(status) => return sw(status),
        };
        let size = self.apps[index].files.key.size();
        if block.len() != size || cmd.le.is_none_or(|le| le < size) {
            return sw(0x6700);
        }
        // Raw RSA, as the real card does: the block's padding is the host's business.
        self.finish_signature(index, block)
    }

    fn sign_card_pads(&mut self, cmd: &Apdu<'_>, digest_info: &[u8]) -> Answer {
        if cmd.p1 != 0x00 || cmd.p2 != 0x80 {
            return sw(0x6A86);
        }
        let index = match self.may_sign() {
            Ok(i) => i,
            Err(status) => return sw(status),
        };
        let size = self.apps[index].files.key.size();
        if digest_info.is_empty() || digest_info.len() + 11 > size {
            return sw(0x6700);
        }
        let mut block = vec![0xFF; size];
        block[0] = 0x00;
        block[1] = 0x01;
        let sep = size - digest_info.len() - 1;
        block[sep] = 0x00;
        block[sep + 1..].copy_from_slice(digest_info);
        self.finish_signature(index, &block)
    }

    fn finish_signature(&mut self, index: usize, block: &[u8]) -> Answer {
        let app = &mut self.apps[index];
        let Some(signature) = app.files.key.raw_private(block) else {
            // 6A80: incorrect data (not below the modulus).
            return sw(0x6A80);
        };
        if app.kind == Application::Signature {
            // The signature application wants its PIN before every signature.
            app.verified = false;
        }
        (signature, 0x9000)
    }
}

/// READ BINARY of `file` (the selected EF): `Le` bytes at the offset in P1-P2, `6282` when the
/// file ends first (T=0 cards say `9000`), `6B00` beyond its end.
pub(super) fn read_binary(file: &[u8], cmd: &Apdu<'_>, t0: bool) -> Answer {
    if cmd.p1 & 0x80 != 0 {
        // Short file identifiers are not implemented.
        return sw(0x6A81);
    }
    let Some(le) = cmd.le else {
        return sw(0x6700);
    };
    let offset = usize::from(u16::from_be_bytes([cmd.p1, cmd.p2]));
    if offset > file.len() {
        return sw(0x6B00);
    }
    let end = offset.saturating_add(le).min(file.len());
    let out = file[offset..end].to_vec();
    if out.len() < le && !t0 {
        // End of file before Le bytes.
        return (out, 0x6282);
    }
    (out, 0x9000)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The engine in-process: what tests of the card profile talk to.
impl Transport for CardEngine {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok(self.process(apdu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_checksum() {
        assert_eq!(ATR[1..].iter().fold(0u8, |a, b| a ^ b), 0);
    }

    #[test]
    fn command_cases() {
        let c = parse(&[0, 0x20, 0, 0x88]).unwrap();
        assert!(c.data.is_empty() && c.le.is_none() && !c.extended);
        let c = parse(&[0, 0xB0, 0, 0, 0]).unwrap();
        assert_eq!(c.le, Some(256));
        let c = parse(&[0, 0xB0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((c.le, c.extended), (Some(65_536), true));
        let c = parse(&[0, 0xA4, 2, 0x0C, 2, 0, 0x16]).unwrap();
        assert_eq!((c.data, c.le), (&[0, 0x16][..], None));
        let c = parse(&[0, 0xA4, 4, 0, 1, 0xE8, 0]).unwrap();
        assert_eq!((c.data, c.le), (&[0xE8][..], Some(256)));
        let mut ext = vec![0, 0x2A, 0x9E, 0x9A, 0, 1, 0];
        ext.extend_from_slice(&[7; 256]);
        let c = parse(&ext).unwrap();
        assert_eq!((c.data.len(), c.le, c.extended), (256, None, true));
        ext.extend_from_slice(&[0, 0]);
        assert_eq!(parse(&ext).unwrap().le, Some(65_536));
        for bad in [
            &[0u8, 0xA4, 4][..],
            &[0, 0xA4, 4, 0, 5, 1],
            &[0, 0xA4, 4, 0, 1, 1, 0, 0],
            &[0, 0xB0, 0, 0, 0, 0],
            &[0, 0xD6, 0, 0, 0, 0, 0, 9],
            &[0, 0xD6, 0, 0, 0, 0, 2, 1, 2, 3],
        ] {
            assert_eq!(parse(bad).err(), Some(0x6700), "{bad:02X?}");
        }
    }
}
