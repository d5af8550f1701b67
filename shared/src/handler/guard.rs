//! The `exposure-guard` function: an image or snapshot made public or shared outside the
//! allow-list is alerted (and reverted when asked to) by [`crate::exposure::guard::Guard`];
//! the daily schedule sweeps every account and region ([`crate::exposure::sweep`]) and
//! records what it read as the share ledger the deprecation sweep trusts.

use serde::Serialize;
use serde_json::{json, Value};

use super::units::{sweep_schedule, sweep_unit, SweepParts, Sweeper};
use super::{Function, HandlerError, InAccount, Invocation, Scope, UnitOutcome};
use crate::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, ledger::LedgerTable, sns::SnsNotifier,
    Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::exposure::guard::{Guard, GuardOutcome};
use crate::exposure::ledger::{record_sweep, Ledger, ShareLedger};
use crate::exposure::sweep::{sweep, sweep_notification, SnapshotExposure, SweepReport};
use crate::exposure::{describe_grantees, Settings};
use crate::ids::{AccountId, Region};
use crate::notify::Notifier;
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
        }
    }

    fn guard<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Exposure, Settings>,
    ) -> Result<Guard<'a, Ec2Exposure, SnsNotifier, IdempotencyTable, LedgerTable>, HandlerError>
    {
        let notifier = self.parts.notifier.as_ref().ok_or(NO_TOPIC)?;
        Ok(Guard {
            ec2: &in_account.ec2,
            notifier,
            idempotency: &self.parts.claims,
            ledger: &self.ledger,
            settings: in_account.settings,
            own_account: in_account.account.clone(),
        })
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
        match self.parts.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => Ok(self.guard(&in_account)?.handle(parsed).await?),
            Scope::NotCovered(reason) => Ok(GuardOutcome::Ignored { reason }),
        }
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

/// One account and region's exposure sweep, with the id of the summary it published (the
/// daily schedule's) or none (a unit's).
#[derive(Serialize)]
pub struct Swept {
    pub report: SweepReport,
    pub message_id: Option<String>,
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
        _inv: &Invocation,
        notify: bool,
    ) -> Result<Swept, HandlerError> {
        let report = self.sweep_region(in_account, region).await?;
        let message_id = match self.parts.notifier.as_ref().filter(|_| notify) {
            Some(notifier) => {
                let account = in_account.account.as_ref().map(AccountId::as_str);
                let notification = sweep_notification(std::slice::from_ref(&report), account);
                Some(notifier.publish(&notification).await?)
            }
            None => None,
        };
        Ok(Swept { report, message_id })
    }

    fn outcome(swept: &Swept) -> UnitOutcome {
        unit_outcome(&swept.report)
    }

    fn entry(account: &Option<AccountId>, swept: &Swept) -> Value {
        // The summary's severity is its one report's.
        json!({"account": account, "severity": swept.report.severity(),
            "message_id": swept.message_id, "report": swept.report})
    }
}
