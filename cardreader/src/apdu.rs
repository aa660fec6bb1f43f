//! ISO/IEC 7816-4 command and response APDUs, status words, and the exchange rules that hide
//! reader and card quirks from the profiles above: extended length or command chaining,
//! `61xx` (GET RESPONSE) and `6Cxx` (resend with the right Le).
//!
//! Everything a card sends back is treated as hostile: lengths are checked against what was
//! asked, and every loop has a fixed bound.

use std::fmt;

use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// Most data a short APDU carries.
pub const SHORT_MAX_DATA: usize = 255;
/// Most data a short APDU can ask for (`Le = 00`).
pub const SHORT_MAX_LE: usize = 256;
/// Most data an extended APDU carries.
pub const EXTENDED_MAX_DATA: usize = 65_535;
/// Most data an extended APDU can ask for (`Le = 00 00`).
pub const EXTENDED_MAX_LE: usize = 65_536;
/// Bound on GET RESPONSE rounds after `61xx`: 256 rounds of up to 256 bytes is all of 64 KiB.
const MAX_GET_RESPONSE: usize = 256;
/// Bound on everything one command may bring back, GET RESPONSE rounds included.
const MAX_RESPONSE_DATA: usize = EXTENDED_MAX_LE;
/// Bound on the pieces of one chained command.
const MAX_CHAIN_PIECES: usize = 64;

/// What can go wrong below the card profile: the reader, the link, or a malformed answer.
#[derive(Debug, Error)]
pub enum CardError {
    #[error("the card was removed")]
    Removed,
    #[error("no card in the reader")]
    NoCard,
    #[error("the card was reset by another program; try again")]
    Reset,
    #[error("the card does not answer; take it out and insert it again")]
    Unresponsive,
    #[error("the smart-card service is not running (start pcscd)")]
    NoService,
    #[error("no reader named {0:?}")]
    UnknownReader(String),
    #[error("another program is using the card")]
    Busy,
    #[error("the card's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("command cannot be encoded: {0}")]
    InvalidCommand(&'static str),
    #[error("PC/SC error: {0}")]
    Pcsc(#[from] pcsc::Error),
    #[error("card link: {0}")]
    Link(String),
}

/// Sends one command APDU (as bytes) and returns the raw response (data + SW1 SW2).
///
/// This is the seam between the card profiles and the world: PC/SC in production, the virtual
/// card's engine in tests, a scripted fake in unit tests.
pub trait Transport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        (**self).transmit(apdu)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        (**self).transmit(apdu)
    }
}

/// A command APDU. `le` is the most data expected back (1..=65536), `None` for none.
///
/// The data may be a PIN, so it is wiped on drop and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    pub le: Option<usize>,
}

impl Drop for Command {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, {} data bytes, le {:?})",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

/// Which length encoding to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthForm {
    Short,
    Extended,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    pub fn with_data(mut self, data: &[u8]) -> Self {
        self.data.zeroize();
        self.data = data.to_vec();
        self
    }

    pub fn with_le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// The shortest form that fits: short unless the data or Le need extended length.
    pub fn natural_form(&self) -> LengthForm {
        if self.data.len() > SHORT_MAX_DATA || self.le.is_some_and(|le| le > SHORT_MAX_LE) {
            LengthForm::Extended
        } else {
            LengthForm::Short
        }
    }

    /// Encodes the command (ISO 7816-4 cases 1 to 4). The buffer is wiped when dropped.
    pub fn encode(&self, form: LengthForm) -> Result<Zeroizing<Vec<u8>>, CardError> {
        let (max_data, max_le) = match form {
            LengthForm::Short => (SHORT_MAX_DATA, SHORT_MAX_LE),
            LengthForm::Extended => (EXTENDED_MAX_DATA, EXTENDED_MAX_LE),
        };
        if self.data.len() > max_data {
            return Err(CardError::InvalidCommand(
                "too much data for this length form",
            ));
        }
        if let Some(le) = self.le
            && (le == 0 || le > max_le)
        {
            return Err(CardError::InvalidCommand("Le out of range"));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(4 + 3 + self.data.len() + 3));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        let nc = self.data.len();
        match form {
            LengthForm::Short => {
                if nc > 0 {
                    // nc <= 255 was checked above.
                    out.push(nc as u8);
                    out.extend_from_slice(&self.data);
                }
                if let Some(le) = self.le {
                    // 256 is encoded as 00.
                    out.push((le & 0xFF) as u8);
                }
            }
            LengthForm::Extended => {
                if nc > 0 {
                    out.extend_from_slice(&[0x00, (nc >> 8) as u8, (nc & 0xFF) as u8]);
                    out.extend_from_slice(&self.data);
                }
                if let Some(le) = self.le {
                    // 65536 is encoded as 00 00; with no data a leading 00 marks the form.
                    if nc == 0 {
                        out.push(0x00);
                    }
                    out.extend_from_slice(&[((le >> 8) & 0xFF) as u8, (le & 0xFF) as u8]);
                }
            }
        }
        Ok(out)
    }
}

