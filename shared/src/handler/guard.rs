//! The `exposure-guard` function: an image or snapshot made public or shared outside the
//! allow-list is alerted (and reverted when asked to) by [`crate::exposure::guard::Guard`];
//! the daily schedule sweeps every account and region ([`crate::exposure::sweep`]) and
//! records what it read as the share ledger the deprecation sweep trusts.

use serde_json::{json, Value};

use super::{Function, HandlerError, InAccount, Invocation, Reach, Scope};
use crate::aws::org::sweep_each_account;
use crate::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, ledger::LedgerTable, sns::SnsNotifier,
    Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::exposure::guard::{Guard, GuardOutcome};
use crate::exposure::ledger::record_sweep;
use crate::exposure::sweep::{sweep, sweep_notification, SweepReport};
use crate::exposure::Settings;
use crate::ids::{AccountId, Region};
use crate::notify::Notifier;

pub struct ExposureGuard {
    clients: Clients,
    config: Config,
    notifier: SnsNotifier,
    idempotency: IdempotencyTable,
    ledger: LedgerTable,
    reach: Reach<Ec2Exposure, Settings>,
}

impl ExposureGuard {
    /// `Err` without `TOPIC_ARN`: the guard would have nowhere to alert.
    pub fn new(clients: &Clients, config: &Config) -> Result<Self, String> {
        let topic = config
            .topic_arn
            .as_ref()
            .ok_or("TOPIC_ARN is not set: the exposure guard has nowhere to alert".to_owned())?;
        Ok(Self {
            clients: clients.clone(),
            config: config.clone(),
            notifier: SnsNotifier::new(clients, topic),
            idempotency: IdempotencyTable::new(clients, config.lineage_table.clone()),
            ledger: LedgerTable::new(clients, config.lineage_table.clone()),
            reach: Reach::new(clients, config, Ec2Exposure::new, Settings::from_config),
        })
    }

    fn guard<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Exposure, Settings>,
    ) -> Guard<'a, Ec2Exposure, SnsNotifier, IdempotencyTable, LedgerTable> {
        Guard {
            ec2: &in_account.ec2,
            notifier: &self.notifier,
            idempotency: &self.idempotency,
            ledger: &self.ledger,
            settings: in_account.settings,
            own_account: in_account.account.clone(),
        }
    }

    /// The sweep of one account and region: its exposures, the share ledger, one summary.
    pub async fn sweep_unit(
        &self,
        in_account: &InAccount<'_, Ec2Exposure, Settings>,
        region: &Region,
    ) -> Result<Value, HandlerError> {
        let report = sweep(&*in_account.ec2, in_account.settings, region, &|_, _, _| {}).await?;
        let ledger_writes = self.record_ledger(&in_account.account, region, &report).await;
        let account = in_account.account.as_ref().map(AccountId::as_str);
        let notification = sweep_notification(std::slice::from_ref(&report), account);
        let message_id = self.notifier.publish(&notification).await?;
        tracing::info!(account, %region, images = report.images_checked,
            exposed_images = report.exposed_images.len(),
            exposed_snapshots = report.exposed_snapshots.len(), errors = report.errors.len(),
            severity = %notification.severity, ledger_writes, "exposure sweep");
        Ok(json!({"account": account, "severity": notification.severity,
            "message_id": message_id, "report": report}))
    }

    /// What the sweep read becomes the share ledger the deprecation sweep reads. A failed
    /// write only leaves the ledger older, which the deprecation sweep then does not trust.
    async fn record_ledger(
        &self,
        account: &Option<AccountId>,
        region: &Region,
        report: &SweepReport,
    ) -> Option<usize> {
        let account = account.as_ref()?;
        match record_sweep(&self.ledger, account, region, &report.shares).await {
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
        &self.clients
    }

    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<GuardOutcome, HandlerError> {
        match self.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => Ok(self.guard(&in_account).handle(parsed).await?),
            Scope::NotCovered(reason) => Ok(GuardOutcome::Ignored { reason }),
        }
    }

    async fn on_schedule(&self, inv: &Invocation) -> Result<Value, HandlerError> {
        let own = &inv.own_account;
        sweep_each_account(
            &self.clients,
            own.as_ref(),
            &self.config,
            "exposure sweep",
            Some(&self.notifier),
            async |account: &Option<AccountId>, clients: &Clients, region: &Region| {
                self.sweep_unit(&self.reach.in_account(account, own, clients), region).await
            },
        )
        .await
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
