//! The `exposure-guard` function: an image or snapshot made public or shared outside the
//! allow-list is alerted (and reverted when asked to) by [`crate::exposure::guard::Guard`];
//! the daily schedule sweeps every account and region ([`crate::exposure::sweep`]) and
//! records what it read as the share ledger the deprecation sweep trusts. With
//! `SECURITY_HUB_FINDINGS=true`, the alerts and the sweeps' results are also imported into
//! Security Hub ([`crate::exposure::findings`]); a failed import is logged and reported, and
//! never costs the SNS alert.
//!
//! Metrics: an alert counts as an exposure found, by its severity, and a removed grant as a
//! remediation; a sweep's exposed images and snapshots are the exposures open now, by severity.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

use super::units::{sweep_schedule, sweep_unit, SweepParts, Sweeper};
use super::{Function, HandlerError, InAccount, Invocation, Scope, UnitOutcome};
use crate::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, ledger::LedgerTable,
    securityhub::SecurityHub, sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::exposure::findings::{self, Observation};
use crate::exposure::guard::{Guard, GuardOutcome};
use crate::exposure::ledger::{record_sweep, Ledger, ShareLedger};
use crate::exposure::sweep::{sweep, sweep_notification, SnapshotExposure, SweepReport};
use crate::exposure::{describe_grantees, Settings};
use crate::ids::{AccountId, Region};
use crate::metrics::{self, Metrics};
use crate::notify::{Notification, Notifier, NotifyError, Severity};
use crate::sweep::{capped, Figures, Job, Unit, UnitReport};

/// An exposure sweep's figures: exposures found (the sweep remediates nothing), each named.
fn unit_outcome(report: &SweepReport) -> UnitOutcome {
    let exposed = report.exposed_images.len() + report.exposed_snapshots.len();
    let images = report.exposed_images.iter().map(|i| {
        let name = i.name.as_deref().unwrap_or("-");
        format!("image {} ({name}) exposed to {}", i.image_id, describe_grantees(&i.exposure))
    });
    let snapshots = report.exposed_snapshots.iter().map(|s| {
        let blocked = match s.state {
            SnapshotExposure::Public => "",
            SnapshotExposure::PublicButBlocked => " (public but blocked by block-all-sharing)",
        };
        format!("snapshot {} exposed to {}{blocked}", s.snapshot_id, describe_grantees(&s.exposure))
    });
    UnitOutcome {
        figures: Figures {
            findings: exposed as u64,
            acted: 0,
            left: 0,
            errors: report.errors.len() as u64,
        },
        severity: report.severity(),
        summary: format!(
            "{} image(s) ({}) and {} snapshot(s) checked: {} exposed image(s) ({} public), {} exposed snapshot(s) ({} public but blocked); {}; {} error(s)",
            report.images_checked,
            report.permissions_read_phrase(),
            report.snapshots_checked,
            report.exposed_images.len(),
            report.public_count(),
            report.exposed_snapshots.len(),
            report.blocked_count(),
            report.guardrails_phrase(),
            report.errors.len()
        ),
        details: capped(images.chain(snapshots).chain(report.errors.iter().cloned()).collect()),
    }
}

const NO_TOPIC: &str = "TOPIC_ARN is not set: the exposure guard has nowhere to alert";

pub struct ExposureGuard {
    parts: SweepParts<Ec2Exposure, Settings>,
    /// `None` only for sweeps run by hand (the CLI): an event needs somewhere to alert.
    ledger: LedgerTable,
    /// `SECURITY_HUB_FINDINGS`: alerts and sweep results also become Security Hub findings.
    security_hub: bool,
}

/// The topic, keeping what was published so that it can also become findings.
struct Recording<'a> {
    topic: &'a SnsNotifier,
    sent: Mutex<Vec<Notification>>,
}

impl Notifier for Recording<'_> {
    async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
        let id = self.topic.publish(notification).await?;
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(notification.clone());
        Ok(id)
    }
}

impl ExposureGuard {
    /// `Err` without `TOPIC_ARN`: the guard would have nowhere to alert.
    pub fn new(clients: &Clients, config: &Config) -> Result<Self, String> {
        config.topic_arn.as_ref().ok_or(NO_TOPIC.to_owned())?;
        Ok(Self::for_sweeps(clients, config))
    }

