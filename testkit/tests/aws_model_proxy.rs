//! The proxy's model of EC2's request limits ([`warden_testkit::aws_model`]) in front of the
//! local stack: an empty bucket refuses as EC2 does, the SDK's retries wait for the refill, each
//! account and Region has buckets of its own, other services are never throttled, and the
//! `aws-model-proxy` binary serves its statistics. Run with `dev/test` or after
//! `eval "$(dev/local-stack up)"`.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
use aws_sdk_ec2::types::Filter;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use warden::aws::Clients;
use warden::ids::AccountId;
use warden_testkit::aws_model::{Bucket, Ec2Buckets, DEFAULT_ACCOUNT};
use warden_testkit::faults::{FaultProxy, Mix};
use warden_testkit::{accounts, stack};

type Described = Result<DescribeImagesOutput, SdkError<DescribeImagesError>>;

/// AWS's table with the non-mutating (`Describe*`) buckets scaled down to `bucket`.
fn describe_buckets(bucket: Bucket) -> Ec2Buckets {
    let mut table = Ec2Buckets::aws();
    table.non_mutating = bucket;
    table
}

/// The local stack's configuration with `retry` as the retry policy, talking through `proxy`.
async fn sdk_through(proxy: &FaultProxy, retry: RetryConfig) -> SdkConfig {
    let base = stack::sdk_config().await.to_builder().retry_config(retry).build();
    proxy.sdk_config(&base).await
}

fn ec2_in(sdk: &SdkConfig, region: &str) -> aws_sdk_ec2::Client {
    let conf =
        aws_sdk_ec2::config::Builder::from(sdk).region(Region::new(region.to_owned())).build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// One DescribeImages, filtered (the non-mutating bucket, not the unfiltered one) to nothing.
async fn describe(ec2: &aws_sdk_ec2::Client) -> Described {
    let nothing = Filter::builder().name("name").values("aws-model-proxy-matches-nothing").build();
    ec2.describe_images().owners("self").filters(nothing).send().await
}

fn assert_throttled(result: Described, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{what}: {err:?}");
}

/// Spends a fresh bucket of `burst` tokens: that many calls pass, the next is throttled.
async fn drain(ec2: &aws_sdk_ec2::Client, burst: usize, whose: &str) {
    for i in 0..burst {
        describe(ec2).await.unwrap_or_else(|e| panic!("{whose}, call {i}: {e:?}"));
    }
    assert_throttled(describe(ec2).await, &format!("{whose}: its bucket is empty"));
}

#[tokio::test]
async fn without_retries_a_describe_burst_is_refused_after_the_bucket_empties() {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 1).await;
    // Burst 5; a refill slow enough (a token in 4 s) that the calls finish before one comes.
    proxy.set_ec2_buckets(Some(describe_buckets(Bucket::new(5.0, 0.25))));
    let ec2 = aws_sdk_ec2::Client::new(&sdk_through(&proxy, RetryConfig::disabled()).await);

    for i in 0..5 {
        describe(&ec2).await.unwrap_or_else(|e| panic!("call {i} within the burst: {e:?}"));
    }
    let err = describe(&ec2).await.expect_err("the sixth call finds the bucket empty");

    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(err.message(), Some("Request limit exceeded."));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    let body = err.raw_response().and_then(|r| r.body().bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(body);
    assert!(body.contains("<RequestID>") && !body.contains("<RequestID></RequestID>"), "{body}");
    assert_eq!(proxy.counts().forwarded, 5, "the throttled call never reached the stack");
    let stats = proxy.model_stats();
    let bucket = stats.bucket(DEFAULT_ACCOUNT, "us-east-1", "DescribeImages").expect("counted");
    assert_eq!((bucket.admitted, bucket.throttled, stats.throttled), (5, 1, 1));
}

#[tokio::test]
async fn with_standard_retries_a_burst_succeeds_no_faster_than_the_bucket_refills() {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 2).await;
    let size = Bucket::new(5.0, 4.0);
    proxy.set_ec2_buckets(Some(describe_buckets(size)));
    let retry = RetryConfig::standard().with_max_attempts(10);
    let ec2 = aws_sdk_ec2::Client::new(&sdk_through(&proxy, retry).await);

    // All 16 at once: four workers of four calls each could, on a loaded machine, send slower
    // than the bucket refills and never meet throttling.
    let started = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let ec2 = ec2.clone();
            tokio::spawn(async move {
                describe(&ec2).await.map_err(|e| format!("{e:?}"))?;
                Ok::<_, String>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker ran").unwrap_or_else(|e| panic!("retries gave up: {e}"));
    }
    let elapsed = started.elapsed();

    let stats = proxy.model_stats();
    let bucket = stats.bucket(DEFAULT_ACCOUNT, "us-east-1", "DescribeImages").expect("counted");
    assert_eq!(bucket.admitted, 16, "each call admitted once");
    assert!(bucket.throttled > 0, "a burst of 16 on a bucket of 5 meets throttling");
    let floor = (16.0 - size.burst) / size.refill_per_sec;
    assert!((bucket.floor_seconds - floor).abs() < 1e-9, "{bucket:?}");
    assert_eq!(stats.floor_seconds, bucket.floor_seconds);
    assert_eq!(stats.busiest.as_ref(), Some(&bucket.key));
    assert!(
        elapsed >= Duration::from_secs_f64(floor),
        "16 calls took {elapsed:?}, less than the bucket's floor of {floor} s"
    );
}

#[tokio::test]
async fn accounts_and_regions_do_not_share_tokens() {
    const ROLE: &str = "aws-model-proxy-test";
    let member = AccountId::parse("210987654321").expect("valid");
    let acting_as = "333344445555";
    accounts::create_member_role(
        &stack::sdk_config().await,
        member.as_str(),
        ROLE,
        DEFAULT_ACCOUNT,
    )
    .await
    .expect("member role");
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 3).await;
    // Three tokens each and next to no refill: a bucket shared by two callers would run dry.
    proxy.set_ec2_buckets(Some(describe_buckets(Bucket::new(3.0, 0.01))));
    let sdk = sdk_through(&proxy, RetryConfig::disabled()).await;
    let assumed = warden::aws::org::assume(&Clients::new(&sdk), &member, ROLE)
        .await
        .expect("the member's role, assumed through the proxy");

    drain(&ec2_in(&sdk, "us-east-1"), 3, "own account in us-east-1").await;
    drain(&ec2_in(assumed.sdk_config(), "us-east-1"), 3, "assumed member in us-east-1").await;
    drain(&ec2_in(&sdk, "eu-west-1"), 3, "own account in eu-west-1").await;
    drain(&accounts::ec2(&sdk, acting_as, "us-east-1"), 3, "x-moto-account-id account").await;

    let stats = proxy.model_stats();
    let expected = [
        (DEFAULT_ACCOUNT, "us-east-1"),
        (member.as_str(), "us-east-1"),
        (DEFAULT_ACCOUNT, "eu-west-1"),
        (acting_as, "us-east-1"),
    ];
    for (account, region) in expected {
        let bucket = stats.bucket(account, region, "DescribeImages");
        let tally = bucket.map(|b| (b.admitted, b.throttled));
        assert_eq!(tally, Some((3, 1)), "{account} in {region}: {:#?}", stats.buckets);
    }
    assert_eq!(stats.buckets.len(), 4, "{:#?}", stats.buckets);
}

