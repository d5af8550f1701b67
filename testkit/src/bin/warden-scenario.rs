//! Scenario runner for the demo, on the local stack (it refuses anything but loopback):
//!
//! - `warden-scenario seed OUT_DIR [TAG]`: plays the seed story and writes the events it
//!   produced to OUT_DIR as `NN-label.json`; prints the story's image ids as shell assignments
//!   (`GOLDEN=ami-… GOLDEN_REGION=…`).
//! - `warden-scenario seed-builds OUT_DIR [TAG]`: the seed story up to, not including, Gen2's
//!   deregistration (written and printed as `seed` does), so that its events can be delivered
//!   before Gen2 goes, as live ones would be.
//! - `warden-scenario deregister DIR LABEL IMAGE REGION`: deregisters the image for real (its
//!   snapshots stay) and adds the two events that produces to DIR, numbered after the files
//!   already there; prints their paths, one a line.
//! - `warden-scenario recycle-bin-rules REGION`: adds to REGION the two Recycle Bin rules
//!   `template.yaml` deploys (snapshots the reaper tags, images the deprecation enforcer tags
//!   are kept), as a deployment there would have them.
//! - `warden-scenario recycle-bin REGION [IMAGE]`: lists the snapshots in REGION's Recycle Bin
//!   (only those AWS made for IMAGE, by their description, when given), each with the time it
//!   stays restorable.
//! - `warden-scenario inbox NAME`: creates an SNS topic with an SQS queue subscribed; prints
//!   `TOPIC_ARN=… INBOX_URL=…`.
//! - `warden-scenario expose OUT_DIR PUBLIC_IMAGE REGION SHARED_IMAGE REGION`: a contractor
//!   makes the first image public and shares the second with an outside account, for real;
//!   writes the two events.
//! - `warden-scenario launch IMAGE REGION`: launches an instance from the image; prints its id.
//! - `warden-scenario read-inbox INBOX_URL COUNT`: waits for COUNT messages and prints the
//!   structured payload of each, one JSON document per line.
//! - `warden-scenario history DIR`: hands the CloudTrail records of the events in DIR to the
//!   local stack's CloudTrail history (what `LookupEvents` then returns, as AWS keeps 90 days).
//! - `warden-scenario table NAME`: creates an empty lineage table NAME (template schema).

use anyhow::{bail, Context, Result};
use std::time::Duration;

use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::{recycle_bin, stack, story};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["seed", out] => seed(out, "demo", Story::Whole).await,
        ["seed", out, tag] => seed(out, tag, Story::Whole).await,
        ["seed-builds", out] => seed(out, "demo", Story::Builds).await,
        ["seed-builds", out, tag] => seed(out, tag, Story::Builds).await,
        ["deregister", dir, label, image, region] => deregister(dir, label, image, region).await,
        ["recycle-bin-rules", region] => {
            let snapshots = recycle_bin::add_template_rule(ACCOUNT, region).await?;
            let images = recycle_bin::add_template_image_rule(ACCOUNT, region).await?;
            println!("  {region}: rule {snapshots} (template.yaml's ReapedSnapshotsRecycleBinRule), rule {images} (RetiredImagesRecycleBinRule)");
            Ok(())
        }
        ["recycle-bin", region] => list_recycle_bin(region, None).await,
        ["recycle-bin", region, image] => list_recycle_bin(region, Some(image)).await,
        ["inbox", name] => {
            let inbox = Inbox::create(&stack::sdk_config().await, name).await?;
            println!("TOPIC_ARN={} INBOX_URL={}", inbox.topic_arn, inbox.queue_url);
            Ok(())
        }
        ["expose", out, public, public_region, shared, shared_region] => {
            let sdk = stack::sdk_config().await;
            let trail = Trail::new(ACCOUNT, "contractor");
            let made_public = exposure::modify_launch_permission(&sdk, &trail, public_region, public, &[Share::All], &[]).await?;
            let outside = Share::Account("999988887777".into());
            let shared = exposure::modify_launch_permission(&sdk, &trail, shared_region, shared, &[outside], &[]).await?;
            std::fs::create_dir_all(out).with_context(|| format!("creating {out}"))?;
            for (name, event) in [("01-make-public.json", made_public), ("02-share-outside.json", shared)] {
                let path = format!("{out}/{name}");
                std::fs::write(&path, serde_json::to_vec_pretty(&event)?).with_context(|| format!("writing {path}"))?;
                eprintln!("  wrote {path}");
            }
            Ok(())
        }
        ["launch", image, region] => {
            let instance = warden_testkit::estate::running_instance(&stack::sdk_config().await, region, image).await?;
            println!("{instance}");
            Ok(())
        }
        ["read-inbox", url, count] => {
            let count: usize = count.parse().context("COUNT")?;
            let inbox = Inbox::open(&stack::sdk_config().await, url);
            let got = inbox.receive(count, Duration::from_secs(20)).await?;
            if got.len() < count {
                bail!("only {} of {count} messages arrived", got.len());
            }
            for m in got {
                println!("{}", serde_json::to_string(&m.message)?);
            }
            Ok(())
        }
        ["history", dir] => {
            let mut paths: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading {dir}"))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            let mut events = Vec::new();
            for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
                events.push(serde_json::from_slice(&std::fs::read(path)?).with_context(|| format!("{}", path.display()))?);
            }
            let added = warden_testkit::history::record(&events).await?;
            eprintln!("  {added} CloudTrail records added to the local stack's history");
            Ok(())
        }
        ["table", name] => {
            let sdk = stack::sdk_config().await;
            stack::create_lineage_table(&sdk, name).await?;
            Ok(())
        }
        _ => bail!(
            "usage: warden-scenario seed OUT_DIR [TAG] | seed-builds OUT_DIR [TAG] | deregister DIR LABEL IMAGE REGION | recycle-bin-rules REGION | recycle-bin REGION [IMAGE] | inbox NAME | expose OUT_DIR IMAGE REGION IMAGE REGION | launch IMAGE REGION | read-inbox URL COUNT | history DIR | table NAME"
        ),
    }
}

