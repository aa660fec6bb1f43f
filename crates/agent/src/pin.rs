//! Where the card PIN comes from: a fixed value (library callers, tests), one line of standard
//! input per request (scripts), or a no-echo prompt on the controlling terminal.
//!
//! The PIN stays on the terminal: it goes to the card and nowhere else. Every buffer that held
//! it is wiped ([`Zeroizing`]); nothing here logs it.
//!
//! The one place the agent needs `unsafe`: std has no API for a terminal's echo (termios) or
//! for a read that wakes to look at a cancel flag (poll), so both are libc calls. Each block
//! says why it is sound.

#![allow(unsafe_code)]

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::AgentError;

/// Longest PIN line read (a PIN is at most 16 characters; the rest is discarded).
const MAX_LINE: usize = 256;
/// How often a waiting prompt looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Set when the PIN is no longer wanted (the card was removed): a waiting prompt gives up.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the card holder is asked for.
#[derive(Debug, Clone)]
pub struct PinRequest {
    pub reader: String,
    /// The certificate's common name (romanised name): untrusted text, cleaned for display.
    pub holder: Option<String>,
    /// Tries left before the card locks (`None` if the card did not say).
    pub tries_left: Option<u8>,
    pub cancel: CancelToken,
}

impl PinRequest {
    /// `PIN for YAMADA TARO (Virtual PCD 00 01, 15 tries left) / PIN: `
    pub fn prompt(&self) -> String {
        let mut s = String::from("PIN");
        if let Some(h) = &self.holder {
            s.push_str(" for ");
            s.push_str(h);
        }
        s.push_str(" (");
        s.push_str(&self.reader);
        if let Some(n) = self.tries_left {
            s.push_str(&format!(", {n} tries left / 残り{n}回"));
        }
        s.push_str(") / 暗証番号: ");
        s
    }
}

/// A source of card PINs. Called from a blocking thread; may block until the PIN is entered,
/// and should give up with [`AgentError::PinCancelled`] soon after `request.cancel` is set.
pub trait PinSource: Send + Sync {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError>;

    /// Whether a watcher should ask again at once after a wrong PIN (a person at a prompt), or
    /// wait for the card to be inserted again (a script that gives one PIN per insertion).
    fn retry_after_wrong_pin(&self) -> bool {
        false
    }
}

/// The same PIN every time (library callers and tests).
pub struct FixedPin(Zeroizing<String>);

impl FixedPin {
    pub fn new(pin: &str) -> FixedPin {
        FixedPin(Zeroizing::new(pin.to_string()))
    }
}

impl std::fmt::Debug for FixedPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedPin(..)")
    }
}

impl PinSource for FixedPin {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        if request.cancel.is_cancelled() {
            return Err(AgentError::PinCancelled);
        }
        Ok(self.0.clone())
    }
}

/// One line of standard input per PIN (`--pin-stdin`). Reads the file descriptor directly so
/// that no library buffer keeps a copy, and stops waiting when cancelled.
pub struct StdinPin {
    buf: Mutex<Zeroizing<Vec<u8>>>,
    fd: RawFd,
}

impl Default for StdinPin {
    fn default() -> Self {
        StdinPin::new()
    }
}

impl StdinPin {
    pub fn new() -> StdinPin {
        StdinPin {
            buf: Mutex::new(Zeroizing::new(Vec::new())),
            fd: std::io::stdin().as_raw_fd(),
        }
    }
}

impl PinSource for StdinPin {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        read_line(self.fd, &mut buf, &request.cancel, true)
    }
}

/// Reads up to a newline from `fd` into `buf` (which keeps what follows for the next call),
/// waking every [`CANCEL_POLL`] to look at `cancel`.
fn read_line(
    fd: RawFd,
    buf: &mut Zeroizing<Vec<u8>>,
    cancel: &CancelToken,
    eof_ends_line: bool,
) -> Result<Zeroizing<String>, AgentError> {
    let mut chunk = Zeroizing::new([0u8; 64]);
    loop {
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Zeroizing<Vec<u8>> = Zeroizing::new(buf.drain(..=pos).collect());
            return line_to_pin(&line[..pos]);
        }
        if cancel.is_cancelled() {
            return Err(AgentError::PinCancelled);
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one initialised pollfd that lives across the call, and nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, CANCEL_POLL.as_millis() as libc::c_int) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(AgentError::PinInput(e.to_string()));
        }
        if n == 0 {
            continue;
        }
        // SAFETY: `chunk` is a buffer we own and may write; read writes at most its length.
        let got = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            return Err(AgentError::PinInput(e.to_string()));
        }
        if got == 0 {
            if eof_ends_line && !buf.is_empty() {
                let line: Zeroizing<Vec<u8>> = Zeroizing::new(std::mem::take(&mut **buf));
                return line_to_pin(&line);
            }
            return Err(AgentError::PinInput("end of input".into()));
        }
        // A runaway line is kept bounded: past MAX_LINE + 1 bytes the rest of it is dropped
        // (it is too long for a PIN either way); the lines after it are kept.
        let mut current = buf.len() - buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        for &b in &chunk[..got as usize] {
            if b == b'\n' {
                buf.push(b);
                current = 0;
            } else if current <= MAX_LINE {
                buf.push(b);
                current += 1;
            }
        }
    }
}

