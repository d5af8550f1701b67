//! Counts the AWS requests the SDK clients send, by service and operation.
//!
//! Attached to every client [`super::Clients`] builds, so the per-event cost (the brief's "minimum
//! AWS calls") is measured, logged and benchmarked rather than assumed. Retries count as
//! separate requests: this is what was sent, not what was asked for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// A shared tally of requests sent, keyed by (service, operation).
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl CallCounter {
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
            *counts.entry((meta.service().to_owned(), meta.name().to_owned())).or_default() += 1;
        }
        Ok(())
    }
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
