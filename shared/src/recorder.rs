//! The lineage recorder: turns one delivered event into lineage writes.
//!
//! This is exactly what the `lineage-recorder` Lambda runs and what `ami-warden replay` runs:
//! parse, decide what the event means for lineage (pure: [`plan`]), gather the one fact an
//! event may lack (the launch image of a CreateImage's instance, an image's snapshots when it
//! becomes available), and write. Bad input is an outcome, not an error; an error means AWS
//! could not be asked or written to, and the event should be retried.

use serde::Serialize;
use thiserror::Error;

use crate::catalogue::{CatalogueError, ImageCatalogue};
use crate::event::{Event, EventKind, ImageState, Parsed};
use crate::ids::{ImageRef, InstanceId};
use crate::lineage::{
    EdgeSource, EnablementChange, LineageStore, NodeFacts, Origin, Parent, StateChange, StateFlag,
    StoreError, WriteOutcome,
};

/// What recording an event did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Written. `summary` says what, for logs and `replay`.
    Recorded { summary: String },
    /// Already recorded under the same eventID: nothing written.
    Duplicate { summary: String },
    /// The event names another parent than the one recorded: the conflict is recorded and
    /// reported, the recorded edge kept. Nothing to retry.
    Conflict { summary: String },
    /// Not a lineage event, or not usable: nothing written, nothing to retry.
    Ignored { reason: String },
}

/// A failure to reach AWS: the event must be retried (Lambda retries, then the DLQ).
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// What an event means for lineage, before any fact is gathered.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Record this node (the parent is already known, or there is none).
    Node(NodeFacts),
    /// Record this node once the launch image of `instance` is looked up.
    NodeFromInstance { facts: NodeFacts, instance: InstanceId },
    /// Record a state change; when `fetch_snapshots`, first read the image's snapshots.
    State { change: StateChange, fetch_snapshots: bool },
    /// Record that an image was disabled or enabled again.
    Enablement(EnablementChange),
    /// Nothing to record.
    Nothing(String),
}

/// Decides what an event means for lineage. Pure.
pub fn plan(event: &Event) -> Plan {
    let meta = &event.meta;
    let node = |image: &ImageRef,
                name: &Option<String>,
                origin: Origin,
                parent: Parent,
                snapshots: Vec<_>| NodeFacts {
        image: image.clone(),
        account: meta.account.clone(),
        name: name.clone(),
        created_at: Some(meta.event_time),
        origin: Some(origin),
        parent,
        snapshots,
        event_id: meta.event_id.clone(),
        actor_arn: meta.actor.arn.clone(),
        sources: vec![EdgeSource::Event],
    };
    let state = |image: &ImageRef, flag: StateFlag, deleted: bool| StateChange {
        image: image.clone(),
        flag,
        event_id: meta.event_id.clone(),
        event_name: meta.event_name.clone(),
        at: meta.event_time,
        snapshots: Vec::new(),
        snapshots_deleted_by_aws: deleted,
        snapshot_results: Vec::new(),
        actor_arn: meta.actor.arn.clone(),
    };
    let enablement = |image: &ImageRef, disabled: bool| {
        Plan::Enablement(EnablementChange {
            image: image.clone(),
            disabled,
            event_id: meta.event_id.clone(),
            event_name: meta.event_name.clone(),
            at: meta.event_time,
            actor_arn: meta.actor.arn.clone(),
        })
    };
    match &event.kind {
        EventKind::ImageCopied { image, source, name } => Plan::Node(node(
            image,
            name,
            Origin::CopyImage,
            Parent::Image(source.clone()),
            Vec::new(),
        )),
        EventKind::ImageCreated { image, instance_id, name } => Plan::NodeFromInstance {
            facts: node(image, name, Origin::CreateImage, Parent::None, Vec::new()),
            instance: instance_id.clone(),
        },
        EventKind::ImageRegistered { image, name, snapshots } => {
            Plan::Node(node(image, name, Origin::RegisterImage, Parent::None, snapshots.clone()))
        }
        EventKind::ImageRestored { image, name, .. } => {
            Plan::Node(node(image, name, Origin::CreateRestoreImageTask, Parent::None, Vec::new()))
        }
        EventKind::ImageDeregistered { image, delete_associated_snapshots, snapshot_results } => {
            let mut change = state(image, StateFlag::Deregistered, *delete_associated_snapshots);
            // The response names the image's snapshots: the node learns any it did not know.
            change.snapshots = snapshot_results.iter().map(|r| r.snapshot.clone()).collect();
            change.snapshot_results = snapshot_results.clone();
            Plan::State { change, fetch_snapshots: false }
        }
        EventKind::ImageDisabled { image } => enablement(image, true),
        EventKind::ImageEnabled { image } => enablement(image, false),
        EventKind::ImageStateChanged { image, state: s, .. } => match s {
            ImageState::Available => Plan::State {
                change: state(image, StateFlag::Available, false),
                fetch_snapshots: true,
            },
            ImageState::Failed => Plan::State {
                change: state(image, StateFlag::Failed, false),
                fetch_snapshots: false,
            },
            ImageState::Deregistered => Plan::State {
                change: state(image, StateFlag::Deregistered, false),
                fetch_snapshots: false,
            },
            ImageState::Disabled => enablement(image, true),
            other => Plan::Nothing(format!("state {other:?} does not change lineage")),
        },
        other => Plan::Nothing(format!("{} does not change lineage", kind_name(other))),
    }
}

fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::ImageCreated { .. } => "CreateImage",
        EventKind::ImageCopied { .. } => "CopyImage",
        EventKind::ImageRegistered { .. } => "RegisterImage",
        EventKind::ImageRestored { .. } => "CreateRestoreImageTask",
        EventKind::ImageDeregistered { .. } => "DeregisterImage",
        EventKind::LaunchPermissionChanged { .. } => "ModifyImageAttribute",
        EventKind::CreateVolumePermissionChanged { .. } => "ModifySnapshotAttribute",
        EventKind::ImageBlockPublicAccessDisabled { .. } => "DisableImageBlockPublicAccess",
        EventKind::GuardrailChanged { change } => change.event_name(),
        EventKind::DeprecationEnabled { .. } => "EnableImageDeprecation",
        EventKind::DeprecationDisabled { .. } => "DisableImageDeprecation",
        EventKind::ImageEnabled { .. } => "EnableImage",
        EventKind::ImageDisabled { .. } => "DisableImage",
        EventKind::SnapshotDeleted { .. } => "DeleteSnapshot",
        EventKind::ImageStateChanged { .. } => "EC2 AMI State Change",
        EventKind::InstancesLaunched { .. } => "RunInstances",
        EventKind::LaunchTemplateVersionCreated { .. } => "CreateLaunchTemplate(Version)",
    }
}

/// Records one parsed event.
pub async fn record(
    parsed: &Parsed,
    catalogue: &impl ImageCatalogue,
    store: &impl LineageStore,
) -> Result<Outcome, RecordError> {
    let event = match parsed {
        Parsed::Event(event) => event,
        Parsed::Ignored { reason, .. } => {
            return Ok(Outcome::Ignored { reason: reason.to_string() })
        }
    };
    let (written, summary) = match plan(event) {
        Plan::Nothing(reason) => return Ok(Outcome::Ignored { reason }),
        Plan::Node(facts) => (record_node(store, &facts).await?, node_summary(&facts)),
        Plan::NodeFromInstance { mut facts, instance } => {
            facts.parent = match catalogue.launch_image_of(&facts.image.region, &instance).await? {
                Some(ami) => Parent::Image(ImageRef::new(facts.image.region.clone(), ami)),
                None => Parent::Unknown(format!("instance {instance} no longer exists")),
            };
            (record_node(store, &facts).await?, node_summary(&facts))
        }
        Plan::State { mut change, fetch_snapshots } => {
            if fetch_snapshots {
                change.snapshots = catalogue.snapshots_of(&change.image).await?.unwrap_or_default();
            }
            let summary = format!("{} {}", change.image, change.flag.as_str());
            let written = store.record_state(&change).await?;
            if change.flag == StateFlag::Available {
                // EnableImage ends in `available` too: an image that became available is not
                // disabled (the newer of this and any disable wins in the store).
                store.record_enablement(&enabled_again(&change)).await?;
            }
            (Written::Done(written), summary)
        }
        Plan::Enablement(change) => {
            let verb = if change.disabled { "disabled" } else { "enabled" };
            let summary = format!("{} {verb}", change.image);
            (Written::Done(store.record_enablement(&change).await?), summary)
        }
    };
    Ok(match written {
        Written::Done(WriteOutcome::Recorded) => Outcome::Recorded { summary },
        Written::Done(WriteOutcome::Duplicate) => Outcome::Duplicate { summary },
        Written::Cycle => Outcome::Ignored {
            reason: format!("{summary}: would create a cycle in the lineage; not recorded"),
        },
        Written::Conflict(why) => Outcome::Conflict { summary: why },
    })
}

/// The enablement an `available` state change implies, under its own idempotency key (the
/// state change's own key is taken by the flag it sets).
fn enabled_again(change: &StateChange) -> EnablementChange {
    EnablementChange {
        image: change.image.clone(),
        disabled: false,
        event_id: format!("{}#enabled", change.event_id),
        event_name: change.event_name.clone(),
        at: change.at,
        actor_arn: change.actor_arn.clone(),
    }
}

/// What a node write came to.
pub enum Written {
    Done(WriteOutcome),
    /// The edge would close a cycle (an image cannot descend from itself): reported, not retried.
    Cycle,
    /// Another parent is recorded: reported, not retried.
    Conflict(String),
}

/// Records a node; a cycle or a conflicting parent is an outcome, not an error to retry.
pub async fn record_node(
    store: &impl LineageStore,
    facts: &NodeFacts,
) -> Result<Written, StoreError> {
    match store.record_node(facts).await {
        Ok(outcome) => Ok(Written::Done(outcome)),
        Err(StoreError::Cycle { .. }) => Ok(Written::Cycle),
        Err(err @ StoreError::Conflict(_)) => Ok(Written::Conflict(err.to_string())),
        Err(other) => Err(other),
    }
}

fn node_summary(facts: &NodeFacts) -> String {
    let parent = match &facts.parent {
        Parent::Image(p) => format!("parent {p}"),
        Parent::None => "no parent".to_owned(),
        Parent::Unknown(why) => format!("parent unknown: {why}"),
    };
    format!("{} {} ({parent})", facts.origin.map_or("image", |o| o.as_str()), facts.image)
}
