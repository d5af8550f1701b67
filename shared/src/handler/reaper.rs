//! The `snapshot-reaper` function: a DeregisterImage's snapshots are decided (and, in enforce
//! mode, tagged for the Recycle Bin and deleted) by [`crate::reaper::run::Reaper`]; the daily
//! sweep decides every owned snapshot whose image is gone, in every account and region.
//! Metrics: the snapshots a run deleted, their size, and what they cost a month.

use serde_json::Value;

use super::units::{sweep_schedule, sweep_unit, SweepParts, Sweeper};
use super::{Function, HandlerError, InAccount, Invocation, Scope, UnitOutcome};
use crate::aws::{
    audit::AuditTable, idempotency::IdempotencyTable, ledger::LedgerTable,
    lineage_table::LineageTable, snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::ids::Region;
use crate::metrics::{self, Metrics};
use crate::notify::Severity;
use crate::reaper::run::{Action, EventOutcome, Reaper, RunReport};
use crate::reaper::Settings;
use crate::sweep::{capped, Figures, Job, Unit, UnitReport};

/// Snapshots the run deleted.
fn deleted(report: &RunReport) -> u64 {
    report.outcomes.iter().filter(|o| matches!(o.action, Action::Deleted)).count() as u64
}

/// The snapshots a run deleted (not those AWS deleted with their image), their size and their
/// monthly cost; zero in report mode.
fn count_run(report: &RunReport, metrics: &Metrics) {
    let gib = report.deleted_gib();
    metrics.add(metrics::SNAPSHOTS_DELETED, deleted(report) as f64);
    metrics.add(metrics::GIB_RECLAIMED, gib as f64);
    metrics.add(metrics::DOLLARS_PER_MONTH_SAVED, report.monthly_dollars(gib));
}

/// A reaper sweep's figures: orphans planned for deletion, those deleted, what is left.
fn unit_outcome(report: &RunReport) -> UnitOutcome {
    let planned = report.outcomes.iter().filter(|o| o.decision == "delete").count();
    let severity = if report.failures() + report.errors.len() + report.left_for_next_run() > 0 {
        Severity::Warning
    } else {
        Severity::Info
    };
    UnitOutcome {
        figures: Figures {
            findings: planned as u64,
            acted: deleted(report),
            left: report.left_for_next_run() as u64,
            errors: (report.errors.len() + report.failures()) as u64,
        },
        severity,
        summary: format!(
            "{} snapshot(s) decided: {planned} orphan(s) to delete ({} GiB), {} deleted ({} GiB), {} left for the next run, {} failure(s), {} error(s)",
            report.outcomes.len(),
            report.planned_gib(),
            deleted(report),
            report.deleted_gib(),
            report.left_for_next_run(),
            report.failures(),
            report.errors.len()
        ),
        details: capped(details(report)),
    }
}

type ReaperIn<'a> =
    Reaper<'a, Ec2Snapshots, LineageTable, AuditTable, IdempotencyTable, SnsNotifier, LedgerTable>;

/// The snapshots deleted or to delete, each with its size, image and why, and errors.
fn details(report: &RunReport) -> Vec<String> {
    let deletions = report.outcomes.iter().filter(|o| o.decision == "delete").map(|o| {
        let done = if matches!(o.action, Action::Deleted) { "deleted" } else { "to delete" };
        let image = o.source_image.as_ref().map_or("-".to_owned(), ToString::to_string);
        format!(
            "{done}: snapshot {} {} GiB (from {image}): {}",
            o.snapshot_id, o.size_gib, o.reason
        )
    });
    deletions.chain(report.errors.iter().cloned()).collect()
}

pub struct SnapshotReaper {
    parts: SweepParts<Ec2Snapshots, Settings>,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
}

impl SnapshotReaper {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        if config.topic_arn.is_none() {
            tracing::warn!("TOPIC_ARN is not set: run summaries are only logged");
        }
        let table = &config.lineage_table;
        let function = Self {
            parts: SweepParts::new(clients, config, Ec2Snapshots::new, Settings::from_config),
            lineage: LineageTable::from_clients(clients, table.clone()),
            audit: AuditTable::new(clients, table.clone()),
            ledger: LedgerTable::new(clients, table.clone()),
        };
        let s = function.parts.reach.settings();
        tracing::info!(mode = ?s.mode, min_age_days = s.min_age_days, "snapshot reaper ready");
        function
    }

    /// The reaper acting in `in_account`; it publishes its run summary only when `notify` (a
    /// unit of an organization sweep leaves that to the job's summary).
    fn reaper<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Snapshots, Settings>,
        inv: &Invocation,
        notify: bool,
    ) -> ReaperIn<'a> {
        Reaper {
            ec2: &in_account.ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            idempotency: &self.parts.claims,
            notifier: self.parts.notifier.as_ref().filter(|_| notify),
            settings: in_account.settings,
            own_account: in_account.account.clone(),
            // Deletions stop in time for the invocation to end cleanly.
            stop_by: inv.stop_by,
        }
    }
}

