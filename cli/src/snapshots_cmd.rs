//! `ami-warden snapshots [--enforce] [--format table|json]`: the snapshot reaper's daily sweep,
//! on demand: every owned snapshot whose image (named in the description AWS wrote) no longer
//! exists, with the decision, its reason, its size and what deleting it saves a month.
//!
//! With `--enforce` it deletes what it decides to delete (tagging each for the Recycle Bin
//! first), exactly as the function does in enforce mode; otherwise it changes nothing, whatever
//! `MODE` says.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use warden::aws::{
    audit::AuditTable, idempotency::IdempotencyTable, lineage_table::LineageTable,
    snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use warden::config::{Config, Mode};
use warden::ids::AccountId;
use warden::reaper::run::{Action, Reaper, RunReport};
use warden::reaper::Settings;

use crate::exposure_cmd::ReportFormat;

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Regions to sweep (repeat or comma-separate) [default: AWS_REGION].
    #[arg(long = "region", value_delimiter = ',')]
    regions: Vec<String>,
    /// Delete what it decides to delete (tagged first, recoverable from the Recycle Bin).
    /// Without it the command only decides and reports, whatever MODE says.
    #[arg(long, conflicts_with = "dry_run")]
    enforce: bool,
    /// Decide and report only (the default).
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// The account this runs in: only its snapshots are ever deleted [default: the credentials'
    /// account, from STS GetCallerIdentity].
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<AccountId>,
    /// Also publish each region's summary to TOPIC_ARN.
    #[arg(long)]
    notify: bool,
    #[command(flatten)]
    org: crate::org_sweep::OrgArgs,
}

pub async fn run(table: &str, args: SnapshotsArgs) -> Result<ExitCode> {
    let config = crate::output::acting(Config::from_env()?, args.enforce);
    let settings = Settings::from_config(&config);
    let clients = Clients::from_env().await;
    if args.org.organization {
        let config = crate::org_sweep::organization_config(Config {
            lineage_table: table.to_owned(),
            ..config.clone()
        });
        let function = warden::handler::SnapshotReaper::new(&clients, &config);
        let request = crate::org_sweep::Request {
            job: warden::sweep::Job::Reaper,
            regions: &args.regions,
            account: args.account.clone(),
            notify: args.notify,
            json: matches!(args.format, ReportFormat::Json),
        };
        return crate::org_sweep::run(&function, &clients, &config, &args.org, request).await;
    }
    let regions = crate::output::regions(&clients, &args.regions)?;
    let notifier = match (args.notify, &config.topic_arn) {
        (true, Some(topic)) => Some(SnsNotifier::new(&clients, topic)),
        (true, None) => return Err(anyhow!("--notify needs TOPIC_ARN")),
        _ => None,
    };
    let (ec2, lineage) = (Ec2Snapshots::new(&clients), LineageTable::from_clients(&clients, table));
    let (audit, idempotency) =
        (AuditTable::new(&clients, table), IdempotencyTable::new(&clients, table));
    let ledger = warden::aws::ledger::LedgerTable::new(&clients, table);
    let reaper = Reaper {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        idempotency: &idempotency,
        notifier: notifier.as_ref(),
        settings: &settings,
        own_account: Some(crate::output::own_account(&clients, args.account.clone()).await?),
        stop_by: None,
    };
    let interactive = std::io::stderr().is_terminal();
    let progress = move |done: usize, total: usize| {
        if interactive && (done == total || done % 25 == 0) {
            eprint!("\r  deciding snapshots: {done}/{total}   ");
            if done == total {
                eprintln!();
            }
        }
    };
    let mut reports = Vec::new();
    for region in &regions {
        eprintln!(
            "sweeping {region} ({} mode)",
            if settings.mode == Mode::Enforce { "enforce" } else { "report" }
        );
        let report = reaper
            .sweep(region, chrono::Utc::now(), &progress)
            .await
            .with_context(|| format!("sweeping {region}"))?;
        reports.push(report);
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?,
        ReportFormat::Table => write!(out, "{}", table_of(&reports))?,
    }
    let failed = reports.iter().any(|r| r.failures() > 0 || !r.errors.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn table_of(reports: &[RunReport]) -> String {
    let mut rows =
        vec![["SNAPSHOT", "GIB", "IMAGE", "DECISION", "ACTION", "REASON"].map(str::to_owned)];
    for r in reports {
        for o in &r.outcomes {
            let action = match &o.action {
                Action::Planned => "planned".to_owned(),
                Action::Deleted => "deleted".to_owned(),
                Action::Kept => "kept".to_owned(),
                Action::Failed(e) => format!("FAILED ({e})"),
                Action::DeletedByAws => "deleted by AWS".to_owned(),
                Action::LeftForNextRun => "left for the next run".to_owned(),
            };
            rows.push([
                o.snapshot_id.to_string(),
                o.size_gib.to_string(),
                o.source_image.as_ref().map(ToString::to_string).unwrap_or_default(),
                o.decision.to_owned(),
                action,
                o.reason.clone(),
            ]);
        }
    }
    let mut text = String::new();
    if rows.len() > 1 {
        text.push_str(&crate::output::aligned(&rows));
    } else {
        text.push_str("no snapshot whose image is gone\n");
    }
    for r in reports {
        let planned = r.planned_gib();
        let deleted = r.deleted_gib();
        text.push_str(&format!(
            "{}: {} mode; {} decided; {} GiB deleted (${:.2}/month); {} GiB would be deleted (${:.2}/month at ${}/GB-month); {} not from images; {} with live images; {} errors; {} warnings\n",
            r.trigger, r.mode.as_str(), r.outcomes.len(), deleted, r.monthly_dollars(deleted), planned, r.monthly_dollars(planned),
            r.price_per_gb_month, r.not_from_images, r.with_live_images, r.errors.len(), r.warnings.len()
        ));
        for e in &r.errors {
            text.push_str(&format!("  error: {e}\n"));
        }
        for w in &r.warnings {
            text.push_str(&format!("  warning: {w}\n"));
        }
    }
    text
}
