//! `sekisho-agent`: the terminal agent of Sekisho. Signs the physician in to the gateway with
//! the HPKI card (the PIN goes to the card only), signs out when the card is removed, enrolls
//! the terminal with a one-time access code, records a patient's consent with their patient
//! card (`consent`), and has the card sign an emergency access declaration (`emergency`).
//!
//! Exit status: 0 done · 1 other (and a declaration declined) · 2 usage · 3 reader or card ·
//! 4 PIN wrong or card locked · 5 refused by the gateway · 6 gateway unreachable, TLS, or an
//! answer not understood (or a text the card must not sign) · 7 configuration or files ·
//! 8 no patient card · 130 interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use sekisho_agent::{
    self as agent, AgentConfig, AgentError, Confirm, Declaration, DeclarationRequest,
    EnrollOptions, LogoutReason, PinSource, Retry, StdinPin, Summary, TerminalConfirm, TerminalPin,
    WatchEvent, clean, format_time,
};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "sekisho-agent",
    version,
    about = "Sekisho terminal agent: HPKI card login to the gateway, patient consent with the patient card, emergency access declarations signed by the card, and terminal enrollment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GatewayArgs {
    /// The gateway's terminal listener, https://HOST:PORT.
    #[arg(long, env = "SEKISHO_GATEWAY")]
    gateway: String,
    /// This terminal's certificate (PEM).
    #[arg(long, env = "SEKISHO_TERMINAL_CERT")]
    cert: PathBuf,
    /// This terminal's private key (PEM).
    #[arg(long, env = "SEKISHO_TERMINAL_KEY")]
    key: PathBuf,
    /// The deployment's CA certificate (PEM).
    #[arg(long, env = "SEKISHO_CA")]
    ca: PathBuf,
}

