//! `ami-warden lineage quarantine|release`: take a vulnerable image and everything built from
//! it out of use, and put it back ([`warden::quarantine`]).

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use chrono::Utc;
use clap::Args;
use warden::aws::{deprecation::Ec2Deprecation, lineage_table::LineageTable, sns::SnsNotifier};
use warden::config::Mode;
use warden::ids::ImageRef;
use warden::impact::OtherAccounts;
use warden::notify::Notifier;
use warden::quarantine::run::{
    notification, step_line, QuarantineError, QuarantineReport, Quarantiner, ReleaseReport,
};
use warden::quarantine::Quarantine;

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The image: `ami-…` (in --region, else AWS_REGION) or `ami-…@region`.
    image: String,
    #[arg(long)]
    region: Option<String>,
    /// Why (a CVE, a finding): recorded, and written into the tag of every image.
    #[arg(long)]
    reason: String,
    /// Act: tag, deprecate now (and with --disable, disable) the image and its descendants.
    /// Without it, print the plan (the quarantine is recorded either way).
    #[arg(long)]
    enforce: bool,
    /// Also disable the images (DisableImage: no new launches, hidden from others).
    #[arg(long)]
    disable: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also publish the summary to the topic in TOPIC_ARN.
    #[arg(long)]
    notify: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The quarantined image: `ami-…` or `ami-…@region`.
    image: String,
    #[arg(long)]
    region: Option<String>,
    /// Undo what the quarantine did. Without it, print what would be undone.
    #[arg(long)]
    enforce: bool,
    #[arg(long)]
    json: bool,
}

/// The CLI's parts: the lineage table, EC2 here and in the members the lineage names.
struct Parts {
    clients: warden::aws::Clients,
    store: LineageTable,
    ec2: Ec2Deprecation,
    own: warden::ids::AccountId,
    by: String,
    config: warden::config::Config,
}

async fn parts(table: &str) -> Result<Parts> {
    let clients = warden::aws::Clients::from_env().await;
    let own = crate::output::own_account(&clients, None).await?;
    let by = warden::aws::org::caller_arn(&clients).await.map_err(anyhow::Error::msg)?;
    Ok(Parts {
        store: LineageTable::from_clients(&clients, table),
        ec2: Ec2Deprecation::new(&clients),
        config: warden::config::Config::from_env()?,
        clients,
        own,
        by,
    })
}

fn mode(enforce: bool) -> Mode {
    if enforce {
        Mode::Enforce
    } else {
        Mode::Report
    }
}

/// Runs `f` with a quarantiner reaching members through MEMBER_ROLE_NAME when MEMBER_ACCOUNTS
/// names them, else only the own account (members' images are reported as not reached).
macro_rules! with_quarantiner {
    ($parts:expr, $mode:expr, |$q:ident| $body:expr) => {{
        let p = &$parts;
        match warden::aws::org::MemberClients::new(
            &p.clients,
            &p.config.members,
            &p.config.member_role_name,
        ) {
            Some(members) => {
                let $q = quarantiner(p, &members, $mode);
                $body
            }
            None => {
                let others = warden::impact::OwnAccountOnly::<Ec2Deprecation>::default();
                let $q = quarantiner(p, &others, $mode);
                $body
            }
        }
    }};
}

fn quarantiner<'a, O: OtherAccounts>(
    p: &'a Parts,
    others: &'a O,
    mode: Mode,
) -> Quarantiner<'a, LineageTable, Ec2Deprecation, O> {
    Quarantiner {
        store: &p.store,
        ec2: &p.ec2,
        others,
        own_account: Some(p.own.clone()),
        mode,
        exempt_tag_key: &p.config.exempt_tag_key,
    }
}