    /// A guard that sweeps, with or without a topic to publish sweep summaries to.
    pub fn for_sweeps(clients: &Clients, config: &Config) -> Self {
        Self {
            parts: SweepParts::new(clients, config, Ec2Exposure::new, Settings::from_config),
            ledger: LedgerTable::new(clients, config.lineage_table.clone()),
            security_hub: config.security_hub_findings,
        }
    }

    fn guard<'a, N: Notifier>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Exposure, Settings>,
        notifier: &'a N,
    ) -> Guard<'a, Ec2Exposure, N, IdempotencyTable, LedgerTable> {
        Guard {
            ec2: &in_account.ec2,
            notifier,
            idempotency: &self.parts.claims,
            ledger: &self.ledger,
            settings: in_account.settings,
            own_account: in_account.account.clone(),
        }
    }

    /// Security Hub in `account` (the own one, or a member's through its role).
    async fn security_hub(
        &self,
        account: &Option<AccountId>,
        own: &Option<AccountId>,
    ) -> Result<SecurityHub, String> {
        match (account, self.parts.reach.members()) {
            (Some(member), Some(members)) if account != own => {
                Ok(SecurityHub::new(&members.for_account(member).await?))
            }
            _ => Ok(SecurityHub::new(&self.parts.clients)),
        }
    }

    /// Imports `observations` into Security Hub in `account`: what it did, or why it failed
    /// (logged as an error, counted as a metric, and returned).
    async fn import_findings(
        &self,
        account: &Option<AccountId>,
        own: &Option<AccountId>,
        observations: &[Observation],
    ) -> Value {
        if observations.is_empty() {
            return json!({"imported": 0, "resolved": 0});
        }
        let result = match self.security_hub(account, own).await {
            Ok(sink) => findings::publish(&sink, observations)
                .await
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>()),
            Err(reason) => Err(vec![format!("Security Hub not reached: {reason}")]),
        };
        match result {
            Ok(done) => {
                tracing::info!(account = ?account, imported = done.imported, resolved = done.resolved,
                    "security hub findings imported");
                json!({"imported": done.imported, "resolved": done.resolved})
            }
            Err(errors) => {
                tracing::error!(account = ?account, errors = %errors.join("; "),
                    metric = "security_hub_import_failures", "security hub findings not imported");
                json!({"errors": errors})
            }
        }
    }

    /// The findings one account and region's sweep amounts to: every exposure it found, and
    /// every open finding it no longer finds, ended.
    async fn sweep_findings(
        &self,
        account: &Option<AccountId>,
        own: &Option<AccountId>,
        report: &SweepReport,
    ) -> Option<Value> {
        if !self.security_hub {
            return None;
        }
        let Some(id) = account.as_ref().or(own.as_ref()) else {
            tracing::warn!(region = %report.region, "security hub findings skipped: the account is unknown");
            return Some(json!({"errors": ["the account is unknown"]}));
        };
        // Stamped with the time the sweep began listing: what it found is as of then.
        let now = report.shares.started_at;
        let mut observations = findings::from_sweep(id, report, now);
        let open = match self.security_hub(account, own).await {
            Ok(sink) => findings::FindingsSink::open_findings(&sink, id, &report.region).await,
            Err(reason) => Err(findings::FindingsError {
                operation: "GetFindings",
                region: report.region.to_string(),
                message: reason,
            }),
        };
        let mut answer = match open {
            Ok(open) => {
                observations.extend(findings::resolved_by_sweep(id, report, &open, now));
                self.import_findings(account, own, &observations).await
            }
            Err(e) => {
                // Without the open findings nothing can be ended; the exposures still count.
                tracing::error!(account = %id, region = %report.region, error = %e,
                    metric = "security_hub_import_failures", "open findings not read: none resolved");
                let mut answer = self.import_findings(account, own, &observations).await;
                answer["open_findings_error"] = json!(e.to_string());
                answer
            }
        };
        answer["region"] = json!(report.region);
        Some(answer)
    }

    /// The sweep of one account and region: its exposures, and the share ledger.
    pub async fn sweep_region(
        &self,
        in_account: &InAccount<'_, Ec2Exposure, Settings>,
        region: &Region,
    ) -> Result<SweepReport, HandlerError> {
        let known = self.load_ledger(&in_account.account, region).await;
        let report =
            sweep(&*in_account.ec2, in_account.settings, region, known.as_ref(), &|_, _, _| {})
                .await?;
        let ledger_writes = match &known {
            Some(known) => self.record_ledger(&in_account.account, region, known, &report).await,
            None => None,
        };
        tracing::info!(account = ?in_account.account, %region, images = report.images_checked,
            permissions_read = report.permissions_read, full_read = report.full_read,
            exposed_images = report.exposed_images.len(),
            exposed_snapshots = report.exposed_snapshots.len(), errors = report.errors.len(),
            severity = %report.severity(), ledger_writes, "exposure sweep");
        Ok(report)
    }

    /// The share ledger of the account and region, which tells the sweep what it need not read
    /// again; `None` (read everything, record nothing) when the account is unknown or the
    /// ledger cannot be loaded.
    async fn load_ledger(&self, account: &Option<AccountId>, region: &Region) -> Option<Ledger> {
        let account = account.as_ref()?;
        match self.ledger.load(account, region).await {
            Ok(known) => Some(known),
            Err(e) => {
                tracing::error!(%account, %region, error = %e, "share ledger not loaded: reading every image");
                None
            }
        }
    }

    /// What the sweep read becomes the share ledger the deprecation sweep reads. A failed
    /// write only leaves the ledger older, which the deprecation sweep then does not trust.
    async fn record_ledger(
        &self,
        account: &Option<AccountId>,
        region: &Region,
        known: &Ledger,
        report: &SweepReport,
    ) -> Option<usize> {
        let account = account.as_ref()?;
        match record_sweep(&self.ledger, account, region, known, &report.shares).await {
            Ok(writes) => Some(writes),
            Err(e) => {
                tracing::error!(%account, %region, error = %e, "share ledger not updated");
                None
            }
        }
    }
}