fn line_to_pin(line: &[u8]) -> Result<Zeroizing<String>, AgentError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(AgentError::PinFormat);
    }
    match std::str::from_utf8(line) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(AgentError::PinFormat),
    }
}

/// A prompt on the controlling terminal (`/dev/tty`) with echo off.
#[derive(Debug, Default)]
pub struct TerminalPin {
    lock: Mutex<()>,
}

impl TerminalPin {
    pub fn new() -> TerminalPin {
        TerminalPin::default()
    }
}

/// The terminal settings before a prompt turned echo off, for [`restore_terminal`].
static SAVED: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);

/// Turns echo back on if a prompt is in progress: call it before exiting on a signal.
pub fn restore_terminal() {
    if let Some((fd, t)) = SAVED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        // SAFETY: `t` is a termios that tcgetattr filled; tcsetattr only reads it. `fd` is still
        // open: the prompt's /dev/tty closes only after EchoOff's drop has cleared SAVED, which
        // waits for this lock.
        unsafe {
            libc::tcsetattr(*fd, libc::TCSAFLUSH, t);
        }
        // SAFETY: one byte from a static buffer, to the same open descriptor.
        unsafe {
            libc::write(*fd, b"\n".as_ptr().cast(), 1);
        }
    }
}

struct EchoOff {
    fd: RawFd,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: RawFd) -> Result<EchoOff, AgentError> {
        // SAFETY: termios is plain C data, valid when all zero; tcgetattr fills it below.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is the caller's open /dev/tty; `t` is a termios we own to write to.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Err(AgentError::PinInput(format!(
                "the terminal's settings cannot be read: {}",
                std::io::Error::last_os_error()
            )));
        }
        let saved = t;
        t.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        t.c_lflag |= libc::ECHONL | libc::ICANON;
        *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = Some((fd, saved));
        // SAFETY: the same open descriptor; `t` is a valid termios that tcsetattr only reads.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &t) } != 0 {
            *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Err(AgentError::PinInput(format!(
                "echo cannot be turned off: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: `saved` is what tcgetattr read from `fd`, which the prompt keeps open for
        // as long as this guard lives; tcsetattr only reads it.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
        }
        *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl PinSource for TerminalPin {
    fn pin(&self, request: &PinRequest) -> Result<Zeroizing<String>, AgentError> {
        let _one = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|e| {
                AgentError::PinInput(format!(
                    "no terminal to ask for the PIN on ({e}); use --pin-stdin"
                ))
            })?;
        let fd = tty.as_raw_fd();
        let echo = EchoOff::new(fd)?;
        let _ = tty.write_all(request.prompt().as_bytes());
        let _ = tty.flush();
        let mut buf = Zeroizing::new(Vec::new());
        let result = read_line(fd, &mut buf, &request.cancel, false);
        drop(echo);
        if matches!(result, Err(AgentError::PinCancelled)) {
            let _ = tty.write_all(b"\n");
        }
        result
    }

    fn retry_after_wrong_pin(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write end, and the read end with its descriptor (closed when the reader drops).
    fn pipe() -> (std::io::PipeWriter, std::io::PipeReader, RawFd) {
        let (r, w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        (w, r, fd)
    }

    #[test]
    fn lines_one_per_request_and_cancel() {
        let (mut w, reader, r) = pipe();
        w.write_all(b"1234\r\n5678\n9").unwrap();
        let cancel = CancelToken::new();
        let mut buf = Zeroizing::new(Vec::new());
        assert_eq!(
            read_line(r, &mut buf, &cancel, true).unwrap().as_str(),
            "1234"
        );
        assert_eq!(
            read_line(r, &mut buf, &cancel, true).unwrap().as_str(),
            "5678"
        );
        // A partial line waits; cancelling ends the wait.
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            c2.cancel();
        });
        assert!(matches!(
            read_line(r, &mut buf, &cancel, true),
            Err(AgentError::PinCancelled)
        ));
        t.join().unwrap();
        drop(w);
        assert_eq!(
            read_line(r, &mut buf, &CancelToken::new(), true)
                .unwrap()
                .as_str(),
            "9"
        );
        assert!(matches!(
            read_line(r, &mut buf, &CancelToken::new(), true),
            Err(AgentError::PinInput(_))
        ));
        drop(reader);
    }

    #[test]
    fn runaway_lines_are_bounded() {
        let (mut w, reader, r) = pipe();
        let long = vec![b'7'; 5000];
        let writer = std::thread::spawn(move || {
            w.write_all(&long).unwrap();
            w.write_all(b"\n4321\n").unwrap();
        });
        let mut buf = Zeroizing::new(Vec::new());
        let cancel = CancelToken::new();
        assert!(matches!(
            read_line(r, &mut buf, &cancel, true),
            Err(AgentError::PinFormat)
        ));
        assert_eq!(
            read_line(r, &mut buf, &cancel, true).unwrap().as_str(),
            "4321"
        );
        writer.join().unwrap();
        drop(reader);
    }
}
