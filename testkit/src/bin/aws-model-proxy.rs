//! `aws-model-proxy`: the testkit's proxy as a process of its own, so that other tools (Cloud
//! Custodian, the AWS CLI, anything that honours `AWS_ENDPOINT_URL`) meet the local stack at
//! AWS's latency and EC2's request limits. Loopback only, as the proxy itself.
//!
//! ```text
//! aws-model-proxy [--upstream http://127.0.0.1:PORT] [--latency-ms N] [--per-kib-ms M]
//!                 [--ec2-buckets aws|off]
//! ```
//!
//! Prints its endpoint URL on the first line of stdout, then serves until killed.
//! `GET /_proxy/stats` on that endpoint gives the EC2 model's statistics as JSON (requests,
//! throttled, each bucket, the floor, the busiest bucket); `POST /_proxy/reset` zeroes them and
//! fills the buckets. `docs/aws-model.md` describes the model.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use warden_testkit::aws_model::Ec2Buckets;
use warden_testkit::faults::{FaultProxy, Latency, Mix};

const USAGE: &str = "usage: aws-model-proxy [--upstream http://127.0.0.1:PORT] [--latency-ms N] \
                     [--per-kib-ms M] [--ec2-buckets aws|off]";

#[derive(Debug, PartialEq)]
struct Args {
    upstream: String,
    latency: Latency,
    buckets: Option<Ec2Buckets>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse(std::env::args().skip(1))?;
    let proxy = FaultProxy::start(&args.upstream, Mix::NONE, 1)
        .await
        .with_context(|| format!("starting a proxy in front of {}", args.upstream))?;
    proxy.set_latency(args.latency);
    proxy.set_ec2_buckets(args.buckets);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", proxy.endpoint_url())?;
    stdout.flush()?;
    // The proxy serves on its own tasks; this one only keeps the process (and the proxy) alive.
    std::future::pending::<()>().await;
    Ok(())
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
    let mut parsed = Args {
        upstream: std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        latency: Latency::default(),
        buckets: Some(Ec2Buckets::aws()),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        const FLAGS: [&str; 4] = ["--upstream", "--latency-ms", "--per-kib-ms", "--ec2-buckets"];
        if !FLAGS.contains(&flag.as_str()) {
            bail!("unknown argument {flag}\n{USAGE}");
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => bail!("{flag} needs a value\n{USAGE}"),
        };
        match flag.as_str() {
            "--upstream" => parsed.upstream = value,
            "--latency-ms" => parsed.latency.fixed = millis(&flag, &value)?,
            "--per-kib-ms" => parsed.latency.per_kib = millis(&flag, &value)?,
            _ => parsed.buckets = buckets(&value)?,
        }
    }
    if parsed.upstream.is_empty() {
        bail!("no upstream: pass --upstream or set AWS_ENDPOINT_URL (eval \"$(dev/local-stack env)\")");
    }
    Ok(parsed)
}

fn millis(flag: &str, value: &str) -> Result<Duration> {
    let ms: f64 = value.parse().with_context(|| format!("{flag} {value}: not a number"))?;
    if !ms.is_finite() || ms < 0.0 {
        bail!("{flag} {value}: must be zero or more milliseconds");
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn buckets(value: &str) -> Result<Option<Ec2Buckets>> {
    match value {
        "aws" => Ok(Some(Ec2Buckets::aws())),
        "off" => Ok(None),
        _ => bail!("--ec2-buckets {value}: expected aws or off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn flags_set_upstream_latency_and_buckets() {
        let parsed = args(
            "--upstream http://127.0.0.1:5000 --latency-ms 60 --per-kib-ms=2 --ec2-buckets off",
        )
        .unwrap();
        assert_eq!(parsed.upstream, "http://127.0.0.1:5000");
        assert_eq!(parsed.latency.fixed, Duration::from_millis(60));
        assert_eq!(parsed.latency.per_kib, Duration::from_millis(2));
        assert_eq!(parsed.buckets, None);
        let defaults = args("--upstream http://127.0.0.1:5000").unwrap();
        assert_eq!(defaults.latency, Latency::default());
        assert_eq!(defaults.buckets, Some(Ec2Buckets::aws()));
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let refused = |line: &str| args(line).unwrap_err().to_string();
        assert!(refused("--upstream u --latency-ms soon").contains("not a number"));
        assert!(refused("--upstream u --latency-ms -5").contains("zero or more"));
        assert!(refused("--upstream u --ec2-buckets some").contains("aws or off"));
        assert!(refused("--upstream u --jitter 5").contains("unknown argument"));
        assert!(refused("--upstream").contains("needs a value"));
    }
}
