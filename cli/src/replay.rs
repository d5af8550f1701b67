//! `ami-warden replay PATH...`: deliver event files to the handlers, as EventBridge would.
//!
//! Each file holds one event (an EventBridge envelope or a bare CloudTrail record). Directories
//! are walked recursively and files taken in path order. Each event goes to every function
//! whose rule matches it ([`warden::routes`]) and runs through [`warden::handler::handle`],
//! the dispatcher the Lambdas run, in the account the CLI acts for. With `--organization` (or
//! MEMBER_ACCOUNTS) a member account's event is handled in that account, through its role, as
//! the central deployment does. One line per event and function; the exit code is 1 if any
//! event failed for a reason other than its input (an AWS call that failed), else 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;
use warden::aws::{calls, Clients};
use warden::config::{Config, Members};
use warden::deprecation::run::EventOutcome as DeprecationOutcome;
use warden::event::{parse_value, Parsed};
use warden::exposure::guard::GuardOutcome;
use warden::handler::{Answer, Functions, Handled, Invocation};
use warden::reaper::run::EventOutcome;
use warden::recorder::Outcome;
use warden::routes::{Function as Route, ROUTES};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event files, or directories of them (walked recursively, in path order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Append the AWS requests each event cost, e.g. `[DynamoDB.Query=2 EC2.DescribeInstances=1]`.
    #[arg(long)]
    calls: bool,
    /// The account the functions act in, as a Lambda knows it from its ARN: only this
    /// account's images and snapshots are ever remediated or deleted. Default: the account of
    /// the credentials (STS GetCallerIdentity).
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<warden::ids::AccountId>,
    /// Let the handlers act as in enforce mode (delete, deregister, stamp, remediate as the
    /// environment's REMEDIATE_* say). Without it they only decide and report, whatever MODE
    /// says; the lineage is recorded either way.
    #[arg(long)]
    enforce: bool,
    /// Organization mode: a member account's event is handled in that account, through
    /// MEMBER_ROLE_NAME (as MEMBER_ACCOUNTS=organization does).
    #[arg(long)]
    organization: bool,
}

/// One function's answer to one event, as one line.
async fn deliver(
    functions: &Functions,
    route: Route,
    event: &Value,
    inv: &Invocation,
) -> Result<Line, String> {
    let handled = functions.deliver(route, event, inv).await.map_err(|e| e.to_string())?;
    Ok(match handled {
        Handled::Event(Answer::Recorder(outcome)) => recorder_line(outcome),
        Handled::Event(Answer::Guard(outcome)) => guard_line(outcome),
        Handled::Event(Answer::Enforcer(outcome)) => deprecation_line(outcome),
        Handled::Event(Answer::Reaper(outcome)) => reaper_line(outcome),
        Handled::Event(Answer::Launch(outcome)) => launch_line(outcome),
        Handled::Swept(response) => Line::Done(format!("swept: {response}")),
        Handled::Unit(report) => {
            Line::Done(format!("unit {}: {}", report.unit.name(), report.summary))
        }
    })
}

/// Counts of the lines printed, for the closing summary.
#[derive(Default)]
struct Tally {
    done: usize,
    duplicate: usize,
    ignored: usize,
    failed: usize,
}

pub async fn run(table: &str, args: ReplayArgs) -> Result<ExitCode> {
    let files = collect(&args.paths)?;
    let clients = Clients::from_env().await;
    let mut config = crate::output::acting(Config::from_env()?, args.enforce);
    config.lineage_table = table.to_owned();
    if args.organization {
        config.members = Members::Organization;
    }
    let own = crate::output::own_account(&clients, args.account.clone()).await?;
    let functions = Functions::new(&clients, &config);
    let invocation = Invocation::unbounded(Some(own));
    let mut tally = Tally::default();
    for file in &files {
        replay_file(file, &functions, &invocation, &clients, args.calls, &mut tally).await?;
    }
    eprintln!(
        "replayed {} file(s): {} handled, {} duplicate, {} ignored, {} error",
        files.len(),
        tally.done,
        tally.duplicate,
        tally.ignored,
        tally.failed
    );
    Ok(if tally.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Delivers one file's event to every function whose rule matches it, a line each.
async fn replay_file(
    file: &Path,
    functions: &Functions,
    inv: &Invocation,
    clients: &Clients,
    with_calls: bool,
    tally: &mut Tally,
) -> Result<()> {
    let shown = file.display();
    let bytes = std::fs::read(file).with_context(|| format!("reading {shown}"))?;
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            println!("{shown}: ignored: not JSON ({e})");
            tally.ignored += 1;
            return Ok(());
        }
    };
    let routes: Vec<_> = ROUTES.iter().filter(|r| r.matches(&value)).collect();
    if routes.is_empty() {
        let why = match parse_value(&value) {
            Parsed::Ignored { reason, .. } => reason.to_string(),
            Parsed::Event(e) => format!("no function's rule matches {}", e.meta.event_name),
        };
        println!("{shown}: ignored: {why}");
        tally.ignored += 1;
        return Ok(());
    }
    for route in routes {
        let before = clients.calls().snapshot();
        let result = deliver(functions, route.function, &value, inv).await;
        let cost = if with_calls {
            format!(" [{}]", calls::render(&clients.calls().since(&before)))
        } else {
            String::new()
        };
        let line = match result {
            Ok(Line::Done(text)) => {
                tally.done += 1;
                text
            }
            Ok(Line::Duplicate(text)) => {
                tally.duplicate += 1;
                format!("duplicate {text}")
            }
            Ok(Line::Ignored(reason)) => {
                tally.ignored += 1;
                format!("ignored: {reason}")
            }
            Err(err) => {
                tally.failed += 1;
                format!("error: {err}")
            }
        };
        println!("{shown}: {}: {line}{cost}", route.function.name());
    }
    Ok(())
}

