//! Reading elementary files: READ BINARY in bounded chunks, a DER object up to the length its
//! header gives, a small file whole.

use super::{CardError, Channel, Command, SHORT_MAX_LE, StatusWord, Transport};

/// READ BINARY chunk: what every card and reader can do in short form.
const READ_CHUNK: usize = SHORT_MAX_LE;

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
fn read_binary<T: Transport>(
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