/// A status word, typed where the profiles act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    /// `9000`
    Ok,
    /// `63Cx`
    WrongPin {
        tries_left: u8,
    },
    /// `6983`
    PinBlocked,
    /// `6982`
    SecurityNotSatisfied,
    /// `6985`
    ConditionsNotSatisfied,
    /// `6A82`
    FileNotFound,
    /// `6A86`
    WrongP1P2,
    /// `6700`
    WrongLength,
    /// `6D00`
    InsNotSupported,
    /// `6E00`
    ClaNotSupported,
    Other(u16),
}

impl StatusWord {
    pub fn from_u16(sw: u16) -> Self {
        match sw {
            0x9000 => StatusWord::Ok,
            0x63C0..=0x63CF => StatusWord::WrongPin {
                tries_left: (sw & 0x0F) as u8,
            },
            0x6983 => StatusWord::PinBlocked,
            0x6982 => StatusWord::SecurityNotSatisfied,
            0x6985 => StatusWord::ConditionsNotSatisfied,
            0x6A82 => StatusWord::FileNotFound,
            0x6A86 => StatusWord::WrongP1P2,
            0x6700 => StatusWord::WrongLength,
            0x6D00 => StatusWord::InsNotSupported,
            0x6E00 => StatusWord::ClaNotSupported,
            other => StatusWord::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            StatusWord::Ok => 0x9000,
            StatusWord::WrongPin { tries_left } => 0x63C0 | u16::from(tries_left & 0x0F),
            StatusWord::PinBlocked => 0x6983,
            StatusWord::SecurityNotSatisfied => 0x6982,
            StatusWord::ConditionsNotSatisfied => 0x6985,
            StatusWord::FileNotFound => 0x6A82,
            StatusWord::WrongP1P2 => 0x6A86,
            StatusWord::WrongLength => 0x6700,
            StatusWord::InsNotSupported => 0x6D00,
            StatusWord::ClaNotSupported => 0x6E00,
            StatusWord::Other(sw) => sw,
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meaning = match self {
            StatusWord::Ok => "ok",
            StatusWord::WrongPin { .. } => "wrong PIN",
            StatusWord::PinBlocked => "PIN blocked",
            StatusWord::SecurityNotSatisfied => "security status not satisfied",
            StatusWord::ConditionsNotSatisfied => "conditions of use not satisfied",
            StatusWord::FileNotFound => "file or application not found",
            StatusWord::WrongP1P2 => "incorrect P1/P2",
            StatusWord::WrongLength => "wrong length",
            StatusWord::InsNotSupported => "instruction not supported",
            StatusWord::ClaNotSupported => "class not supported",
            StatusWord::Other(_) => "unexpected status",
        };
        write!(f, "{:04X} ({meaning})", self.to_u16())
    }
}

/// A response APDU: data and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Response({} data bytes, SW {:04X})",
            self.data.len(),
            self.sw
        )
    }
}

impl Response {
    /// Splits raw bytes into data and SW1 SW2.
    pub fn parse(mut raw: Vec<u8>) -> Result<Response, CardError> {
        if raw.len() < 2 {
            return Err(CardError::Malformed("response shorter than a status word"));
        }
        let sw2 = raw.pop().unwrap_or_default();
        let sw1 = raw.pop().unwrap_or_default();
        Ok(Response {
            data: raw,
            sw: u16::from_be_bytes([sw1, sw2]),
        })
    }

