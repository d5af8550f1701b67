//! A model of EC2's API request throttling, for the proxy in [`crate::faults`]: the token
//! buckets AWS keeps per account, per Region and per API action, so that a run against the
//! local stack meets `RequestLimitExceeded` where AWS would throw it, and can tell how long AWS
//! would have made it take.
//!
//! The model is plain data and arithmetic, with no I/O: the proxy reads the facts of each
//! request into a [`Call`], asks [`AwsModel::admit`] whether to forward it, and tells the model
//! what STS `AssumeRole` answered ([`AwsModel::learn_assumed_role`]) so that it knows which
//! account a temporary access key acts in.
//!
//! It models EC2 only, and only the request token buckets: not the resource token buckets of
//! `RunInstances` and friends, not the console's buckets, not the limits of any other service,
//! not the per-account increases AWS grants on request. `docs/aws-model.md` gives the numbers
//! and their source.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The account of a request whose access key the model has not seen assumed: moto's default.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Where the bucket sizes come from (the table "Request token bucket sizes and refill rates").
pub const SOURCE: &str = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html";

/// A token bucket's size: it holds at most `burst` tokens and gains `refill_per_sec` a second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub burst: f64,
    pub refill_per_sec: f64,
}

impl Bucket {
    pub const fn new(burst: f64, refill_per_sec: f64) -> Self {
        Self { burst, refill_per_sec }
    }

    /// The least time in which a bucket that starts full can admit `admitted` requests: the
    /// burst is free, every request beyond it waits for a refill.
    pub fn floor(&self, admitted: u64) -> Duration {
        let beyond = (admitted as f64 - self.burst).max(0.0);
        if beyond == 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(beyond / self.refill_per_sec.max(f64::MIN_POSITIVE))
    }
}

/// EC2's categories of API actions, which decide a bucket's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionClass {
    /// `Describe*`, `List*`, `Search*`, `Get*`.
    NonMutating,
    /// A few `Describe*` actions called with neither a filter nor pagination.
    UnfilteredNonMutating,
    /// Everything else.
    Mutating,
    /// Mutating actions that cost EC2 the most.
    ResourceIntensive,
    /// Actions with a size of their own (`CreateTags`, `DeregisterImage`, …).
    Uncategorized,
}

/// The non-mutating actions that draw on a smaller bucket when called unfiltered and
/// unpaginated.
const UNFILTERED_SUBSET: [&str; 7] = [
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
];

const RESOURCE_INTENSIVE: [&str; 9] = [
    "AcceptVpcPeeringConnection",
    "AuthorizeSecurityGroupIngress",
    "CancelSpotInstanceRequests",
    "CreateKeyPair",
    "CreateVpcPeeringConnection",
    "DeleteVpcPeeringConnection",
    "RejectVpcPeeringConnection",
    "RevokeSecurityGroupIngress",
    "RequestSpotInstances",
];

