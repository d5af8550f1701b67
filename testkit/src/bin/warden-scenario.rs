//! Scenario runner for the demo, on the local stack (it refuses anything but loopback):
//!
//! - `warden-scenario seed OUT_DIR [TAG]`: plays the seed story and writes the events it
//!   produced to OUT_DIR as `NN-label.json`; prints the story's image ids as shell assignments
//!   (`GOLDEN=ami-… GOLDEN_REGION=…`).
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
use warden_testkit::{stack, story};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["seed", out] => seed(out, "demo").await,
        ["seed", out, tag] => seed(out, tag).await,
        ["inbox", name] => {
            let inbox = Inbox::create(&stack::sdk_config().await, name).await?;
            println!("TOPIC_ARN={} INBOX_URL={}", inbox.topic_arn, inbox.queue_url);
            Ok(())
        }
        ["expose", out, public, public_region, shared, shared_region] => {
            let sdk = stack::sdk_config().await;
            let trail = Trail::new("123456789012", "contractor");
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
            "usage: warden-scenario seed OUT_DIR [TAG] | inbox NAME | expose OUT_DIR IMAGE REGION IMAGE REGION | launch IMAGE REGION | read-inbox URL COUNT | history DIR | table NAME"
        ),
    }
}

async fn seed(out: &str, tag: &str) -> Result<()> {
    let sdk = stack::sdk_config().await;
    let trail = Trail::new("123456789012", "golden-image-pipeline");
    let played = story::play_seed_story(&sdk, &trail, tag).await?;
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
