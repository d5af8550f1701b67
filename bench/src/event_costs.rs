//! `event-costs [ROUNDS]`: what each event kind costs each function, on the local stack.
//!
//! Plays the seed story ROUNDS times (fresh images each time) plus one exposure per round, and
//! hands every event to the handlers its rules route it to — the code the Lambdas run. For each
//! (event kind, function) it reports the AWS requests sent (counted by the SDK interceptor)
//! and the handler's wall time, median over the rounds. Wall time on moto is mostly moto: the
//! median round trip of a minimal request is measured too, and "compute" is wall time minus
//! requests × that round trip (an estimate of the time spent in AMI Warden's own code).
//! Prints a markdown table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;
use warden::aws::{calls, Clients};
use warden::config::Config;
use warden::handler::{
    DeprecationEnforcer, ExposureGuard, Functions, Invocation, LaunchGuard, LineageRecorder,
    SnapshotReaper,
};
use warden::ids::AccountId;
use warden::routes::ROUTES;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{modify_launch_permission, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;
use warden_testkit::story::play_seed_story;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The functions as deployed with remediation on (so a public share costs its removal), the
/// reaper in report mode and the enforcer in enforce mode (so a new image costs its stamp).
fn functions(clients: &Clients, table: &str, topic: &str) -> Result<Functions> {
    let config = |vars: &[(&str, &str)]| {
        let fixed = [("LINEAGE_TABLE", table), ("TOPIC_ARN", topic)];
        Config::from_lookup(|name| {
            fixed.iter().chain(vars).find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        })
    };
    Ok(Functions {
        recorder: LineageRecorder::new(clients, &config(&[])?),
        guard: ExposureGuard::new(clients, &config(&[("REMEDIATE_PUBLIC", "true")])?),
        enforcer: DeprecationEnforcer::new(clients, &config(&[("MODE", "enforce")])?),
        reaper: SnapshotReaper::new(clients, &config(&[("MODE", "report")])?),
        launch: LaunchGuard::new(clients, &config(&[])?),
    })
}

/// (event kind, function, requests sent) → (wall times, request count): one row per distinct
/// request pattern (a CopyImage of an image already gone costs less than one of a live image).
type Results = BTreeMap<(String, &'static str, String), (Vec<Duration>, u64)>;

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "event-costs").await;
    let inbox = Inbox::create(&sdk, &format!("event-costs-{}", std::process::id())).await?;
    let rtt = round_trip(&clients, &table).await?;
    let functions = functions(&clients, &table, &inbox.topic_arn)?;
    let invocation = Invocation::unbounded(AccountId::parse("123456789012"));
    let mut results = Results::new();
    for round in 0..rounds {
        for event in round_events(&sdk, round).await? {
            deliver(&functions, &clients, &invocation, &event, &mut results).await?;
        }
    }
    print_table(rtt, results);
    Ok(())
}

/// The median round trip of a minimal request (a GetItem of a missing key).
async fn round_trip(clients: &Clients, table: &str) -> Result<Duration> {
    let mut rtts = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        clients
            .dynamodb()
            .get_item()
            .table_name(table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("none".into()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("none".into()))
            .send()
            .await?;
        rtts.push(start.elapsed());
    }
    Ok(median(rtts))
}

/// One round's events: the seed story, played with fresh images, and one public share.
async fn round_events(sdk: &aws_config::SdkConfig, round: usize) -> Result<Vec<Value>> {
    let trail = Trail::new("123456789012", "bench");
    let story =
        play_seed_story(sdk, &trail, &format!("bench-{round}-{}", std::process::id())).await?;
    let gen3 = &story.generations[2];
    let public =
        modify_launch_permission(sdk, &trail, gen3.region, &gen3.image_id, &[Share::All], &[])
            .await?;
    let mut events: Vec<Value> = story.events.iter().map(|(_, e)| e.clone()).collect();
    events.push(public);
    Ok(events)
}

/// Hands one event to every function whose rule matches it, timing each and counting its
/// requests; failed calls (`errorCode`) are skipped, as the rules skip them.
async fn deliver(
    functions: &Functions,
    clients: &Clients,
    invocation: &Invocation,
    event: &Value,
    results: &mut Results,
) -> Result<()> {
    let kind = match event["detail-type"].as_str() {
        Some("EC2 AMI State Change") => {
            format!("AMI state {}", event["detail"]["State"].as_str().unwrap_or("?"))
        }
        _ => event["detail"]["eventName"].as_str().unwrap_or("?").to_owned(),
    };
    if event["detail"].get("errorCode").is_some() {
        return Ok(());
    }
    for route in ROUTES.iter().filter(|r| r.matches(event)) {
        let before = clients.calls().snapshot();
        let start = Instant::now();
        let ok = functions.deliver(route.function, event, invocation).await.is_ok();
        let wall = start.elapsed();
        anyhow::ensure!(ok, "{kind} failed in {}", route.function.name());
        let counts = clients.calls().since(&before);
        let total: u64 = counts.values().sum();
        let entry = results
            .entry((kind.clone(), route.function.name(), calls::render(&counts)))
            .or_insert_with(|| (Vec::new(), total));
        entry.0.push(wall);
    }
    Ok(())
}

fn print_table(rtt: Duration, results: Results) {
    println!(
        "Local stack round trip (median of 30 minimal requests): {:.1} ms\n",
        rtt.as_secs_f64() * 1e3
    );
    println!("| event | function | AWS requests | requests | runs | wall time (median) | compute (est.) |");
    println!("|---|---|---|---|---|---|---|");
    for ((kind, function, rendered), (walls, total)) in results {
        let runs = walls.len();
        let wall = median(walls);
        let compute = wall.saturating_sub(rtt * u32::try_from(total).unwrap_or(0));
        println!(
            "| {kind} | {function} | {rendered} | {total} | {runs} | {:.1} ms | {:.1} ms |",
            wall.as_secs_f64() * 1e3,
            compute.as_secs_f64() * 1e3
        );
    }
}