pub async fn quarantine(table: &str, args: QuarantineArgs) -> Result<ExitCode> {
    let image = crate::lineage_cmd::parse_ref(&args.image, args.region.as_deref())?;
    let p = parts(table).await?;
    let declared = Quarantine {
        image: image.clone(),
        reason: args.reason.clone(),
        by: p.by.clone(),
        at: Utc::now(),
        disable: args.disable,
        released: None,
    };
    let result =
        with_quarantiner!(p, mode(args.enforce), |q| q.quarantine(declared, Utc::now()).await);
    let report = match result {
        Ok(report) => report,
        Err(e @ QuarantineError::Unknown(_)) => {
            eprintln!("ami-warden: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", quarantine_text(&report));
    }
    if args.notify {
        publish(&p, &report).await?;
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn publish(p: &Parts, report: &QuarantineReport) -> Result<()> {
    let topic = p.config.topic_arn.clone().ok_or_else(|| anyhow!("--notify needs TOPIC_ARN"))?;
    // The notifier as the functions build it: the chat topic too, when configured.
    let notifier = SnsNotifier::from_config(&p.clients, &p.config)
        .unwrap_or_else(|| SnsNotifier::new(&p.clients, &topic));
    let id = notifier.publish(&notification(report)).await?;
    eprintln!("published the summary to {topic} (message {id})");
    Ok(())
}

fn quarantine_text(report: &QuarantineReport) -> String {
    let q = &report.quarantine;
    let disabling = if q.disable { " (images disabled too)" } else { "" };
    let mut text = match report.mode {
        Mode::Enforce => format!(
            "{} quarantined since {} by {}: {}{disabling}\n",
            q.image,
            q.at.format("%Y-%m-%d %H:%M UTC"),
            q.by,
            q.reason
        ),
        Mode::Report => format!("{} would be quarantined: {}{disabling}\n", q.image, q.reason),
    };
    for step in &report.steps {
        text.push_str(&format!("  {}\n", step_line(step, report.mode)));
    }
    for e in &report.errors {
        text.push_str(&format!("  error: {e}\n"));
    }
    if report.mode == Mode::Report {
        text.push_str("report mode: nothing was changed in EC2; --enforce acts\n");
    }
    text.push_str(&format!("where they run: ami-warden lineage impact {}\n", q.image));
    text
}

pub async fn release(table: &str, args: ReleaseArgs) -> Result<ExitCode> {
    let image = crate::lineage_cmd::parse_ref(&args.image, args.region.as_deref())?;
    let p = parts(table).await?;
    let by = p.by.clone();
    let result =
        with_quarantiner!(p, mode(args.enforce), |q| q.release(&image, &by, Utc::now()).await);
    let report = match result {
        Ok(report) => report,
        Err(e @ (QuarantineError::Unknown(_) | QuarantineError::NotQuarantined(_))) => {
            eprintln!("ami-warden: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", release_text(&image, &report));
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn release_text(image: &ImageRef, report: &ReleaseReport) -> String {
    let verb = if report.mode == Mode::Enforce { "" } else { "would " };
    let mut text = format!("release of {image} ({}):\n", report.quarantine.reason);
    for r in &report.restores {
        let mut what = Vec::new();
        if r.enable {
            what.push("enable".to_owned());
        }
        if let Some(at) = r.deprecate_at {
            what.push(format!("set its deadline back to {}", at.format("%Y-%m-%d %H:%M")));
        }
        if r.undeprecate {
            what.push("take the deadline off".to_owned());
        }
        if r.untag {
            what.push("untag".to_owned());
        }
        if what.is_empty() {
            what.push("nothing (quarantine changed nothing here)".to_owned());
        }
        text.push_str(&format!("  {}: {verb}{}\n", r.image, what.join(", ")));
        for note in &r.notes {
            text.push_str(&format!("    {note}\n"));
        }
    }
    for e in &report.errors {
        text.push_str(&format!("  error: {e}\n"));
    }
    match (&report.quarantine.released, report.mode) {
        (Some(_), _) => text.push_str("released\n"),
        (None, Mode::Enforce) => text.push_str("not released: fix the errors and run it again\n"),
        (None, Mode::Report) => text.push_str("report mode: nothing was changed; --enforce acts\n"),
    }
    text
}