impl Function for SnapshotReaper {
    type Outcome = EventOutcome;

    fn clients(&self) -> &Clients {
        &self.parts.clients
    }

    /// A member's deregistration is reaped in the member account, through its role.
    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<EventOutcome, HandlerError> {
        match self.parts.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => {
                let outcome = self.reaper(&in_account, inv, true).on_event(parsed, inv.now).await?;
                if let EventOutcome::Reaped { report } = &outcome {
                    count_run(report, &inv.metrics);
                }
                Ok(outcome)
            }
            Scope::NotCovered(reason) => Ok(EventOutcome::Ignored { reason }),
        }
    }

    async fn on_schedule(&self, inv: &Invocation) -> Result<Value, HandlerError> {
        sweep_schedule(self, inv).await
    }

    async fn on_unit(&self, unit: &Unit, inv: &Invocation) -> Result<UnitReport, HandlerError> {
        sweep_unit(self, unit, inv).await
    }

    fn log(&self, outcome: &EventOutcome, aws_calls: &str) {
        match outcome {
            EventOutcome::Reaped { report } => tracing::info!(
                trigger = report.trigger,
                decided = report.outcomes.len(),
                deleted_gib = report.deleted_gib(),
                planned_gib = report.planned_gib(),
                failures = report.failures(),
                left_for_next_run = report.left_for_next_run(),
                errors = report.errors.len(),
                aws_calls,
                "reaper run"
            ),
            EventOutcome::Duplicate { event_id } => {
                tracing::info!(event_id, aws_calls, "duplicate event, nothing done")
            }
            EventOutcome::Ignored { reason } => {
                tracing::warn!(reason, aws_calls, metric = "ignored_events", "event ignored")
            }
        }
    }
}

impl Sweeper for SnapshotReaper {
    type Ec2 = Ec2Snapshots;
    type Settings = Settings;
    type Report = RunReport;
    const JOB: Job = Job::Reaper;

    fn parts(&self) -> &SweepParts<Ec2Snapshots, Settings> {
        &self.parts
    }

    /// The sweep of one account and region.
    async fn sweep_in(
        &self,
        in_account: &InAccount<'_, Ec2Snapshots, Settings>,
        region: &Region,
        inv: &Invocation,
        notify: bool,
    ) -> Result<RunReport, HandlerError> {
        let account = &in_account.account;
        let reaper = self.reaper(in_account, inv, notify);
        let report = match reaper.sweep(region, inv.now, &|_, _| {}).await {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(?account, %region, %error,
                    "reaper sweep failed in this account and region");
                return Err(error.into());
            }
        };
        tracing::info!(?account, %region, trigger = report.trigger,
            decided = report.outcomes.len(), deleted_gib = report.deleted_gib(),
            planned_gib = report.planned_gib(), failures = report.failures(),
            left_for_next_run = report.left_for_next_run(), errors = report.errors.len(),
            "reaper sweep");
        count_run(&report, &inv.metrics);
        Ok(report)
    }

    fn outcome(report: &RunReport) -> UnitOutcome {
        unit_outcome(report)
    }
}
