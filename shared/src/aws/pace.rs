//! Paces one account's EC2 requests to the token buckets EC2 throttles them with.
//!
//! EC2 limits each account's API requests per region with token buckets, one per kind of
//! action: a request takes a token, a bucket refills at a fixed rate up to its size, and a
//! request that finds its bucket empty is refused with `RequestLimitExceeded`. A sweep that
//! sends faster than a bucket refills is throttled, and the SDK's retries (a few, with backoff,
//! out of a limited retry quota) then fail calls that would have succeeded a moment later.
//! So the EC2 clients of [`super::Clients`] wait for a token of the same bucket before each
//! request (each attempt, since AWS counts attempts): a run then goes as fast as AWS allows,
//! and no faster. Other callers in the account share AWS's buckets; what they cause is left
//! to the SDK's retries.
//!
//! The buckets are AWS's defaults ("Request throttling for the Amazon EC2 API"), see
//! [`Bucket::of`]. An account whose limits AWS raised can scale them (`EC2_PACE=2` doubles
//! sizes and rates); `EC2_PACE=off` sends unpaced (e.g. against a local emulator, to measure
//! its speed).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The size (the burst) and refill rate a second of an EC2 action's bucket. AWS keeps a bucket
/// per action (in each account and region); the action's category sets its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub size: f64,
    pub refill: f64,
}

/// Actions with sizes of their own, as AWS lists them (of those AMI Warden may call).
const OWN_SIZES: [(&str, Bucket); 10] = [
    ("CreateTags", Bucket { size: 100.0, refill: 10.0 }),
    ("DeleteTags", Bucket { size: 100.0, refill: 10.0 }),
    ("DeregisterImage", Bucket { size: 100.0, refill: 5.0 }),
    ("DeleteSnapshot", Bucket { size: 100.0, refill: 5.0 }),
    ("ModifyImageAttribute", Bucket { size: 100.0, refill: 5.0 }),
    ("ModifySnapshotAttribute", Bucket { size: 100.0, refill: 5.0 }),
    ("CreateSnapshot", Bucket { size: 100.0, refill: 5.0 }),
    ("CreateVolume", Bucket { size: 100.0, refill: 5.0 }),
    ("DeleteVolume", Bucket { size: 100.0, refill: 5.0 }),
    ("CopyImage", Bucket { size: 100.0, refill: 1.0 }),
];

/// Actions whose calls without a filter or pagination go to a smaller bucket of their own.
const UNFILTERED: [&str; 7] = [
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
];

/// The suffix of the bucket key of such an unfiltered call.
const UNFILTERED_KEY: &str = "#unfiltered";

impl Bucket {
    /// The bucket AWS throttles `action` with by default (docs/aws-model.md has the table and
    /// its source): its own size, else its category's: non-mutating (Describe*, Get*, List*,
    /// Search*) 100 and 20 a second, unfiltered and unpaginated (`…#unfiltered`) 50 and 10,
    /// mutating 50 and 5.
    pub fn of(action: &str) -> Bucket {
        if action.ends_with(UNFILTERED_KEY) {
            return Bucket { size: 50.0, refill: 10.0 };
        }
        if let Some((_, bucket)) = OWN_SIZES.iter().find(|(a, _)| *a == action) {
            return *bucket;
        }
        if ["Describe", "Get", "List", "Search"].iter().any(|p| action.starts_with(p)) {
            Bucket { size: 100.0, refill: 20.0 }
        } else {
            Bucket { size: 50.0, refill: 5.0 }
        }
    }
}

/// The smallest factor `EC2_PACE` takes.
pub const MIN_FACTOR: f64 = 0.5;

/// How the EC2 clients of one process pace their requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Unpaced.
    Off,
    /// AWS's default buckets, sizes and rates multiplied by this factor.
    Aws(f64),
}

