//! `org-sweep [ACCOUNTS] [REGIONS] [IMAGES] [PARALLEL,…] [LATENCY_MS]`: the organization sweeps
//! (exposure, deprecation, reaper) over a simulated organization on the local stack, behind a
//! loopback proxy that holds every answer back as an AWS endpoint would take to give it.
//!
//! ACCOUNTS (100) accounts, the own one and members reached through STS AssumeRole (moto tells
//! them apart by the credentials), in REGIONS (2) regions, each with IMAGES (2) images: a unit
//! per (job, account, region). Each job runs its units through `warden::handler::run_units`,
//! the code the CLI's `--organization --parallel N` runs and a Distributed Map child runs one
//! unit of, at each PARALLEL (1,8,32,64). Prints markdown: units a minute against parallelism,
//! requests a unit, and the model of 8,500 units at MaxConcurrency 100.
//!
//! `BENCH_MOTO_SHARDS` (comma-separated loopback URLs, `dev/bench org` sets it) spreads the
//! accounts across several moto servers, so that the emulator, one Python process serving one
//! request at a time, is not the ceiling: the proxy sends each request to its account's server
//! ([`warden_testkit::shards`]). Without it, the one server of `AWS_ENDPOINT_URL`. The seed goes
//! through the proxy too (before the latency is set), so each account lands in its server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use warden::aws::Clients;
use warden::config::Config;
use warden::handler::{
    run_units, DeprecationEnforcer, ExposureGuard, Function, Invocation, SnapshotReaper,
};
use warden::ids::{AccountId, Region};
use warden::sweep::{plan, Job};
use warden_testkit::faults::{FaultProxy, Latency, Mix};
use warden_testkit::{accounts, stack};

const OWN: &str = "123456789012";
const ROLE: &str = "AmiWardenMember";
const REGIONS: [&str; 6] =
    ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2", "eu-central-1", "sa-east-1"];

struct Args {
    accounts: usize,
    regions: usize,
    images: usize,
    parallel: Vec<usize>,
    latency: Latency,
    /// The moto servers the accounts are spread across; the own account's is the first.
    shards: Vec<String>,
}

fn args() -> Args {
    let arg = |n: usize| std::env::args().nth(n);
    let number = |n: usize, default: usize| arg(n).and_then(|a| a.parse().ok()).unwrap_or(default);
    let parallel = arg(4).unwrap_or_else(|| "1,8,32,64".into());
    let latency_ms = number(5, 60) as u64;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let shards = std::env::var("BENCH_MOTO_SHARDS").unwrap_or(endpoint);
    Args {
        accounts: number(1, 100),
        regions: number(2, 2).min(REGIONS.len()),
        images: number(3, 2),
        parallel: parallel.split(',').filter_map(|p| p.parse().ok()).collect(),
        // A fixed round trip, plus 1 ms a KiB of answer (a DescribeImages page is tens of KiB).
        latency: Latency {
            fixed: Duration::from_millis(latency_ms),
            per_kib: Duration::from_millis(1),
        },
        shards: shards.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    }
}

/// One measured run of one job at one parallelism.
struct Row {
    job: Job,
    parallel: usize,
    units: usize,
    failed: usize,
    wall: Duration,
    requests: u64,
    /// The share of the machine's CPU busy meanwhile (all its processes).
    cpu: Option<f64>,
    /// The CPU time this process (the units, their SDK clients and the proxy) and the moto
    /// servers spent meanwhile.
    bench_cpu: Option<Duration>,
    moto_cpu: Option<Duration>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args();
    let shards: Vec<&str> = args.shards.iter().map(String::as_str).collect();
    let proxy = FaultProxy::start_sharded(&shards, Mix::NONE, 1)
        .await
        .with_context(|| format!("a proxy in front of {shards:?}"))?;
    // Seeded through the proxy, so that each account's resources land in its shard.
    let sdk = proxy.sdk_config(&stack::sdk_config().await).await;
    let table = stack::fresh_lineage_table(&sdk, "org-sweep").await;
    let accounts = seed(&sdk, &args).await?;
    let regions: Vec<Region> =
        REGIONS[..args.regions].iter().filter_map(|r| Region::parse(r)).collect();
    proxy.set_latency(args.latency);
    let clients = Clients::new(&proxy.sdk_config(&warden::aws::load_sdk_config().await).await);
    let members: Vec<String> = accounts[1..].iter().map(ToString::to_string).collect();
    let vars = [
        ("LINEAGE_TABLE", table.clone()),
        ("MEMBER_ACCOUNTS", members.join(",")),
        ("MIN_AGE_DAYS", "0".into()),
    ];
    let config =
        Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))?;
    let mut rows = Vec::new();
    for job in Job::ALL {
        for &parallel in &args.parallel {
            let (at, place) = (&clients, (&config, &accounts[..], &regions[..]));
            let row = match job {
                Job::Exposure => measure(ExposureGuard::for_sweeps, at, place, job, parallel).await,
                Job::Deprecation => {
                    measure(DeprecationEnforcer::new, at, place, job, parallel).await
                }
                Job::Reaper => measure(SnapshotReaper::new, at, place, job, parallel).await,
            };
            eprintln!("org-sweep: {job} at {parallel}: {:.1} s", row.wall.as_secs_f64());
            rows.push(row);
        }
    }
    print_tables(&args, &rows);
    Ok(())
}

