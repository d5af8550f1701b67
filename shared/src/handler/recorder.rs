//! The `lineage-recorder` function: every image event becomes lineage ([`crate::recorder`]).
//! It has no schedule. A member account's CreateImage names an instance in that account, and
//! a member's new image has its snapshots there, so those two are looked up in the member.

use serde_json::Value;

use super::{Function, HandlerError, Invocation, Reach, Scope};
use crate::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use crate::config::Config;
use crate::event::{EventKind, ImageState, Parsed};
use crate::recorder::{record, Outcome};

pub struct LineageRecorder {
    clients: Clients,
    store: LineageTable,
    reach: Reach<Ec2Catalogue, ()>,
}

impl LineageRecorder {
    pub fn new(clients: &Clients, config: &Config) -> Self {
        Self {
            clients: clients.clone(),
            store: LineageTable::from_clients(clients, config.lineage_table.clone()),
            reach: Reach::new(clients, config, Ec2Catalogue::new, |_| ()),
        }
    }
}

/// Whether the event needs EC2 asked (a CreateImage's instance, a new image's snapshots).
fn asks_ec2(parsed: &Parsed) -> bool {
    matches!(parsed, Parsed::Event(event) if matches!(
        event.kind,
        EventKind::ImageCreated { .. } | EventKind::ImageStateChanged { state: ImageState::Available, .. }
    ))
}

impl Function for LineageRecorder {
    type Outcome = Outcome;

    fn clients(&self) -> &Clients {
        &self.clients
    }

    async fn on_event(&self, parsed: &Parsed, inv: &Invocation) -> Result<Outcome, HandlerError> {
        // Never record a guess: a member that cannot be reached fails the event, which is
        // retried and lands in the DLQ, to be redriven once the member's role is fixed.
        let scope = if asks_ec2(parsed) {
            self.reach.of_event(parsed, &inv.own_account).await?
        } else {
            Scope::Act(self.reach.own(&inv.own_account))
        };
        match scope {
            Scope::Act(in_account) => Ok(record(parsed, &*in_account.ec2, &self.store).await?),
            Scope::NotCovered(reason) => Ok(Outcome::Ignored { reason }),
        }
    }

    async fn on_schedule(&self, _: &Invocation) -> Result<Value, HandlerError> {
        Err("the lineage recorder has no schedule: it records events as they come".into())
    }

    fn log(&self, outcome: &Outcome, aws_calls: &str) {
        match outcome {
            Outcome::Recorded { summary } => tracing::info!(%summary, aws_calls, "recorded"),
            Outcome::Duplicate { summary } => {
                tracing::info!(%summary, aws_calls, "duplicate event, nothing written")
            }
            Outcome::Ignored { reason } => {
                tracing::warn!(%reason, aws_calls, metric = "ignored_events", "event ignored")
            }
            Outcome::Conflict { summary } => tracing::warn!(
                %summary,
                aws_calls,
                metric = "lineage_conflicts",
                "conflicting parent reported, recorded edge kept"
            ),
        }
    }
}
