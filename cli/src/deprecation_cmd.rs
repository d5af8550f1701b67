//! `ami-warden deprecation [--enforce] [--format table|json]`: the deprecation plan of the
//! deprecation-enforcer's daily sweep — image, family, age, deadline, decision and reason for
//! every owned image, then totals.
//!
//! With `--enforce` it also carries the plan out (stamps missing deadlines, deregisters what it
//! retires), exactly as the function does in enforce mode, and only for images of the account
//! it acts for (`--account`, else the credentials' account, said on stderr); without
//! `--enforce` it changes nothing, whatever `MODE` says.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::{Config, Mode};
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::{Decision, Settings};
use warden::ids::AccountId;

use crate::exposure_cmd::ReportFormat;

#[derive(Debug, Args)]
pub struct DeprecationArgs {
    /// Regions to plan (repeat or comma-separate) [default: AWS_REGION].
    #[arg(long = "region", value_delimiter = ',')]
    regions: Vec<String>,
    /// Carry the plan out: stamp missing deadlines and deregister what is due. Without it the
    /// command only plans, whatever MODE says.
    #[arg(long, conflicts_with_all = ["dry_run", "days_ahead"])]
    enforce: bool,
    /// Plan and report only (the default).
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// The account this runs in: only its images are ever retired [default: the credentials'
    /// account, from STS GetCallerIdentity].
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<AccountId>,
    /// Also publish the warnings and the retirement report to TOPIC_ARN.
    #[arg(long)]
    notify: bool,
    /// Plan as if it were this many days from now (to preview future retirements).
    #[arg(long, default_value_t = 0, conflicts_with = "organization")]
    days_ahead: u32,
    #[command(flatten)]
    org: crate::org_sweep::OrgArgs,
}

pub async fn run(table: &str, args: DeprecationArgs) -> Result<ExitCode> {
    let config = crate::output::acting(Config::from_env()?, args.enforce);
    let settings = Settings::from_config(&config);
    let clients = Clients::from_env().await;
    if args.org.organization {
        let config = crate::org_sweep::organization_config(Config {
            lineage_table: table.to_owned(),
            ..config.clone()
        });
        let function = warden::handler::DeprecationEnforcer::new(&clients, &config);
        let request = crate::org_sweep::Request {
            job: warden::sweep::Job::Deprecation,
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
    let ec2 = Ec2Deprecation::new(&clients);
    let (lineage, audit) =
        (LineageTable::from_clients(&clients, table), AuditTable::new(&clients, table));
    let ledger = LedgerTable::new(&clients, table);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: notifier.as_ref(),
        settings: &settings,
        own_account: Some(crate::output::own_account(&clients, args.account.clone()).await?),
        stop_by: None,
    };
    let now = chrono::Utc::now() + chrono::Duration::days(i64::from(args.days_ahead));
    let mut reports = Vec::new();
    for region in &regions {
        eprintln!(
            "planning {region} ({} mode)",
            if settings.mode == Mode::Enforce { "enforce" } else { "report" }
        );
        reports
            .push(enforcer.sweep(region, now).await.with_context(|| format!("planning {region}"))?);
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?,
        ReportFormat::Table => write!(out, "{}", table_of(&reports))?,
    }
    let failed = reports.iter().any(|r| !r.errors.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn table_of(reports: &[SweepReport]) -> String {
    let mut rows = vec![
        ["IMAGE", "NAME", "FAMILY", "AGE", "DEADLINE", "DECISION", "REASON"].map(str::to_owned)
    ];
    for r in reports {
        for p in &r.planned {
            let decision = match (&p.decision, r.mode) {
                (Decision::Deregister, Mode::Enforce) if r.deregistered.contains(&p.image_id) => {
                    "deregistered"
                }
                (Decision::Deregister, _) => "deregister",
                (Decision::Keep(_), _) => "keep",
            };
            let deadline = match (p.deadline, p.stamp) {
                (Some(d), Some(_)) => format!("{} (new)", d.format("%Y-%m-%d")),
                (Some(d), None) => d.format("%Y-%m-%d").to_string(),
                (None, _) => "-".into(),
            };
            rows.push([
                p.image_id.to_string(),
                p.name.clone().unwrap_or_default(),
                p.family.clone(),
                p.age_days.map(|d| format!("{d}d")).unwrap_or_else(|| "?".into()),
                deadline,
                decision.to_owned(),
                p.decision.reason(),
            ]);
        }
    }
    let mut text = String::new();
    text.push_str(&crate::output::aligned(&rows));
    for r in reports {
        let retire = r.planned.iter().filter(|p| p.decision == Decision::Deregister).count();
        text.push_str(&format!(
            "{}: {} mode; {} images; {} to retire; {} deregistered; {} deadlines {}; {} deadlines within the warning window; {} errors\n",
            r.region,
            r.mode.as_str(),
            r.planned.len(),
            retire,
            r.deregistered.len(),
            r.stamped.len(),
            if r.mode == Mode::Enforce { "stamped" } else { "to stamp" },
            r.warnings.len(),
            r.errors.len()
        ));
        for (image, report) in &r.usage_reports_started {
            text.push_str(&format!("  usage report {report} started for {image}\n"));
        }
        for e in &r.errors {
            text.push_str(&format!("  error: {e}\n"));
        }
    }
    text
}