/// The "Uncategorized actions" table of [`SOURCE`]: action, burst, refill a second.
#[rustfmt::skip]
const UNCATEGORIZED: &[(&str, f64, f64)] = &[
    ("AcceptVpcEndpointConnections", 10.0, 1.0), ("AdvertiseByoipCidr", 1.0, 0.1),
    ("AssignIpv6Addresses", 100.0, 5.0), ("AssignPrivateIpAddresses", 100.0, 5.0),
    ("AssignPrivateNatGatewayAddress", 10.0, 1.0),
    ("AssociateCapacityReservationBillingOwner", 1.0, 0.5),
    ("AssociateEnclaveCertificateIamRole", 10.0, 1.0), ("AssociateIamInstanceProfile", 100.0, 5.0),
    ("AssociateNatGatewayAddress", 10.0, 1.0), ("AttachVerifiedAccessTrustProvider", 10.0, 2.0),
    ("AuthorizeClientVpnIngress", 5.0, 2.0), ("CancelDeclarativePoliciesReport", 1.0, 1.0),
    ("CopyImage", 100.0, 1.0), ("CreateClientVpnRoute", 5.0, 2.0), ("CreateCoipCidr", 5.0, 1.0),
    ("CreateCoipPool", 5.0, 1.0), ("CreateDefaultSubnet", 1.0, 1.0), ("CreateDefaultVpc", 1.0, 1.0),
    ("CreateLaunchTemplateVersion", 100.0, 5.0), ("CreateNatGateway", 10.0, 1.0),
    ("CreateNetworkInterface", 100.0, 5.0), ("CreateRestoreImageTask", 50.0, 0.1),
    ("CreateSnapshot", 100.0, 5.0), ("CreateSnapshots", 100.0, 5.0),
    ("CreateSpotDatafeedSubscription", 50.0, 3.0), ("CreateStoreImageTask", 50.0, 0.1),
    ("CreateSubnetCidrReservation", 5.0, 1.0), ("CreateTags", 100.0, 10.0),
    ("CreateVerifiedAccessEndpoint", 20.0, 4.0), ("CreateVerifiedAccessGroup", 10.0, 2.0),
    ("CreateVerifiedAccessInstance", 10.0, 2.0), ("CreateVerifiedAccessTrustProvider", 10.0, 2.0),
    ("CreateVolume", 100.0, 5.0), ("CreateVpcEndpoint", 4.0, 0.3),
    ("CreateVpcEndpointServiceConfiguration", 10.0, 1.0), ("DeleteClientVpnRoute", 5.0, 2.0),
    ("DeleteCoipCidr", 5.0, 1.0), ("DeleteCoipPool", 5.0, 1.0), ("DeleteCoipPoolPermission", 5.0, 1.0),
    ("DeleteNatGateway", 10.0, 1.0), ("DeleteNetworkInterface", 100.0, 5.0),
    ("DeleteSnapshot", 100.0, 5.0), ("DeleteSpotDatafeedSubscription", 50.0, 3.0),
    ("DeleteSubnetCidrReservation", 5.0, 1.0), ("DeleteQueuedReservedInstances", 5.0, 5.0),
    ("DeleteTags", 100.0, 10.0), ("DeleteVerifiedAccessEndpoint", 20.0, 4.0),
    ("DeleteVerifiedAccessGroup", 10.0, 2.0), ("DeleteVerifiedAccessInstance", 10.0, 2.0),
    ("DeleteVerifiedAccessTrustProvider", 10.0, 2.0), ("DeleteVolume", 100.0, 5.0),
    ("DeleteVpcEndpoints", 4.0, 0.3), ("DeleteVpcEndpointServiceConfigurations", 10.0, 1.0),
    ("DeprovisionByoipCidr", 1.0, 0.1), ("DeregisterImage", 100.0, 5.0),
    ("DescribeAggregateIdFormat", 10.0, 10.0), ("DescribeByoipCidrs", 1.0, 0.5),
    ("DescribeCapacityBlockExtensionOfferings", 10.0, 0.15),
    ("DescribeCapacityBlockOfferings", 10.0, 0.15), ("DescribeDeclarativePoliciesReports", 5.0, 5.0),
    ("DescribeHostReservations", 5.0, 2.0), ("DescribeHostReservationOfferings", 5.0, 2.0),
    ("DescribeIdentityIdFormat", 10.0, 10.0), ("DescribeIdFormat", 10.0, 10.0),
    ("DescribeInstanceTopology", 1.0, 1.0), ("DescribeMovingAddresses", 1.0, 1.0),
    ("DescribePrincipalIdFormat", 10.0, 10.0), ("DescribeReservedInstancesOfferings", 10.0, 10.0),
    ("DescribeSecurityGroupReferences", 20.0, 5.0), ("DescribeSpotDatafeedSubscription", 100.0, 13.0),
    ("DescribeSpotFleetInstances", 100.0, 5.0), ("DescribeSpotFleetRequestHistory", 100.0, 5.0),
    ("DescribeSpotFleetRequests", 50.0, 3.0), ("DescribeStaleSecurityGroups", 20.0, 5.0),
    ("DescribeStoreImageTasks", 50.0, 0.5),
    ("DescribeVerifiedAccessInstanceLoggingConfigurations", 10.0, 2.0),
    ("DetachVerifiedAccessTrustProvider", 10.0, 2.0), ("DisableFastLaunch", 5.0, 2.0),
    ("DisableImageBlockPublicAccess", 1.0, 0.1), ("DisableSnapshotBlockPublicAccess", 1.0, 0.1),
    ("DisassociateCapacityReservationBillingOwner", 1.0, 0.5),
    ("DisassociateEnclaveCertificateIamRole", 10.0, 1.0),
    ("DisassociateIamInstanceProfile", 100.0, 5.0), ("DisassociateNatGatewayAddress", 10.0, 1.0),
    ("EnableFastLaunch", 5.0, 2.0), ("EnableImageBlockPublicAccess", 1.0, 0.1),
    ("EnableSnapshotBlockPublicAccess", 1.0, 0.1), ("GetAssociatedEnclaveCertificateIamRoles", 10.0, 1.0),
    ("GetDeclarativePoliciesReportSummary", 5.0, 5.0), ("GetHostReservationPurchasePreview", 5.0, 2.0),
    ("ModifyImageAttribute", 100.0, 5.0), ("ModifyInstanceMetadataDefaults", 2.0, 2.0),
    ("ModifyInstanceMetadataOptions", 100.0, 5.0), ("ModifyLaunchTemplate", 100.0, 5.0),
    ("ModifyNetworkInterfaceAttribute", 100.0, 5.0), ("ModifySnapshotAttribute", 100.0, 5.0),
    ("ModifyVerifiedAccessEndpoint", 20.0, 4.0), ("ModifyVerifiedAccessEndpointPolicy", 20.0, 4.0),
    ("ModifyVerifiedAccessGroup", 10.0, 2.0), ("ModifyVerifiedAccessGroupPolicy", 20.0, 4.0),
    ("ModifyVerifiedAccessInstance", 10.0, 2.0),
    ("ModifyVerifiedAccessInstanceLoggingConfiguration", 10.0, 2.0),
    ("ModifyVerifiedAccessTrustProvider", 10.0, 2.0), ("ModifyVpcEndpoint", 4.0, 0.3),
    ("ModifyVpcEndpointServiceConfiguration", 10.0, 1.0), ("MoveAddressToVpc", 1.0, 1.0),
    ("ProvisionByoipCidr", 1.0, 0.1), ("PurchaseCapacityBlock", 10.0, 0.15),
    ("PurchaseCapacityBlockExtension", 10.0, 0.15), ("PurchaseHostReservation", 5.0, 2.0),
    ("PurchaseReservedInstancesOffering", 5.0, 5.0), ("RejectVpcEndpointConnections", 10.0, 1.0),
    ("RestoreAddressToClassic", 1.0, 1.0), ("RevokeClientVpnIngress", 5.0, 2.0),
    ("RunInstances", 5.0, 2.0), ("StartDeclarativePoliciesReport", 1.0, 1.0),
    ("StartInstances", 5.0, 2.0), ("TerminateInstances", 100.0, 5.0),
    ("UnassignPrivateIpAddresses", 100.0, 5.0), ("UnassignPrivateNatGatewayAddress", 10.0, 1.0),
    ("WithdrawByoipCidr", 1.0, 0.1),
];