#[tokio::test]
async fn requests_to_other_services_are_never_throttled() {
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 4).await;
    proxy.set_ec2_buckets(Some(Ec2Buckets::uniform(Bucket::new(1.0, 0.01))));
    let sdk = sdk_through(&proxy, RetryConfig::disabled()).await;
    drain(&ec2_in(&sdk, "us-east-1"), 1, "EC2, the one service modelled").await;

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    for i in 0..20 {
        dynamodb.list_tables().limit(1).send().await.unwrap_or_else(|e| panic!("{i}: {e:?}"));
    }
    let sts = aws_sdk_sts::Client::new(&sdk);
    for i in 0..5 {
        sts.get_caller_identity().send().await.unwrap_or_else(|e| panic!("{i}: {e:?}"));
    }

    let stats = proxy.model_stats();
    assert_eq!((stats.requests, stats.throttled), (2 + 20 + 5, 1));
    assert_eq!(stats.buckets.len(), 1, "only EC2 has buckets: {:#?}", stats.buckets);
}

#[tokio::test]
async fn the_binary_prints_its_endpoint_and_serves_stats_and_reset() {
    let sdk = stack::sdk_config().await;
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("checked by sdk_config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aws-model-proxy"))
        .args(["--upstream", &upstream, "--latency-ms", "50"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("aws-model-proxy starts");
    let stdout = child.stdout.take().expect("piped");
    let first =
        tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).lines().next_line())
            .await
            .expect("the endpoint within 10 s")
            .expect("stdout readable")
            .expect("a first line");
    assert!(first.starts_with("http://127.0.0.1:"), "{first}");

    // Set on the client: an endpoint set on the SdkConfig's builder loses to AWS_ENDPOINT_URL.
    let conf = aws_sdk_ec2::config::Builder::from(&sdk).endpoint_url(&first).build();
    let ec2 = aws_sdk_ec2::Client::from_conf(conf);
    let started = Instant::now();
    describe(&ec2).await.expect("forwarded");
    assert!(started.elapsed() >= Duration::from_millis(50), "the answer was held back");

    let (status, stats) = proxy_path(&first, "GET", "/_proxy/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&stats["throttling"], &stats["requests"], &stats["throttled"]),
        (&true.into(), &1.into(), &0.into())
    );
    let bucket = &stats["buckets"][0];
    assert_eq!(
        (&bucket["account"], &bucket["region"]),
        (&DEFAULT_ACCOUNT.into(), &"us-east-1".into())
    );
    assert_eq!(
        (&bucket["action"], &bucket["class"]),
        (&"DescribeImages".into(), &"non-mutating".into())
    );
    assert_eq!((&bucket["burst"], &bucket["refill_per_sec"]), (&100.0.into(), &20.0.into()));
    assert_eq!((&bucket["admitted"], &bucket["floor_seconds"]), (&1.into(), &0.0.into()));
    assert_eq!(stats["busiest"]["action"], "DescribeImages");

    let (status, after) = proxy_path(&first, "POST", "/_proxy/reset").await;
    assert_eq!(status, 200);
    assert_eq!((&after["requests"], &after["buckets"]), (&0.into(), &Value::Array(vec![])));
    assert_eq!(proxy_path(&first, "GET", "/_proxy/stats").await.1["requests"], 0);
    assert_eq!(proxy_path(&first, "GET", "/_proxy/other").await.0, 404);
    child.kill().await.expect("stopped");
}

/// Calls one of the proxy's own paths; its status and JSON body (`null` when not JSON).
async fn proxy_path(endpoint: &str, method: &str, path: &str) -> (u16, Value) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("proxy reachable");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer read");
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
