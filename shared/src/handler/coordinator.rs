//! The `sweep-coordinator` function: the plan and summary steps of the daily sweep state
//! machine (`statemachine/sweeps.asl.json`), and the summary of a run whose execution failed.
//!
//! `{"plan": {"job", "run"}}` writes the job's units (every account the sweep covers in every
//! region it sweeps) to S3 for the Distributed Map to read. `{"summarize": {"job", "run"}}`
//! reads the plan and the Map Run's result files back and publishes the job's one
//! notification. EventBridge's "Step Functions Execution Status Change" for a failed, timed
//! out or aborted run summarizes each job that was planned and not yet summarized, so the units
//! a stopped run never reached are still named.
//!
//! Metrics: each summary counts the job's units that ran, failed and were never reached, by
//! job; the coverage alarm watches the last two.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{count_requests, HandlerError};
use crate::aws::org::accounts_to_sweep;
use crate::aws::sweep_store::SweepStore;
use crate::aws::{calls, sns::SnsNotifier, Clients};
use crate::config::Config;
use crate::ids::AccountId;
use crate::metrics::{self, Metrics};
use crate::notify::{Notification, Notifier, Severity};
use crate::sweep::{self, Job, JobSummary};

pub struct SweepCoordinator {
    clients: Clients,
    config: Config,
    store: SweepStore,
    notifier: Option<SnsNotifier>,
}

#[derive(Deserialize)]
struct Step {
    job: Job,
    run: String,
}

impl SweepCoordinator {
    /// `Err` without `SWEEP_BUCKET`: the plan and the results have nowhere to go.
    pub fn new(clients: &Clients, config: &Config) -> Result<Self, String> {
        let bucket = config
            .sweep_bucket
            .clone()
            .ok_or("SWEEP_BUCKET is not set: the sweep coordinator has nowhere to keep its runs")?;
        Ok(Self {
            clients: clients.clone(),
            config: config.clone(),
            store: SweepStore::new(clients, bucket),
            notifier: SnsNotifier::from_config(clients, config),
        })
    }

    /// Handles one invocation of the state machine or of the failed-execution rule, logs the
    /// AWS requests it cost, and flushes its `metrics`.
    pub async fn handle(
        &self,
        payload: &Value,
        own: Option<AccountId>,
        metrics: &Metrics,
    ) -> Result<Value, HandlerError> {
        let (before, throttles) =
            (self.clients.calls().snapshot(), self.clients.calls().throttles());
        let result = self.step(payload, own, metrics).await;
        let aws_calls = calls::render(&self.clients.calls().since(&before));
        match &result {
            Ok(_) => tracing::info!(aws_calls, "step done"),
            Err(error) => tracing::error!(%error, aws_calls, "step failed"),
        }
        count_requests(metrics, &self.clients, &before, throttles);
        metrics.flush();
        result
    }

    async fn step(
        &self,
        payload: &Value,
        own: Option<AccountId>,
        metrics: &Metrics,
    ) -> Result<Value, HandlerError> {
        if let Some(step) = payload.get("plan") {
            let step: Step = serde_json::from_value(step.clone())?;
            let own = own.ok_or("the coordinator's own account is unknown")?;
            return self.plan(step.job, &step.run, &own).await;
        }
        if let Some(step) = payload.get("summarize") {
            let step: Step = serde_json::from_value(step.clone())?;
            let summary = self.summarize(step.job, &step.run).await?;
            count_units(&summary, metrics);
            return Ok(outcome(&summary));
        }
        if payload["detail-type"] == "Step Functions Execution Status Change" {
            let run = payload["detail"]["name"].as_str().ok_or("the execution has no name")?;
            return self.after_failure(run, metrics).await;
        }
        Err(format!("not a sweep step: {payload}").into())
    }