/// The bucket sizes of each class, and of the actions that have their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Ec2Buckets {
    pub non_mutating: Bucket,
    pub unfiltered_non_mutating: Bucket,
    pub mutating: Bucket,
    pub resource_intensive: Bucket,
    /// The uncategorized actions, by name.
    pub own: BTreeMap<String, Bucket>,
}

impl Ec2Buckets {
    /// AWS's default sizes ([`SOURCE`]), before any increase granted to an account.
    pub fn aws() -> Self {
        Self {
            non_mutating: Bucket::new(100.0, 20.0),
            unfiltered_non_mutating: Bucket::new(50.0, 10.0),
            mutating: Bucket::new(50.0, 5.0),
            resource_intensive: Bucket::new(50.0, 5.0),
            own: UNCATEGORIZED
                .iter()
                .map(|&(action, burst, refill)| (action.to_owned(), Bucket::new(burst, refill)))
                .collect(),
        }
    }

    /// AWS's default sizes and rates multiplied by `factor` (an account whose limits AWS
    /// raised, or small buckets for tests).
    pub fn scaled(factor: f64) -> Self {
        let scale = |b: Bucket| Bucket::new(b.burst * factor, b.refill_per_sec * factor);
        let mut table = Self::aws();
        table.non_mutating = scale(table.non_mutating);
        table.unfiltered_non_mutating = scale(table.unfiltered_non_mutating);
        table.mutating = scale(table.mutating);
        table.resource_intensive = scale(table.resource_intensive);
        table.own.values_mut().for_each(|b| *b = scale(*b));
        table
    }

