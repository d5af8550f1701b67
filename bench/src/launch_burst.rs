//! `launch-burst [EVENTS] [CONCURRENCY,…] [LATENCY_MS]`: the launch guard under a burst of
//! RunInstances events, through the dispatcher the Lambda runs (`warden::handler::handle`).
//!
//! The seed story's images are recorded; EVENTS (1000) RunInstances records of its images (one
//! instance each, a distinct eventID each) are handled CONCURRENCY (1,10,50) at a time, as that
//! many concurrent execution environments would, behind a loopback proxy that holds every
//! answer LATENCY_MS (10, about DynamoDB's) back. Twice: with no quarantine (the path where
//! all is well: no alert) and with Gen1 quarantined (every launch of a descendant alerted, once).
//! Prints markdown: events a second, latency per event (p50, p99) and requests per event by
//! service, as the clients counted them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use warden::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::config::Config;
use warden::event::parse_value;
use warden::handler::{handle, Invocation, LaunchGuard};
use warden::quarantine::run::QuarantineStore;
use warden::quarantine::Quarantine;
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::faults::{FaultProxy, Latency, Mix};
use warden_testkit::inbox;
use warden_testkit::stack;
use warden_testkit::story::{play_seed_builds, StoryImage};

const OWN: &str = "123456789012";

fn run_instances(trail: &Trail, image: &StoryImage, n: usize) -> Value {
    trail.run_instances(image.region, &image.image_id, &format!("i-{n:017x}"))
}

struct Row {
    case: &'static str,
    concurrency: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    requests: BTreeMap<String, u64>,
    events: usize,
}

async fn burst(
    guard: &LaunchGuard,
    clients: &Clients,
    events: &[Value],
    concurrency: usize,
    case: &'static str,
) -> Row {
    let before = clients.calls().snapshot();
    let start = Instant::now();
    let latencies: Vec<Duration> = stream::iter(events.iter().map(|e| async move {
        let t = Instant::now();
        let inv = Invocation::unbounded(warden::ids::AccountId::parse(OWN));
        if let Err(err) = handle(guard, e, &inv).await {
            eprintln!("launch-burst: an event failed: {err}");
        }
        t.elapsed()
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let wall = start.elapsed();
    let mut requests = BTreeMap::new();
    for ((service, op), n) in clients.calls().since(&before) {
        *requests.entry(format!("{service}.{op}")).or_insert(0) += n;
    }
    Row { case, concurrency, wall, latencies, requests, events: events.len() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let arg = |n: usize| std::env::args().nth(n);
    let count: usize = arg(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let levels: Vec<usize> = arg(2)
        .unwrap_or_else(|| "1,10,50".into())
        .split(',')
        .filter_map(|c| c.parse().ok())
        .collect();
    let latency_ms: u64 = arg(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "launch-burst").await;
    let trail = Trail::new(OWN, "pipeline");
    let story = play_seed_builds(&sdk, &trail, &format!("burst-{}", std::process::id())).await?;
    let direct = Clients::new(&sdk);
    let store = LineageTable::from_clients(&direct, table.clone());
    for (_, event) in &story.events {
        record(&parse_value(event), &Ec2Catalogue::new(&direct), &store).await?;
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL")?;
    let proxy = FaultProxy::start(&endpoint, Mix::NONE, 1).await?;
    proxy
        .set_latency(Latency { fixed: Duration::from_millis(latency_ms), per_kib: Duration::ZERO });
    let clients = Clients::new(&proxy.sdk_config(&warden::aws::load_sdk_config().await).await);
    let topic = inbox::Inbox::create(&sdk, &format!("launch-burst-{}", std::process::id())).await?;
    let vars = [("LINEAGE_TABLE", table.clone()), ("TOPIC_ARN", topic.topic_arn.clone())];
    let config =
        Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))?;
    let guard = LaunchGuard::new(&clients, &config);
    let images: Vec<&StoryImage> =
        std::iter::once(&story.golden).chain(&story.generations).collect();
    let make = |offset: usize| -> Vec<Value> {
        (0..count).map(|n| run_instances(&trail, images[n % images.len()], offset + n)).collect()
    };
    let mut rows = Vec::new();
    for (i, &c) in levels.iter().enumerate() {
        rows.push(burst(&guard, &clients, &make(i * count), c, "no quarantine").await);
        eprintln!(
            "launch-burst: no quarantine at {c}: {:.1} s",
            rows.last().unwrap().wall.as_secs_f64()
        );
    }
    let gen1 = &story.generations[0];
    let q = Quarantine {
        image: warden::ids::ImageRef::new(
            warden::ids::Region::parse(gen1.region).context("region")?,
            warden::ids::ImageId::parse(&gen1.image_id).context("image")?,
        ),
        reason: "benchmark".into(),
        by: "launch-burst".into(),
        at: Utc::now(),
        disable: false,
        released: None,
    };
    store.record_quarantine(&q).await?;
    for (i, &c) in levels.iter().enumerate() {
        rows.push(
            burst(&guard, &clients, &make((levels.len() + i) * count), c, "Gen1 quarantined").await,
        );
        eprintln!(
            "launch-burst: quarantined at {c}: {:.1} s",
            rows.last().unwrap().wall.as_secs_f64()
        );
    }
    print(&rows, count, latency_ms);
    Ok(())
}

fn print(rows: &[Row], count: usize, latency_ms: u64) {
    println!("{count} RunInstances events (one instance of one of the seed story's five images each: golden, Gen1..Gen4), handled through the dispatcher the Lambda runs, behind a loopback proxy adding {latency_ms} ms to every request (moto's own time on top).");
    println!();
    println!("| case | concurrency | events/s | p50 | p99 | requests per event |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let per: Vec<String> = r
            .requests
            .iter()
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / r.events as f64))
            .collect();
        println!(
            "| {} | {} | {:.0} | {} ms | {} ms | {} |",
            r.case,
            r.concurrency,
            r.events as f64 / r.wall.as_secs_f64(),
            percentile(&sorted, 0.5).as_millis(),
            percentile(&sorted, 0.99).as_millis(),
            per.join(", ")
        );
    }
}
