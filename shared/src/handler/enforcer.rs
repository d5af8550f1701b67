//! The `deprecation-enforcer` function: a new image gets its deprecation deadline, and the
//! daily sweep of every account and region stamps missing deadlines, warns of upcoming ones
//! and retires what is past them ([`crate::deprecation::run::Enforcer`]). `MODE=report`
//! changes nothing.

use serde_json::{json, Value};

use super::{Function, HandlerError, InAccount, Invocation, Reach, Scope};
use crate::aws::org::sweep_each_account;
use crate::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::deprecation::run::{Enforcer, EventOutcome};
use crate::deprecation::{Decision, Settings};
use crate::event::Parsed;
use crate::ids::{AccountId, Region};

type EnforcerIn<'a> =
    Enforcer<'a, Ec2Deprecation, LineageTable, AuditTable, SnsNotifier, LedgerTable>;

pub struct DeprecationEnforcer {
    clients: Clients,
    config: Config,
    lineage: LineageTable,
    audit: AuditTable,
    ledger: LedgerTable,
    notifier: Option<SnsNotifier>,
    reach: Reach<Ec2Deprecation, Settings>,
}

impl DeprecationEnforcer {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        if config.topic_arn.is_none() {
            tracing::warn!("TOPIC_ARN is not set: warnings and retirement reports are only logged");
        }
        let table = &config.lineage_table;
        let function = Self {
            clients: clients.clone(),
            config: config.clone(),
            lineage: LineageTable::from_clients(clients, table.clone()),
            audit: AuditTable::new(clients, table.clone()),
            ledger: LedgerTable::new(clients, table.clone()),
            notifier: config.topic_arn.as_ref().map(|t| SnsNotifier::new(clients, t)),
            reach: Reach::new(clients, config, Ec2Deprecation::new, Settings::from_config),
        };
        let s = function.reach.settings();
        tracing::info!(mode = ?s.mode, deprecate_after_days = s.deprecate_after_days,
            grace_days = s.grace_days, keep_latest = s.keep_latest, "deprecation enforcer ready");
        function
    }

    fn enforcer<'a>(
        &'a self,
        in_account: &'a InAccount<'a, Ec2Deprecation, Settings>,
        inv: &Invocation,
    ) -> EnforcerIn<'a> {
        Enforcer {
            ec2: &in_account.ec2,
            lineage: &self.lineage,
            audit: &self.audit,
            ledger: &self.ledger,
            notifier: self.notifier.as_ref(),
            settings: in_account.settings,
            own_account: in_account.account.clone(),
            // Retirements stop in time for the invocation to end cleanly.
            stop_by: inv.stop_by,
        }
    }

    /// The sweep of one account and region.
    pub async fn sweep_unit(
        &self,
        in_account: &InAccount<'_, Ec2Deprecation, Settings>,
        region: &Region,
        inv: &Invocation,
    ) -> Result<Value, HandlerError> {
        let account = &in_account.account;
        let report = match self.enforcer(in_account, inv).sweep(region, inv.now).await {
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
            errors = report.errors.len(), mode = ?report.mode, "deprecation sweep");
        Ok(json!({"account": account, "report": report}))
    }
}

impl Function for DeprecationEnforcer {
    type Outcome = EventOutcome;

    fn clients(&self) -> &Clients {
        &self.clients
    }

    /// A member's image is stamped in the member account, through its role.
    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<EventOutcome, HandlerError> {
        match self.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => {
                Ok(self.enforcer(&in_account, inv).on_event(parsed, inv.now).await?)
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
            "deprecation sweep",
            self.notifier.as_ref(),
            async |account: &Option<AccountId>, clients: &Clients, region: &Region| {
                self.sweep_unit(&self.reach.in_account(account, own, clients), region, inv).await
            },
        )
        .await
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
