//! The vpcd protocol: the card side of vsmartcard's virtual reader.
//!
//! The card connects to the reader's TCP port (that is the insertion). Each message either
//! way is a 2-byte big-endian length and a payload. A 1-byte payload from the reader is a
//! control: `00` power off, `01` power on, `02` reset, `04` get ATR (answered with the ATR).
//! Longer payloads are command APDUs, answered with response data + SW.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::Chip;

/// The first vpcd reader (`Virtual PCD 00 00`); the second is on the next port.
pub const DEFAULT_PORT: u16 = 35963;

/// A virtual card in a vpcd reader. Dropping it removes the card.
pub struct VirtualCard {
    stream: TcpStream,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl VirtualCard {
    /// Inserts the card: connects to the vpcd reader at `addr` and answers it from a thread.
    pub fn connect<C: Chip>(
        engine: &Arc<Mutex<C>>,
        addr: impl ToSocketAddrs,
    ) -> io::Result<VirtualCard> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let theirs = stream.try_clone()?;
        let engine = Arc::clone(engine);
        let thread = std::thread::Builder::new()
            .name("vpcd-card".into())
            .spawn(move || serve(&engine, theirs))?;
        Ok(VirtualCard {
            stream,
            thread: Some(thread),
        })
    }

    /// False once the reader closed the link (pcscd stopped) or it broke.
    pub fn is_inserted(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Removes the card: closes the link and waits for the card's thread.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.close()
    }

    fn close(&mut self) -> io::Result<()> {
        // Shutting down wakes the thread's blocking read; errors from that read are ours.
        let _ = self.stream.shutdown(Shutdown::Both);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) if !closed_by_us(&e) => Err(e),
            Some(Err(_)) => Err(io::Error::other("the card thread panicked")),
            _ => Ok(()),
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn closed_by_us(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Answers the reader until it closes the link; the card then loses power.
fn serve<C: Chip>(engine: &Mutex<C>, mut stream: TcpStream) -> io::Result<()> {
    let result = serve_messages(engine, &mut stream);
    engine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .power_off();
    match result {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
        other => other,
    }
}

fn serve_messages<C: Chip>(engine: &Mutex<C>, stream: &mut TcpStream) -> io::Result<()> {
    let mut msg = Vec::new();
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        // At most 64 KiB: the length field bounds the allocation.
        msg.resize(usize::from(u16::from_be_bytes(len)), 0);
        stream.read_exact(&mut msg)?;
        let reply = {
            let mut card = engine.lock().unwrap_or_else(PoisonError::into_inner);
            match msg.as_slice() {
                [] => None,
                [0x00] => {
                    card.power_off();
                    None
                }
                [0x01] => {
                    card.power_on();
                    None
                }
                [0x02] => {
                    card.reset();
                    None
                }
                [0x04] => Some(card.atr().to_vec()),
                // Unknown controls are ignored, as vicc does.
                [_] => None,
                apdu => Some(card.process(apdu)),
            }
        };
        if let Some(reply) = reply {
            let n = u16::try_from(reply.len())
                .map_err(|_| io::Error::other("answer longer than vpcd can carry"))?;
            let mut out = Vec::with_capacity(2 + reply.len());
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&reply);
            stream.write_all(&out)?;
        }
    }
}
