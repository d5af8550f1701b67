//! `cold-start BINARY [RUNS]`: starts a function's binary RUNS times (default 10) under the
//! local Lambda Runtime API, on the local stack, and measures what Lambda would: the init time
//! (process start to its first poll for work), the first invocation (a CopyImage event: the
//! recorder and the deprecation enforcer handle it, the others acknowledge it), and
//! the peak resident memory (VmHWM). Prints a markdown table with the median and the maximum.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(binary) = args.first() else { bail!("usage: cold-start BINARY [RUNS]") };
    let runs: usize = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(10).max(1);
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "bench-cold").await;
    let trail = Trail::new("123456789012", "bench");
    let (mut inits, mut firsts, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..runs {
        let mut api = RuntimeApi::start().await;
        let mut child = tokio::process::Command::new(binary)
            .envs(api.lambda_env("cold-start"))
            .env("LINEAGE_TABLE", &table)
            // Required at init by some functions; a CopyImage event never reaches them.
            .env("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:ami-warden-bench")
            .env("SLACK_WEBHOOK_SECRET", "ami-warden/bench")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let pid = child.id().context("pid")?;
        let event = trail.api_call(
            "us-east-1",
            "CopyImage",
            json!({"sourceRegion": "us-east-1", "sourceImageId": format!("ami-0c01d000000{n:06}"), "name": "x"}),
            json!({"imageId": format!("ami-0c01d100000{n:06}")}),
        );
        api.invoke(event).await;
        let sent = Instant::now();
        let (_, reply) = api.reply(Duration::from_secs(30)).await.context("no reply")?;
        let first = sent.elapsed();
        if !matches!(reply, Reply::Response(_)) {
            bail!("run {n}: {reply:?}");
        }
        let init = api.time_to_first_poll().await.context("never polled")?;
        inits.push(init.as_secs_f64() * 1e3);
        // The invocation was queued before the first poll, so its latency includes the init.
        firsts.push((first.saturating_sub(init)).as_secs_f64() * 1e3);
        rss.push(peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
        child.kill().await.ok();
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "| {} ({runs} cold starts) | median | max |",
        binary.rsplit('/').next().unwrap_or(binary)
    );
    println!("|---|---|---|");
    println!(
        "| init: process start to first poll | {:.1} ms | {:.1} ms |",
        median(inits.clone()),
        max(&inits)
    );
    println!(
        "| first invocation (a CopyImage event, local stack) | {:.1} ms | {:.1} ms |",
        median(firsts.clone()),
        max(&firsts)
    );
    println!("| peak RSS | {:.1} MiB | {:.1} MiB |", median(rss.clone()), max(&rss));
    Ok(())
}
