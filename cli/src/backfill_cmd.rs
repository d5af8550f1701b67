//! `ami-warden backfill`: reconstructs the lineage of the images that already exist, from
//! everything AWS still knows, into the same table the recorder writes.
//!
//! Sources, most trusted first: CloudTrail's 90-day history of image calls (replayed through
//! the recorder itself), DescribeImages' `SourceImageId`, `GetImageAncestry`, and the
//! descriptions AWS writes on the snapshots of copied and created images. Each edge records
//! its sources; a source naming another parent than the recorded one is reported as a
//! conflict, never written over it. Idempotent and resumable: run it again and it writes only
//! what is missing. With `--accounts` or `--organization` it also backfills member accounts
//! through their role; a member whose role cannot be assumed is reported and skipped.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use warden::aws::backfill::{CloudTrailHistory, Ec2Estate};
use warden::aws::ec2::Ec2Catalogue;
use warden::aws::lineage_table::LineageTable;
use warden::aws::org::{self, SkippedMember};
use warden::aws::Clients;
use warden::backfill::run::{Backfill, Progress, RegionReport};
use warden::config::{Members, DEFAULT_MEMBER_ROLE};
use warden::ids::{AccountId, Region};

use crate::exposure_cmd::ReportFormat;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Regions to backfill (repeat or comma-separate) [default: AWS_REGION].
    #[arg(
        long = "region",
        alias = "regions",
        value_delimiter = ',',
        conflicts_with = "all_regions"
    )]
    regions: Vec<String>,
    /// Every region enabled for the account (EC2 DescribeRegions).
    #[arg(long)]
    all_regions: bool,
    /// Replay CloudTrail records from this date (YYYY-MM-DD or RFC 3339) [default: 90 days ago,
    /// all CloudTrail keeps].
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Skip CloudTrail's history (use only what EC2 lists).
    #[arg(long)]
    no_events: bool,
    /// Also backfill these member accounts (comma-separated ids), through MEMBER_ROLE_NAME.
    #[arg(long, value_delimiter = ',', conflicts_with = "organization", value_parser = crate::output::parse_account)]
    accounts: Vec<AccountId>,
    /// Also backfill every active account of the organization.
    #[arg(long)]
    organization: bool,
    /// The role each member account grants this account.
    #[arg(long, env = "MEMBER_ROLE_NAME", default_value = DEFAULT_MEMBER_ROLE)]
    role: String,
    /// The account the credentials act in (not assumed into when listed as a member)
    /// [default: STS GetCallerIdentity].
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<AccountId>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
}

fn parse_since(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("{raw:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

/// A one-line progress bar on a terminal; phase lines otherwise.
fn progress(tty: bool) -> impl Fn(Progress) {
    move |step| match step {
        Progress::Phase { region, what } => {
            if tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!("backfill: {region}: {what}");
        }
        Progress::Images { region, done, total } if tty => {
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r\x1b[2K{region} [{}{}] {done}/{total} images",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
        Progress::Images { region, done, total } => {
            if done == total || (total >= 10 && done % (total / 10) == 0 && done > 0) {
                eprintln!("backfill: {region}: {done}/{total} images");
            }
        }
    }
}

pub async fn run(table: &str, args: BackfillArgs) -> Result<ExitCode> {
    let clients = Clients::from_env().await;
    let lineage = LineageTable::from_clients(&clients, table);
    let since = args.since.unwrap_or_else(|| Utc::now() - chrono::Duration::days(90));
    let members = if args.organization {
        Members::Organization
    } else if args.accounts.is_empty() {
        Members::None
    } else {
        Members::Accounts(args.accounts.clone())
    };
    let own = match args.account.clone() {
        Some(account) => Some(account),
        None => Some(org::caller_account(&clients).await.map_err(|e| anyhow!(e))?),
    };
    let accounts = org::accounts(&clients, own.as_ref(), &members, &args.role).await;
    let show = progress(std::io::stderr().is_terminal());
    let mut reports: Vec<RegionReport> = Vec::new();
    for (account, account_clients) in &accounts.reachable {
        let estate = Ec2Estate::new(account_clients);
        let regions = if args.all_regions {
            let home = clients.home_region().ok_or_else(|| anyhow!("no region: set AWS_REGION"))?;
            estate.enabled_regions(&home).await.context("listing the enabled regions")?
        } else {
            crate::output::regions(&clients, &args.regions)?
        };
        let catalogue = Ec2Catalogue::new(account_clients);
        let history = CloudTrailHistory::new(account_clients);
        let backfill = Backfill {
            account: account.clone(),
            estate: &estate,
            catalogue: &catalogue,
            history: (!args.no_events).then_some(&history),
            lineage: &lineage,
        };
        reports.extend(
            backfill
                .run(&regions, since, &show)
                .await
                .context("writing the lineage (run backfill again to resume)")?,
        );
    }
    eprintln!(
        "backfill: AWS requests: {}",
        warden::aws::calls::render(&clients.calls().snapshot())
    );
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            let json =
                serde_json::json!({"regions": reports, "skipped_accounts": accounts.skipped});
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        ReportFormat::Table => write!(out, "{}", table_text(&reports, &accounts.skipped))?,
    }
    let failed = !accounts.skipped.is_empty() || reports.iter().any(|r| !r.errors.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn table_text(reports: &[RegionReport], skipped: &[SkippedMember]) -> String {
    let mut rows = vec![[
        "ACCOUNT",
        "REGION",
        "IMAGES",
        "EVENTS",
        "EDGES (SOURCES)",
        "ROOTS",
        "UNCHANGED",
        "CONFLICTS",
        "UNRESOLVED",
    ]
    .map(String::from)];
    for r in reports {
        let edges: Vec<String> =
            r.edges_written.iter().map(|(sources, n)| format!("{n} ({sources})")).collect();
        rows.push([
            r.account.as_ref().map_or("-".into(), |a| a.to_string()),
            r.region.as_ref().map_or("-".into(), Region::to_string),
            r.images_listed.to_string(),
            format!("{} new, {} seen", r.events.recorded, r.events.duplicate),
            if edges.is_empty() { "0".into() } else { edges.join(", ") },
            r.roots_written.to_string(),
            r.unchanged.to_string(),
            r.conflicts.len().to_string(),
            r.unresolved.len().to_string(),
        ]);
    }
    let mut text = crate::output::aligned(&rows);
    for r in reports {
        for c in &r.conflicts {
            text.push_str(&format!("conflict: {c}\n"));
        }
        for u in &r.unresolved {
            text.push_str(&format!(
                "unresolved: {} ({}): {}\n",
                u.image,
                u.source.as_str(),
                u.detail
            ));
        }
        for e in &r.errors {
            text.push_str(&format!("error: {e}\n"));
        }
    }
    for s in skipped {
        text.push_str(&format!("skipped account {}: {}\n", s.account, s.reason));
    }
    if reports.iter().all(|r| !r.changed()) {
        text.push_str("nothing new: the lineage already holds everything found\n");
    }
    text
}
