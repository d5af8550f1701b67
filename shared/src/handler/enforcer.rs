//! The `deprecation-enforcer` function: a new image gets its deprecation deadline, and the
//! daily sweep of every account and region stamps missing deadlines, warns of upcoming ones
//! and retires what is past them ([`crate::deprecation::run::Enforcer`]). `MODE=report`
//! changes nothing. Metrics: the deadlines it set and the images it deregistered (none in
//! report mode).

use serde_json::Value;

use super::units::{sweep_schedule, sweep_unit, SweepParts, Sweeper};
use super::{Function, HandlerError, InAccount, Invocation, Scope, UnitOutcome};
use crate::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::config::Mode;
use crate::deprecation::run::{line, Enforcer, EventOutcome, SweepReport};
use crate::deprecation::{Decision, Settings};
use crate::event::Parsed;
use crate::ids::Region;
use crate::metrics::{self, Metrics};
use crate::notify::Severity;
use crate::sweep::{capped, Figures, Job, Unit, UnitReport};

type EnforcerIn<'a> =
    Enforcer<'a, Ec2Deprecation, LineageTable, AuditTable, SnsNotifier, LedgerTable>;

/// A deprecation sweep's figures: images due to retire, those deregistered, what is left; each
/// image due or near its deadline named.
fn unit_outcome(report: &SweepReport) -> UnitOutcome {
    let retire = report.planned.iter().filter(|p| p.decision == Decision::Deregister).count();
    let left = report.retirements_left.len() + report.stamps_left.len();
    let severity =
        if !report.errors.is_empty() || left > 0 { Severity::Warning } else { Severity::Info };
    UnitOutcome {
        figures: Figures {
            findings: retire as u64,
            acted: report.deregistered.len() as u64,
            left: left as u64,
            errors: report.errors.len() as u64,
        },
        severity,
        summary: format!(
            "{} image(s): {retire} due to retire, {} deregistered, {} deadline(s) stamped, {} within the warning window, {left} left for the next run, {} error(s)",
            report.planned.len(),
            report.deregistered.len(),
            report.stamped.len(),
            report.warnings.len(),
            report.errors.len()
        ),
        details: capped(details(report)),
    }
}

/// The images retired or due to retire (with why), those whose deadline is near, and errors.
fn details(report: &SweepReport) -> Vec<String> {
    let retiring = report.planned.iter().filter(|p| p.decision == Decision::Deregister).map(|p| {
        let done = if report.deregistered.contains(&p.image_id) { "retired" } else { "to retire" };
        format!("{done}: {}", line(p).trim())
    });
    let near = report.warnings.iter().map(|p| format!("deadline near: {}", line(p).trim()));
    retiring.chain(near).chain(report.errors.iter().cloned()).collect()
}

pub struct DeprecationEnforcer {
    parts: SweepParts<Ec2Deprecation, Settings>,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
}

impl DeprecationEnforcer {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        if config.topic_arn.is_none() {
            tracing::warn!("TOPIC_ARN is not set: warnings and retirement reports are only logged");
        }
        let table = &config.lineage_table;
        let function = Self {
            parts: SweepParts::new(clients, config, Ec2Deprecation::new, Settings::from_config),
            lineage: LineageTable::from_clients(clients, table.clone()),
            audit: AuditTable::new(clients, table.clone()),
            ledger: LedgerTable::new(clients, table.clone()),
        };
        let s = function.parts.reach.settings();
        tracing::info!(mode = ?s.mode, deprecate_after_days = s.deprecate_after_days,
            grace_days = s.grace_days, keep_latest = s.keep_latest, "deprecation enforcer ready");
        function
    }

    /// The enforcer acting in `in_account`; it publishes its warnings and retirement reports
    /// only when `notify` (a unit of an organization sweep leaves that to the job's summary).
    fn enforcer<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Deprecation, Settings>,
        inv: &Invocation,
        notify: bool,
    ) -> EnforcerIn<'a> {
        Enforcer {
            ec2: &in_account.ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            notifier: self.parts.notifier.as_ref().filter(|_| notify),
            settings: in_account.settings,
            own_account: in_account.account.clone(),
            // Retirements stop in time for the invocation to end cleanly.
            stop_by: inv.stop_by,
        }
    }
}

impl Function for DeprecationEnforcer {
    type Outcome = EventOutcome;

    fn clients(&self) -> &Clients {
        &self.parts.clients
    }

    /// A member's image is stamped in the member account, through its role.
    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<EventOutcome, HandlerError> {
        match self.parts.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => {
                let outcome =
                    self.enforcer(&in_account, inv, true).on_event(parsed, inv.now).await?;
                let stamped = matches!(outcome, EventOutcome::Stamped { .. });
                inv.metrics.add(metrics::DEADLINES_STAMPED, u8::from(stamped).into());
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
            EventOutcome::Ignored { reason } => {
                tracing::warn!(reason, aws_calls, metric = "ignored_events", "event ignored")
            }
            other => tracing::info!(outcome = ?other, aws_calls, "deadline"),
        }
    }
}

impl Sweeper for DeprecationEnforcer {
    type Ec2 = Ec2Deprecation;
    type Settings = Settings;
    type Report = SweepReport;
    const JOB: Job = Job::Deprecation;

    fn parts(&self) -> &SweepParts<Ec2Deprecation, Settings> {
        &self.parts
    }

    /// The sweep of one account and region.
    async fn sweep_in(
        &self,
        in_account: &InAccount<'_, Ec2Deprecation, Settings>,
        region: &Region,
        inv: &Invocation,
        notify: bool,
    ) -> Result<SweepReport, HandlerError> {
        let account = &in_account.account;
        let report = match self.enforcer(in_account, inv, notify).sweep(region, inv.now).await {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(?account, %region, %error,
                    "deprecation sweep failed in this account and region");
                return Err(error.into());
            }
        };
        let retire = report.planned.iter().filter(|p| p.decision == Decision::Deregister).count();
        tracing::info!(?account, %region, images = report.planned.len(),
            stamped = report.stamped.len(), retire, deregistered = report.deregistered.len(),
            retirements_left = report.retirements_left.len(),
            stamps_left = report.stamps_left.len(), warnings = report.warnings.len(),
            errors = report.errors.len(), mode = report.mode.as_str(), "deprecation sweep");
        count_sweep(&report, &inv.metrics);
        Ok(report)
    }

    fn outcome(report: &SweepReport) -> UnitOutcome {
        unit_outcome(report)
    }
}

/// The deadlines a sweep set and the images it deregistered. In report mode `stamped` lists the
/// deadlines it would set: none was set.
fn count_sweep(report: &SweepReport, metrics: &Metrics) {
    let stamped = if report.mode == Mode::Enforce { report.stamped.len() } else { 0 };
    metrics.add(metrics::DEADLINES_STAMPED, stamped as f64);
    metrics.add(metrics::IMAGES_RETIRED, report.deregistered.len() as f64);
}
