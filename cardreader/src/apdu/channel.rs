//! The exchange rules: a command in the length form the reader and card can take (extended
//! length, or command chaining for short-only ones), then `6Cxx` and `61xx` resolved, with every
//! answer checked against what was asked.

use super::{
    CardError, Command, EXTENDED_MAX_LE, LengthForm, MAX_CHAIN_PIECES, MAX_GET_RESPONSE,
    MAX_RESPONSE_DATA, Response, SHORT_MAX_DATA, SHORT_MAX_LE, Transport,
};

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
