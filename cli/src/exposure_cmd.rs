//! `ami-warden exposure`: the exposure sweep the exposure-guard function runs daily, on demand.
//!
//! Lists owned images that are public or shared outside the allow-list (ALLOWED_ACCOUNT_IDS,
//! ALLOWED_ORG_ARNS, ALLOWED_OU_ARNS), owned snapshots restorable by everyone (or public but
//! blocked by block public access for snapshots), and each region's image and snapshot block
//! public access states and Allowed AMIs setting. It changes nothing in EC2; `--notify` also
//! publishes the summary to TOPIC_ARN, as the scheduled sweep does. What it read of every image's
//! launch permissions becomes the share ledger of the account it acts for (`--account`, else
//! the credentials' account) in the lineage table, as the scheduled sweep's does, for the
//! deprecation sweep.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use warden::aws::{exposure::Ec2Exposure, ledger::LedgerTable, sns::SnsNotifier, Clients};
use warden::config::Config;
use warden::exposure::ledger::{record_sweep, ShareLedger};
use warden::exposure::sweep::{sweep, sweep_notification, SnapshotExposure, SweepReport};
use warden::exposure::{describe_grantees, Settings};
use warden::ids::AccountId;
use warden::notify::Notifier;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ExposureArgs {
    /// Regions to sweep (repeat or comma-separate) [default: AWS_REGION].
    #[arg(long = "region", value_delimiter = ',')]
    regions: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Also publish the summary to the topic in TOPIC_ARN.
    #[arg(long)]
    notify: bool,
    /// The account swept, whose share ledger records the launch permissions read [default: the
    /// credentials' account, from STS GetCallerIdentity].
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<AccountId>,
    #[command(flatten)]
    org: crate::org_sweep::OrgArgs,
}

pub async fn run(lineage_table: &str, args: ExposureArgs) -> Result<ExitCode> {
    let config = Config::from_env()?;
    let settings = Settings::from_config(&config);
    let clients = Clients::from_env().await;
    if args.org.organization {
        let config = crate::org_sweep::organization_config(Config {
            lineage_table: lineage_table.to_owned(),
            ..config.clone()
        });
        let function = warden::handler::ExposureGuard::for_sweeps(&clients, &config);
        let request = crate::org_sweep::Request {
            job: warden::sweep::Job::Exposure,
            regions: &args.regions,
            account: args.account.clone(),
            notify: args.notify,
            json: matches!(args.format, ReportFormat::Json),
        };
        return crate::org_sweep::run(&function, &clients, &config, &args.org, request).await;
    }
    let regions = crate::output::regions(&clients, &args.regions)?;
    let ec2 = Ec2Exposure::new(&clients);
    let interactive = std::io::stderr().is_terminal();
    let progress = move |what: &str, done: usize, total: usize| {
        if interactive && (done == total || done % 25 == 0) {
            eprint!("\r  checking {what}: {done}/{total}   ");
            if done == total {
                eprintln!();
            }
        }
    };
    let account = crate::output::own_account(&clients, args.account.clone()).await?;
    let ledger = LedgerTable::new(&clients, lineage_table);
    let mut reports = Vec::new();
    for region in &regions {
        eprintln!("sweeping {region}");
        let known = ledger
            .load(&account, region)
            .await
            .with_context(|| format!("loading the share ledger of {account} in {region}"))?;
        let report = sweep(&ec2, &settings, region, Some(&known), &progress)
            .await
            .with_context(|| format!("sweeping {region}"))?;
        let writes = record_sweep(&ledger, &account, region, &known, &report.shares)
            .await
            .with_context(|| format!("recording the share ledger of {account} in {region}"))?;
        eprintln!("  share ledger of {account} in {region}: {writes} write(s)");
        reports.push(report);
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?,
        ReportFormat::Table => write!(out, "{}", table(&reports))?,
    }
    if args.notify {
        let topic = config.topic_arn.as_ref().ok_or_else(|| anyhow!("--notify needs TOPIC_ARN"))?;
        let notification = sweep_notification(&reports, None);
        let id = SnsNotifier::new(&clients, topic).publish(&notification).await?;
        eprintln!("published {} summary to {topic} (message {id})", notification.severity);
    }
    let exposed =
        reports.iter().any(|r| !r.exposed_images.is_empty() || !r.exposed_snapshots.is_empty());
    Ok(if exposed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The report as an aligned table, one row per exposed resource, then totals.
pub fn table(reports: &[SweepReport]) -> String {
    let mut rows =
        vec![["REGION".to_owned(), "RESOURCE".into(), "NAME / BACKS".into(), "EXPOSED TO".into()]];
    for r in reports {
        for i in &r.exposed_images {
            rows.push([
                r.region.to_string(),
                i.image_id.to_string(),
                i.name.clone().unwrap_or_default(),
                describe_grantees(&i.exposure),
            ]);
        }
        for s in &r.exposed_snapshots {
            let backs: Vec<String> = s.backs.iter().map(ToString::to_string).collect();
            let blocked = match s.state {
                SnapshotExposure::Public => "",
                SnapshotExposure::PublicButBlocked => " (public but blocked)",
            };
            rows.push([
                r.region.to_string(),
                s.snapshot_id.to_string(),
                backs.join(" "),
                format!("{}{blocked}", describe_grantees(&s.exposure)),
            ]);
        }
    }
    let mut text = String::new();
    if rows.len() > 1 {
        text.push_str(&crate::output::aligned(&rows));
    } else {
        text.push_str("nothing public or shared outside the allow-list\n");
    }
    for r in reports {
        text.push_str(&format!(
            "{}: {} images ({}), {} snapshot candidates checked; {} images and {} snapshots exposed; {}\n",
            r.region,
            r.images_checked,
            r.permissions_read_phrase(),
            r.snapshots_checked,
            r.exposed_images.len(),
            r.exposed_snapshots.len(),
            r.guardrails_phrase()
        ));
        for e in &r.errors {
            text.push_str(&format!("  not checked: {e}\n"));
        }
    }
    text
}