    /// Every bucket, whatever its class, of size `bucket`: small tables for tests.
    pub fn uniform(bucket: Bucket) -> Self {
        let mut table = Self::aws();
        table.non_mutating = bucket;
        table.unfiltered_non_mutating = bucket;
        table.mutating = bucket;
        table.resource_intensive = bucket;
        table.own.values_mut().for_each(|b| *b = bucket);
        table
    }

    /// The class of a call of `action` with these form parameters.
    pub fn class_of(&self, action: &str, params: &[(String, String)]) -> ActionClass {
        let unfiltered = || {
            !params.iter().any(|(name, _)| {
                name.starts_with("Filter.") || name == "MaxResults" || name == "NextToken"
            })
        };
        if self.own.contains_key(action) {
            ActionClass::Uncategorized
        } else if UNFILTERED_SUBSET.contains(&action) && unfiltered() {
            ActionClass::UnfilteredNonMutating
        } else if ["Describe", "List", "Search", "Get"].iter().any(|p| action.starts_with(p)) {
            ActionClass::NonMutating
        } else if RESOURCE_INTENSIVE.contains(&action) {
            ActionClass::ResourceIntensive
        } else {
            ActionClass::Mutating
        }
    }

    /// The size of `action`'s bucket in `class`.
    pub fn size(&self, class: ActionClass, action: &str) -> Bucket {
        match class {
            ActionClass::NonMutating => self.non_mutating,
            ActionClass::UnfilteredNonMutating => self.unfiltered_non_mutating,
            ActionClass::Mutating => self.mutating,
            ActionClass::ResourceIntensive => self.resource_intensive,
            ActionClass::Uncategorized => self.own.get(action).copied().unwrap_or(self.mutating),
        }
    }
}

/// One bucket: AWS keeps one per account, Region and API action (and a second, smaller one for
/// the unfiltered calls of a few actions, told apart by `class`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BucketKey {
    pub account: String,
    pub region: String,
    pub action: String,
    pub class: ActionClass,
}

/// What the model needs to know of one request, read from it by the proxy.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// The service of the SigV4 credential scope (`ec2`, `sts`, `dynamodb`, …).
    pub service: Option<String>,
    /// The Region of the credential scope.
    pub region: Option<String>,
    /// The access key of the credential scope.
    pub access_key: Option<String>,
    /// The `x-moto-account-id` header.
    pub account_header: Option<String>,
    /// The form parameters of the body and the query string, decoded.
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the model decides for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it: not EC2, or its bucket had a token (or throttling is off).
    Forward,
    /// Answer EC2's `RequestLimitExceeded` with this request id; do not forward.
    Throttle { request_id: String },
}

/// The statistics of one bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketStats {
    #[serde(flatten)]
    pub key: BucketKey,
    #[serde(flatten)]
    pub size: Bucket,
    pub admitted: u64,
    pub throttled: u64,
    /// [`Bucket::floor`] of `admitted`, in seconds.
    pub floor_seconds: f64,
}

/// What the model saw since it was started or reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelStats {
    /// Whether empty buckets refuse requests; when not, the buckets only count.
    pub throttling: bool,
    /// Requests seen, of any service.
    pub requests: u64,
    /// EC2 requests refused with `RequestLimitExceeded`.
    pub throttled: u64,
    pub buckets: Vec<BucketStats>,
    /// The least time in which AWS would have admitted what the buckets admitted: the floor of
    /// the busiest bucket.
    pub floor_seconds: f64,
    pub busiest: Option<BucketKey>,
}

