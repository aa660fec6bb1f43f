//! ISO/IEC 7816-4 command and response APDUs, status words, and the exchange rules that hide
//! reader and card quirks from the profiles above: extended length or command chaining,
//! `61xx` (GET RESPONSE) and `6Cxx` (resend with the right Le).
//!
//! Everything a card sends back is treated as hostile: lengths are checked against what was
//! asked, and every loop has a fixed bound.

use std::fmt;

use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

mod channel;
mod read;
#[cfg(test)]
mod tests;

pub use channel::Channel;
pub(crate) use read::{ReadError, read_der_file, read_small_file};

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
