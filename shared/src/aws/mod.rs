//! Adapters over the AWS SDK: the only place SDK types appear.
//!
//! [`Clients`] is built once per process: the SDK configuration from the environment (bounded
//! retries with backoff, timeouts, `AWS_ENDPOINT_URL` honoured by the SDK itself), a request
//! counter on every client, and EC2 clients per region on demand. The submodules implement the
//! domain's traits over them. Nothing here decides anything.

pub mod audit;
pub mod backfill;
pub mod calls;
pub mod deprecation;
pub mod ec2;
pub mod exposure;
pub mod idempotency;
pub mod launch;
pub mod ledger;
pub mod lineage_table;
pub mod org;
pub mod pace;
pub mod provenance_store;
pub mod quarantine_store;
mod recycle_bin;
pub mod securityhub;
pub mod snapshots;
pub mod sns;
pub mod sweep_store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

pub use calls::CallCounter;

use crate::ids::Region;

/// Attempts per AWS call (the first try included) before the error reaches the caller.
pub const MAX_ATTEMPTS: u32 = 4;

/// Loads the SDK configuration from the environment: credentials, region, endpoint, with
/// standard retries (exponential backoff with jitter, [`MAX_ATTEMPTS`]) and timeouts.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(2)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// The SDK clients of one process (in one account), sharing one configuration, one request
/// counter and, for EC2, one [`pace::Pacer`].
#[derive(Clone)]
pub struct Clients {
    sdk: SdkConfig,
    calls: CallCounter,
    pace: pace::Pace,
    pacer: Arc<pace::Pacer>,
    dynamodb: aws_sdk_dynamodb::Client,
    ec2: Arc<Mutex<HashMap<Region, aws_sdk_ec2::Client>>>,
}

impl Clients {
    /// Loads the configuration from the environment ([`load_sdk_config`]); EC2 requests paced
    /// as `EC2_PACE` says (AWS's buckets by default; [`crate::config::Config`] refuses a value
    /// it cannot read, so one here counts as the default).
    pub async fn from_env() -> Self {
        let pace = pace::Pace::parse(std::env::var("EC2_PACE").ok().as_deref())
            .unwrap_or(pace::Pace::Aws(1.0));
        Self::new(&load_sdk_config().await).paced(pace)
    }

    /// Clients over `sdk`, unpaced (tests and tools against a local emulator).
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::counted(sdk, CallCounter::default(), pace::Pace::Off)
    }

    /// These clients with their EC2 requests paced as `pace` says.
    pub fn paced(self, pace: pace::Pace) -> Self {
        Self::counted(&self.sdk, self.calls, pace)
    }

    /// Clients over another configuration (another account's credentials: buckets of their
    /// own) that count their requests with these and pace them alike.
    pub fn with_sdk_config(&self, sdk: &SdkConfig) -> Self {
        Self::counted(sdk, self.calls.clone(), self.pace)
    }

    fn counted(sdk: &SdkConfig, calls: CallCounter, pace: pace::Pace) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(calls.clone()).build(),
        );
        let factor = match pace {
            pace::Pace::Off => 1.0,
            pace::Pace::Aws(factor) => factor,
        };
        let pacer = Arc::new(pace::Pacer::new(factor));
        Self { sdk: sdk.clone(), calls, pace, pacer, dynamodb, ec2: Arc::default() }
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// An SNS client, in `region` when given (a topic's own region), else the default one.
    pub fn sns(&self, region: Option<&str>) -> aws_sdk_sns::Client {
        let mut conf =
            aws_sdk_sns::config::Builder::from(&self.sdk).interceptor(self.calls.clone());
        if let Some(region) = region {
            conf = conf.region(aws_config::Region::new(region.to_owned()));
        }
        aws_sdk_sns::Client::from_conf(conf.build())
    }

    /// A CloudTrail client for `region`.
    pub fn cloudtrail(&self, region: &Region) -> aws_sdk_cloudtrail::Client {
        let conf = aws_sdk_cloudtrail::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .interceptor(self.calls.clone())
            .build();
        aws_sdk_cloudtrail::Client::from_conf(conf)
    }

    /// An S3 client. A custom endpoint (an S3-compatible store or an endpoint URL of a VPC) is
    /// addressed by path; AWS's own endpoints by virtual host, as AWS asks.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.sdk.endpoint_url().is_some())
            .interceptor(self.calls.clone())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A Recycle Bin client for `region`.
    pub fn rbin(&self, region: &Region) -> aws_sdk_rbin::Client {
        let conf = aws_sdk_rbin::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .interceptor(self.calls.clone())
            .build();
        aws_sdk_rbin::Client::from_conf(conf)
    }

    /// The region the SDK is configured for (a Lambda's own region).
    pub fn home_region(&self) -> Option<Region> {
        self.sdk.region().and_then(|r| Region::parse(r.as_ref()))
    }

    /// The SDK configuration the clients share (for clients of other services).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The EC2 client for `region`, built on first use.
    pub fn ec2(&self, region: &Region) -> aws_sdk_ec2::Client {
        let mut clients = self.ec2.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let mut conf = aws_sdk_ec2::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.as_str().to_owned()))
                    .interceptor(self.calls.clone());
                if let pace::Pace::Aws(_) = self.pace {
                    let paced =
                        pace::PacedHttpClient::new(self.sdk.http_client(), self.pacer.clone());
                    conf = conf.http_client(paced);
                }
                aws_sdk_ec2::Client::from_conf(conf.build())
            })
            .clone()
    }
}