/// The accounts (the own first), each member with its role, and every unit's images.
async fn seed(sdk: &aws_config::SdkConfig, args: &Args) -> Result<Vec<AccountId>> {
    let run = std::process::id() % 100_000;
    let mut accounts = vec![OWN.to_owned()];
    accounts.extend((1..args.accounts).map(|n| format!("4{run:05}{n:06}")));
    stream::iter(accounts[1..].iter())
        .map(|member| accounts::create_member_role(sdk, member, ROLE, OWN))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let places: Vec<(String, &str, usize)> = accounts
        .iter()
        .flat_map(|a| {
            REGIONS[..args.regions]
                .iter()
                .flat_map(move |r| (0..args.images).map(move |i| (a.clone(), *r, i)))
        })
        .collect();
    eprintln!(
        "org-sweep: seeding {} images in {} units",
        places.len(),
        accounts.len() * args.regions
    );
    stream::iter(places.iter())
        .map(|(account, region, i)| async move {
            accounts::register_image(sdk, account, region, &format!("org-bench-{run}-{i}")).await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<String>>()
        .await?;
    Ok(accounts.iter().filter_map(|a| AccountId::parse(a)).collect())
}

/// One job's units at one parallelism, through a function built anew by `build` (as each
/// measured run did), counting its requests on `clients`.
async fn measure<F: Function>(
    build: fn(&Clients, &Config) -> F,
    clients: &Clients,
    (config, accounts, regions): (&Config, &[AccountId], &[Region]),
    job: Job,
    parallel: usize,
) -> Row {
    let function = &build(clients, config);
    let run = format!("bench-{job}-{parallel}-{}", std::process::id());
    let units = plan(job, &run, accounts, regions);
    let invocation = Invocation::unbounded(accounts.first().cloned());
    let before = clients.calls().snapshot();
    let cpu_before = cpu_ticks();
    let (bench_before, moto_before) = (process_cpu(&["self"]), process_cpu(&moto_pids()));
    let start = Instant::now();
    let (_, failed) = run_units(function, &units, &invocation, parallel, |_, _, _| {}).await;
    let wall = start.elapsed();
    let cpu = busy_share(cpu_before, cpu_ticks());
    let bench_cpu = spent(bench_before, process_cpu(&["self"]));
    let moto_cpu = spent(moto_before, process_cpu(&moto_pids()));
    let requests = clients.calls().since(&before).values().sum();
    let failed = failed.len();
    Row { job, parallel, units: units.len(), failed, wall, requests, cpu, bench_cpu, moto_cpu }
}

/// The moto servers' process ids (`BENCH_MOTO_PIDS`, which `dev/bench org` sets).
fn moto_pids() -> Vec<String> {
    let pids = std::env::var("BENCH_MOTO_PIDS").unwrap_or_default();
    pids.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// The CPU time (user and system) the processes `pids` spent so far, from `/proc/PID/stat`;
/// `None` if one cannot be read. Linux counts it in ticks of 1/100 s (USER_HZ).
fn process_cpu<S: AsRef<str>>(pids: &[S]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    let mut ticks = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_ref())).ok()?;
        // The command's name, in parentheses, may hold spaces: count from after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let (utime, stime): (u64, u64) =
            (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
        ticks += utime + stime;
    }
    Some(Duration::from_millis(ticks * 10))
}

fn spent(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

/// The machine's CPU time so far, busy and in all, in clock ticks (`/proc/stat`'s `cpu` line:
/// idle and iowait are not busy); `None` where there is no such file.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// The share of the machine's CPU that was busy between two readings: whether the emulator
/// and the bench together used every core (then the machine, not the units, set the pace).
fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((busy0, total0), (busy1, total1)) = (before?, after?);
    (total1 > total0).then(|| (busy1 - busy0) as f64 / (total1 - total0) as f64)
}

fn print_tables(args: &Args, rows: &[Row]) {
    println!(
        "Proxy latency: {} ms a request plus {} ms a KiB of answer. {} accounts x {} regions = {} units a job, {} images a unit. {}.\n",
        args.latency.fixed.as_millis(),
        args.latency.per_kib.as_millis(),
        args.accounts,
        args.regions,
        args.accounts * args.regions,
        args.images,
        servers(args.shards.len())
    );
    println!("| job | parallel | units | failed | wall time | units a minute | requests a unit | speed-up | of linear | machine CPU busy |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let per_minute = row.units as f64 / row.wall.as_secs_f64() * 60.0;
        let base = rows.iter().find(|r| r.job == row.job && r.parallel == 1);
        let speedup = base.map_or(f64::NAN, |b| b.wall.as_secs_f64() / row.wall.as_secs_f64());
        let cpu = row.cpu.map_or("?".to_owned(), |c| format!("{:.0}%", 100.0 * c));
        println!(
            "| {} | {} | {} | {} | {:.1} s | {:.0} | {:.1} | {:.1}x | {:.0}% | {cpu} |",
            row.job,
            row.parallel,
            row.units,
            row.failed,
            row.wall.as_secs_f64(),
            per_minute,
            row.requests as f64 / row.units as f64,
            speedup,
            100.0 * speedup / row.parallel as f64
        );
    }
    print_cpu(rows);
    print_model(rows);
}

/// What each unit cost in CPU, and how many cores throughput linear in parallelism would need
/// at that cost: where it is more than the machine has, the machine sets the pace.
fn print_cpu(rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("\nCPU a unit, measured (this machine has {cores} cores):\n");
    println!("| job | parallel | bench (units, SDK, proxy) | moto | cores linear throughput would need |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let (Some(bench), Some(moto)) = (row.bench_cpu, row.moto_cpu) else { continue };
        let Some(base) = rows.iter().find(|r| r.job == row.job && r.parallel == 1) else {
            continue;
        };
        let per_unit = |d: Duration| d.as_secs_f64() / row.units as f64;
        let alone = base.wall.as_secs_f64() / base.units as f64;
        let need = (per_unit(bench) + per_unit(moto)) * row.parallel as f64 / alone;
        println!(
            "| {} | {} | {:.0} ms | {:.0} ms | {need:.2} |",
            row.job,
            row.parallel,
            1000.0 * per_unit(bench),
            1000.0 * per_unit(moto)
        );
    }
}

/// The emulator's shape, for the header line.
fn servers(shards: usize) -> String {
    match shards {
        1 => "One moto server".to_owned(),
        n => format!("{n} moto servers, the accounts spread across them (shards)"),
    }
}

/// 8,500 units a job at MaxConcurrency 100: each unit's sequential time (from the run at
/// parallel 1) times 8,500, over 100 at the efficiency measured at the highest parallelism.
fn print_model(rows: &[Row]) {
    println!(
        "\n| job | one unit, alone | efficiency used | 8,500 units at MaxConcurrency 100 (model) |"
    );
    println!("|---|---|---|---|");
    let mut total = 0.0;
    for job in Job::ALL {
        let Some(base) = rows.iter().find(|r| r.job == job && r.parallel == 1) else { continue };
        let unit = base.wall.as_secs_f64() / base.units as f64;
        let top = rows.iter().filter(|r| r.job == job).max_by_key(|r| r.parallel).unwrap_or(base);
        let efficiency =
            (base.wall.as_secs_f64() / top.wall.as_secs_f64() / top.parallel as f64).min(1.0);
        let minutes = 8_500.0 * unit / (100.0 * efficiency) / 60.0;
        total += minutes;
        println!(
            "| {job} | {:.2} s | {:.0}% (at {}) | {:.1} min |",
            unit,
            100.0 * efficiency,
            top.parallel,
            minutes
        );
    }
    println!("| all three, in order | | | {total:.1} min |");
}