#[derive(Args)]
struct CardArgs {
    /// The card reader to use (default: the first one holding an HPKI card).
    #[arg(long, env = "SEKISHO_READER")]
    reader: Option<String>,
    /// Read the card PIN as one line of standard input (one line per card insertion with
    /// `watch`) instead of asking on the terminal.
    #[arg(long)]
    pin_stdin: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in with the HPKI card in the reader.
    Login {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        card: CardArgs,
    },
    /// Sign in whenever a card is inserted and out when it is removed (runs until stopped).
    Watch {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        card: CardArgs,
    },
    /// Show who is signed in on this terminal.
    Status {
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// End this terminal's session.
    Logout {
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Open a consent window for the signed-in physician and the patient whose patient card is
    /// in a reader: the card signs the gateway's challenge.
    Consent {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// The reader holding the patient card (default: the first reader holding one; a
        /// reader with the physician's HPKI card is skipped).
        #[arg(long, env = "SEKISHO_PATIENT_READER")]
        reader: Option<String>,
        /// Only read the card's patient id, and attest as the signed-in physician that the
        /// patient presented it (lower assurance; only where the gateway allows it).
        #[arg(long)]
        attest: bool,
    },
    /// Declare an emergency access (break-glass) signed by the HPKI card, or sign the
    /// declarations prepared on this terminal's page (/.sekisho/emergency).
    #[command(after_help = EMERGENCY_HELP)]
    Emergency {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        card: CardArgs,
        #[command(flatten)]
        what: EmergencyWhat,
        /// The reason category, one of this network's codes (e.g. unconscious, disaster).
        #[arg(long, requires = "patient")]
        category: Option<String>,
        /// Why, in the physician's words (1 to 1,000 characters); signed as written.
        #[arg(long, requires = "patient")]
        justification: Option<String>,
        /// Sign without asking for confirmation (scripts); the declaration is still printed.
        /// With --pending or --declaration the agent cannot know what the physician meant to
        /// declare, so only their reading checks the content: confirm those at the terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Enroll this terminal with a one-time access code: the key (and the WireGuard key) is
    /// made here.
    Enroll {
        /// The enrollment listener, https://HOST:8444.
        #[arg(long, env = "SEKISHO_ENROLL_URL")]
        enroll_url: String,
        /// The deployment's CA certificate (PEM).
        #[arg(long, env = "SEKISHO_CA")]
        ca: PathBuf,
        /// The access code, XXXX-XXXX-XXXX.
        #[arg(long)]
        code: String,
        /// The access code's PIN (8 digits).
        #[arg(long, env = "SEKISHO_ENROLL_PIN", hide_env_values = true)]
        pin: String,
        /// Directory for <terminal>.crt, <terminal>.key and ca.crt, and <terminal>.wg.conf
        /// (the WireGuard tunnel) when the gateway has one.
        #[arg(long)]
        out: PathBuf,
        /// File name for the certificate and key (default: the terminal id).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Which declaration `emergency` signs: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct EmergencyWhat {
    /// Begin a declaration for this patient (network patient id), with --category and
    /// --justification, and sign it.
    #[arg(long, requires_all = ["category", "justification"])]
    patient: Option<String>,
    /// Sign every declaration prepared on this terminal's page that waits for the card.
    #[arg(long)]
    pending: bool,
    /// Sign the prepared declaration with this id.
    #[arg(long, value_name = "ID")]
    declaration: Option<String>,
}

const EMERGENCY_HELP: &str = "\
Examples:
  sekisho-agent emergency --gateway https://gw.example.jp:8443 --cert T.crt --key T.key \\
      --ca ca.crt --patient P-0001 --category unconscious \\
      --justification '救急搬送、意識障害。家族と連絡が取れない'
  sekisho-agent emergency --pending          (with the same gateway options)
  sekisho-agent emergency --declaration bg-0001

The physician must be signed in on this terminal with the same HPKI card (login or watch).
Before the card signs, the agent checks the text the gateway sent: it must start with
sekisho-break-glass:v1, have exactly the lines gateway, terminal, declaration, user, patient,
category, justification, declared-at and nonce in the one form a declaration is written in
(no CR or other control character, at most 8 KiB), name this gateway (the --gateway host)
and this terminal (its certificate's URN), be dated within a day of this terminal's clock,
and, with --patient, carry the patient, category and justification given here. Anything
else is refused without signing (exit 6). The declaration is shown in Japanese and English
and must be confirmed (--yes skips the question); the card's PIN is asked every time.
On success it prints until when access is granted (JST), or that it waits for a second
person's approval (child protection).

緊急時アクセス（ブレークグラス）の宣言に、HPKIカード（認証用）で署名します。署名の前に宣言の
内容（患者・区分・理由・日時・端末・ゲートウェイ）を確認し、カードの暗証番号を入力します。

Exit status: 0 signed · 1 declined · 2 usage · 3 reader or card · 4 PIN wrong or card locked ·
5 refused by the gateway (e.g. break_glass_not_permitted) · 6 gateway unreachable, or a text
the card must not sign · 7 configuration or files · 130 interrupted.";

/// `--yes`: the declaration is printed (for the record) and signed without a question.
struct PrintedConfirm;

impl Confirm for PrintedConfirm {
    fn confirm(&self, declaration: &Declaration) -> Result<bool, AgentError> {
        println!("{}", agent::describe_declaration(declaration));
        Ok(true)
    }
}

fn config(g: GatewayArgs, reader: Option<String>) -> AgentConfig {
    AgentConfig {
        gateway: g.gateway,
        cert: g.cert,
        key: g.key,
        ca: g.ca,
        reader,
    }
}

fn pins(card: &CardArgs) -> Arc<dyn PinSource> {
    if card.pin_stdin {
        Arc::new(StdinPin::new())
    } else {
        Arc::new(TerminalPin::new())
    }
}

fn report(e: &AgentError) -> ExitCode {
    eprintln!("sekisho-agent: {e}");
    eprintln!("               {}", e.message_ja());
    ExitCode::from(e.exit_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // A PIN prompt still waiting on its blocking thread (after Ctrl-C) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(300));
    code
}

/// Runs `op`; Ctrl-C puts the terminal's echo back and exits 130.
async fn interruptible<T>(op: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = op => Some(r),
        _ = tokio::signal::ctrl_c() => {
            agent::restore_terminal();
            eprintln!("sekisho-agent: interrupted / 中断しました");
            None
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Login { gateway, card } => {
            let pins = pins(&card);
            let cfg = config(gateway, card.reader);
            match interruptible(agent::login_with(&cfg, pins)).await {
                None => ExitCode::from(130),
                Some(Ok(info)) => {
                    println!("Signed in / ログインしました: {}", info.summary());
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => report(&e),
            }
        }
        Command::Watch { gateway, card } => {
            let pins = pins(&card);
            let cfg = config(gateway, card.reader);
            watch(cfg, pins).await
        }
        Command::Status { gateway } => {
            let cfg = config(gateway, None);
            match interruptible(agent::status(&cfg)).await {
                None => ExitCode::from(130),
                Some(Ok(s)) if s.signed_in => {
                    let mut line = format!(
                        "Signed in / ログイン中: {} ({})",
                        clean(s.name.as_deref().unwrap_or("?"), 120),
                        clean(s.user.as_deref().unwrap_or("?"), 120)
                    );
                    if let Some(m) = &s.method {
                        line.push_str(&format!(" by {}", clean(m, 20)));
                    }
                    if let Some(q) = &s.qualification {
                        line.push_str(&format!(" — {}", clean(q, 80)));
                    }
                    if let Some(t) = s.expires_at {
                        line.push_str(&format!(", until {}", format_time(t)));
                    }
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Some(Ok(_)) => {
                    println!("Not signed in / ログインしていません");
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => report(&e),
            }
        }
        Command::Logout { gateway } => {
            let cfg = config(gateway, None);
            match interruptible(agent::logout(&cfg, LogoutReason::Logout)).await {
                None => ExitCode::from(130),
                Some(Ok(true)) => {
                    println!("Signed out / ログアウトしました");
                    ExitCode::SUCCESS
                }
                Some(Ok(false)) => {
                    println!("No session was open / ログイン中のセッションはありません");
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => report(&e),
            }
        }
        Command::Consent {
            gateway,
            reader,
            attest,
        } => {
            let cfg = config(gateway, None);
            match interruptible(agent::consent(&cfg, reader, attest)).await {
                None => ExitCode::from(130),
                Some(Ok(info)) => {
                    println!("{}", info.summary());
                    println!("{}", info.summary_ja());
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => report(&e),
            }
        }
        Command::Emergency {
            gateway,
            card,
            what,
            category,
            justification,
            yes,
        } => {
            let pins = pins(&card);
            let cfg = config(gateway, card.reader);
            let confirm: Arc<dyn Confirm> = if yes {
                Arc::new(PrintedConfirm)
            } else {
                Arc::new(TerminalConfirm)
            };
            emergency(cfg, what, category, justification, pins, confirm).await
        }
        Command::Enroll {
            enroll_url,
            ca,
            code,
            pin,
            out,
            name,
        } => {
            let opts = EnrollOptions {
                enroll_url,
                ca,
                code,
                pin: Zeroizing::new(pin),
                out,
                name,
            };
            match interruptible(agent::enroll(&opts)).await {
                None => ExitCode::from(130),
                Some(Ok(f)) => {
                    println!(
                        "Enrolled / 端末を登録しました: terminal {} of facility {} (serial {}, valid until {})",
                        f.terminal,
                        f.facility,
                        f.serial,
                        format_time(f.not_after)
                    );
                    println!("  certificate: {}", f.certificate.display());
                    println!("  key (0600):  {}", f.key.display());
                    println!("  CA:          {}", f.ca.display());
                    if let Some(wg) = &f.wireguard {
                        print_tunnel(wg, f.tunnel_address.as_deref());
                    }
                    if let Some(w) = &f.tunnel_warning {
                        println!("Warning: no WireGuard tunnel was set up: {w}");
                        println!("  警告: WireGuardトンネルは設定されていません: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => report(&e),
            }
        }
    }
}

async fn emergency(
    cfg: AgentConfig,
    what: EmergencyWhat,
    category: Option<String>,
    justification: Option<String>,
    pins: Arc<dyn PinSource>,
    confirm: Arc<dyn Confirm>,
) -> ExitCode {
    if let Some(patient) = what.patient {
        let request = DeclarationRequest {
            category: category.unwrap_or_default(),
            justification: justification.unwrap_or_default(),
            patient: Some(patient),
        };
        return match interruptible(agent::emergency_declare(&cfg, &request, pins, confirm)).await {
            None => ExitCode::from(130),
            Some(Ok(outcome)) => {
                println!("{}", outcome.summary());
                println!("{}", outcome.summary_ja());
                ExitCode::SUCCESS
            }
            Some(Err(e)) => report(&e),
        };
    }
    let only = what.declaration.as_deref();
    let results =
        match interruptible(agent::emergency_sign_pending(&cfg, only, pins, confirm)).await {
            None => return ExitCode::from(130),
            Some(Ok(r)) => r,
            Some(Err(e)) => return report(&e),
        };
    if results.is_empty() {
        println!(
            "No emergency declaration waits for this terminal's card / 署名待ちの緊急時アクセスの宣言はありません"
        );
        return ExitCode::SUCCESS;
    }
    let mut code = ExitCode::SUCCESS;
    let mut failed = false;
    for r in &results {
        match &r.result {
            Ok(outcome) => {
                println!("{}: {}", r.id, outcome.summary());
                println!("{}: {}", r.id, outcome.summary_ja());
            }
            Err(e) => {
                eprintln!("sekisho-agent: declaration {}: {e}", r.id);
                eprintln!("               {}", e.message_ja());
                if !failed {
                    failed = true;
                    code = ExitCode::from(e.exit_code());
                }
            }
        }
    }
    code
}

/// The `wg-quick` file enrollment wrote, and how to bring the tunnel up.
fn print_tunnel(wg: &Path, address: Option<&str>) {
    println!("  WireGuard (0600): {}", wg.display());
    if let Some(a) = address {
        println!("  tunnel address:   {a}");
    }
    // wg-quick takes a bare name for /etc/wireguard/NAME.conf: give it a path.
    let path = std::path::absolute(wg).unwrap_or_else(|_| wg.to_path_buf());
    println!(
        "Start the tunnel / トンネルを開始するには: wg-quick up {}",
        path.display()
    );
    // wg-quick names the interface after the file: at most 15 characters before `.conf`.
    let interface = wg
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".conf"))
        .unwrap_or_default();
    if interface.is_empty() || interface.len() > 15 {
        println!(
            "  (wg-quick wants at most 15 characters before .conf: copy it to e.g. /etc/wireguard/sekisho.conf and run wg-quick up sekisho)"
        );
        println!(
            "  （wg-quick のファイル名は .conf の前が15文字以内です。例: /etc/wireguard/sekisho.conf にコピーして wg-quick up sekisho）"
        );
    }
}

async fn watch(cfg: AgentConfig, pins: Arc<dyn PinSource>) -> ExitCode {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = cfg.reader.clone();
    let handle = agent::watch(cfg, pins, tx);
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sekisho-agent: cannot handle SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopping = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => print_event(&ev, reader.as_deref()),
                None => break false,
            },
            _ = tokio::signal::ctrl_c() => break true,
            _ = term.recv() => break true,
        }
    };
    if stopping {
        agent::restore_terminal();
        println!("Stopping; signing out / 終了します（ログアウトします）");
        let stop = handle.stop();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(ev) = rx.recv() => print_event(&ev, reader.as_deref()),
            }
        }
        while let Ok(ev) = rx.try_recv() {
            print_event(&ev, reader.as_deref());
        }
    }
    ExitCode::SUCCESS
}

fn print_event(ev: &WatchEvent, reader: Option<&str>) {
    match ev {
        WatchEvent::ServiceUnavailable => println!(
            "The smart-card service is not running (start pcscd); waiting for it / スマートカードサービス（pcscd）の起動を待っています"
        ),
        WatchEvent::Watching => println!(
            "Waiting for an HPKI card in {} / HPKIカードの挿入を待っています",
            reader.unwrap_or("any reader")
        ),
        WatchEvent::ReaderAdded { reader } => {
            println!("Reader connected / カードリーダー接続: {reader}")
        }
        WatchEvent::ReaderRemoved { reader } => {
            println!("Reader disconnected / カードリーダー切断: {reader}")
        }
        WatchEvent::CardInserted { reader } => {
            println!("Card inserted / カードが挿入されました: {reader}")
        }
        WatchEvent::CardWaiting { reader, in_use } => println!(
            "The card in {reader} waits: the card in {in_use} is in use / 他のカードを使用中です"
        ),
        WatchEvent::SignedIn { info, .. } => {
            println!("Signed in / ログインしました: {}", info.summary())
        }
        WatchEvent::LoginFailed {
            reader,
            error,
            retry,
        } => {
            println!("Login failed ({reader}): {error}");
            println!("  {}", error.message_ja());
            match retry {
                Retry::In(d) => println!(
                    "  Trying again in {} s / {}秒後に再試行します",
                    d.as_secs(),
                    d.as_secs()
                ),
                Retry::AskAgain => println!("  Enter the PIN again / PINを再入力してください"),
                Retry::Reinsert => println!(
                    "  Take the card out and insert it again to retry / カードを挿し直してください"
                ),
            }
        }
        WatchEvent::CardRemoved { reader } => {
            println!("Card removed / カードが抜かれました: {reader}")
        }
        WatchEvent::SignedOut { reason, ended, .. } => match (reason, ended) {
            (_, false) => println!("No session to end / ログイン中のセッションはありません"),
            (LogoutReason::CardRemoved, true) => {
                println!("Signed out (card removed) / ログアウトしました（カード抜去）")
            }
            (LogoutReason::Logout, true) => println!("Signed out / ログアウトしました"),
        },
        // Every few seconds while signed in: not worth a line.
        WatchEvent::Present { .. } => {}
        WatchEvent::PresenceFailed {
            reader,
            error,
            retry_in,
        } => {
            println!("The card's presence was not confirmed ({reader}): {error}");
            println!("  {}", error.message_ja());
            match retry_in {
                Some(d) => println!(
                    "  Trying again in {} s / {}秒後に再試行します",
                    d.as_secs(),
                    d.as_secs()
                ),
                None => println!(
                    "  Signed out; signing in again if the card is in / ログアウトしました。カードが挿入されていれば再ログインします"
                ),
            }
        }
        WatchEvent::LogoutFailed { error, retry_in } => {
            println!(
                "Sign-out not confirmed: {error}; trying again in {} s",
                retry_in.as_secs()
            );
            println!("  ログアウトを確認できません。再試行します。");
        }
        WatchEvent::Stopped => println!("Stopped / 停止しました"),
    }
}
