//! `ami-warden replay PATH...`: deliver event files to the handlers, as EventBridge would.
//!
//! Each file holds one event (an EventBridge envelope or a bare CloudTrail record). Directories
//! are walked recursively and files taken in path order. Each event goes to every function
//! whose rule matches it ([`warden::routes`]) and runs through the very handler that function
//! runs. One line per event and function; the exit code is 1 if any event failed for a reason
//! other than its input (an AWS call that failed), else 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;
use warden::aws::{
    audit::AuditTable, calls, deprecation::Ec2Deprecation, ec2::Ec2Catalogue,
    exposure::Ec2Exposure, idempotency::IdempotencyTable, lineage_table::LineageTable,
    snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use warden::config::Config;
use warden::deprecation::run::{Enforcer, EventOutcome as DeprecationOutcome};
use warden::event::{parse_value, Parsed};
use warden::exposure::guard::{Guard, GuardOutcome};
use warden::exposure::Settings;
use warden::reaper::run::{EventOutcome, Reaper};
use warden::recorder::{record, Outcome};
use warden::routes::{Function, ROUTES};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event files, or directories of them (walked recursively, in path order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Append the AWS requests each event cost, e.g. `[DynamoDB.Query=2 EC2.DescribeInstances=1]`.
    #[arg(long)]
    calls: bool,
    /// The account the functions act in (a Lambda knows it from its ARN): only this account's
    /// images and snapshots are ever remediated or deleted. Without it, nothing is changed.
    #[arg(long, env = "AWS_ACCOUNT_ID", value_parser = crate::output::parse_account)]
    account: Option<warden::ids::AccountId>,
    /// Let the handlers act as in enforce mode (delete, deregister, stamp, remediate as the
    /// environment's REMEDIATE_* say). Without it they only decide and report, whatever MODE
    /// says; the lineage is recorded either way.
    #[arg(long)]
    enforce: bool,
}

pub async fn run(table: &str, args: ReplayArgs) -> Result<ExitCode> {
    let files = collect(&args.paths)?;
    let clients = Clients::from_env().await;
    let store = LineageTable::from_clients(&clients, table);
    let catalogue = Ec2Catalogue::new(&clients);
    let config = crate::output::acting(Config::from_env()?, args.enforce);
    let settings = Settings::from_config(&config);
    let exposure_ec2 = Ec2Exposure::new(&clients);
    let notifier = config.topic_arn.as_ref().map(|topic| SnsNotifier::new(&clients, topic));
    let idempotency = IdempotencyTable::new(&clients, table);
    let ledger = warden::aws::ledger::LedgerTable::new(&clients, table);
    let own_account = args.account.clone();
    let snapshots = Ec2Snapshots::new(&clients);
    let audit = AuditTable::new(&clients, table);
    let reaper_settings = warden::reaper::Settings::from_config(&config);
    let deprecation_ec2 = Ec2Deprecation::new(&clients);
    let deprecation_settings = warden::deprecation::Settings::from_config(&config);
    let (mut failed, mut counts) = (0usize, [0usize; 4]);
    for file in &files {
        let shown = file.display();
        let bytes = std::fs::read(file).with_context(|| format!("reading {shown}"))?;
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                println!("{shown}: ignored: not JSON ({e})");
                counts[2] += 1;
                continue;
            }
        };
        let routes: Vec<_> = ROUTES.iter().filter(|r| r.matches(&value)).collect();
        if routes.is_empty() {
            let why = match parse_value(&value) {
                Parsed::Ignored { reason, .. } => reason.to_string(),
                Parsed::Event(e) => format!("no function's rule matches {}", e.meta.event_name),
            };
            println!("{shown}: ignored: {why}");
            counts[2] += 1;
            continue;
        }
        for route in routes {
            let before = clients.calls().snapshot();
            // One arm per function; each calls exactly what that Lambda's handler calls.
            let result = match route.function {
                Function::LineageRecorder => record(&parse_value(&value), &catalogue, &store)
                    .await
                    .map(recorder_line)
                    .map_err(|e| e.to_string()),
                Function::ExposureGuard => match &notifier {
                    None => {
                        Err("TOPIC_ARN is not set: the exposure guard has nowhere to alert"
                            .to_owned())
                    }
                    Some(notifier) => {
                        let guard = Guard {
                            ledger: &ledger,
                            ec2: &exposure_ec2,
                            notifier,
                            idempotency: &idempotency,
                            settings: &settings,
                            own_account: own_account.clone(),
                        };
                        guard
                            .handle(&parse_value(&value))
                            .await
                            .map(guard_line)
                            .map_err(|e| e.to_string())
                    }
                },
                Function::SnapshotReaper => {
                    let reaper = Reaper {
                        ec2: &snapshots,
                        lineage: &store,
                        audit: &audit,
                        ledger: &ledger,
                        idempotency: &idempotency,
                        notifier: notifier.as_ref(),
                        settings: &reaper_settings,
                        own_account: own_account.clone(),
                        stop_by: None,
                    };
                    reaper
                        .on_event(&parse_value(&value), chrono::Utc::now())
                        .await
                        .map(reaper_line)
                        .map_err(|e| e.to_string())
                }
                Function::DeprecationEnforcer => {
                    let enforcer = Enforcer {
                        ec2: &deprecation_ec2,
                        lineage: &store,
                        audit: &audit,
                        ledger: &ledger,
                        notifier: notifier.as_ref(),
                        settings: &deprecation_settings,
                        own_account: own_account.clone(),
                        stop_by: None,
                    };
                    enforcer
                        .on_event(&parse_value(&value), chrono::Utc::now())
                        .await
                        .map(deprecation_line)
                        .map_err(|e| e.to_string())
                }
            };
            let function = route.function.name();
            let cost = if args.calls {
                format!(" [{}]", calls::render(&clients.calls().since(&before)))
            } else {
                String::new()
            };
            let (bucket, line) = match result {
                Ok(Line::Done(text)) => (0, text),
                Ok(Line::Duplicate(text)) => (1, format!("duplicate {text}")),
                Ok(Line::Ignored(reason)) => (2, format!("ignored: {reason}")),
                Err(err) => {
                    failed += 1;
                    (3, format!("error: {err}"))
                }
            };
            counts[bucket] += 1;
            println!("{shown}: {function}: {line}{cost}");
        }
    }
    eprintln!(
        "replayed {} file(s): {} handled, {} duplicate, {} ignored, {} error",
        files.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One function's answer to one event, as one line.
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
                report.mode,
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
