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
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
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

type Calls = BTreeMap<(String, String), u64>;

fn requests(c: &Calls) -> u64 {
    c.values().sum()
}

/// The wall time and the AWS requests of one measured step.
struct Measured {
    time: Duration,
    calls: Calls,
}

/// Started before a step, stopped after it: what the step cost.
struct Stopwatch {
    started: Instant,
    before: Calls,
}

impl Stopwatch {
    fn start(clients: &Clients) -> Self {
        Self { before: clients.calls().snapshot(), started: Instant::now() }
    }

    fn stop(self, clients: &Clients) -> Measured {
        let time = self.started.elapsed();
        Measured { time, calls: clients.calls().since(&self.before) }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let (images, chain) = arguments()?;
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "bench-lineage").await;
    let clients = Clients::new(&sdk);
    let store = LineageTable::from_clients(&clients, &table);
    let catalogue = Ec2Catalogue::new(&clients);
    let region = "us-east-1";
    let events = estate_events(region, images, chain);

    let watch = Stopwatch::start(&clients);
    for event in &events {
        let outcome = record(&parse_value(event), &catalogue, &store).await?;
        ensure!(matches!(outcome, Outcome::Recorded { .. }), "unexpected {outcome:?}");
    }
    let recorded = watch.stop(&clients);

    let root = ImageRef::new(
        Region::parse(region).context("region")?,
        ImageId::parse(&ami(0)).context("id")?,
    );
    let watch = Stopwatch::start(&clients);
    let descendants = store.descendants(&root).await?;
    let descendants_cost = watch.stop(&clients);
    ensure!(
        descendants.len() == images - 1,
        "{} descendants, expected {}",
        descendants.len(),
        images - 1
    );

    let deepest = descendants.iter().max_by_key(|r| r.depth).context("a descendant")?.clone();
    let watch = Stopwatch::start(&clients);
    let ancestors = store.ancestors(&deepest.image).await?;
    let ancestors_cost = watch.stop(&clients);
    ensure!(ancestors.len() as u32 == deepest.depth, "ancestors of the deepest leaf");

    print_recording(images, chain, events.len(), &recorded);
    print_query("descendants of the root", descendants.len(), &descendants_cost);
    print_query("ancestors of the deepest leaf", ancestors.len(), &ancestors_cost);
    Ok(())
}

/// `[IMAGES] [CHAIN]`: at least 2 images (a root and a child) and chains at least 1 deep.
fn arguments() -> Result<(usize, usize)> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .context("usage: lineage-scale [IMAGES] [CHAIN]")?;
    let images = args.first().copied().unwrap_or(200).max(2);
    let chain = args.get(1).copied().unwrap_or(20).max(1);
    Ok((images, chain))
}

/// The CloudTrail events that build the estate. Image 0 is the root; images 1.. form families
/// of `chain` copies each, the first of each family copied from the root (the fan), the rest
/// from their predecessor (the chain).
fn estate_events(region: &str, images: usize, chain: usize) -> Vec<Value> {
    let trail = Trail::with_seed("123456789012", "bench", 42);
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
    events
}

/// The table's heading and the rows about recording the estate's `events`.
fn print_recording(images: usize, chain: usize, events: usize, recorded: &Measured) {
    let calls = &recorded.calls;
    println!(
        "| lineage at scale ({images} images, fan of {} families, chains {chain} deep) | figure |",
        (images - 1).div_ceil(chain)
    );
    println!("|---|---|");
    println!(
        "| record all events through the handler | {:.1} s, {:.2} ms/event |",
        recorded.time.as_secs_f64(),
        recorded.time.as_secs_f64() * 1e3 / events as f64
    );
    println!("| AWS requests to record them | {} ({}) |", requests(calls), calls::render(calls));
    println!(
        "| EC2 requests per CopyImage | {:.2} |",
        calls.iter().filter(|((s, _), _)| s == "EC2").map(|(_, n)| *n).sum::<u64>() as f64
            / (events - 1) as f64
    );
    println!(
        "| DynamoDB write requests per event | {:.2} |",
        calls
            .iter()
            .filter(|((s, o), _)| s == "DynamoDB" && o.contains("Write")
                || o == "PutItem"
                || o == "UpdateItem")
            .map(|(_, n)| *n)
            .sum::<u64>() as f64
            / events as f64
    );
}

/// The row about one lineage query that found `found` images.
fn print_query(what: &str, found: usize, cost: &Measured) {
    println!(
        "| {what}: {found} images | {:.0} ms, {} requests ({}) |",
        cost.time.as_secs_f64() * 1e3,
        requests(&cost.calls),
        calls::render(&cost.calls)
    );
}