    pub fn status(&self) -> StatusWord {
        StatusWord::from_u16(self.sw)
    }

    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }

    fn sw1(&self) -> u8 {
        (self.sw >> 8) as u8
    }

    fn sw2(&self) -> u8 {
        (self.sw & 0xFF) as u8
    }
}

/// A card channel: a transport plus what the reader and card can do with lengths.
pub struct Channel<T: Transport> {
    transport: T,
    extended: bool,
}

impl<T: Transport> Channel<T> {
    /// A channel that uses extended length when a command needs it (what HPKI cards expect).
    pub fn new(transport: T) -> Self {
        Channel {
            transport,
            extended: true,
        }
    }

    /// A channel for short-APDU-only cards or readers: long data goes by command chaining and
    /// long answers come by `61xx`.
    pub fn short_only(transport: T) -> Self {
        Channel {
            transport,
            extended: false,
        }
    }

    pub fn extended_length(&self) -> bool {
        self.extended
    }

    pub fn set_extended_length(&mut self, on: bool) {
        self.extended = on;
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends a command and returns the card's final answer, with `61xx` and `6Cxx` resolved and
    /// chained pieces acknowledged. A status other than `9000` is returned, not raised: the
    /// profile decides what it means.
    pub fn transmit(&mut self, cmd: &Command) -> Result<Response, CardError> {
        if let Some(le) = cmd.le
            && (le == 0 || le > EXTENDED_MAX_LE)
        {
            return Err(CardError::InvalidCommand("Le out of range"));
        }
        let needs_extended = cmd.natural_form() == LengthForm::Extended;
        if needs_extended && self.extended {
            return self.exchange(cmd, LengthForm::Extended, true);
        }
        if cmd.data.len() <= SHORT_MAX_DATA {
            // Asking for more than 256 bytes in short form: ask for 256 and let 61xx bring
            // the rest.
            let mut short = cmd.clone();
            short.le = cmd.le.map(|le| le.min(SHORT_MAX_LE));
            return self.exchange(&short, LengthForm::Short, true);
        }
        self.chain(cmd)
    }

    /// Command chaining (ISO 7816-4 §5.3.3): every piece but the last has CLA bit 0x10 and
    /// must be answered `9000`; only the last piece carries Le.
    fn chain(&mut self, cmd: &Command) -> Result<Response, CardError> {
        if cmd.cla == 0xFF {
            // FF is the reader's own pseudo-APDU class, where bit 0x10 means nothing.
            return Err(CardError::InvalidCommand("cannot chain class FF"));
        }
        let pieces: Vec<&[u8]> = cmd.data.chunks(SHORT_MAX_DATA).collect();
        if pieces.len() > MAX_CHAIN_PIECES {
            return Err(CardError::InvalidCommand("too much data to chain"));
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let mut part = Command::new(cmd.cla, cmd.ins, cmd.p1, cmd.p2).with_data(piece);
            if i < last {
                part.cla |= 0x10;
                let raw = part.encode(LengthForm::Short)?;
                let resp = Response::parse(self.transport.transmit(&raw)?)?;
                if !resp.is_ok() {
                    // The card refused a piece: that is its answer to the whole command.
                    return Ok(resp);
                }
                if !resp.data.is_empty() {
                    return Err(CardError::Malformed(
                        "data in the answer to a chained piece",
                    ));
                }
            } else {
                part.le = cmd.le.map(|le| le.min(SHORT_MAX_LE));
                // Resending the last piece alone after 6Cxx would not be the same command.
                return self.exchange(&part, LengthForm::Short, false);
            }
        }
        Err(CardError::InvalidCommand("empty chain"))
    }

    /// One command (no chaining), then `6Cxx` once (if `resend`) and `61xx` until the card is
    /// done.
    fn exchange(
        &mut self,
        cmd: &Command,
        form: LengthForm,
        resend: bool,
    ) -> Result<Response, CardError> {
        let raw = cmd.encode(form)?;
        let mut resp = self.send_checked(&raw, cmd.le)?;
        if resp.sw1() == 0x6C && cmd.le.is_some() && resend {
            // The card says how much it has: ask again with exactly that. Once: a card that
            // answers 6Cxx again is not trusted with a third try.
            let le = if resp.sw2() == 0 {
                SHORT_MAX_LE
            } else {
                usize::from(resp.sw2())
            };
            let mut again = cmd.clone();
            again.le = Some(le);
            let form = if again.data.len() > SHORT_MAX_DATA {
                form
            } else {
                LengthForm::Short
            };
            resp = self.send_checked(&again.encode(form)?, Some(le))?;
        }
        self.get_remaining(cmd.cla, resp)
    }

    fn get_remaining(&mut self, cla: u8, first: Response) -> Result<Response, CardError> {
        let mut resp = first;
        let mut data = std::mem::take(&mut resp.data);
        let mut rounds = 0;
        while resp.sw1() == 0x61 {
            rounds += 1;
            if rounds > MAX_GET_RESPONSE {
                return Err(CardError::Malformed("too many 61xx rounds"));
            }
            let le = if resp.sw2() == 0 {
                SHORT_MAX_LE
            } else {
                usize::from(resp.sw2())
            };
            // GET RESPONSE in the interindustry class on the command's logical channel.
            let get = Command::new(cla & 0x03, 0xC0, 0x00, 0x00).with_le(le);
            resp = self.send_checked(&get.encode(LengthForm::Short)?, Some(le))?;
            if data.len() + resp.data.len() > MAX_RESPONSE_DATA {
                return Err(CardError::Malformed("response longer than 64 KiB"));
            }
            data.append(&mut resp.data);
        }
        resp.data = data;
        Ok(resp)
    }

    /// Transmits and refuses answers that carry more data than was asked for.
    fn send_checked(&mut self, raw: &[u8], le: Option<usize>) -> Result<Response, CardError> {
        let resp = Response::parse(self.transport.transmit(raw)?)?;
        let allowed = le.unwrap_or(0);
        if resp.data.len() > allowed {
            return Err(CardError::Malformed("more data than Le asked for"));
        }
        Ok(resp)
    }
}

/// READ BINARY chunk: what every card and reader can do in short form.
pub(crate) const READ_CHUNK: usize = SHORT_MAX_LE;

/// Why reading an elementary file failed; each card profile words it for its own file.
#[derive(Debug)]
pub(crate) enum ReadError {
    Card(CardError),
    /// READ BINARY was answered with this status.
    Refused(StatusWord),
    /// The file ended before the length its content gives (or gave nothing).
    Truncated,
    /// Not a DER object with tag 30 (SEQUENCE) at the start of the file.
    NotDer,
    /// Longer than the caller's bound.
    TooLarge,
    /// So little data per READ BINARY that the bound on rounds was reached.
    TooSlow,
    /// An offset READ BINARY cannot address without a short file id (above 7FFF).
    Offset,
}

impl From<CardError> for ReadError {
    fn from(e: CardError) -> Self {
        ReadError::Card(e)
    }
}

/// `READ BINARY` of the selected EF: `le` bytes at `offset`. `6282` (end of file before `le`
/// bytes) is a good answer with what came; no data at all is [`ReadError::Truncated`].
pub(crate) fn read_binary<T: Transport>(
    channel: &mut Channel<T>,
    offset: usize,
    le: usize,
) -> Result<Vec<u8>, ReadError> {
    // P1 bit 8 would mean a short file id, so offsets stop at 0x7FFF.
    if offset > 0x7FFF {
        return Err(ReadError::Offset);
    }
    let cmd = Command::new(0x00, 0xB0, (offset >> 8) as u8, (offset & 0xFF) as u8).with_le(le);
    let resp = channel.transmit(&cmd)?;
    if resp.sw != 0x9000 && resp.sw != 0x6282 {
        return Err(ReadError::Refused(resp.status()));
    }
    if resp.data.is_empty() {
        return Err(ReadError::Truncated);
    }
    Ok(resp.data)
}

/// Reads the DER object (a certificate) at the start of the selected EF, up to the length its
/// header gives and no further, in chunks of [`READ_CHUNK`]. At most `max` bytes; at most
/// `max / 64` further rounds, so a card that trickles a byte at a time is cut off.
pub(crate) fn read_der_file<T: Transport>(
    channel: &mut Channel<T>,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut out = read_binary(channel, 0, READ_CHUNK)?;
    let total = match crate::der::header(&out) {
        Ok((0x30, header_len, len)) => header_len.checked_add(len).ok_or(ReadError::TooLarge)?,
        // Too short to hold a header, or another tag.
        _ => return Err(ReadError::NotDer),
    };
    if total > max {
        return Err(ReadError::TooLarge);
    }
    let max_rounds = (max / 64).max(1);
    let mut rounds = 0;
    while out.len() < total {
        rounds += 1;
        if rounds > max_rounds {
            return Err(ReadError::TooSlow);
        }
        let want = (total - out.len()).min(READ_CHUNK);
        let chunk = read_binary(channel, out.len(), want)?;
        out.extend_from_slice(&chunk);
    }
    out.truncate(total);
    Ok(out)
}

/// Reads a small EF whole (at most `max` bytes, `max` < 256): one READ BINARY asking for one
/// byte more than `max`; getting it means the file is too long. An empty file is
/// [`ReadError::Truncated`].
pub(crate) fn read_small_file<T: Transport>(
    channel: &mut Channel<T>,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    debug_assert!(max < SHORT_MAX_LE);
    let data = read_binary(channel, 0, max + 1)?;
    if data.len() > max {
        return Err(ReadError::TooLarge);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Replies from a script and records what it was sent.
    struct Scripted {
        replies: VecDeque<Result<Vec<u8>, CardError>>,
        sent: Vec<Vec<u8>>,
    }

    impl Scripted {
        fn new(replies: &[&[u8]]) -> Self {
            Scripted {
                replies: replies.iter().map(|r| Ok(r.to_vec())).collect(),
                sent: Vec::new(),
            }
        }
    }

    impl Transport for Scripted {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
            self.sent.push(apdu.to_vec());
            self.replies
                .pop_front()
                .unwrap_or(Err(CardError::Link("script exhausted".into())))
        }
    }

    #[test]
    fn encodes_the_four_cases_short() {
        let c1 = Command::new(0x00, 0x20, 0x00, 0x88);
        assert_eq!(
            &c1.encode(LengthForm::Short).unwrap()[..],
            &[0, 0x20, 0, 0x88]
        );
        let c2 = Command::new(0x00, 0xB0, 0x01, 0x02).with_le(256);
        assert_eq!(
            &c2.encode(LengthForm::Short).unwrap()[..],
            &[0, 0xB0, 1, 2, 0]
        );
        let c3 = Command::new(0x00, 0xA4, 0x02, 0x0C).with_data(&[0x00, 0x16]);
        assert_eq!(
            &c3.encode(LengthForm::Short).unwrap()[..],
            &[0, 0xA4, 2, 0x0C, 2, 0, 0x16]
        );
        let c4 = Command::new(0x00, 0xA4, 0x04, 0x00)
            .with_data(&[0xE8, 0x28, 0xBD, 0x08, 0x0F])
            .with_le(256);
        assert_eq!(
            &c4.encode(LengthForm::Short).unwrap()[..],
            &[0, 0xA4, 4, 0, 5, 0xE8, 0x28, 0xBD, 0x08, 0x0F, 0]
        );
    }

    #[test]
    fn encodes_extended() {
        let c2 = Command::new(0x00, 0xB0, 0x00, 0x00).with_le(65_536);
        assert_eq!(
            &c2.encode(LengthForm::Extended).unwrap()[..],
            &[0, 0xB0, 0, 0, 0, 0, 0]
        );
        let c4 = Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(&[0xAB; 256])
            .with_le(65_536);
        let raw = c4.encode(LengthForm::Extended).unwrap();
        assert_eq!(&raw[..7], &[0, 0x2A, 0x9E, 0x9A, 0x00, 0x01, 0x00]);
        assert_eq!(raw.len(), 7 + 256 + 2);
        assert_eq!(&raw[263..], &[0, 0]);
        let c3 = Command::new(0x00, 0xD6, 0x00, 0x00).with_data(&[1; 300]);
        let raw = c3.encode(LengthForm::Extended).unwrap();
        assert_eq!(&raw[4..7], &[0x00, 0x01, 0x2C]);
        assert_eq!(raw.len(), 307);
    }

    #[test]
    fn refuses_what_cannot_be_encoded() {
        let long = Command::new(0, 0xD6, 0, 0).with_data(&[0; 256]);
        assert!(long.encode(LengthForm::Short).is_err());
        let le0 = Command::new(0, 0xB0, 0, 0).with_le(0);
        assert!(le0.encode(LengthForm::Short).is_err());
        let le_big = Command::new(0, 0xB0, 0, 0).with_le(257);
        assert!(le_big.encode(LengthForm::Short).is_err());
        assert!(le_big.encode(LengthForm::Extended).is_ok());
        let too_big = Command::new(0, 0xD6, 0, 0).with_data(&vec![0; 65_536]);
        assert!(too_big.encode(LengthForm::Extended).is_err());
    }

    #[test]
    fn status_words_round_trip() {
        for sw in [
            0x9000, 0x63C0, 0x63C5, 0x63CF, 0x6983, 0x6982, 0x6985, 0x6A82, 0x6A86, 0x6700, 0x6D00,
            0x6E00, 0x6282, 0x6B00,
        ] {
            assert_eq!(StatusWord::from_u16(sw).to_u16(), sw);
        }
        assert_eq!(
            StatusWord::from_u16(0x63C3),
            StatusWord::WrongPin { tries_left: 3 }
        );
        assert_eq!(StatusWord::from_u16(0x6300), StatusWord::Other(0x6300));
        assert_eq!(StatusWord::Ok.to_string(), "9000 (ok)");
    }

    #[test]
    fn truncated_responses_are_errors() {
        assert!(matches!(
            Response::parse(vec![]),
            Err(CardError::Malformed(_))
        ));
        assert!(matches!(
            Response::parse(vec![0x90]),
            Err(CardError::Malformed(_))
        ));
        let r = Response::parse(vec![1, 2, 0x90, 0x00]).unwrap();
        assert_eq!((r.data, r.sw), (vec![1, 2], 0x9000));
        let mut ch = Channel::new(Scripted::new(&[&[0x90]]));
        let cmd = Command::new(0, 0xB0, 0, 0).with_le(16);
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    }

    #[test]
    fn more_data_than_asked_is_refused() {
        let mut ch = Channel::new(Scripted::new(&[&[1, 2, 3, 0x90, 0x00]]));
        let cmd = Command::new(0, 0xB0, 0, 0).with_le(2);
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
        // Data in the answer to a command that asked for none.
        let mut ch = Channel::new(Scripted::new(&[&[1, 0x90, 0x00]]));
        let cmd = Command::new(0, 0xA4, 2, 0x0C).with_data(&[0, 0x16]);
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    }

    #[test]
    fn get_response_collects_the_rest() {
        let mut ch = Channel::new(Scripted::new(&[
            &[0x61, 0x03],
            &[1, 2, 3, 0x61, 0x02],
            &[4, 5, 0x90, 0x00],
        ]));
        let cmd = Command::new(0, 0xCA, 0, 0).with_le(256);
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!((resp.data, resp.sw), (vec![1, 2, 3, 4, 5], 0x9000));
        let sent = &ch.transport_mut().sent;
        assert_eq!(sent[1], vec![0x00, 0xC0, 0x00, 0x00, 0x03]);
        assert_eq!(sent[2], vec![0x00, 0xC0, 0x00, 0x00, 0x02]);
    }

    #[test]
    fn get_response_is_bounded() {
        // A card that answers 61xx forever.
        let endless: Vec<&[u8]> = vec![&[0x61, 0x00]; MAX_GET_RESPONSE + 10];
        let mut ch = Channel::new(Scripted::new(&endless));
        let cmd = Command::new(0, 0xCA, 0, 0).with_le(256);
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
        assert!(ch.transport_mut().sent.len() <= MAX_GET_RESPONSE + 1);
        // A card that announces bytes and sends too many in GET RESPONSE.
        let mut ch = Channel::new(Scripted::new(&[&[0x61, 0x01], &[1, 2, 0x90, 0x00]]));
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    }

    #[test]
    fn wrong_le_is_resent_once() {
        let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x04], &[9, 8, 7, 6, 0x90, 0x00]]));
        let cmd = Command::new(0, 0xB0, 0, 0x10).with_le(256);
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!(resp.data, vec![9, 8, 7, 6]);
        assert_eq!(ch.transport_mut().sent[1], vec![0, 0xB0, 0, 0x10, 0x04]);
        // 6C00 means 256.
        let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x00], &[0x90, 0x00]]));
        ch.transmit(&cmd).unwrap();
        assert_eq!(ch.transport_mut().sent[1], vec![0, 0xB0, 0, 0x10, 0x00]);
        // A second 6Cxx is handed back, not chased.
        let mut ch = Channel::new(Scripted::new(&[&[0x6C, 0x04], &[0x6C, 0x02]]));
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!(resp.sw, 0x6C02);
        assert_eq!(ch.transport_mut().sent.len(), 2);
    }

    #[test]
    fn wrong_le_then_get_response() {
        let mut ch = Channel::new(Scripted::new(&[
            &[0x6C, 0x02],
            &[1, 0x61, 0x01],
            &[2, 0x90, 0x00],
        ]));
        let cmd = Command::new(0, 0xB0, 0, 0).with_le(10);
        assert_eq!(ch.transmit(&cmd).unwrap().data, vec![1, 2]);
    }

    #[test]
    fn long_data_goes_extended_when_allowed() {
        let mut ch = Channel::new(Scripted::new(&[&[0xAA; 256]
            .iter()
            .copied()
            .chain([0x90, 0])
            .collect::<Vec<_>>()]));
        let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(&[0x01; 256])
            .with_le(65_536);
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!(resp.data.len(), 256);
        let sent = &ch.transport_mut().sent;
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0][4..7], &[0x00, 0x01, 0x00]);
    }

    #[test]
    fn chaining_on_short_only_channels() {
        let mut ch = Channel::short_only(Scripted::new(&[
            &[0x90, 0x00],
            &[0x61, 0x00],
            &[0x55; 256]
                .iter()
                .copied()
                .chain([0x90, 0])
                .collect::<Vec<_>>(),
        ]));
        let data: Vec<u8> = (0..=255u8).collect();
        let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A)
            .with_data(&data)
            .with_le(65_536);
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!(resp.data.len(), 256);
        let sent = &ch.transport_mut().sent;
        assert_eq!(sent[0][0], 0x10);
        assert_eq!(sent[0][4], 255);
        assert_eq!(&sent[0][5..], &data[..255]);
        assert_eq!(sent[0].len(), 5 + 255, "no Le on a chained piece");
        assert_eq!(sent[1], vec![0x00, 0x2A, 0x9E, 0x9A, 0x01, 0xFF, 0x00]);
        assert_eq!(sent[2], vec![0x00, 0xC0, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn chaining_stops_at_a_refused_piece() {
        let mut ch = Channel::short_only(Scripted::new(&[&[0x68, 0x84]]));
        let cmd = Command::new(0x00, 0x2A, 0x9E, 0x9A).with_data(&[0; 600]);
        let resp = ch.transmit(&cmd).unwrap();
        assert_eq!(resp.sw, 0x6884);
        assert_eq!(ch.transport_mut().sent.len(), 1);
        // Data in an intermediate answer is malformed.
        let mut ch = Channel::short_only(Scripted::new(&[&[1, 0x90, 0x00]]));
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Malformed(_))));
    }

    #[test]
    fn transport_errors_pass_through() {
        let mut t = Scripted::new(&[]);
        t.replies.push_back(Err(CardError::Removed));
        let mut ch = Channel::new(t);
        let cmd = Command::new(0, 0xB0, 0, 0).with_le(1);
        assert!(matches!(ch.transmit(&cmd), Err(CardError::Removed)));
    }

    #[test]
    fn debug_never_shows_data() {
        let pin = Command::new(0, 0x20, 0, 0x88).with_data(b"1234");
        let shown = format!("{pin:?}");
        assert!(!shown.contains("1234") && !shown.contains("49, 50"));
    }
}
