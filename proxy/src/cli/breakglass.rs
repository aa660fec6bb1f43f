//! `sekisho breakglass …`: the security officers' and the secretariat's side of emergency
//! access (R-BG-3: logged and reviewed): the queue, one declaration with every request made
//! under it, the review, a second person's approval (child protection, R-PAT-4), ending a grant
//! early, and statistics that make abuse visible.
//!
//! The acting person is named (`--operator`, or `SEKISHO_OPERATOR`): a registered user with the
//! `security-officer` or `secretariat` role, never the declaring physician. The act is on
//! record before it takes effect; one that cannot be recorded is not made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use sekisho_store::break_glass::{self as rows, Declaration};
use sekisho_store::{Store, now};

use super::admin_audit::{Operator, cli_record, officer};
use super::data_dir::open;
use crate::config::Config;
use crate::oversight::{self, break_glass::Act, jst};

#[derive(Subcommand, Debug)]
pub enum BreakglassCmd {
    /// Declarations, newest first: status, who, which patient, why, until when, review.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        /// Only these statuses (choose_patient, awaiting_signature, awaiting_approval, active,
        /// ended, expired, rejected), comma-separated.
        #[arg(long, value_delimiter = ',')]
        status: Vec<String>,
        #[arg(long)]
        patient: Option<String>,
        /// Only declarations not reviewed yet.
        #[arg(long)]
        unreviewed: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One declaration and every request made under it (from the audit log).
    Show {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Record the finding: justified, not_justified or follow_up_needed.
    Review {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        finding: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve a declaration that waits for a second person (child protection): the grant
    /// starts now.
    Approve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Refuse a declaration that waits for approval.
    Reject {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// End a grant now; every gateway refuses its next request within a second.
    End {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Declarations per physician, facility and category, and repeated declarations for
    /// patients outside the physician's care teams.
    Stats {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
}

pub(super) async fn run(cmd: BreakglassCmd, op: &Operator) -> Result<i32> {
    match cmd {
        BreakglassCmd::List {
            data_dir,
            status,
            patient,
            unreviewed,
            limit,
        } => {
            let (_, cfg, store) = open(&data_dir).await?;
            let statuses: Vec<&str> = status.iter().map(String::as_str).collect();
            let list = rows::list(&store, &statuses, patient.as_deref(), limit).await?;
            println!(
                "{:<24} {:<18} {:<17} {:<14} {:<12} {:<16} {:<17} {:<16} follow-up",
                "id",
                "status",
                "declared (JST)",
                "physician",
                "patient",
                "category",
                "until (JST)",
                "review"
            );
            let t = now();
            for d in list
                .iter()
                .filter(|d| !unreviewed || d.review_finding.is_none())
            {
                println!(
                    "{:<24} {:<18} {:<17} {:<14} {:<12} {:<16} {:<17} {:<16} {}",
                    d.id,
                    d.status,
                    d.declared_at.map(jst).unwrap_or_else(|| "-".into()),
                    d.user_id,
                    d.patient_id.as_deref().unwrap_or("-"),
                    d.category,
                    d.expires_at.map(jst).unwrap_or_else(|| "-".into()),
                    d.review_finding.as_deref().unwrap_or("UNREVIEWED"),
                    follow_up(d, t, i64::from(cfg.break_glass.follow_up_hours)),
                );
            }
            Ok(0)
        }
        BreakglassCmd::Show { data_dir, id } => {
            let (_, cfg, store) = open(&data_dir).await?;
            let d = rows::get(&store, &id).await?.with_context(|| {
                format!("no declaration {id:?} (see `sekisho breakglass list`)")
            })?;
            show(&store, &cfg, &d).await?;
            Ok(0)
        }
        BreakglassCmd::Review {
            data_dir,
            id,
            finding,
            comment,
        } => {
            let act = Act::Review {
                finding: &finding,
                comment: &comment,
            };
            officer_act(&data_dir, &id, op, act).await?;
            println!("{id}: reviewed as {finding} by {}", op.name()?);
            Ok(0)
        }
        BreakglassCmd::Approve { data_dir, id } => {
            officer_act(&data_dir, &id, op, Act::Approve).await?;
            println!("{id}: approved: the grant starts now (by {})", op.name()?);
            Ok(0)
        }
        BreakglassCmd::Reject { data_dir, id } => {
            officer_act(&data_dir, &id, op, Act::Reject).await?;
            println!("{id}: rejected (by {})", op.name()?);
            Ok(0)
        }
        BreakglassCmd::End {
            data_dir,
            id,
            reason,
        } => {
            officer_act(&data_dir, &id, op, Act::End { reason: &reason }).await?;
            println!(
                "{id}: ended by {}; gateways refuse its next request within a second",
                op.name()?
            );
            Ok(0)
        }
        BreakglassCmd::Stats { data_dir, days } => {
            let (_, _, store) = open(&data_dir).await?;
            stats(&store, days).await?;
            Ok(0)
        }
    }
}

/// An officer's act, as in the console (`crate::oversight::break_glass`).
async fn officer_act(data_dir: &Path, id: &str, op: &Operator, act: Act<'_>) -> Result<()> {
    let (dd, cfg, store) = open(data_dir).await?;
    let (who, log, policy) = officer(&dd, &cfg, &store, op).await?;
    let r = oversight::break_glass::act(&store, &log, &policy, &who, id, act, cli_record()).await;
    log.shutdown().await;
    r.map(|_| ()).map_err(|e| anyhow::anyhow!("{}", e.detail))
}

async fn show(store: &Store, cfg: &Config, d: &Declaration) -> Result<()> {
    let t = now();
    let category = cfg.break_glass.category(&d.category);
    println!("declaration   {}", d.id);
    println!("status        {}", d.status);
    println!(
        "physician     {} (facility {}), terminal {}",
        d.user_id, d.facility, d.terminal
    );
    println!("patient       {}", d.patient_id.as_deref().unwrap_or("-"));
    println!(
        "category      {}{}",
        d.category,
        category.map_or(String::new(), |c| format!(
            " — {} / {}",
            c.name_ja, c.name_en
        ))
    );
    println!(
        "justification {}",
        d.justification.replace('\n', "\n              ")
    );
    println!(
        "declared      {}",
        d.declared_at
            .map(jst)
            .unwrap_or_else(|| "(not signed)".into())
    );
    println!(
        "grant         {} → {}{}",
        d.starts_at.map(jst).unwrap_or_else(|| "-".into()),
        d.expires_at.map(jst).unwrap_or_else(|| "-".into()),
        if d.allows_write {
            " (view and write)"
        } else {
            " (view)"
        }
    );
    if let Some(by) = &d.approved_by {
        println!("approval      {by}");
    }
    if let Some(at) = d.ended_at {
        println!(
            "ended         {} by {} ({})",
            jst(at),
            d.ended_by.as_deref().unwrap_or("?"),
            d.end_reason.as_deref().unwrap_or("")
        );
    }
    println!(
        "outside care  {}",
        d.outside_care_team
            .map_or("-", |o| if o { "yes" } else { "no" })
    );
    println!(
        "follow-up     {}",
        follow_up(d, t, i64::from(cfg.break_glass.follow_up_hours))
    );
    println!(
        "review        {}",
        match (&d.review_finding, &d.reviewed_by) {
            (Some(f), Some(by)) => format!(
                "{f} by {by} at {}: {}",
                d.reviewed_at.map(jst).unwrap_or_default(),
                d.review_comment.as_deref().unwrap_or("")
            ),
            _ => "UNREVIEWED".into(),
        }
    );
    // Every request made under the grant, as the audit log has it.
    let rows =
        sqlx::query("SELECT record FROM audit_records WHERE break_glass_id = $1 ORDER BY ts")
            .bind(&d.id)
            .fetch_all(store.pool())
            .await?;
    println!("\nrecords under this declaration ({}):", rows.len());
    for r in rows {
        use sqlx::Row;
        let text: String = r.try_get("record")?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        println!(
            "  {} {:<8} {:<7} {:<6} {} {} {}",
            s("time"),
            s("event"),
            s("decision"),
            s("method"),
            s("path"),
            s("reason"),
            v["upstream_status"]
                .as_u64()
                .map(|u| u.to_string())
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// R-BG-3 and the abuse the issue names: who declares how often, where, why, and how often for
/// patients outside their own care teams.
async fn stats(store: &Store, days: i64) -> Result<()> {
    let since = now() - days * 86_400;
    let all = rows::since(store, since).await?;
    println!(
        "emergency declarations in the last {days} days: {}",
        all.len()
    );
    let count = |key: &dyn Fn(&Declaration) -> String| {
        let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for d in &all {
            let e = m.entry(key(d)).or_default();
            e.0 += 1;
            e.1 += usize::from(d.outside_care_team == Some(true));
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        v
    };
    for (title, rows) in [
        ("per physician", count(&|d| d.user_id.clone())),
        ("per facility", count(&|d| d.facility.clone())),
        ("per category", count(&|d| d.category.clone())),
    ] {
        println!("\n{title}:  declarations  (for patients outside their care teams)");
        for (k, (n, outside)) in rows {
            println!("  {k:<24} {n:>5}  ({outside})");
        }
    }
    let unreviewed = all.iter().filter(|d| d.review_finding.is_none()).count();
    let not_justified = all
        .iter()
        .filter(|d| d.review_finding.as_deref() == Some("not_justified"))
        .count();
    println!("\nunreviewed: {unreviewed}; found not justified: {not_justified}");
    let repeated: Vec<_> = count(&|d| d.user_id.clone())
        .into_iter()
        .filter(|(_, (_, outside))| *outside >= 3)
        .collect();
    if !repeated.is_empty() {
        println!("\nrepeated declarations outside the physician's care teams (3 or more):");
        for (user, (_, outside)) in repeated {
            println!("  {user}: {outside}");
        }
    }
    Ok(())
}

fn follow_up(d: &Declaration, at: i64, after_hours: i64) -> String {
    match (&d.follow_up_kind, d.follow_up_required) {
        (Some(k), _) => format!("recorded ({k})"),
        (None, false) => "not required".into(),
        (None, true) if d.follow_up_overdue(at, after_hours) => "OVERDUE".into(),
        (None, true) => "required".into(),
    }
}
