//! The functions' handlers, written once: each Lambda's state and what it does with an
//! invocation, shared by the Lambda binaries, `ami-warden replay`, the benchmarks and the tests.
//!
//! A function ([`LineageRecorder`], [`ExposureGuard`], [`DeprecationEnforcer`],
//! [`SnapshotReaper`]) is built once per process from [`Clients`] and a [`Config`](crate::config::Config). [`handle`]
//! is the one dispatcher: a scheduled event runs the function's sweep, anything else is parsed
//! and handed to the function as a CloudTrail event, in the account it happened in
//! ([`Reach`]); the AWS requests it cost are counted and logged with its decision. The Lambda
//! mains only add the invocation's account and deadline ([`Invocation::lambda`]).
//!
//! Metrics: each handler counts what it did into the invocation's [`Metrics`] where it has the
//! report (an event's outcome, a sweep's report); the dispatcher counts what every invocation
//! has (requests, throttles, malformed events) and flushes them once the invocation is done. A
//! Lambda invocation's go to stdout as embedded metric format lines; the CLI's nowhere.
//!
//! Not here: the decisions themselves (the domain modules), the SDK calls ([`crate::aws`]),
//! and the Slack notifier, which is a subscriber of the topic rather than an event handler.

mod coordinator;
mod enforcer;
mod guard;
mod launch;
mod reach;
mod reaper;
mod recorder;
mod routed;
mod units;

use std::future::Future;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::aws::{calls, Clients};
use crate::event::{parse_value, IgnoreReason, Parsed};
use crate::ids::AccountId;
use crate::metrics::{self, Metrics};
use crate::sweep::{Unit, UnitReport};

pub use coordinator::SweepCoordinator;
pub use enforcer::DeprecationEnforcer;
pub use guard::ExposureGuard;
pub use launch::LaunchGuard;
pub use reach::{Held, InAccount, Reach, Scope};
pub use reaper::SnapshotReaper;
pub use recorder::LineageRecorder;
pub use routed::{Answer, Functions};
pub use units::{run_unit, run_units, unit_of, UnitOutcome, UNIT_LEASE_SECONDS};

/// What a handler fails with: anything that should make Lambda retry the invocation (an AWS
/// call that failed after the SDK's retries, a notification that could not be published).
/// The same type as `lambda_runtime::Error`, so the mains return it as it is.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The `errorType` of a failed invocation, which Step Functions records as a failed unit's
/// `Error` (the runtime would otherwise name the Rust type of the error).
pub const ERROR_TYPE: &str = "AmiWarden.Failed";

/// What one invocation knows about where and until when it runs.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The account the function runs in (a Lambda's, from its ARN; the CLI's, from
    /// `--account` or STS). Only this account's resources are ever changed outside
    /// organization mode; `None` changes nothing that needs an owner.
    pub own_account: Option<AccountId>,
    /// When to start no more destructive actions (a Lambda's deadline less a margin); `None`:
    /// no limit (the CLI).
    pub stop_by: Option<Instant>,
    /// The time decisions are made at.
    pub now: DateTime<Utc>,
    /// What the invocation counts, and where the counts go when it is done.
    pub metrics: Metrics,
}

impl Invocation {
    /// A Lambda invocation: the account from the invoked function's ARN, the time budget from
    /// the invocation's deadline, metrics to stdout (CloudWatch Logs extracts them).
    pub fn lambda(invoked_function_arn: &str, deadline: SystemTime) -> Self {
        Self {
            own_account: AccountId::of_function_arn(invoked_function_arn),
            stop_by: Some(crate::budget::stop_by(deadline)),
            now: Utc::now(),
            metrics: Metrics::lambda(),
        }
    }

    /// A run with no deadline, acting for `own_account`, writing no metrics (the CLI, the
    /// benchmarks).
    pub fn unbounded(own_account: Option<AccountId>) -> Self {
        Self { own_account, stop_by: None, now: Utc::now(), metrics: Metrics::off() }
    }
}

/// What a handled invocation answered: an event's outcome, a sweep's response, or a unit's
/// report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Handled<O> {
    Event(O),
    Swept(Value),
    Unit(UnitReport),
}

/// One function: its state, built once, and what it does with an event and with its schedule.
pub trait Function {
    /// What handling one event came to (serialized as the Lambda's response).
    type Outcome: Serialize;

    /// The clients whose requests the dispatcher counts.
    fn clients(&self) -> &Clients;

    /// Handles one parsed CloudTrail event (bad input is an `Ignored` outcome, not an error).
    fn on_event(
        &self,
        parsed: &Parsed,
        invocation: &Invocation,
    ) -> impl Future<Output = Result<Self::Outcome, HandlerError>>;

    /// Runs the daily sweep over every account and region the function covers.
    fn on_schedule(
        &self,
        invocation: &Invocation,
    ) -> impl Future<Output = Result<Value, HandlerError>>;

    /// Runs one unit of an organization sweep (one account and region), notifying nothing.
    fn on_unit(
        &self,
        unit: &Unit,
        _invocation: &Invocation,
    ) -> impl Future<Output = Result<UnitReport, HandlerError>> {
        let refused = format!("this function runs no {} sweep units", unit.job);
        async move { Err(refused.into()) }
    }

    /// Logs the decision one event came to, with the requests it cost.
    fn log(&self, outcome: &Self::Outcome, aws_calls: &str);
}

