//! `sekisho notice …` and `sekisho maintenance …` (issue 13, R-OPS-1): notices to the
//! network's users, and maintenance windows — planned and announced beforehand, or started at
//! once in an emergency. Shown at `/.sekisho/notices` and counted in the `sekisho-notices`
//! header; while a window runs its audience's requests get a 503 page with the expected end,
//! except the terminals and people named for the maintenance. Each change is the operator's
//! act on record (event `operation`) before it is made, and reaches every replica within a
//! second.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use crate::notices::{NoticeAsk, audience, end_window, in_force, operation_record, parse_time};
use crate::oversight::jst;
use sekisho_store::notices::{self as rows, kind};

/// The texts and audience of a notice or window.
#[derive(Args, Debug)]
pub struct Text {
    /// The text in Japanese (shown first).
    #[arg(long)]
    ja: String,
    /// The text in English.
    #[arg(long)]
    en: String,
    /// Only for these facilities (repeat it); all facilities when not given.
    #[arg(long = "facility")]
    facilities: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum NoticeCmd {
    /// Post a notice to users (shown from --from, default now, until --until).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        text: Text,
        /// RFC 3339, or Japan time as "2026-12-05 22:00".
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        until: String,
    },
    /// Notices and maintenance windows: current ones, or with --days every one made lately.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        days: Option<u32>,
    },
    /// Take a notice down.
    Remove {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MaintenanceCmd {
    /// Plan a window: announced from now, in force from --start until --end.
    Schedule {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        text: Text,
        #[arg(long)]
        start: String,
        /// The expected end, shown on the 503 page.
        #[arg(long)]
        end: String,
        /// Terminals that keep going through during the window (repeat it).
        #[arg(long = "exempt-terminal")]
        exempt_terminals: Vec<String>,
        /// People (user ids) whose requests keep going through (repeat it).
        #[arg(long = "exempt-user")]
        exempt_users: Vec<String>,
    },
    /// Start a planned window now (--id), or an emergency one now until --end.
    Start {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, conflicts_with_all = ["end", "ja", "en", "facilities", "exempt_terminals", "exempt_users"])]
        id: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        ja: Option<String>,
        #[arg(long)]
        en: Option<String>,
        #[arg(long = "facility")]
        facilities: Vec<String>,
        #[arg(long = "exempt-terminal")]
        exempt_terminals: Vec<String>,
        #[arg(long = "exempt-user")]
        exempt_users: Vec<String>,
    },
    /// End a window now: --id, or every window in force.
    End {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: Option<String>,
    },
}

/// Checks, records and stores a notice or window, and says what became of it.
async fn add(data_dir: &Path, ask: NoticeAsk, op: &Operator) -> Result<i32> {
    let ask = ask.checked()?;
    let (dd, cfg, store) = open(data_dir).await?;
    let by = op.actor()?;
    let id = change(&dd, &cfg, &store, op, ask.record(), ask.open(&store, &by)).await?;
    let (from, to, who) = (jst(ask.start), jst(ask.end), audience(&ask.facilities));
    match (ask.maintenance, ask.now) {
        (false, _) => println!("Notice {id} shown {from} – {to} JST to {who}."),
        (true, true) => println!(
            "Maintenance {id} in force now until {to} JST (expected end) for {who}. Running gateways apply this within a second."
        ),
        (true, false) => println!(
            "Maintenance {id} scheduled {from} – {to} JST for {who}; announced at /.sekisho/notices from now."
        ),
    }
    Ok(0)
}

