//! The `launch-guard` function: each RunInstances (Auto Scaling's too) and each new launch
//! template version has its images checked against the lineage ([`crate::provenance`]): a
//! quarantined ancestry is CRITICAL, one that reaches no approved base a WARNING. It has no
//! schedule. A member's launch is checked in the member (an unknown image's ancestry, a
//! launch template), through its role; the lineage is the central table.

use serde_json::Value;

use super::{Function, HandlerError, Invocation, Reach, Scope};
use crate::aws::{
    idempotency::IdempotencyTable, launch::Ec2Launches, lineage_table::LineageTable,
    sns::SnsNotifier, Clients,
};
use crate::config::Config;
use crate::event::Parsed;
use crate::provenance::run::{LaunchGuard as Guard, LaunchOutcome};
use crate::provenance::Approved;

pub struct LaunchGuard {
    clients: Clients,
    store: LineageTable,
    claims: IdempotencyTable,
    notifier: Option<SnsNotifier>,
    approved: Vec<Approved>,
    reach: Reach<Ec2Launches, ()>,
}

impl LaunchGuard {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        let table = &config.lineage_table;
        if config.topic_arn.is_none() {
            tracing::warn!("TOPIC_ARN is not set: launch alerts are only logged");
        }
        tracing::info!(approved_bases = config.approved_bases.len(), "launch guard ready");
        Self {
            clients: clients.clone(),
            store: LineageTable::from_clients(clients, table.clone()),
            claims: IdempotencyTable::new(clients, table.clone()),
            notifier: SnsNotifier::from_config(clients, config),
            approved: config.approved_bases.clone(),
            reach: Reach::new(clients, config, Ec2Launches::new, |_| ()),
        }
    }
}

impl Function for LaunchGuard {
    type Outcome = LaunchOutcome;

    fn clients(&self) -> &Clients {
        &self.clients
    }

    async fn on_event(
        &self,
        parsed: &Parsed,
        inv: &Invocation,
    ) -> Result<LaunchOutcome, HandlerError> {
        let in_account = match self.reach.of_event(parsed, &inv.own_account).await? {
            Scope::Act(in_account) => in_account,
            Scope::NotCovered(reason) => return Ok(LaunchOutcome::Ignored { reason }),
        };
        let guard = Guard {
            store: &self.store,
            ec2: &*in_account.ec2,
            claims: &self.claims,
            notifier: self.notifier.as_ref(),
            approved: &self.approved,
        };
        Ok(guard.on_event(parsed).await?)
    }

    async fn on_schedule(&self, _: &Invocation) -> Result<Value, HandlerError> {
        Err("the launch guard has no schedule: it checks launches as they come".into())
    }

    fn log(&self, outcome: &LaunchOutcome, aws_calls: &str) {
        match outcome {
            LaunchOutcome::Checked { images, alerted, not_checked } => tracing::info!(
                images = ?images.iter().map(|c| (c.image.to_string(), &c.verdict)).collect::<Vec<_>>(),
                alerted,
                ?not_checked,
                aws_calls,
                "launch checked"
            ),
            LaunchOutcome::Duplicate { event_id } => {
                tracing::info!(event_id, aws_calls, "duplicate event, alerted before")
            }
            LaunchOutcome::Ignored { reason } => {
                tracing::info!(%reason, aws_calls, "event ignored")
            }
        }
    }
}
