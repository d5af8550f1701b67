//! The `snapshot-reaper` function: a DeregisterImage's snapshots are decided (and, in enforce
//! mode, tagged for the Recycle Bin and deleted) by [`crate::reaper::run::Reaper`]; the daily
//! sweep decides every owned snapshot whose image is gone, in every account and region.

use serde_json::{json, Value};

use super::{Function, HandlerError, InAccount, Invocation, Reach, Scope};
use crate::aws::org::sweep_each_account;
use crate::aws::{
    audit::AuditTable, idempotency::IdempotencyTable, ledger::LedgerTable,
    lineage_table::LineageTable, snapshots::Ec2Snapshots, sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::ids::{AccountId, Region};
use crate::reaper::run::{EventOutcome, Reaper};
use crate::reaper::Settings;

type ReaperIn<'a> =
    Reaper<'a, Ec2Snapshots, LineageTable, AuditTable, IdempotencyTable, SnsNotifier, LedgerTable>;

pub struct SnapshotReaper {
    clients: Clients,
    config: Config,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
    idempotency: IdempotencyTable,
    notifier: Option<SnsNotifier>,
    reach: Reach<Ec2Snapshots, Settings>,
}

impl SnapshotReaper {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        if config.topic_arn.is_none() {
            tracing::warn!("TOPIC_ARN is not set: run summaries are only logged");
        }
        let table = &config.lineage_table;
        let function = Self {
            clients: clients.clone(),
            config: config.clone(),
            lineage: LineageTable::from_clients(clients, table.clone()),
            audit: AuditTable::new(clients, table.clone()),
            ledger: LedgerTable::new(clients, table.clone()),
            idempotency: IdempotencyTable::new(clients, table.clone()),
            notifier: config.topic_arn.as_ref().map(|t| SnsNotifier::new(clients, t)),
            reach: Reach::new(clients, config, Ec2Snapshots::new, Settings::from_config),
        };
        let s = function.reach.settings();
        tracing::info!(mode = ?s.mode, min_age_days = s.min_age_days, "snapshot reaper ready");
        function
    }

    fn reaper<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Snapshots, Settings>,
        inv: &Invocation,
    ) -> ReaperIn<'a> {
        Reaper {
            ec2: &in_account.ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            idempotency: &self.idempotency,
            notifier: self.notifier.as_ref(),
            settings: in_account.settings,
            own_account: in_account.account.clone(),
            // Deletions stop in time for the invocation to end cleanly.
            stop_by: inv.stop_by,
        }
    }

    /// The sweep of one account and region.
    pub async fn sweep_unit(
        &self,
        in_account: &InAccount<'_, Ec2Snapshots, Settings>,
        region: &Region,
        inv: &Invocation,
    ) -> Result<Value, HandlerError> {
        let account = &in_account.account;
        let report = match self.reaper(in_account, inv).sweep(region, inv.now, &|_, _| {}).await {
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
        Ok(json!({"account": account, "report": report}))
    }
}

impl Function for SnapshotReaper {
    type Outcome = EventOutcome;

    fn clients(&self) -> &Clients {
        &self.clients
    }

    /// A member's deregistration is reaped in the member account, through its role.
    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<EventOutcome, HandlerError> {
        match self.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => {
                Ok(self.reaper(&in_account, inv).on_event(parsed, inv.now).await?)
            }
            Scope::NotCovered(reason) => Ok(EventOutcome::Ignored { reason }),
        }
    }

    async fn on_schedule(&self, inv: &Invocation) -> Result<Value, HandlerError> {
        let own = &inv.own_account;
        sweep_each_account(
            &self.clients,
            own.as_ref(),
            &self.config,
            "snapshot reaper sweep",
            self.notifier.as_ref(),
            async |account: &Option<AccountId>, clients: &Clients, region: &Region| {
                self.sweep_unit(&self.reach.in_account(account, own, clients), region, inv).await
            },
        )
        .await
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