pub(super) async fn run_notice(cmd: NoticeCmd, op: &Operator) -> Result<i32> {
    match cmd {
        NoticeCmd::Add {
            data_dir,
            text,
            from,
            until,
        } => {
            let start = match from {
                Some(f) => parse_time(&f)?,
                None => sekisho_store::now(),
            };
            let ask = NoticeAsk::notice(
                &text.ja,
                &text.en,
                start,
                parse_time(&until)?,
                text.facilities,
            );
            add(&data_dir, ask, op).await
        }
        NoticeCmd::List { data_dir, days } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let list = match days {
                Some(d) => {
                    rows::since(&store, sekisho_store::now() - i64::from(d) * 86_400).await?
                }
                None => rows::current(&store).await?,
            };
            let t = sekisho_store::now();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<10} {:<12} {:<10} {:<16} {:<16} {:<20} TEXT",
                "ID", "KIND", "STATE", "FROM (JST)", "UNTIL (JST)", "FOR"
            )?;
            for n in list {
                let state = match () {
                    _ if n.ended_at.is_some() => "ended",
                    _ if n.in_force(t) => "in force",
                    _ if n.shown(t) && !n.is_maintenance() => "shown",
                    _ if n.ends_at <= t => "past",
                    _ => "upcoming",
                };
                writeln!(
                    out,
                    "{:<10} {:<12} {:<10} {:<16} {:<16} {:<20} {}",
                    n.id,
                    n.kind,
                    state,
                    jst(n.window_start()),
                    jst(n.ends_at),
                    audience(&n.audience),
                    n.text_ja.replace('\n', " ")
                )?;
            }
            Ok(0)
        }
        NoticeCmd::Remove { data_dir, id } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let rec = operation_record("notice_removed", id.clone());
            change(&dd, &cfg, &store, op, rec, async {
                if rows::end(&store, &id, kind::NOTICE).await? {
                    Ok(())
                } else {
                    bail!(
                        "no notice {id} that is not taken down already (see `sekisho notice list`)"
                    )
                }
            })
            .await?;
            println!("Notice {id} taken down.");
            Ok(0)
        }
    }
}

pub(super) async fn run_maintenance(cmd: MaintenanceCmd, op: &Operator) -> Result<i32> {
    match cmd {
        MaintenanceCmd::Schedule {
            data_dir,
            text,
            start,
            end,
            exempt_terminals,
            exempt_users,
        } => {
            let ask = NoticeAsk {
                maintenance: true,
                ja: text.ja,
                en: text.en,
                start: parse_time(&start)?,
                end: parse_time(&end)?,
                facilities: text.facilities,
                exempt_terminals,
                exempt_users,
                now: false,
            };
            add(&data_dir, ask, op).await
        }
        MaintenanceCmd::Start {
            data_dir,
            id: Some(id),
            ..
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let started = change(
                &dd,
                &cfg,
                &store,
                op,
                operation_record("maintenance_started", format!("{id}, planned, started now")),
                async {
                    if rows::start(&store, &id).await? {
                        Ok(())
                    } else {
                        bail!("no maintenance window {id} that could start (see `sekisho notice list`)")
                    }
                },
            )
            .await;
            started?;
            println!("Maintenance {id} in force now. Running gateways apply this within a second.");
            Ok(0)
        }
        MaintenanceCmd::Start {
            data_dir,
            id: None,
            end,
            ja,
            en,
            facilities,
            exempt_terminals,
            exempt_users,
        } => {
            let (Some(end), Some(ja), Some(en)) = (end, ja, en) else {
                bail!(
                    "an emergency maintenance needs --end (the expected end), --ja and --en; a planned one, --id"
                );
            };
            let ask = NoticeAsk {
                maintenance: true,
                ja,
                en,
                start: 0,
                end: parse_time(&end)?,
                facilities,
                exempt_terminals,
                exempt_users,
                now: true,
            };
            add(&data_dir, ask, op).await
        }
        MaintenanceCmd::End { data_dir, id } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let ids = match id {
                Some(id) => vec![id],
                None => {
                    let running = in_force(&store).await?;
                    if running.is_empty() {
                        bail!("no maintenance window is in force");
                    }
                    running
                }
            };
            for id in ids {
                let rec = operation_record("maintenance_ended", id.clone());
                change(&dd, &cfg, &store, op, rec, end_window(&store, &id)).await?;
                println!("Maintenance {id} ended. Running gateways apply this within a second.");
            }
            Ok(0)
        }
    }
}