impl Pace {
    /// `EC2_PACE`: unset or `aws` (AWS's defaults), `off`, or a positive factor.
    pub fn parse(value: Option<&str>) -> Result<Pace, String> {
        match value.map(str::trim) {
            None | Some("") | Some("aws") => Ok(Pace::Aws(1.0)),
            Some("off") => Ok(Pace::Off),
            // Below half of AWS's sizes, the waits of the actions run at once would outlast the
            // SDK's 10-second attempt timeout.
            Some(v) => match v.parse::<f64>() {
                Ok(f) if f.is_finite() && (MIN_FACTOR..=1000.0).contains(&f) => Ok(Pace::Aws(f)),
                _ => Err(format!(
                    "EC2_PACE={v:?}: expected aws, off, or a factor from 0.5 to 1000 such as 2"
                )),
            },
        }
    }
}

/// The buckets of one account, by region and action, as this process has used them.
#[derive(Debug)]
pub struct Pacer {
    factor: f64,
    levels: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl Pacer {
    pub fn new(factor: f64) -> Self {
        Self { factor, levels: Mutex::default() }
    }

    /// Takes a token of `action`'s bucket in `region`, waiting for its turn.
    pub async fn take(&self, region: &str, action: &str) {
        let wait = self.reserve(region, action, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the bucket's next token, owed if there is none yet, and says how long until it is
    /// there. The bucket may go below zero, so waiters are served in the order they came and
    /// none waits longer than the tokens owed before it take to refill.
    fn reserve(&self, region: &str, action: &str, now: Instant) -> Duration {
        let bucket = Bucket::of(action);
        let (size, refill) = (bucket.size * self.factor, bucket.refill * self.factor);
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let key = (region.to_owned(), action.to_owned());
        let (tokens, at) = levels.entry(key).or_insert((size, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * refill).min(size);
        *at = now;
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-*tokens / refill).unwrap_or(Duration::from_secs(3600))
    }
}

/// An HTTP client that paces EC2 requests with a [`Pacer`] before handing them to `inner`.
#[derive(Clone, Debug)]
pub struct PacedHttpClient {
    inner: SharedHttpClient,
    pacer: Arc<Pacer>,
}

impl PacedHttpClient {
    /// Paces requests through `inner`, else through the SDK's default HTTPS client (hyper 1 and
    /// rustls with aws-lc, as the SDK builds it when none is configured).
    pub fn new(inner: Option<SharedHttpClient>, pacer: Arc<Pacer>) -> Self {
        let inner = inner.unwrap_or_else(|| {
            use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_https()
        });
        Self { inner, pacer }
    }
}

impl HttpClient for PacedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(PacedConnector { inner, pacer: self.pacer.clone() })
    }
}

struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Arc<Pacer>,
}

impl fmt::Debug for PacedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacedConnector").finish_non_exhaustive()
    }
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pacer) = (self.inner.clone(), self.pacer.clone());
        let paced = ec2_action(&request);
        HttpConnectorFuture::new(async move {
            if let Some((region, action)) = paced {
                pacer.take(&region, &action).await;
            }
            inner.call(request).await
        })
    }
}