/// The account the story plays in (moto's default account).
const ACCOUNT: &str = "123456789012";

/// The whole seed story, or the story up to Gen2's deregistration.
enum Story {
    Whole,
    Builds,
}

async fn seed(out: &str, tag: &str, which: Story) -> Result<()> {
    let sdk = stack::sdk_config().await;
    let trail = Trail::new(ACCOUNT, "golden-image-pipeline");
    let played = match which {
        Story::Whole => story::play_seed_story(&sdk, &trail, tag).await?,
        Story::Builds => story::play_seed_builds(&sdk, &trail, tag).await?,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {out}"))?;
    for (i, (label, event)) in played.events.iter().enumerate() {
        let path = format!("{out}/{:02}-{label}.json", i + 1);
        std::fs::write(&path, serde_json::to_vec_pretty(event)?)
            .with_context(|| format!("writing {path}"))?;
        eprintln!("  wrote {path}");
    }
    println!("GOLDEN={} GOLDEN_REGION={}", played.golden.image_id, played.golden.region);
    for g in &played.generations {
        println!(
            "{}={} {}_REGION={}",
            g.label.to_uppercase(),
            g.image_id,
            g.label.to_uppercase(),
            g.region
        );
    }
    println!("INSTANCE={}", played.instance_id);
    Ok(())
}

/// Deregisters `image` (labelled `label` in file names) and adds its events to `dir`, numbered
/// after the JSON files already there.
async fn deregister(dir: &str, label: &str, image: &str, region: &str) -> Result<()> {
    let sdk = stack::sdk_config().await;
    let trail = Trail::new(ACCOUNT, "golden-image-pipeline");
    let image = story::StoryImage {
        label: label.to_owned().leak(),
        region: region.to_owned().leak(),
        image_id: image.to_owned(),
    };
    let events = story::deregister(&sdk, &trail, &image).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    let already = std::fs::read_dir(dir)
        .with_context(|| format!("reading {dir}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    for (i, (label, event)) in events.iter().enumerate() {
        let path = format!("{dir}/{:02}-{label}.json", already + i + 1);
        std::fs::write(&path, serde_json::to_vec_pretty(event)?)
            .with_context(|| format!("writing {path}"))?;
        println!("{path}");
    }
    Ok(())
}

/// Prints the snapshots in `region`'s Recycle Bin (those made for `image`, when given): id,
/// until when it can be restored, and its description.
async fn list_recycle_bin(region: &str, image: Option<&str>) -> Result<()> {
    let sdk = stack::sdk_config().await;
    let listed = story::ec2(&sdk, region)
        .list_snapshots_in_recycle_bin()
        .send()
        .await
        .context("ListSnapshotsInRecycleBin")?;
    let when = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "?".into())
    };
    // What AWS writes on the snapshots it makes for an image: "Created by CreateImage(i-…) for
    // ami-… " or "Copied for DestinationAmi ami-… from SourceAmi …".
    let made_for = |description: &str, image: &str| {
        let words: Vec<&str> = description.split_whitespace().collect();
        words.windows(2).any(|w| matches!(w[0], "for" | "DestinationAmi") && w[1] == image)
    };
    let shown: Vec<_> = listed
        .snapshots()
        .iter()
        .filter(|s| image.is_none_or(|i| made_for(s.description().unwrap_or_default(), i)))
        .collect();
    if shown.is_empty() {
        println!("  (no such snapshot in the Recycle Bin of {region})");
    }
    for s in shown {
        println!(
            "  {}  binned {}  restorable until {}  \"{}\"",
            s.snapshot_id().unwrap_or("?"),
            when(s.recycle_bin_enter_time()),
            when(s.recycle_bin_exit_time()),
            s.description().unwrap_or_default()
        );
    }
    Ok(())
}
