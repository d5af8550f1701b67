//! The `lineage-recorder` function: every image event becomes lineage ([`crate::recorder`]).
//! It has no schedule. A member account's CreateImage names an instance in that account, and
//! a member's new image has its snapshots there, so those two are looked up in the member.
//! Each recorded image counts as a lineage node, and its parent, when it has one, as an edge.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::{Function, HandlerError, Invocation, Reach, Scope};
use crate::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use crate::catalogue::{CatalogueError, ImageCatalogue};
use crate::config::Config;
use crate::event::{EventKind, ImageState, Parsed};
use crate::ids::{ImageId, ImageRef, InstanceId, Region, SnapshotId};
use crate::lineage::Parent;
use crate::metrics::{self, Metrics};
use crate::recorder::{plan, record, Outcome, Plan};

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
        let in_account = match scope {
            Scope::Act(in_account) => in_account,
            Scope::NotCovered(reason) => return Ok(Outcome::Ignored { reason }),
        };
        let catalogue = Watched { inner: &*in_account.ec2, found_parent: AtomicBool::new(false) };
        let outcome = record(parsed, &catalogue, &self.store).await?;
        count(parsed, &outcome, catalogue.found_parent.load(Ordering::Relaxed), &inv.metrics);
        Ok(outcome)
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

/// The catalogue the recorder asks, noting whether an instance's launch image was found: the
/// parent of a CreateImage, which the recorder's outcome does not say.
struct Watched<'a, C> {
    inner: &'a C,
    found_parent: AtomicBool,
}

impl<C: ImageCatalogue> ImageCatalogue for Watched<'_, C> {
    async fn launch_image_of(
        &self,
        region: &Region,
        instance: &InstanceId,
    ) -> Result<Option<ImageId>, CatalogueError> {
        let image = self.inner.launch_image_of(region, instance).await?;
        self.found_parent.store(image.is_some(), Ordering::Relaxed);
        Ok(image)
    }

    async fn snapshots_of(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Vec<SnapshotId>>, CatalogueError> {
        self.inner.snapshots_of(image).await
    }
}

/// The lineage one event wrote: (nodes, edges). A node is written only when the outcome is
/// `Recorded` and the event's plan records an image; the edge when it has a parent (a copy's
/// source, or a CreateImage's instance's launch image when `found_parent`).
fn written(parsed: &Parsed, outcome: &Outcome, found_parent: bool) -> (u64, u64) {
    let (Parsed::Event(event), Outcome::Recorded { .. }) = (parsed, outcome) else {
        return (0, 0);
    };
    match plan(event) {
        Plan::Node(facts) => (1, u64::from(matches!(facts.parent, Parent::Image(_)))),
        Plan::NodeFromInstance { .. } => (1, u64::from(found_parent)),
        _ => (0, 0),
    }
}

fn count(parsed: &Parsed, outcome: &Outcome, found_parent: bool, metrics: &Metrics) {
    let (nodes, edges) = written(parsed, outcome, found_parent);
    metrics.add(metrics::LINEAGE_NODES_RECORDED, nodes as f64);
    metrics.add(metrics::LINEAGE_EDGES_RECORDED, edges as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_value;

    fn fixture(name: &str) -> Parsed {
        let path = format!("{}/../fixtures/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse_value(&serde_json::from_str(&text).unwrap())
    }

    fn recorded() -> Outcome {
        Outcome::Recorded { summary: String::new() }
    }

    #[test]
    fn a_copy_is_a_node_and_an_edge_a_registration_a_node_alone() {
        assert_eq!(written(&fixture("03-copy-image-cross-region"), &recorded(), false), (1, 1));
        assert_eq!(written(&fixture("01-register-image-golden"), &recorded(), false), (1, 0));
    }

    #[test]
    fn a_create_image_has_an_edge_only_when_its_instances_image_was_found() {
        let created = fixture("02-create-image-console");
        assert_eq!(written(&created, &recorded(), true), (1, 1));
        assert_eq!(written(&created, &recorded(), false), (1, 0));
    }

    #[test]
    fn duplicates_state_changes_and_ignored_events_write_no_lineage() {
        let copy = fixture("03-copy-image-cross-region");
        let duplicate = Outcome::Duplicate { summary: String::new() };
        assert_eq!(written(&copy, &duplicate, false), (0, 0));
        assert_eq!(written(&fixture("07-deregister-image"), &recorded(), false), (0, 0));
        let ignored = Outcome::Ignored { reason: String::new() };
        assert_eq!(written(&fixture("32-other-service-s3"), &ignored, false), (0, 0));
    }
}