impl ModelStats {
    pub fn floor(&self) -> Duration {
        Duration::from_secs_f64(self.floor_seconds)
    }

    pub fn bucket(&self, account: &str, region: &str, action: &str) -> Option<&BucketStats> {
        self.buckets
            .iter()
            .find(|b| b.key.account == account && b.key.region == region && b.key.action == action)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug)]
struct Tokens {
    left: f64,
    at: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    admitted: u64,
    throttled: u64,
}

/// The model's state: bucket sizes, tokens left, what it learned of access keys, tallies.
#[derive(Debug)]
pub struct AwsModel {
    table: Ec2Buckets,
    throttling: bool,
    accounts: HashMap<String, String>,
    tokens: HashMap<BucketKey, Tokens>,
    tallies: BTreeMap<BucketKey, Tally>,
    requests: u64,
    throttled: u64,
}

impl Default for AwsModel {
    fn default() -> Self {
        Self {
            table: Ec2Buckets::aws(),
            throttling: false,
            accounts: HashMap::new(),
            tokens: HashMap::new(),
            tallies: BTreeMap::new(),
            requests: 0,
            throttled: 0,
        }
    }
}

impl AwsModel {
    /// Throttles with `table` from now on (`None`: no throttling; the buckets still count
    /// against AWS's sizes, so the floor stays meaningful). Starts afresh: full buckets, zero
    /// statistics.
    pub fn set_ec2_buckets(&mut self, table: Option<Ec2Buckets>) {
        self.throttling = table.is_some();
        self.table = table.unwrap_or_else(Ec2Buckets::aws);
        self.reset();
    }

    /// Zeroes the statistics and fills every bucket. What was learned of access keys stays.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.tallies.clear();
        self.requests = 0;
        self.throttled = 0;
    }

    /// Whether `call`, arriving `now`, may go on to the service.
    pub fn admit(&mut self, call: &Call, now: Instant) -> Verdict {
        self.requests += 1;
        let Some(key) = self.bucket_key(call) else {
            return Verdict::Forward;
        };
        let size = self.table.size(key.class, &key.action);
        let tokens = self.tokens.entry(key.clone()).or_insert(Tokens { left: size.burst, at: now });
        let elapsed = now.saturating_duration_since(tokens.at).as_secs_f64();
        tokens.left = (tokens.left + elapsed * size.refill_per_sec).min(size.burst);
        tokens.at = now;
        let tally = self.tallies.entry(key).or_default();
        if tokens.left >= 1.0 || !self.throttling {
            tokens.left = (tokens.left - 1.0).max(0.0);
            tally.admitted += 1;
            return Verdict::Forward;
        }
        tally.throttled += 1;
        self.throttled += 1;
        Verdict::Throttle { request_id: request_id(self.throttled) }
    }

    /// Learns the account of the access key an STS `AssumeRole` call handed out: the account of
    /// its `RoleArn` (`request`) and the `AccessKeyId` of its answer (`response_body`).
    pub fn learn_assumed_role(&mut self, request: &Call, response_body: &str) {
        let account = request.param("RoleArn").and_then(account_of_arn);
        let key = between(response_body, "<AccessKeyId>", "</AccessKeyId>");
        if let (Some(account), Some(key)) = (account, key) {
            self.accounts.insert(key.trim().to_owned(), account.to_owned());
        }
    }

    /// The account `call` acts in: the `x-moto-account-id` header, else the account its access
    /// key was assumed into, else the default account.
    pub fn account_of(&self, call: &Call) -> String {
        if let Some(account) = &call.account_header {
            return account.clone();
        }
        call.access_key
            .as_ref()
            .and_then(|key| self.accounts.get(key))
            .cloned()
            .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned())
    }

    /// The bucket an EC2 call draws on; `None` for other services.
    fn bucket_key(&self, call: &Call) -> Option<BucketKey> {
        if call.service.as_deref() != Some("ec2") {
            return None;
        }
        let action = call.param("Action")?.to_owned();
        Some(BucketKey {
            account: self.account_of(call),
            region: call.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
            class: self.table.class_of(&action, &call.params),
            action,
        })
    }

    pub fn stats(&self) -> ModelStats {
        let buckets: Vec<BucketStats> = self
            .tallies
            .iter()
            .map(|(key, tally)| {
                let size = self.table.size(key.class, &key.action);
                BucketStats {
                    key: key.clone(),
                    size,
                    admitted: tally.admitted,
                    throttled: tally.throttled,
                    floor_seconds: size.floor(tally.admitted).as_secs_f64(),
                }
            })
            .collect();
        let busiest = buckets.iter().max_by(|a, b| {
            a.floor_seconds.total_cmp(&b.floor_seconds).then(a.admitted.cmp(&b.admitted))
        });
        ModelStats {
            throttling: self.throttling,
            requests: self.requests,
            throttled: self.throttled,
            floor_seconds: busiest.map_or(0.0, |b| b.floor_seconds),
            busiest: busiest.map(|b| b.key.clone()),
            buckets,
        }
    }
}

