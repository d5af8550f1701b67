//! `ami-warden lineage ancestors|descendants|tree`.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use warden::aws::lineage_table::LineageTable;
use warden::ids::{ImageId, ImageRef, Region};
use warden::lineage::{render, Format, LineageStore, View};

#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Every ancestor of IMAGE_ID, nearest first (depth 1 = parent), back to the root.
    Ancestors(Target),
    /// Every descendant of IMAGE_ID at any depth and in any region (depth 1 = child).
    Descendants(Target),
    /// The descendants of IMAGE_ID drawn as a tree.
    Tree(Target),
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
}

pub async fn run(table: &str, command: LineageCommand) -> Result<ExitCode> {
    let (view, target) = match command {
        LineageCommand::Ancestors(t) => (View::Ancestors, t),
        LineageCommand::Descendants(t) => (View::Descendants, t),
        LineageCommand::Tree(t) => (View::Tree, t),
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
    let relatives = match view {
        View::Ancestors => store.ancestors(&image).await?,
        View::Descendants | View::Tree => store.descendants(&image).await?,
    };
    print!("{}", render(view, target.format, &subject, &relatives));
    Ok(ExitCode::SUCCESS)
}

fn image_ref(target: &Target) -> Result<ImageRef> {
    let image_id = ImageId::parse(&target.image_id)
        .ok_or_else(|| anyhow!("{:?} is not an image id (expected ami-…)", target.image_id))?;
    let region = match &target.region {
        Some(r) => r.clone(),
        None => std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .context("no region: pass --region or set AWS_REGION")?,
    };
    let region = Region::parse(&region).ok_or_else(|| anyhow!("{region:?} is not a region name"))?;
    Ok(ImageRef::new(region, image_id))
}