impl Function for ExposureGuard {
    type Outcome = GuardOutcome;

    fn clients(&self) -> &Clients {
        &self.parts.clients
    }

    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<GuardOutcome, HandlerError> {
        let outcome = self.guard_event(parsed, inv).await?;
        count_event(&outcome, &inv.metrics);
        Ok(outcome)
    }

    async fn on_schedule(&self, inv: &Invocation) -> Result<Value, HandlerError> {
        sweep_schedule(self, inv).await
    }

    async fn on_unit(&self, unit: &Unit, inv: &Invocation) -> Result<UnitReport, HandlerError> {
        sweep_unit(self, unit, inv).await
    }

    fn log(&self, outcome: &GuardOutcome, aws_calls: &str) {
        match outcome {
            GuardOutcome::Alerted { severity, kind, summary, .. } => {
                tracing::info!(%severity, kind, summary, aws_calls, "alerted")
            }
            GuardOutcome::Quiet { summary } => tracing::info!(summary, aws_calls, "no exposure"),
            GuardOutcome::Duplicate { event_id } => {
                tracing::info!(event_id, aws_calls, "duplicate event, nothing done")
            }
            GuardOutcome::Ignored { reason } => {
                tracing::warn!(reason, aws_calls, metric = "ignored_events", "event ignored")
            }
        }
    }
}

/// An alert is an exposure found (a RESOLVED or INFO one is not); a removed grant, a
/// remediation.
fn count_event(outcome: &GuardOutcome, metrics: &Metrics) {
    let remediated = match outcome {
        GuardOutcome::Alerted { severity, remediated, .. } => {
            if matches!(severity, Severity::Critical | Severity::Warning) {
                metrics.add_split(metrics::EXPOSURES_FOUND, severity.as_str(), 1.0);
            }
            *remediated
        }
        _ => false,
    };
    metrics.add(metrics::REMEDIATIONS, u8::from(remediated).into());
}

/// What one sweep found exposed now: public images and snapshots are CRITICAL, the rest
/// (shares outside the allow-list, snapshots public but blocked) WARNING. Both are counted,
/// zero or not, so that an alarm sees a sweep that found nothing.
fn count_sweep(report: &SweepReport, metrics: &Metrics) {
    let exposed = report.exposed_images.len() + report.exposed_snapshots.len();
    let public = report.public_count();
    metrics.add_split(metrics::EXPOSURES_OPEN, Severity::Critical.as_str(), public as f64);
    let others = exposed.saturating_sub(public) as f64;
    metrics.add_split(metrics::EXPOSURES_OPEN, Severity::Warning.as_str(), others);
}