/// A function's answer, as replay prints it.
enum Line {
    Done(String),
    Duplicate(String),
    Ignored(String),
}

fn recorder_line(outcome: Outcome) -> Line {
    match outcome {
        Outcome::Recorded { summary } => Line::Done(format!("recorded {summary}")),
        Outcome::Duplicate { summary } => Line::Duplicate(summary),
        Outcome::Ignored { reason } => Line::Ignored(reason),
        Outcome::Conflict { summary } => Line::Done(format!("conflict reported: {summary}")),
    }
}

fn guard_line(outcome: GuardOutcome) -> Line {
    match outcome {
        GuardOutcome::Alerted { severity, kind, summary, .. } => {
            Line::Done(format!("alerted {severity} {kind}: {summary}"))
        }
        GuardOutcome::Quiet { summary } => Line::Done(summary),
        GuardOutcome::Duplicate { event_id } => Line::Duplicate(event_id),
        GuardOutcome::Ignored { reason } => Line::Ignored(reason),
    }
}

fn reaper_line(outcome: EventOutcome) -> Line {
    match outcome {
        EventOutcome::Reaped { report } => {
            let decided: Vec<String> = report
                .outcomes
                .iter()
                .map(|o| format!("{} {}: {}", o.snapshot_id, o.decision, o.reason))
                .collect();
            let errors = if report.errors.is_empty() {
                String::new()
            } else {
                format!("; errors: {}", report.errors.join("; "))
            };
            Line::Done(format!(
                "reaped ({} mode) {} snapshot(s){}{}",
                report.mode.as_str(),
                decided.len(),
                if decided.is_empty() {
                    String::new()
                } else {
                    format!(": {}", decided.join(", "))
                },
                errors
            ))
        }
        EventOutcome::Duplicate { event_id } => Line::Duplicate(event_id),
        EventOutcome::Ignored { reason } => Line::Ignored(reason),
    }
}

fn launch_line(outcome: warden::provenance::run::LaunchOutcome) -> Line {
    use warden::provenance::run::LaunchOutcome;
    match outcome {
        LaunchOutcome::Checked { images, alerted, not_checked } => {
            let verdicts: Vec<String> = images
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c.image,
                        serde_json::to_value(&c.verdict)
                            .map(|v| v["verdict"].as_str().unwrap_or("?").to_owned())
                            .unwrap_or_default()
                    )
                })
                .collect();
            let mut line = format!("checked {}", verdicts.join(", "));
            if alerted {
                line.push_str("; alerted");
            }
            if !not_checked.is_empty() {
                line.push_str(&format!("; not checked: {}", not_checked.join("; ")));
            }
            Line::Done(line)
        }
        LaunchOutcome::Duplicate { event_id } => Line::Duplicate(event_id),
        LaunchOutcome::Ignored { reason } => Line::Ignored(reason),
    }
}

fn deprecation_line(outcome: DeprecationOutcome) -> Line {
    match outcome {
        DeprecationOutcome::Stamped { image, deprecate_at } => {
            Line::Done(format!("stamped {image}: deprecates at {deprecate_at}"))
        }
        DeprecationOutcome::WouldStamp { image, deprecate_at } => {
            Line::Done(format!("would stamp {image} (report mode): deprecates at {deprecate_at}"))
        }
        DeprecationOutcome::Unchanged { image, reason } => {
            Line::Done(format!("unchanged {image}: {reason}"))
        }
        DeprecationOutcome::Ignored { reason } => Line::Ignored(reason),
        DeprecationOutcome::Quarantined { image, ancestor, acted } => Line::Done(if acted {
            format!("quarantined {image}: made from quarantined {ancestor}")
        } else {
            format!("alerted {image}: made from quarantined {ancestor} (not acted on)")
        }),
    }
}

fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        walk(path, &mut files)?;
    }
    Ok(files)
}

fn walk(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            walk(&entry, files)?;
        }
    } else {
        files.push(path.to_owned());
    }
    Ok(())
}
