//! `sekisho-vcard`: a virtual card in a vpcd virtual reader, for tests and demos: an HPKI card
//! (`--auth-cert --auth-key --pin`, optionally `--sign-cert --sign-key`), or a Sekisho patient
//! card (`--patient-card --patient-id P --cert C --key K`, an ECDSA P-256 PKCS#8 key).
//!
//! Starting it inserts the card; killing it removes the card. On stdin, `remove`, `insert`
//! and `quit` do the same without a restart; `--remove-after SECS` removes it and exits. If
//! the reader goes away (pcscd restarts) the card waits and goes back in.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sekisho_cardreader::vcard::{
    AppFiles, CardEngine, Chip, DEFAULT_PORT, PatientCardEngine, Quirks, VirtualCard,
};

#[derive(Parser)]
#[command(
    about = "A virtual HPKI card, or Sekisho patient card, that plugs into a vpcd virtual reader"
)]
struct Args {
    /// vpcd host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// vpcd port: 35963 is `Virtual PCD 00 00`, 35964 `Virtual PCD 00 01`.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Be a Sekisho patient card (with --patient-id, --cert and --key) instead of an HPKI card.
    #[arg(long, requires_all = ["patient_id", "cert", "key"])]
    patient_card: bool,
    /// Patient card: the network patient id (EF 0001).
    #[arg(long, requires = "patient_card")]
    patient_id: Option<String>,
    /// Patient card: its certificate (PEM), which must name the patient id.
    #[arg(long, requires = "patient_card")]
    cert: Option<PathBuf>,
    /// Patient card: its key (ECDSA P-256, PKCS#8 PEM).
    #[arg(long, requires = "patient_card")]
    key: Option<PathBuf>,
    /// HPKI card: authentication certificate (PEM).
    #[arg(
        long,
        required_unless_present = "patient_card",
        conflicts_with = "patient_card"
    )]
    auth_cert: Option<PathBuf>,
    /// HPKI card: authentication key (PKCS#8 or PKCS#1 PEM, RSA).
    #[arg(
        long,
        required_unless_present = "patient_card",
        conflicts_with = "patient_card"
    )]
    auth_key: Option<PathBuf>,
    /// HPKI card: signature certificate (PEM); without it the card has no signature
    /// application.
    #[arg(long, requires = "sign_key", conflicts_with = "patient_card")]
    sign_cert: Option<PathBuf>,
    /// HPKI card: signature key (PEM).
    #[arg(long, requires = "sign_cert", conflicts_with = "patient_card")]
    sign_key: Option<PathBuf>,
    /// HPKI card: the PIN of both applications (a patient card has none).
    #[arg(
        long,
        env = "SEKISHO_VCARD_PIN",
        required_unless_present = "patient_card"
    )]
    pin: Option<String>,
    /// Remove the card after this many seconds, then exit.
    #[arg(long)]
    remove_after: Option<f64>,
    /// Know only the RID: SELECT by full AID answers 6A82.
    #[arg(long)]
    partial_select_only: bool,
    /// Older card: PSO answers 6D00, `80 2A 00 80` signs with card padding.
    #[arg(long)]
    card_pads: bool,
    /// No extended length.
    #[arg(long)]
    short_only: bool,
    /// T=0 habits: 61xx and 6Cxx.
    #[arg(long)]
    t0: bool,
}

enum Control {
    Insert,
    Remove,
    Quit,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sekisho-vcard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(cert: &Path, key: &Path) -> Result<AppFiles, String> {
    AppFiles::from_pem(&read(cert)?, &read(key)?)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn run(args: Args) -> Result<(), String> {
    let deadline = match args.remove_after {
        None => None,
        Some(secs) => {
            let d = Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("--remove-after {secs}: not a number of seconds"))?;
            Some(
                Instant::now()
                    .checked_add(d)
                    .ok_or_else(|| format!("--remove-after {secs}: too far ahead"))?,
            )
        }
    };
    let addr = format!("{}:{}", args.host, args.port);
    if args.patient_card {
        let (Some(id), Some(cert), Some(key)) = (&args.patient_id, &args.cert, &args.key) else {
            return Err("--patient-card needs --patient-id, --cert and --key".into());
        };
        let engine = PatientCardEngine::from_pem(id, &read(cert)?, &read(key)?)
            .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
        return serve(Arc::new(Mutex::new(engine)), &addr, deadline);
    }
    let (Some(auth_cert), Some(auth_key), Some(pin)) = (&args.auth_cert, &args.auth_key, &args.pin)
    else {
        return Err("an HPKI card needs --auth-cert, --auth-key and --pin".into());
    };
    let auth = load(auth_cert, auth_key)?;
    let sign = match (&args.sign_cert, &args.sign_key) {
        (Some(c), Some(k)) => Some(load(c, k)?),
        _ => None,
    };
    let quirks = Quirks {
        partial_select_only: args.partial_select_only,
        card_pads: args.card_pads,
        short_only: args.short_only,
        t0: args.t0,
    };
    let engine = CardEngine::new(auth, sign, pin, quirks).map_err(|e| e.to_string())?;
    serve(Arc::new(Mutex::new(engine)), &addr, deadline)
}

/// Inserts the card, then follows stdin (insert, remove, quit) and the deadline.
fn serve<C: Chip>(
    engine: Arc<Mutex<C>>,
    addr: &str,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let control = match line.trim() {
                "insert" => Control::Insert,
                "remove" => Control::Remove,
                "quit" => Control::Quit,
                "" => continue,
                other => {
                    eprintln!("sekisho-vcard: unknown command {other:?} (insert, remove, quit)");
                    continue;
                }
            };
            if tx.send(control).is_err() {
                break;
            }
        }
        // End of stdin changes nothing: the card stays until killed.
    });

    let mut card = Some(insert(&engine, addr));
    let mut wanted = true;
    loop {
        let wait = deadline.map_or(Duration::from_millis(200), |d| {
            d.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200))
        });
        match rx.recv_timeout(wait) {
            Ok(Control::Insert) => wanted = true,
            Ok(Control::Remove) => wanted = false,
            Ok(Control::Quit) => break,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !wanted {
            if let Some(c) = card.take() {
                let _ = c.disconnect();
                println!("removed");
            }
        } else if card.as_ref().is_none_or(|c| !c.is_inserted()) {
            if card.take().is_some() {
                eprintln!("sekisho-vcard: the reader closed the link; inserting again");
            }
            card = Some(insert(&engine, addr));
        }
    }
    if let Some(c) = card.take() {
        let _ = c.disconnect();
        println!("removed");
    }
    Ok(())
}

/// Connects to the reader, waiting for it if pcscd is not up yet.
fn insert<C: Chip>(engine: &Arc<Mutex<C>>, addr: &str) -> VirtualCard {
    let mut said = false;
    loop {
        match VirtualCard::connect(engine, addr) {
            Ok(card) => {
                println!("inserted into {addr}");
                return card;
            }
            Err(e) => {
                if !said {
                    eprintln!("sekisho-vcard: waiting for the vpcd reader at {addr}: {e}");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}
