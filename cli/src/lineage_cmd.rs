//! `ami-warden lineage ancestors|descendants|tree|impact|verify` (quarantine and release:
//! [`crate::quarantine_cmd`]).

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use warden::aws::{
    deprecation::Ec2Deprecation, exposure::Ec2Exposure, lineage_table::LineageTable,
    sns::SnsNotifier,
};
use warden::ids::{AccountId, ImageId, ImageRef, Region};
use warden::lineage::{only_account, render, verify, Format, LineageStore, View};
use warden::notify::Notifier;
use warden::quarantine::run::QuarantineStore;

#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Every ancestor of IMAGE_ID, nearest first (depth 1 = parent), back to the root.
    Ancestors(Target),
    /// Every descendant of IMAGE_ID at any depth and in any region (depth 1 = child).
    Descendants(Target),
    /// The descendants of IMAGE_ID drawn as a tree.
    Tree(Target),
    /// Blast radius: every descendant of IMAGE_ID and where each is used right now (instances,
    /// launch template versions, launch configurations, Auto Scaling groups), whether Allowed
    /// AMIs allows each, and the instances running ones it no longer allows.
    Impact(ImpactArgs),
    /// Provenance gate: exit 0 if IMAGE_ID descends from one of the --from images (printing the
    /// evidence chain, with whether Allowed AMIs allows each image), 1 if not (printing where
    /// the chain breaks), 2 on errors.
    Verify(VerifyArgs),
    /// Quarantine IMAGE and everything built from it (any depth, region or member account):
    /// record it, and with --enforce tag them ami-warden:quarantined, deprecate them now and
    /// (--disable) disable them. Without --enforce, print the plan.
    Quarantine(crate::quarantine_cmd::QuarantineArgs),
    /// Undo what the quarantine of IMAGE did (tags it added, deadlines it changed, images it
    /// disabled), and only that. Without --enforce, print what would be undone.
    Release(crate::quarantine_cmd::ReleaseArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ImpactFormat {
    Table,
    Json,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct ImpactArgs {
    /// The image, e.g. ami-0123456789abcdef0.
    image_id: String,
    /// The image's region [default: AWS_REGION, else AWS_DEFAULT_REGION].
    #[arg(long)]
    region: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ImpactFormat,
    /// The account the uses are looked up in [default: the credentials' account]; descendants
    /// in other accounts are looked up through MEMBER_ROLE_NAME when MEMBER_ACCOUNTS names
    /// them (or is `organization`), else listed with their uses marked not checked
    /// [env: AWS_ACCOUNT_ID].
    #[arg(long, env = "AWS_ACCOUNT_ID")]
    account: Option<String>,
    /// Also publish the summary to the topic in TOPIC_ARN.
    #[arg(long)]
    notify: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image to verify.
    image_id: String,
    /// An approved base: `ami-…@region`, or `ami-…` alone for that id in whatever region the
    /// ancestry has it. Repeat for several.
    #[arg(long = "from", required = true)]
    from: Vec<String>,
    /// The region of IMAGE_ID [default: AWS_REGION].
    #[arg(long)]
    region: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: VerifyFormat,
}

#[derive(Debug, Args)]
pub struct Target {
    /// The image, e.g. ami-0123456789abcdef0.
    image_id: String,
    /// The image's region [default: AWS_REGION, else AWS_DEFAULT_REGION].
    #[arg(long)]
    region: Option<String>,
    /// Output format: text, json, mermaid or dot.
    #[arg(long, default_value = "text")]
    format: Format,
    /// Only relatives owned by this account (a tree keeps the images leading to them).
    #[arg(long, value_parser = crate::output::parse_account)]
    account: Option<AccountId>,
}

pub async fn run(table: &str, command: LineageCommand) -> Result<ExitCode> {
    let (view, target) = match command {
        LineageCommand::Ancestors(t) => (View::Ancestors, t),
        LineageCommand::Descendants(t) => (View::Descendants, t),
        LineageCommand::Tree(t) => (View::Tree, t),
        LineageCommand::Impact(args) => return impact(table, args).await,
        LineageCommand::Verify(args) => return verify(table, args).await,
        LineageCommand::Quarantine(args) => {
            return crate::quarantine_cmd::quarantine(table, args).await
        }
        LineageCommand::Release(args) => return crate::quarantine_cmd::release(table, args).await,
    };
    let image = image_ref(&target)?;
    let clients = warden::aws::Clients::from_env().await;
    let store = LineageTable::from_clients(&clients, table);
    let Some(subject) = store.node(&image).await? else {
        eprintln!(
            "ami-warden: {image} is not in lineage table {table}: no event about it was recorded \
             (images from before the recorder was deployed need a backfill)"
        );
        return Ok(ExitCode::from(1));
    };
    let mut relatives = match view {
        View::Ancestors => store.ancestors(&image).await?,
        View::Descendants | View::Tree => store.descendants(&image).await?,
    };
    if let Some(account) = &target.account {
        relatives = only_account(&relatives, account, matches!(view, View::Tree));
    }
    print!("{}", render(view, target.format, &subject, &relatives));
    Ok(ExitCode::SUCCESS)
}

fn image_ref(target: &Target) -> Result<ImageRef> {
    parse_ref(&target.image_id, target.region.as_deref())
}

/// `ami-…` in `region` (else AWS_REGION), or `ami-…@region`.
pub fn parse_ref(raw: &str, region: Option<&str>) -> Result<ImageRef> {
    let (id, at) = match raw.split_once('@') {
        Some((id, r)) => (id, Some(r)),
        None => (raw, region),
    };
    let image_id =
        ImageId::parse(id).ok_or_else(|| anyhow!("{id:?} is not an image id (expected ami-…)"))?;
    let region = match at.map(str::to_owned) {
        Some(r) => r,
        None => std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .context("no region: pass --region or set AWS_REGION")?,
    };
    let region =
        Region::parse(&region).ok_or_else(|| anyhow!("{region:?} is not a region name"))?;
    Ok(ImageRef::new(region, image_id))
}

async fn impact(table: &str, args: ImpactArgs) -> Result<ExitCode> {
    let image = parse_ref(&args.image_id, args.region.as_deref())?;
    let given = match &args.account {
        Some(a) => {
            Some(AccountId::parse(a).ok_or_else(|| anyhow!("{a:?} is not a 12-digit account id"))?)
        }
        None => None,
    };
    let clients = warden::aws::Clients::from_env().await;
    let own = Some(crate::output::own_account(&clients, given).await?);
    let store = LineageTable::from_clients(&clients, table);
    let ec2 = Ec2Deprecation::new(&clients);
    // Organization mode (MEMBER_ACCOUNTS): other accounts' uses are looked up through their role.
    let config = warden::config::Config::from_env()?;
    let progress = |step: &str| eprintln!("{step}");
    let result = match warden::aws::org::MemberClients::new(
        &clients,
        &config.members,
        &config.member_role_name,
    ) {
        Some(members) => {
            warden::impact::impact(&store, &ec2, &members, &image, own.as_ref(), &progress).await
        }
        None => {
            let others = warden::impact::OwnAccountOnly::<Ec2Deprecation>::default();
            warden::impact::impact(&store, &ec2, &others, &image, own.as_ref(), &progress).await
        }
    };
    let mut impact = match result {
        Ok(i) => i,
        Err(warden::impact::ImpactError::Unknown(image)) => {
            eprintln!("ami-warden: {image} is not in lineage table {table}: no event about it was recorded");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    progress("checking Allowed AMIs");
    warden::impact::add_allowed(&mut impact, &Ec2Exposure::new(&clients), own.as_ref()).await;
    warden::impact::add_quarantine(&mut impact, &store).await?;
    match args.format {
        ImpactFormat::Table => print!("{}", warden::impact::table(&impact)),
        ImpactFormat::Json => println!("{}", serde_json::to_string_pretty(&impact)?),
        ImpactFormat::Mermaid => print!("{}", warden::impact::mermaid(&impact)),
    }
    if args.notify {
        let config = warden::config::Config::from_env()?;
        let topic = config.topic_arn.ok_or_else(|| anyhow!("--notify needs TOPIC_ARN"))?;
        let id = SnsNotifier::new(&clients, &topic)
            .publish(&warden::impact::notification(&impact))
            .await?;
        eprintln!("published the summary to {topic} (message {id})");
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(table: &str, args: VerifyArgs) -> Result<ExitCode> {
    let image = parse_ref(&args.image_id, args.region.as_deref())?;
    let approved: Vec<verify::Base> =
        args.from.iter().map(|f| parse_base(f)).collect::<Result<_>>()?;
    let clients = warden::aws::Clients::from_env().await;
    let store = LineageTable::from_clients(&clients, table);
    let subject = store
        .node(&image)
        .await?
        .unwrap_or_else(|| warden::lineage::LineageNode::unknown(image.clone()));
    let ancestors = store.ancestors(&image).await?;
    let mut wanted: Vec<ImageRef> = ancestors.iter().map(|r| r.image.clone()).collect();
    wanted.push(image.clone());
    let nodes = store.nodes(&wanted).await?;
    let mut verdict = verify::verify(&subject, &ancestors, &nodes, &approved);
    let chain: Vec<ImageRef> = verdict.chain().iter().map(|l| l.image.clone()).collect();
    let facts = warden::exposure::allowed::gather(&Ec2Exposure::new(&clients), &chain, false).await;
    for failure in &facts.failures {
        eprintln!("ami-warden: Allowed AMIs not checked: {failure}");
    }
    verify::annotate_allowed(&mut verdict, &facts);
    let quarantines = store.quarantines_of(&wanted).await?;
    let quarantined = verify::quarantined(&mut verdict, &quarantines);
    if let Some(note) = verify::ambiguity(&approved, &wanted) {
        eprintln!("ami-warden: {note}");
    }
    match args.format {
        VerifyFormat::Json => {
            let mut json = serde_json::to_value(&verdict)?;
            json["quarantined"] = serde_json::json!(quarantined);
            println!("{}", serde_json::to_string_pretty(&json)?)
        }
        VerifyFormat::Text => print!("{}", verdict_text(&verdict, quarantined.as_deref())),
    }
    Ok(match (verdict, quarantined) {
        (_, Some(_)) => ExitCode::from(1),
        (verify::Verdict::Descends { .. }, None) => ExitCode::SUCCESS,
        (verify::Verdict::DoesNotDescend { .. }, None) => ExitCode::from(1),
    })
}

/// `ami-…@region`, or `ami-…` alone: that id in any region.
fn parse_base(raw: &str) -> Result<verify::Base> {
    if raw.contains('@') {
        return Ok(verify::Base::At(parse_ref(raw, None)?));
    }
    let id = ImageId::parse(raw)
        .ok_or_else(|| anyhow!("{raw:?} is not an image id (expected ami-… or ami-…@region)"))?;
    Ok(verify::Base::AnyRegion(id))
}

/// The verdict as text; a quarantined ancestry makes it NOT VERIFIED whatever the bases.
fn verdict_text(verdict: &verify::Verdict, quarantined: Option<&str>) -> String {
    let (chain, head) = match (verdict, quarantined) {
        (
            verify::Verdict::Descends { chain, .. } | verify::Verdict::DoesNotDescend { chain, .. },
            Some(q),
        ) => (chain, format!("NOT VERIFIED: {q}\n")),
        (verify::Verdict::Descends { base, chain }, None) => {
            (chain, format!("VERIFIED: {} descends from {base}\n", chain[0].image))
        }
        (verify::Verdict::DoesNotDescend { chain, breaks }, None) => (
            chain,
            format!(
                "NOT VERIFIED: {} does not descend from an approved base: {breaks}\n",
                chain[0].image
            ),
        ),
    };
    let mut out = head;
    for (i, l) in chain.iter().enumerate() {
        let how = match (&l.origin, &l.parent) {
            (Some(o), Some(p)) => format!("{o} from {p}"),
            (Some(o), None) => o.clone(),
            (None, _) => "never recorded".into(),
        };
        out.push_str(&format!(
            "{:>2}. {} {} [{}] {how}; event {} at {} by {} (source: {}); Allowed AMIs: {}\n",
            i,
            l.image,
            l.name.as_deref().unwrap_or("-"),
            format!("{:?}", l.state).to_lowercase(),
            l.event_id.as_deref().unwrap_or("-"),
            l.at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
            l.actor.as_deref().unwrap_or("-"),
            l.source,
            l.allowed.as_ref().map_or("not checked".into(), |a| a.describe()),
        ));
    }
    out
}
