//! `lineage-scale [IMAGES] [CHAIN]`: records an estate of IMAGES images (default 200) through
//! the lineage recorder's handler and the real DynamoDB adapter on the configured endpoint (the
//! local stack), then asks for the descendants of the root and the ancestors of the deepest
//! leaf. The estate is a golden root with a wide fan of families, each a copy chain CHAIN deep
//! (default 20). Prints a markdown table of wall times and AWS requests.
//!
//! The request counts are the product's (its SDK interceptor). On the local stack the wall
//! times are mostly moto's: `dev/bench lineage` runs this against a server that also counts
//! requests and the time moto spends on each operation. moto as shipped needed 0.6 s a
//! recorded event at 1,000 images, growing with the table (every Query sorted the whole
//! table; every update ran ten passes over its expression's syntax tree);
//! `dev/moto_ext/dynamodb.py` answers those at the cost of the items they touch.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::json;
use warden::aws::{calls, ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::event::parse_value;
use warden::ids::{ImageId, ImageRef, Region};
use warden::lineage::LineageStore;
use warden::recorder::{record, Outcome};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::stack;

fn ami(n: usize) -> String {
    format!("ami-{n:017x}")
}

fn requests(c: &BTreeMap<(String, String), u64>) -> u64 {
    c.values().sum()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .context("usage: lineage-scale [IMAGES] [CHAIN]")?;
    let images = args.first().copied().unwrap_or(200).max(2);
    let chain = args.get(1).copied().unwrap_or(20).max(1);
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "bench-lineage").await;
    let clients = Clients::new(&sdk);
    let store = LineageTable::from_clients(&clients, &table);
    let catalogue = Ec2Catalogue::new(&clients);
    let trail = Trail::with_seed("123456789012", "bench", 42);
    let region = "us-east-1";

    // Image 0 is the root; images 1.. form families of `chain` copies each, the first of each
    // family copied from the root (the fan), the rest from their predecessor (the chain).
    let mut events = vec![trail.api_call(
        region,
        "RegisterImage",
        json!({"name": "golden"}),
        json!({"imageId": ami(0)}),
    )];
    for n in 1..images {
        let parent = if (n - 1) % chain == 0 { 0 } else { n - 1 };
        events.push(trail.api_call(
            region,
            "CopyImage",
            json!({"sourceRegion": region, "sourceImageId": ami(parent), "name": format!("img-{n}")}),
            json!({"imageId": ami(n)}),
        ));
    }

    let started = Instant::now();
    let before = clients.calls().snapshot();
    for event in &events {
        let outcome = record(&parse_value(event), &catalogue, &store).await?;
        ensure!(matches!(outcome, Outcome::Recorded { .. }), "unexpected {outcome:?}");
    }
    let record_time = started.elapsed();
    let record_calls = clients.calls().since(&before);

    let root = ImageRef::new(
        Region::parse(region).context("region")?,
        ImageId::parse(&ami(0)).context("id")?,
    );
    let before = clients.calls().snapshot();
    let started = Instant::now();
    let descendants = store.descendants(&root).await?;
    let descendants_time = started.elapsed();
    let descendants_calls = clients.calls().since(&before);
    ensure!(
        descendants.len() == images - 1,
        "{} descendants, expected {}",
        descendants.len(),
        images - 1
    );

    let deepest = descendants.iter().max_by_key(|r| r.depth).context("a descendant")?.clone();
    let before = clients.calls().snapshot();
    let started = Instant::now();
    let ancestors = store.ancestors(&deepest.image).await?;
    let ancestors_time = started.elapsed();
    let ancestors_calls = clients.calls().since(&before);
    ensure!(ancestors.len() as u32 == deepest.depth, "ancestors of the deepest leaf");

    println!(
        "| lineage at scale ({images} images, fan of {} families, chains {chain} deep) | figure |",
        (images - 1).div_ceil(chain)
    );
    println!("|---|---|");
    println!(
        "| record all events through the handler | {:.1} s, {:.2} ms/event |",
        record_time.as_secs_f64(),
        record_time.as_secs_f64() * 1e3 / events.len() as f64
    );
    println!(
        "| AWS requests to record them | {} ({}) |",
        requests(&record_calls),
        calls::render(&record_calls)
    );
    println!(
        "| EC2 requests per CopyImage | {:.2} |",
        record_calls.iter().filter(|((s, _), _)| s == "EC2").map(|(_, n)| *n).sum::<u64>() as f64
            / (events.len() - 1) as f64
    );
    println!(
        "| DynamoDB write requests per event | {:.2} |",
        record_calls
            .iter()
            .filter(|((s, o), _)| s == "DynamoDB" && o.contains("Write")
                || o == "PutItem"
                || o == "UpdateItem")
            .map(|(_, n)| *n)
            .sum::<u64>() as f64
            / events.len() as f64
    );
    println!(
        "| descendants of the root: {} images | {:.0} ms, {} requests ({}) |",
        descendants.len(),
        descendants_time.as_secs_f64() * 1e3,
        requests(&descendants_calls),
        calls::render(&descendants_calls)
    );
    println!(
        "| ancestors of the deepest leaf: {} images | {:.0} ms, {} requests ({}) |",
        ancestors.len(),
        ancestors_time.as_secs_f64() * 1e3,
        requests(&ancestors_calls),
        calls::render(&ancestors_calls)
    );
    Ok(())
}