    /// Writes `job`'s units for `run` to S3.
    pub async fn plan(&self, job: Job, run: &str, own: &AccountId) -> Result<Value, HandlerError> {
        let accounts = accounts_to_sweep(&self.clients, own, &self.config.members).await?;
        let regions = self.config.regions_to_sweep(self.clients.home_region().as_ref())?;
        let units = sweep::plan(job, run, &accounts, &regions);
        let key = self.store.put_units(run, job, &units).await?;
        tracing::info!(%job, run, accounts = accounts.len(), regions = regions.len(),
            units = units.len(), key, "planned");
        Ok(json!({"bucket": self.store.bucket(), "key": key, "units": units.len()}))
    }

    /// Reads back `job`'s plan and results in `run`, and publishes its one notification.
    pub async fn summarize(&self, job: Job, run: &str) -> Result<JobSummary, HandlerError> {
        let planned = self.store.units(run, job).await?.unwrap_or_default();
        let rows = self.store.map_run_rows(run, job).await?;
        let (done, failed) = sweep::map_run_results(&rows);
        let summary = sweep::summarize(job, run, &planned, done, failed);
        let link = self.results_link(run, job);
        if let Some(notifier) = &self.notifier {
            notifier.publish(&sweep::notification(&summary, Some(&link))).await?;
        }
        self.store.put_summary(&summary).await?;
        tracing::info!(%job, run, planned = summary.planned, done = summary.done.len(),
            failed = summary.failed.len(), not_reached = summary.not_reached.len(), "summarized");
        Ok(summary)
    }

    /// After a failed run: each planned job without a summary of its latest results gets one
    /// now, and the jobs the run never reached are named (they run when the execution is
    /// redriven, or the next day).
    async fn after_failure(&self, run: &str, metrics: &Metrics) -> Result<Value, HandlerError> {
        let (mut summarized, mut not_started) = (Vec::new(), Vec::new());
        for job in Job::ALL {
            if self.store.units(run, job).await?.is_none() {
                not_started.push(job);
            } else if !self.store.has_current_summary(run, job).await? {
                let summary = self.summarize(job, run).await?;
                count_units(&summary, metrics);
                summarized.push(outcome(&summary));
            }
        }
        if let (Some(notifier), false) = (&self.notifier, not_started.is_empty()) {
            notifier.publish(&not_started_notification(run, &not_started)).await?;
        }
        Ok(json!({"run": run, "summarized": summarized, "not_started": not_started}))
    }

    /// The console page of the job's results in S3, where each unit's report is.
    fn results_link(&self, run: &str, job: Job) -> String {
        let region = self.clients.home_region().map(|r| r.as_str().to_owned()).unwrap_or_default();
        format!(
            "https://console.aws.amazon.com/s3/buckets/{}?region={region}&prefix={}/",
            self.store.bucket(),
            SweepStore::results_prefix(run, job)
        )
    }
}

/// A job's units that ran, failed and were never reached, zero or not: a run that covered
/// everything says so.
fn count_units(summary: &JobSummary, metrics: &Metrics) {
    let job = summary.job.as_str();
    metrics.add_split(metrics::UNITS_SWEPT, job, summary.done.len() as f64);
    metrics.add_split(metrics::UNITS_FAILED, job, summary.failed.len() as f64);
    metrics.add_split(metrics::UNITS_NOT_REACHED, job, summary.not_reached.len() as f64);
}

/// What the state machine keeps of a summary.
fn outcome(summary: &JobSummary) -> Value {
    json!({"job": summary.job, "severity": summary.severity(), "planned": summary.planned,
        "done": summary.done.len(), "failed": summary.failed.len(),
        "not_reached": summary.not_reached.len()})
}

/// The WARNING for the jobs a failed run never started.
fn not_started_notification(run: &str, jobs: &[Job]) -> Notification {
    let names: Vec<&str> = jobs.iter().map(|j| j.title()).collect();
    Notification::new(
        Severity::Warning,
        "sweeps-not-started",
        format!("daily sweeps: {} not started (run {run} failed)", names.join(", ")),
    )
    .field("Run", run)
    .text(format!(
        "The run {run} failed before it started these jobs, in any account: {}.\n\nThe summaries \
         of the jobs it did start name the units that failed. Fix the cause, then redrive the \
         execution: it re-runs only the units that did not succeed and goes on with these jobs. \
         Otherwise they run with the next day's run.\n",
        names.join(", ")
    ))
}