/// Whether the payload is EventBridge's "Scheduled Event" (the daily sweep's trigger).
pub fn is_schedule(payload: &Value) -> bool {
    payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// The one dispatcher: a schedule runs the sweep, a unit (`{"unit": …}`, from the Step
/// Functions sweep) runs that unit, anything else is handled as an event. Every
/// log line is inside a span naming the event (its EventBridge `id` and CloudTrail `eventID`),
/// and the decision's line carries the AWS requests it cost. The invocation's metrics are
/// flushed when it is done, failed or not.
pub async fn handle<F: Function>(
    function: &F,
    payload: &Value,
    invocation: &Invocation,
) -> Result<Handled<F::Outcome>, HandlerError> {
    let counter = function.clients().calls();
    let (before, throttles) = (counter.snapshot(), counter.throttles());
    let handled = Box::pin(dispatch(function, payload, invocation, &before)).await;
    count_requests(&invocation.metrics, function.clients(), &before, throttles);
    invocation.metrics.flush();
    handled
}

/// Counts the AWS requests and throttled answers since `before` and `throttles_before`.
pub(crate) fn count_requests(
    metrics: &Metrics,
    clients: &Clients,
    before: &std::collections::BTreeMap<(String, String), u64>,
    throttles_before: u64,
) {
    let requests: u64 = clients.calls().since(before).values().sum();
    let throttles = clients.calls().throttles().saturating_sub(throttles_before);
    metrics.add(metrics::AWS_REQUESTS, requests as f64);
    metrics.add(metrics::AWS_THROTTLES, throttles as f64);
}

/// Whether an event was ignored for not being what an EventBridge rule delivers, rather than
/// for being one this function does not act on.
fn malformed(parsed: &Parsed) -> bool {
    matches!(
        parsed,
        Parsed::Ignored {
            reason: IgnoreReason::NotJson(_)
                | IgnoreReason::NotCloudTrail
                | IgnoreReason::Malformed(_),
            ..
        }
    )
}

async fn dispatch<F: Function>(
    function: &F,
    payload: &Value,
    invocation: &Invocation,
    before: &std::collections::BTreeMap<(String, String), u64>,
) -> Result<Handled<F::Outcome>, HandlerError> {
    use tracing::Instrument;
    let aws_calls = || calls::render(&function.clients().calls().since(before));
    if is_schedule(payload) {
        // Boxed: a sweep's future nests deeply enough to exceed the compiler's layout limit.
        let sweep = Box::pin(function.on_schedule(invocation));
        let swept = sweep.instrument(tracing::info_span!("sweep")).await;
        match &swept {
            Ok(_) => tracing::info!(aws_calls = aws_calls(), "sweeps done"),
            Err(error) => {
                tracing::error!(%error, aws_calls = aws_calls(), "sweep failed; it will be retried")
            }
        }
        return swept.map(Handled::Swept);
    }
    if let Some(unit) = unit_of(payload) {
        let unit = unit?;
        // Which unit, on every metrics line: searchable, and no metric of its own.
        invocation.metrics.field("Account", unit.account.as_str());
        invocation.metrics.field("Region", unit.region.as_str());
        invocation.metrics.field("Run", unit.run.as_str());
        let span = tracing::info_span!("unit", unit = unit.name());
        let report = Box::pin(function.on_unit(&unit, invocation)).instrument(span).await;
        if let Err(error) = &report {
            tracing::error!(%error, aws_calls = aws_calls(), unit = unit.name(), "unit failed");
        } else {
            tracing::info!(aws_calls = aws_calls(), unit = unit.name(), "unit done");
        }
        return report.map(Handled::Unit);
    }
    let parsed = parse_value(payload);
    invocation.metrics.add(metrics::EVENTS_IGNORED_MALFORMED, u8::from(malformed(&parsed)).into());
    let span = event_span(payload, &parsed);
    let result = Box::pin(function.on_event(&parsed, invocation)).instrument(span.clone()).await;
    let _entered = span.enter();
    match &result {
        Ok(outcome) => function.log(outcome, &aws_calls()),
        Err(error) => {
            tracing::error!(%error, aws_calls = aws_calls(), "event failed; it will be retried")
        }
    }
    result.map(Handled::Event)
}

/// A span naming the event: the envelope's id (new on each EventBridge delivery) and the
/// CloudTrail record's eventID (the same on each), so a redelivery can be told apart.
fn event_span(payload: &Value, parsed: &Parsed) -> tracing::Span {
    let envelope_id = payload.get("id").and_then(Value::as_str).unwrap_or_default();
    let event_id = match parsed {
        Parsed::Event(event) => event.meta.event_id.as_str(),
        Parsed::Ignored { event_id, .. } => event_id.as_deref().unwrap_or_default(),
    };
    tracing::info_span!("event", envelope_id, event_id)
}

/// [`handle`] for a Lambda invocation: its account and deadline from the runtime's context,
/// and the answer as the Lambda's JSON response.
pub async fn invoke<F: Function>(
    function: &F,
    payload: Value,
    invoked_function_arn: &str,
    deadline: SystemTime,
) -> Result<Value, HandlerError> {
    let invocation = Invocation::lambda(invoked_function_arn, deadline);
    let handled = handle(function, &payload, &invocation).await?;
    Ok(serde_json::to_value(handled)?)
}
