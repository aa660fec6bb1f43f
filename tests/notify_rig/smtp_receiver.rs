//! A small SMTP server for the tests: EHLO, STARTTLS (with the test CA's certificate), AUTH
//! PLAIN, MAIL, RCPT, DATA (dot-stuffing undone), RSET, NOOP, QUIT. It records each message
//! with what the session was like (TLS, who authenticated).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::pki::TestPki;

#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub rcpt: Vec<String>,
    /// The message as sent (CRLF line ends, dot-stuffing undone).
    pub data: String,
    pub tls: bool,
    pub user: Option<String>,
}

/// What the server insists on.
#[derive(Clone)]
pub struct Policy {
    /// Offer STARTTLS and refuse mail before it.
    pub starttls: bool,
    /// Require AUTH PLAIN with this user and password.
    pub login: Option<(String, String)>,
}

pub struct SmtpReceiver {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl SmtpReceiver {
    pub async fn start(addr: SocketAddr, pki: &TestPki, policy: Policy) -> SmtpReceiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let acceptor = TlsAcceptor::from(pki.server.clone());
        let m = mails.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, policy, m) = (acceptor.clone(), policy.clone(), m.clone());
                tokio::spawn(async move {
                    if let Err(e) = session(Box::new(tcp), acceptor, policy, m).await {
                        eprintln!("test SMTP session: {e}");
                    }
                });
            }
        });
        SmtpReceiver { addr, mails, task }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn session(
    stream: Box<dyn Io>,
    acceptor: TlsAcceptor,
    policy: Policy,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    let mut tls = false;
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut rcpt: Vec<String> = Vec::new();
    io.write_all(b"220 test.invalid ESMTP ready\r\n").await?;
    io.flush().await?;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                let mut r = String::from("250-test.invalid\r\n");
                if policy.starttls && !tls {
                    r += "250-STARTTLS\r\n";
                }
                if policy.login.is_some() && tls {
                    r += "250-AUTH PLAIN\r\n";
                }
                r + "250 HELP\r\n"
            }
            "STARTTLS" if policy.starttls && !tls => {
                io.write_all(b"220 go ahead\r\n").await?;
                io.flush().await?;
                let tcp = io.into_inner();
                let stream = acceptor.accept(tcp).await?;
                io = BufReader::new(Box::new(stream));
                tls = true;
                (from, user) = (None, None);
                rcpt.clear();
                continue;
            }
            "AUTH" => {
                let arg = line.splitn(3, ' ').nth(2).map(str::to_string);
                let arg = match arg {
                    Some(a) => a,
                    None => {
                        io.write_all(b"334 \r\n").await?;
                        io.flush().await?;
                        let mut l = String::new();
                        io.read_line(&mut l).await?;
                        l.trim_end().to_string()
                    }
                };
                let decoded = B64.decode(arg.trim()).unwrap_or_default();
                let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
                match (&policy.login, parts.as_slice()) {
                    (Some((u, p)), [_, gu, gp]) if gu == &u.as_bytes() && gp == &p.as_bytes() => {
                        user = Some(u.clone());
                        "235 2.7.0 authenticated\r\n".into()
                    }
                    _ => "535 5.7.8 bad credentials\r\n".into(),
                }
            }
            "MAIL" if policy.starttls && !tls => "530 5.7.0 STARTTLS first\r\n".into(),
            "MAIL" if policy.login.is_some() && user.is_none() => {
                "530 5.7.0 authentication required\r\n".into()
            }
            "MAIL" => {
                from = Some(angle(&line));
                "250 2.1.0 ok\r\n".into()
            }
            "RCPT" if from.is_some() => {
                rcpt.push(angle(&line));
                "250 2.1.5 ok\r\n".into()
            }
            "DATA" if from.is_some() && !rcpt.is_empty() => {
                io.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                io.flush().await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if io.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data += l.strip_prefix('.').unwrap_or(&l);
                }
                mails.lock().unwrap().push(Mail {
                    from: from.take().unwrap(),
                    rcpt: std::mem::take(&mut rcpt),
                    data,
                    tls,
                    user: user.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
            "RSET" => {
                from = None;
                rcpt.clear();
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "QUIT" => {
                io.write_all(b"221 2.0.0 bye\r\n").await?;
                io.flush().await?;
                return Ok(());
            }
            _ => "503 5.5.1 bad sequence\r\n".into(),
        };
        io.write_all(reply.as_bytes()).await?;
        io.flush().await?;
    }
}

/// The address between < and > of a MAIL or RCPT line.
fn angle(line: &str) -> String {
    let s = line.split_once('<').map_or("", |(_, r)| r);
    s.split_once('>').map_or(s, |(a, _)| a).to_string()
}