/// Renders an SDK error with its whole source chain (the service's code and message), which
/// the SDK's own `Display` leaves out.
pub(crate) fn describe<E: std::error::Error>(err: &E) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// How many BatchWriteItem or BatchGetItem requests of one call are in flight at once: a
/// sweep's thousands of audit items or readings would otherwise be written one request after
/// another, each a round trip.
pub(crate) const DYNAMODB_BATCHES: usize = 8;

/// Puts `items` into `table` with BatchWriteItem, 25 a request (its limit),
/// [`DYNAMODB_BATCHES`] requests at once; unprocessed items are sent again with a doubling
/// pause, [`MAX_ATTEMPTS`] × 2 rounds at most. Unconditional: only for items nothing else
/// writes.
pub(crate) async fn batch_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) -> Result<(), crate::lineage::StoreError> {
    use futures_util::{StreamExt, TryStreamExt};
    let mut items = items.into_iter().peekable();
    let mut chunks = Vec::new();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(25).collect::<Vec<_>>());
    }
    futures_util::stream::iter(chunks.into_iter().map(|chunk| put_chunk(client, table, chunk)))
        .buffer_unordered(DYNAMODB_BATCHES)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One BatchWriteItem of at most 25 `items`, its unprocessed items sent again.
async fn put_chunk(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) -> Result<(), crate::lineage::StoreError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let error = |message: String| crate::lineage::StoreError::Aws {
        table: table.to_owned(),
        operation: "BatchWriteItem",
        message,
    };
    let mut pending: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| error(describe(&e)))?;
            Ok(WriteRequest::builder().put_request(put).build())
        })
        .collect::<Result<_, crate::lineage::StoreError>>()?;
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        if rounds > MAX_ATTEMPTS * 2 {
            return Err(error(format!(
                "{} item(s) still unprocessed after retries (throttled)",
                pending.len()
            )));
        }
        if rounds > 1 {
            tokio::time::sleep(Duration::from_millis(50 << rounds.min(5))).await;
        }
        let out = client
            .batch_write_item()
            .request_items(table, std::mem::take(&mut pending))
            .send()
            .await
            .map_err(|e| error(describe(&e)))?;
        pending = out.unprocessed_items.unwrap_or_default().remove(table).unwrap_or_default();
    }
    Ok(())
}

/// The outcome of a conditional DynamoDB write whose refusal is an answer, not an error: its
/// condition says when the write is not wanted (a newer fact stands), so a refusal is `Ok`.
pub(crate) fn refused_is_ok<O, E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    result: Result<O, E>,
    error: impl FnOnce(E) -> crate::lineage::StoreError,
) -> Result<(), crate::lineage::StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
        Err(e) => Err(error(e)),
    }
}