/// A request id shaped like EC2's (a version 4 UUID), different for each throttled request.
fn request_id(n: u64) -> String {
    // Mixed from the count: ids that look random yet repeat from run to run.
    let (a, b) = (splitmix64(n), splitmix64(!n));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The account of an IAM ARN (`arn:aws:iam::123456789012:role/name`).
pub(crate) fn account_of_arn(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The text between the first `open` and the `close` after it.
pub(crate) fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// The parameters of a form (`a=1&b=x%3Ay`), decoded.
pub fn form_params(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec2(action: &str, key: &str, region: &str) -> Call {
        Call {
            service: Some("ec2".to_owned()),
            region: Some(region.to_owned()),
            access_key: Some(key.to_owned()),
            params: form_params(&format!("Action={action}&Version=2016-11-15")),
            ..Call::default()
        }
    }

    fn throttling(table: Ec2Buckets) -> AwsModel {
        let mut model = AwsModel::default();
        model.set_ec2_buckets(Some(table));
        model
    }

    #[test]
    fn a_bucket_admits_its_burst_then_one_request_per_refill() {
        let mut model = throttling(Ec2Buckets::uniform(Bucket::new(5.0, 2.0)));
        let call = ec2("DescribeImages", "AKID", "us-east-1");
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(model.admit(&call, start), Verdict::Forward);
        }
        assert!(matches!(model.admit(&call, start), Verdict::Throttle { .. }));
        let almost = start + Duration::from_millis(490);
        assert!(matches!(model.admit(&call, almost), Verdict::Throttle { .. }));
        assert_eq!(model.admit(&call, start + Duration::from_millis(510)), Verdict::Forward);
        // A long pause refills the bucket to its burst, no further.
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(model.admit(&call, later), Verdict::Forward);
        }
        assert!(matches!(model.admit(&call, later), Verdict::Throttle { .. }));
        let stats = model.stats();
        assert_eq!((stats.requests, stats.throttled), (14, 3));
        assert_eq!(stats.buckets[0].admitted, 11);
    }

    #[test]
    fn each_action_has_its_own_bucket_and_other_services_none() {
        let mut model = throttling(Ec2Buckets::uniform(Bucket::new(1.0, 0.001)));
        let now = Instant::now();
        assert_eq!(model.admit(&ec2("DescribeImages", "K", "us-east-1"), now), Verdict::Forward);
        assert_eq!(model.admit(&ec2("DescribeSnapshots", "K", "us-east-1"), now), Verdict::Forward);
        let dynamodb = Call { service: Some("dynamodb".to_owned()), ..Call::default() };
        for _ in 0..10 {
            assert_eq!(model.admit(&dynamodb, now), Verdict::Forward);
        }
        assert_eq!(model.stats().buckets.len(), 2);
    }

    #[test]
    fn actions_are_classed_and_sized_as_the_ec2_documentation_says() {
        let table = Ec2Buckets::aws();
        let class = |action: &str, form: &str| table.class_of(action, &form_params(form));
        assert_eq!(class("DescribeImages", ""), ActionClass::NonMutating);
        assert_eq!(class("DescribeImageAttribute", ""), ActionClass::NonMutating);
        assert_eq!(class("DescribeSnapshots", "Owner.1=self"), ActionClass::UnfilteredNonMutating);
        assert_eq!(class("DescribeSnapshots", "MaxResults=1000"), ActionClass::NonMutating);
        assert_eq!(class("DescribeVolumes", "Filter.1.Name=x"), ActionClass::NonMutating);
        assert_eq!(class("RegisterImage", ""), ActionClass::Mutating);
        assert_eq!(class("AuthorizeSecurityGroupIngress", ""), ActionClass::ResourceIntensive);
        assert_eq!(class("CreateTags", ""), ActionClass::Uncategorized);
        let size = |action: &str| table.size(class(action, "MaxResults=5"), action);
        assert_eq!(size("DescribeImages"), Bucket::new(100.0, 20.0));
        assert_eq!(table.unfiltered_non_mutating, Bucket::new(50.0, 10.0));
        assert_eq!(size("RegisterImage"), Bucket::new(50.0, 5.0));
        assert_eq!(size("CreateTags"), Bucket::new(100.0, 10.0));
        assert_eq!(size("DeregisterImage"), Bucket::new(100.0, 5.0));
        assert_eq!(size("DeleteSnapshot"), Bucket::new(100.0, 5.0));
        assert_eq!(size("ModifyImageAttribute"), Bucket::new(100.0, 5.0));
        assert_eq!(size("CopyImage"), Bucket::new(100.0, 1.0));
    }

    #[test]
    fn assumed_keys_act_in_the_role_account_and_the_moto_header_wins() {
        let mut model = AwsModel::default();
        let assume = Call {
            service: Some("sts".to_owned()),
            params: form_params(
                "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A210987654321%3Arole%2Fwarden\
                 &RoleSessionName=ami-warden",
            ),
            ..Call::default()
        };
        let answer = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
                      <AccessKeyId>ASIAMEMBER</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
                      </Credentials></AssumeRoleResult></AssumeRoleResponse>";
        model.learn_assumed_role(&assume, answer);
        assert_eq!(
            model.account_of(&ec2("DescribeImages", "ASIAMEMBER", "eu-west-1")),
            "210987654321"
        );
        assert_eq!(
            model.account_of(&ec2("DescribeImages", "testing", "eu-west-1")),
            DEFAULT_ACCOUNT
        );
        let mut acting_as = ec2("DescribeImages", "ASIAMEMBER", "eu-west-1");
        acting_as.account_header = Some("111122223333".to_owned());
        assert_eq!(model.account_of(&acting_as), "111122223333");
        model.reset();
        assert_eq!(model.account_of(&ec2("DescribeImages", "ASIAMEMBER", "x")), "210987654321");
    }

    #[test]
    fn the_floor_is_the_busiest_bucket_wait_beyond_its_burst() {
        assert_eq!(Bucket::new(100.0, 20.0).floor(100), Duration::ZERO);
        assert_eq!(Bucket::new(100.0, 20.0).floor(300), Duration::from_secs(10));
        let mut model = AwsModel::default();
        let now = Instant::now();
        for _ in 0..150 {
            model.admit(&ec2("DescribeImages", "K", "us-east-1"), now);
        }
        for _ in 0..70 {
            model.admit(&ec2("RegisterImage", "K", "us-east-1"), now);
        }
        let stats = model.stats();
        // Throttling is off: everything admitted, the floor still counted at AWS's sizes.
        assert_eq!(stats.throttled, 0);
        assert_eq!(
            stats.bucket(DEFAULT_ACCOUNT, "us-east-1", "DescribeImages").unwrap().floor_seconds,
            2.5
        );
        assert_eq!(stats.floor(), Duration::from_secs(4));
        assert_eq!(stats.busiest.as_ref().map(|k| k.action.as_str()), Some("RegisterImage"));
        let json = stats.to_json();
        assert_eq!(json["floor_seconds"], 4.0);
        assert_eq!(json["buckets"][0]["class"], "non-mutating");
        assert_eq!(json["buckets"][0]["burst"], 100.0);
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_differ() {
        let (a, b) = (request_id(1), request_id(2));
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    }
}
