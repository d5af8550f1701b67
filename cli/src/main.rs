//! `ami-warden`: the operator's command line over the same code the Lambdas run, against
//! whatever endpoint the AWS SDK is configured for (`AWS_ENDPOINT_URL` for the local stack).
//! Diagnostics go to stderr, answers to stdout. The subcommands:
//!
//! - `lineage ancestors|descendants|tree IMAGE` ([`lineage_cmd`]): the lineage graph, as a
//!   table, JSON, mermaid or dot; `lineage impact IMAGE`: every descendant and where it is used;
//!   `lineage verify IMAGE --from BASE`: the provenance gate (exit 0 or 1).
//! - `replay PATH…` ([`replay`]): event files through the handlers the Lambdas run, each to
//!   every function whose rule matches it.
//! - `backfill` ([`backfill_cmd`]): the lineage of images that existed before the recorder.
//! - `exposure` ([`exposure_cmd`]): the exposure sweep.
//! - `deprecation` ([`deprecation_cmd`]): the deprecation plan, carried out with `--enforce`.
//! - `snapshots` ([`snapshots_cmd`]): the snapshot reaper's sweep, carried out with `--enforce`.
//! - `notification render` ([`notification_cmd`]): payloads as email text or Slack messages.
//!
//! Commands that act do so for one account: `--account`, else the credentials' account (STS
//! GetCallerIdentity), said on stderr ([`output`]).

mod backfill_cmd;
mod deprecation_cmd;
mod exposure_cmd;
mod lineage_cmd;
mod notification_cmd;
mod org_sweep;
mod output;
mod quarantine_cmd;
mod replay;
mod snapshots_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// AMI Warden: AMI lineage, exposure, deprecation and snapshot governance.
///
/// Settings come from the same environment variables the Lambdas read (LINEAGE_TABLE,
/// KEEP_LATEST, …), except that nothing is deregistered, deleted, stamped or remediated without
/// `--enforce`, whatever MODE says; AWS credentials, region and endpoint from the usual AWS SDK
/// sources (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, …).
#[derive(Debug, Parser)]
#[command(
    name = "ami-warden",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit codes: 0 success; 1 the image is not in the lineage table, `replay` met an AWS\nfailure on some event, `exposure` found an exposed image or snapshot, or\n`snapshots` or `deprecation` had a failed\naction or lookup; 2 bad arguments or an\nAWS error."
)]
struct Cli {
    /// DynamoDB lineage table.
    #[arg(long, global = true, env = "LINEAGE_TABLE", default_value = warden::config::DEFAULT_LINEAGE_TABLE)]
    table: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the lineage graph: ancestors, descendants or the descendant tree of an image.
    #[command(subcommand)]
    Lineage(lineage_cmd::LineageCommand),
    /// Reconstruct the lineage of existing images from what AWS still knows (idempotent).
    Backfill(backfill_cmd::BackfillArgs),
    /// Feed event files through the handlers the Lambdas run, as EventBridge would deliver them.
    Replay(replay::ReplayArgs),
    /// Sweep for public or outside-allow-list images and public snapshots (read-only).
    Exposure(exposure_cmd::ExposureArgs),
    /// The deprecation plan: deadlines, and which old unused images retire (and why).
    Deprecation(deprecation_cmd::DeprecationArgs),
    /// The snapshot reaper's sweep: snapshots whose image is gone, decisions and savings.
    Snapshots(snapshots_cmd::SnapshotsArgs),
    /// Show notifications as people get them (email text, Slack Block Kit).
    #[command(subcommand)]
    Notification(notification_cmd::NotificationCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AMI_WARDEN_LOG")
                // The handlers' decision lines are the Lambdas' logs; the CLI prints its own.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,ami_warden_shared::handler=error")
                }),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lineage(cmd) => lineage_cmd::run(&cli.table, cmd).await,
        Command::Replay(args) => replay::run(&cli.table, args).await,
        Command::Backfill(args) => backfill_cmd::run(&cli.table, args).await,
        Command::Exposure(args) => exposure_cmd::run(&cli.table, args).await,
        Command::Notification(cmd) => notification_cmd::run(cmd),
        Command::Snapshots(args) => snapshots_cmd::run(&cli.table, args).await,
        Command::Deprecation(args) => deprecation_cmd::run(&cli.table, args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ami-warden: {err:#}");
            ExitCode::from(2)
        }
    }
}