/// The region and bucket key of a signed EC2 request: the region from its SigV4 credential
/// scope (`Credential=AKID/DATE/REGION/ec2/aws4_request`), the action from its form body, with
/// [`UNFILTERED_KEY`] when it is one of the [`UNFILTERED`] actions called without a filter,
/// `MaxResults` or `NextToken` (a list of ids alone counts as unfiltered, to be safe).
fn ec2_action(request: &HttpRequest) -> Option<(String, String)> {
    let auth = request.headers().get("authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    let parts: Vec<&str> = scope.split('/').collect();
    let (region, service) = (parts.get(2)?, parts.get(3)?);
    if *service != "ec2" {
        return None;
    }
    let body = std::str::from_utf8(request.body().bytes()?).ok()?;
    let action = body.split('&').find_map(|pair| pair.strip_prefix("Action="))?;
    Some(((*region).to_owned(), bucket_key(action, body)))
}

fn bucket_key(action: &str, body: &str) -> String {
    let narrowed = body.split('&').any(|pair| {
        pair.starts_with("Filter.")
            || pair.starts_with("MaxResults=")
            || pair.starts_with("NextToken=")
    });
    if UNFILTERED.contains(&action) && !narrowed {
        format!("{action}{UNFILTERED_KEY}")
    } else {
        action.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_sized_as_aws_sizes_them() {
        assert_eq!(Bucket::of("DescribeImages"), Bucket { size: 100.0, refill: 20.0 });
        assert_eq!(Bucket::of("GetImageBlockPublicAccessState").refill, 20.0);
        assert_eq!(Bucket::of("DeregisterImage"), Bucket { size: 100.0, refill: 5.0 });
        assert_eq!(Bucket::of("CreateTags").refill, 10.0);
        assert_eq!(Bucket::of("EnableImageDeprecation"), Bucket { size: 50.0, refill: 5.0 });
    }

    #[test]
    fn a_bucket_lends_its_burst_then_its_refill_rate_per_action_and_region() {
        let pacer = Pacer::new(1.0);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(pacer.reserve("us-east-1", "DeregisterImage", t0), Duration::ZERO);
        }
        let waits: Vec<f64> = (0..3)
            .map(|_| pacer.reserve("us-east-1", "DeregisterImage", t0).as_secs_f64())
            .collect();
        let expected = [0.2, 0.4, 0.6];
        assert!(waits.iter().zip(expected).all(|(w, e)| (w - e).abs() < 1e-9), "{waits:?}");
        assert!(pacer.reserve("eu-west-1", "DeregisterImage", t0).is_zero(), "another region");
        assert!(pacer.reserve("us-east-1", "DeleteSnapshot", t0).is_zero(), "another action");
        // 0.8 s on, the three owed tokens are back and one more: the next is free.
        let later = t0 + Duration::from_millis(800);
        assert!(pacer.reserve("us-east-1", "DeregisterImage", later).is_zero());
        assert!(!pacer.reserve("us-east-1", "DeregisterImage", later).is_zero(), "4 in 0.8 s");
    }

    #[test]
    fn unfiltered_calls_of_some_describes_have_a_smaller_bucket_of_their_own() {
        let unfiltered =
            bucket_key("DescribeSnapshots", "Action=DescribeSnapshots&SnapshotId.1=snap-1");
        assert_eq!(unfiltered, "DescribeSnapshots#unfiltered");
        assert_eq!(Bucket::of(&unfiltered), Bucket { size: 50.0, refill: 10.0 });
        let paged = "Action=DescribeSnapshots&Owner.1=self&MaxResults=1000";
        assert_eq!(bucket_key("DescribeSnapshots", paged), "DescribeSnapshots");
        assert_eq!(
            bucket_key("DescribeImages", "Action=DescribeImages&ImageId.1=ami-1"),
            "DescribeImages"
        );
    }

    #[test]
    fn a_factor_scales_sizes_and_rates() {
        let pacer = Pacer::new(2.0);
        let t0 = Instant::now();
        for _ in 0..200 {
            assert_eq!(pacer.reserve("r", "DeleteSnapshot", t0), Duration::ZERO);
        }
        let wait = pacer.reserve("r", "DeleteSnapshot", t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn the_pace_is_read_from_its_setting() {
        assert_eq!(Pace::parse(None), Ok(Pace::Aws(1.0)));
        assert_eq!(Pace::parse(Some("aws")), Ok(Pace::Aws(1.0)));
        assert_eq!(Pace::parse(Some("off")), Ok(Pace::Off));
        assert_eq!(Pace::parse(Some("2.5")), Ok(Pace::Aws(2.5)));
        assert!(Pace::parse(Some("0")).is_err());
        assert!(Pace::parse(Some("0.1")).is_err(), "waits would outlast the attempt timeout");
        assert!(Pace::parse(Some("1e-300")).is_err());
        assert!(Pace::parse(Some("fast")).is_err());
    }
}
