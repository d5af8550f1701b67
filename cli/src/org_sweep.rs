//! `--organization` for `exposure`, `deprecation` and `snapshots`: the same plan, units and
//! summary as the daily Step Functions sweep, run in this process.
//!
//! The plan is every account (this one, then the organization's, or MEMBER_ACCOUNTS' list)
//! in every region asked for; each unit runs through [`warden::handler::Function::on_unit`],
//! the code a Distributed Map child runs, `--parallel` of them at a time. A member whose role
//! cannot be assumed is a failed unit, named in the summary; it never stops the others.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use warden::aws::backfill::Ec2Estate;
use warden::aws::sns::SnsNotifier;
use warden::aws::{org, Clients};
use warden::config::{Config, Members};
use warden::handler::{Function, Invocation};
use warden::ids::{AccountId, Region};
use warden::notify::Notifier;
use warden::sweep::{self, FailedUnit, Job, JobSummary, Unit, UnitReport};

#[derive(Debug, Args)]
pub struct OrgArgs {
    /// Sweep every account of the organization (or MEMBER_ACCOUNTS' list) as well as this
    /// one, one unit per account and region, each member reached through MEMBER_ROLE_NAME.
    #[arg(long)]
    pub organization: bool,
    /// With --organization: every region enabled for the account (EC2 DescribeRegions).
    #[arg(long, requires = "organization", conflicts_with = "regions")]
    pub all_regions: bool,
    /// With --organization: how many units run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
}

/// What an organization sweep is asked to do besides its units.
pub struct Request<'a> {
    pub job: Job,
    pub regions: &'a [String],
    pub account: Option<AccountId>,
    pub notify: bool,
    pub json: bool,
}

/// The configuration an organization sweep runs with: MEMBER_ACCOUNTS' list when set, else
/// the whole organization.
pub fn organization_config(mut config: Config) -> Config {
    if config.members == Members::None {
        config.members = Members::Organization;
    }
    config
}

/// Plans the units, runs them and prints the job's summary; exit 1 when a unit failed or was
/// not reached, or a unit met errors.
pub async fn run<F: Function>(
    function: &F,
    clients: &Clients,
    config: &Config,
    args: &OrgArgs,
    request: Request<'_>,
) -> Result<ExitCode> {
    let own = crate::output::own_account(clients, request.account.clone()).await?;
    let accounts = org::accounts_to_sweep(clients, &own, &config.members)
        .await
        .map_err(|e| anyhow!(e))
        .context("listing the accounts to sweep")?;
    let regions = regions(clients, request.regions, args.all_regions).await?;
    let run = format!("cli-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let units = sweep::plan(request.job, &run, &accounts, &regions);
    eprintln!(
        "{}: {} account(s) x {} region(s) = {} units, {} at a time (run {run})",
        request.job.title(),
        accounts.len(),
        regions.len(),
        units.len(),
        args.parallel
    );
    let invocation = Invocation::unbounded(Some(own));
    let (done, failed) = run_units(function, &units, &invocation, args.parallel.into()).await;
    let summary = sweep::summarize(request.job, &run, &units, done, failed);
    report(&summary, config, clients, &request).await?;
    let clean = summary.complete() && summary.totals.errors == 0;
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The regions given, every enabled one, or the SDK's.
async fn regions(clients: &Clients, given: &[String], all: bool) -> Result<Vec<Region>> {
    if !all {
        return crate::output::regions(clients, given);
    }
    let home = clients.home_region().ok_or_else(|| anyhow!("no region: set AWS_REGION"))?;
    Ec2Estate::new(clients).enabled_regions(&home).await.context("listing the enabled regions")
}

/// Runs the units, `parallel` at a time, with a progress line on a terminal.
async fn run_units<F: Function>(
    function: &F,
    units: &[Unit],
    invocation: &Invocation,
    parallel: usize,
) -> (Vec<UnitReport>, Vec<FailedUnit>) {
    let interactive = std::io::stderr().is_terminal();
    let progress = |done: usize, failed: usize, left: usize| {
        if interactive {
            eprint!("\r  units: {done} done, {failed} failed, {left} left   ");
        }
    };
    let results = warden::handler::run_units(function, units, invocation, parallel, progress).await;
    if interactive {
        eprintln!();
    }
    results
}

/// Prints the summary (the notification's text, or JSON), and publishes it with `--notify`.
async fn report(
    summary: &JobSummary,
    config: &Config,
    clients: &Clients,
    request: &Request<'_>,
) -> Result<()> {
    let notification = sweep::notification(summary, None);
    let mut out = std::io::stdout().lock();
    if request.json {
        writeln!(out, "{}", serde_json::to_string_pretty(summary)?)?;
    } else {
        write!(out, "{}", notification.email_body())?;
        for report in &summary.done {
            writeln!(out, "{}: {}", report.unit.name(), report.summary)?;
        }
    }
    if request.notify {
        let topic = config.topic_arn.as_ref().ok_or_else(|| anyhow!("--notify needs TOPIC_ARN"))?;
        SnsNotifier::new(clients, topic).publish(&notification).await?;
    }
    Ok(())
}
