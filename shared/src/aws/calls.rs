//! Counts the AWS requests the SDK clients send, by service and operation, and the answers
//! that were throttling errors.
//!
//! Attached to every client [`super::Clients`] builds, so the per-event cost (the brief's "minimum
//! AWS calls") is measured, logged and benchmarked rather than assumed. Retries count as
//! separate requests: this is what was sent, not what was asked for. A throttled answer is
//! told by its error code, read from the raw answer ([`throttling_code`]): the interceptor sees
//! every client's answers but not their typed errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// A shared tally of requests sent, keyed by (service, operation), and of throttled answers.
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    throttled: Arc<AtomicU64>,
}

impl CallCounter {
    /// Answers so far that were throttling errors (each attempt's, retries included).
    pub fn throttles(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The counts so far, e.g. `{("DynamoDB", "Query"): 2}`.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests to one service so far.
    pub fn service_total(&self, service: &str) -> u64 {
        self.snapshot().iter().filter(|((s, _), _)| s == service).map(|(_, n)| n).sum()
    }

    /// Counts since `before` (a previous snapshot).
    pub fn since(
        &self,
        before: &BTreeMap<(String, String), u64>,
    ) -> BTreeMap<(String, String), u64> {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, n)| {
                let d = n - before.get(&k).copied().unwrap_or(0);
                (d > 0).then_some((k, d))
            })
            .collect()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(meta), Ok(mut counts)) = (cfg.load::<Metadata>(), self.counts.lock()) {
            // A timeline of a run's requests, for reading where its time went
            // (`AMI_WARDEN_LOG=warden::aws::calls=trace`).
            tracing::trace!(service = meta.service(), operation = meta.name(), "request");
            *counts.entry((meta.service().to_owned(), meta.name().to_owned())).or_default() += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.output_or_error().is_ok() {
            return Ok(());
        }
        let response = context.response();
        let status = response.status().as_u16();
        let header = response.headers().get("x-amzn-errortype");
        let body = response.body().bytes().unwrap_or_default();
        if throttling_code(status, header, body).is_some() {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The error codes AWS services throttle with: the AWS SDK's own list (`aws-runtime`'s
/// `THROTTLING_ERRORS`, which decides what its retries treat as throttling).
pub const THROTTLING_CODES: [&str; 14] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The throttling code of an error answer (HTTP `status`, its `x-amzn-ErrorType` header, its
/// body), or `None` when it is not a throttle. The code is read where each protocol puts it:
/// the header (REST JSON), `__type` or `code` (JSON: `com.amazonaws.dynamodb.v20120810#…`), or
/// the first `<Code>` element (EC2's and the query services' XML, S3's). A 429 without a
/// readable code is a throttle too.
pub fn throttling_code(status: u16, header: Option<&str>, body: &[u8]) -> Option<String> {
    let code = header
        .and_then(|h| h.split(':').next())
        .map(str::to_owned)
        .or_else(|| json_code(body))
        .or_else(|| xml_code(body));
    match code {
        Some(code) if THROTTLING_CODES.contains(&code.as_str()) => Some(code),
        Some(_) => None,
        None => (status == 429).then(|| "429".to_owned()),
    }
}

fn json_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = ["__type", "code", "Code"].iter().find_map(|k| value.get(*k)?.as_str())?;
    Some(code.rsplit('#').next().unwrap_or(code).to_owned())
}

fn xml_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    Some(code.trim().to_owned())
}

/// Renders counts as `DynamoDB.Query=2 EC2.DescribeInstances=1` (service names without
/// spaces: `AutoScaling.DescribeAutoScalingGroups=1`).
pub fn render(counts: &BTreeMap<(String, String), u64>) -> String {
    counts
        .iter()
        .map(|((s, o), n)| format!("{}.{o}={n}", s.replace(' ', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocols_throttling_answer_is_told_by_its_code() {
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(throttling_code(503, None, ec2).as_deref(), Some("RequestLimitExceeded"));
        let query = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(throttling_code(400, None, query).as_deref(), Some("Throttling"));
        let dynamodb =
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#;
        assert_eq!(
            throttling_code(400, None, dynamodb).as_deref(),
            Some("ProvisionedThroughputExceededException")
        );
        let header = Some("TooManyRequestsException:http://internal.amazon.com/coral/");
        assert_eq!(
            throttling_code(429, header, b"{}").as_deref(),
            Some("TooManyRequestsException")
        );
        assert_eq!(
            throttling_code(503, None, b"<Error><Code>SlowDown</Code></Error>").as_deref(),
            Some("SlowDown")
        );
    }

    #[test]
    fn other_errors_are_not_throttles() {
        let ec2 = b"<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code></Error></Errors></Response>";
        assert_eq!(throttling_code(400, None, ec2), None);
        assert_eq!(throttling_code(500, None, br#"{"__type":"InternalServerError"}"#), None);
        assert_eq!(throttling_code(503, None, b""), None, "unavailable is not throttled");
        // A message that mentions throttling is not a throttling code.
        let message = b"<Error><Code>AccessDenied</Code><Message>Throttling</Message></Error>";
        assert_eq!(throttling_code(403, None, message), None);
    }

    #[test]
    fn a_429_without_a_readable_code_is_a_throttle() {
        assert_eq!(throttling_code(429, None, b"slow down").as_deref(), Some("429"));
    }
}