impl ExposureGuard {
    async fn guard_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<GuardOutcome, HandlerError> {
        match self.parts.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => {
                let topic = self.parts.notifier.as_ref().ok_or(NO_TOPIC)?;
                if !self.security_hub {
                    return Ok(self.guard(&in_account, topic).handle(parsed).await?);
                }
                let recording = Recording { topic, sent: Mutex::default() };
                let outcome = self.guard(&in_account, &recording).handle(parsed).await?;
                let sent = recording.sent.into_inner().unwrap_or_else(|p| p.into_inner());
                let own = &inv.own_account;
                let account = in_account.account.as_ref().or(own.as_ref());
                let observations: Vec<Observation> =
                    sent.iter().flat_map(|n| findings::from_alert(n, account)).collect();
                Box::pin(self.import_findings(&in_account.account, own, &observations)).await;
                Ok(outcome)
            }
            Scope::NotCovered(reason) => Ok(GuardOutcome::Ignored { reason }),
        }
    }
}

/// One account and region's exposure sweep, with the id of the summary it published (the
/// daily schedule's) or none (a unit's).
#[derive(Serialize)]
pub struct Swept {
    pub report: SweepReport,
    pub message_id: Option<String>,
    /// What was imported into Security Hub, or why not (`SECURITY_HUB_FINDINGS` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_hub: Option<Value>,
}

impl Sweeper for ExposureGuard {
    type Ec2 = Ec2Exposure;
    type Settings = Settings;
    type Report = Swept;
    const JOB: Job = Job::Exposure;

    fn parts(&self) -> &SweepParts<Ec2Exposure, Settings> {
        &self.parts
    }

    async fn sweep_in(
        &self,
        in_account: &InAccount<'_, Ec2Exposure, Settings>,
        region: &Region,
        inv: &Invocation,
        notify: bool,
    ) -> Result<Swept, HandlerError> {
        let report = self.sweep_region(in_account, region).await?;
        count_sweep(&report, &inv.metrics);
        let security_hub =
            Box::pin(self.sweep_findings(&in_account.account, &inv.own_account, &report)).await;
        let message_id = match self.parts.notifier.as_ref().filter(|_| notify) {
            Some(notifier) => {
                let account = in_account.account.as_ref().map(AccountId::as_str);
                let notification = sweep_notification(std::slice::from_ref(&report), account);
                Some(notifier.publish(&notification).await?)
            }
            None => None,
        };
        Ok(Swept { report, message_id, security_hub })
    }

    fn outcome(swept: &Swept) -> UnitOutcome {
        unit_outcome(&swept.report)
    }

    fn entry(account: &Option<AccountId>, swept: &Swept) -> Value {
        // The summary's severity is its one report's.
        json!({"account": account, "severity": swept.report.severity(),
            "message_id": swept.message_id, "report": swept.report,
            "security_hub": swept.security_hub})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerted(severity: Severity, remediated: bool) -> GuardOutcome {
        GuardOutcome::Alerted {
            severity,
            kind: "image-public".into(),
            summary: String::new(),
            message_id: "m-1".into(),
            remediated,
        }
    }

    fn line<'a>(lines: &'a [Value], severity: Option<&str>) -> &'a Value {
        let found = lines.iter().find(|l| l.get("Severity").and_then(Value::as_str) == severity);
        found.unwrap_or_else(|| panic!("no line for {severity:?} in {lines:?}"))
    }

    #[test]
    fn an_alert_is_an_exposure_found_by_severity_and_a_removed_grant_a_remediation() {
        let metrics = Metrics::in_memory("exposure-guard");
        count_event(&alerted(Severity::Critical, true), &metrics);
        let lines = metrics.flush();
        assert_eq!(line(&lines, Some("CRITICAL"))["ExposuresFound"], json!(1));
        assert_eq!(line(&lines, None)["Remediations"], json!(1));
    }

    #[test]
    fn a_resolved_alert_or_a_quiet_event_is_no_exposure() {
        let metrics = Metrics::in_memory("exposure-guard");
        count_event(&alerted(Severity::Resolved, false), &metrics);
        count_event(&GuardOutcome::Quiet { summary: String::new() }, &metrics);
        let lines = metrics.flush();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(line(&lines, None)["Remediations"], json!(0));
    }
}
