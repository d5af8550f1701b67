//! The image lineage graph: what is recorded about an image, and how ancestry is derived.
//!
//! Each image is a node keyed by region + image id. An image has at most one parent (the image
//! it was copied from, or the launch image of the instance it was created from). Besides the
//! node and its parent edge the store keeps the **closure** of the graph: one entry per
//! (ancestor, descendant) pair with its depth, so that all descendants of an image come back
//! from one query and stay there when intermediate images are deregistered.
//!
//! Everything here is plain data and pure functions; the DynamoDB adapter lives in
//! [`crate::aws::lineage_table`]. Writes are designed to commute: each event sets its own
//! attributes and never clears another's, so any delivery order yields the same graph.

mod closure;
mod render;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::event::SnapshotDeletion;
use crate::ids::{AccountId, ImageRef, SnapshotId};

pub use closure::{closure_entries, ClosureEntry, Link};
pub use render::{render, Format, ParseFormatError, View};

/// How an image came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Origin {
    CreateImage,
    CopyImage,
    RegisterImage,
    CreateRestoreImageTask,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateImage => "CreateImage",
            Self::CopyImage => "CopyImage",
            Self::RegisterImage => "RegisterImage",
            Self::CreateRestoreImageTask => "CreateRestoreImageTask",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::CreateImage, Self::CopyImage, Self::RegisterImage, Self::CreateRestoreImageTask]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Where a fact about an image's parent comes from. Every recorded edge lists its sources;
/// a source that names a different parent than the one recorded is a conflict, reported and
/// kept apart, never written over the recorded edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeSource {
    /// A CloudTrail record of the creating call (live, or looked up by the backfill).
    Event,
    /// DescribeImages' `SourceImageId` / `SourceImageRegion`.
    Api,
    /// `GetImageAncestry`.
    Ancestry,
    /// The description AWS writes on the snapshots of a copied or created image.
    SnapshotDescription,
}

impl EdgeSource {
    pub const ALL: [EdgeSource; 4] =
        [Self::Event, Self::Api, Self::Ancestry, Self::SnapshotDescription];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Api => "api",
            Self::Ancestry => "ancestry",
            Self::SnapshotDescription => "snapshot-description",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What is known of an image's parent when the image is recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Parent {
    /// The parent image.
    Image(ImageRef),
    /// The image has no parent image (RegisterImage, or restored from S3).
    None,
    /// There is a parent, but it could not be established (e.g. the instance is gone).
    Unknown(String),
}

/// Everything the creating event of an image says about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFacts {
    pub image: ImageRef,
    pub account: Option<AccountId>,
    pub name: Option<String>,
    /// When the image was created, when the source tells it (an ancestor known only from
    /// GetImageAncestry may not).
    pub created_at: Option<DateTime<Utc>>,
    /// The creating call, when the source tells it (an image listed by the backfill may not).
    pub origin: Option<Origin>,
    pub parent: Parent,
    pub snapshots: Vec<SnapshotId>,
    /// The idempotency key of the write: the CloudTrail eventID of the creating call, or the
    /// backfill's own key for facts gathered from AWS's APIs.
    pub event_id: String,
    pub actor_arn: Option<String>,
    /// Where the facts come from. Only a CloudTrail event ([`EdgeSource::Event`]) is
    /// authoritative for the node's attributes; facts from the backfill's other sources fill
    /// what is not recorded yet and never replace what an event recorded.
    pub sources: Vec<EdgeSource>,
}

impl NodeFacts {
    /// Whether these facts come from the creating call's own record.
    pub fn from_event(&self) -> bool {
        self.sources.contains(&EdgeSource::Event)
    }
}

/// A monotone fact about an image's life after creation. Flags are only ever set, never
/// cleared, which is what lets out-of-order delivery converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFlag {
    Available,
    Failed,
    Deregistered,
}

impl StateFlag {
    /// The item attribute that carries this flag.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Available => "is_available",
            Self::Failed => "is_failed",
            Self::Deregistered => "is_deregistered",
        }
    }

    pub const ALL: [StateFlag; 3] = [Self::Available, Self::Failed, Self::Deregistered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Failed => "failed",
            Self::Deregistered => "deregistered",
        }
    }
}

/// A change of state of one image, from a DeregisterImage call or an AMI state change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateChange {
    pub image: ImageRef,
    pub flag: StateFlag,
    pub event_id: String,
    pub event_name: String,
    pub at: DateTime<Utc>,
    /// Snapshot ids learnt with the change (an image that became available).
    pub snapshots: Vec<SnapshotId>,
    /// DeregisterImage with `deleteAssociatedSnapshots: true`: AWS deleted the snapshots.
    pub snapshots_deleted_by_aws: bool,
    /// DeregisterImage's `deleteSnapshotResultSet`: each snapshot it was asked to delete and
    /// its return code (only `success` means deleted).
    pub snapshot_results: Vec<SnapshotDeletion>,
    pub actor_arn: Option<String>,
}

/// An image disabled (DisableImage, or the native state change to `disabled`) or enabled
/// again (EnableImage, or a state change to `available`). Unlike [`StateFlag`]s this goes both
/// ways, so the store keeps the latest by event time: a late delivery of an older change
/// leaves a newer one in place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnablementChange {
    pub image: ImageRef,
    pub disabled: bool,
    pub event_id: String,
    pub event_name: String,
    pub at: DateTime<Utc>,
    pub actor_arn: Option<String>,
}

/// The latest [`EnablementChange`] recorded on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enablement {
    pub disabled: bool,
    pub at: DateTime<Utc>,
    /// The call or event that said so (`DisableImage`, `EC2 AMI State Change`, …).
    pub by_event: String,
}

/// The state shown to users, derived from the flags with a fixed precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Known only as somebody's parent: no event about the image itself was seen.
    Unknown,
    Pending,
    Available,
    Failed,
    Deregistered,
    /// Registered but disabled (DisableImage): it cannot launch and is not listed to others;
    /// DisableImage took its launch permissions away, and EnableImage does not give them back.
    Disabled,
}

impl NodeState {
    /// Deregistered beats failed beats available beats pending, whatever order the flags
    /// arrived in.
    pub fn from_flags(known: bool, flags: &[StateFlag]) -> Self {
        if flags.contains(&StateFlag::Deregistered) {
            Self::Deregistered
        } else if flags.contains(&StateFlag::Failed) {
            Self::Failed
        } else if flags.contains(&StateFlag::Available) {
            Self::Available
        } else if known {
            Self::Pending
        } else {
            Self::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Available => "available",
            Self::Failed => "failed",
            Self::Deregistered => "deregistered",
            Self::Disabled => "disabled",
        }
    }

    /// The state once the node's latest enablement is taken into account: a disabled image
    /// that is neither deregistered nor failed shows as disabled.
    pub fn with_enablement(self, enablement: Option<&Enablement>) -> Self {
        match (self, enablement) {
            (Self::Available | Self::Pending | Self::Unknown, Some(e)) if e.disabled => {
                Self::Disabled
            }
            (state, _) => state,
        }
    }
}

/// A recorded image, as read back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineageNode {
    pub image: ImageRef,
    pub account: Option<AccountId>,
    pub name: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub origin: Option<Origin>,
    pub parent: Option<ImageRef>,
    /// Why the parent is unknown, when it is.
    pub parent_note: Option<String>,
    pub state: NodeState,
    pub snapshots: Vec<SnapshotId>,
    pub snapshots_deleted_by_aws: bool,
    /// DeregisterImage's return code for each snapshot it was asked to delete, by snapshot id.
    pub snapshot_return_codes: std::collections::BTreeMap<String, String>,
    /// The latest disable or enable recorded (none: never disabled as far as events tell).
    pub enablement: Option<Enablement>,
    pub created_event_id: Option<String>,
    /// What became of each snapshot after the image was deregistered (written by the reaper).
    pub snapshot_fates: std::collections::BTreeMap<String, String>,
    /// Who made the creating call (`userIdentity.arn`).
    pub created_by: Option<String>,
    /// The sources that name `parent` as the parent.
    pub parent_sources: Vec<EdgeSource>,
}

impl LineageNode {
    /// A node known only by reference (e.g. a parent whose own creation was never seen).
    pub fn unknown(image: ImageRef) -> Self {
        Self {
            image,
            account: None,
            name: None,
            created_at: None,
            origin: None,
            parent: None,
            parent_note: None,
            state: NodeState::Unknown,
            snapshots: Vec::new(),
            snapshots_deleted_by_aws: false,
            snapshot_return_codes: Default::default(),
            enablement: None,
            created_event_id: None,
            snapshot_fates: Default::default(),
            created_by: None,
            parent_sources: Vec::new(),
        }
    }
}

/// An ancestor or descendant of some image, at a distance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relative {
    pub image: ImageRef,
    /// 1 = direct child (or parent), 2 = grandchild (grandparent), …
    pub depth: u32,
    /// This relative's own parent.
    pub parent: Option<ImageRef>,
    pub state: NodeState,
    pub name: Option<String>,
    pub account: Option<AccountId>,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// The event's changes were written.
    Recorded,
    /// The event was recorded before (same CloudTrail eventID): nothing was written.
    Duplicate,
}

/// A lineage store failure. Each carries the operation and the reason; the caller decides
/// whether to retry (Lambda) or report (CLI).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("lineage table {table}: {operation} failed: {message}")]
    Aws { table: String, operation: &'static str, message: String },
    #[error("lineage table {table}: item {key} is malformed: {message}")]
    Corrupt { table: String, key: String, message: String },
    #[error("recording {image} would create a cycle: it is already an ancestor of {parent}")]
    Cycle { image: ImageRef, parent: ImageRef },
    #[error("{0}")]
    Conflict(Box<ConflictingParent>),
    #[error("lineage of {image} did not settle after {attempts} passes (concurrent writers?)")]
    Unsettled { image: ImageRef, attempts: u32 },
}

/// A source naming another parent than the recorded one.
#[derive(Debug, Error)]
#[error("{source_names} name {claimed} as the parent of {image}, but {recorded} is recorded: conflict reported, edge kept")]
pub struct ConflictingParent {
    pub image: ImageRef,
    pub recorded: ImageRef,
    pub claimed: ImageRef,
    pub source_names: String,
}

/// The questions and writes the domain needs from a lineage store.
#[allow(async_fn_in_trait)]
pub trait LineageStore {
    /// Records an image's creation (node, parent edge, closure). Idempotent on `event_id`.
    async fn record_node(&self, facts: &NodeFacts) -> Result<WriteOutcome, StoreError>;
    /// Records a state change (flag on the node and on every closure entry naming it).
    async fn record_state(&self, change: &StateChange) -> Result<WriteOutcome, StoreError>;
    /// Records a disable or enable on the node, the latest by event time winning. Idempotent
    /// on `event_id`.
    async fn record_enablement(
        &self,
        change: &EnablementChange,
    ) -> Result<WriteOutcome, StoreError>;
    /// The node, if anything about it was recorded (as an image or as someone's parent).
    async fn node(&self, image: &ImageRef) -> Result<Option<LineageNode>, StoreError>;
    /// The recorded nodes of many images at once (an image with no node of its own is absent).
    async fn nodes(
        &self,
        images: &[ImageRef],
    ) -> Result<std::collections::HashMap<ImageRef, LineageNode>, StoreError>;
    /// All descendants at any depth, ordered by depth, then region and id.
    async fn descendants(&self, image: &ImageRef) -> Result<Vec<Relative>, StoreError>;
    /// All ancestors, nearest first.
    async fn ancestors(&self, image: &ImageRef) -> Result<Vec<Relative>, StoreError>;
}

/// The relatives owned by `account`. With `keep_paths` (a tree), each one's relatives on the
/// way to the subject are kept too, so the tree stays connected.
pub fn only_account(
    relatives: &[Relative],
    account: &AccountId,
    keep_paths: bool,
) -> Vec<Relative> {
    let by_image: std::collections::HashMap<&ImageRef, &Relative> =
        relatives.iter().map(|r| (&r.image, r)).collect();
    let mut keep: std::collections::HashSet<&ImageRef> = std::collections::HashSet::new();
    for r in relatives.iter().filter(|r| r.account.as_ref() == Some(account)) {
        keep.insert(&r.image);
        let mut next = r.parent.as_ref();
        while let (true, Some(parent)) = (keep_paths, next) {
            match by_image.get(parent) {
                Some(up) if keep.insert(&up.image) => next = up.parent.as_ref(),
                _ => break,
            }
        }
    }
    relatives.iter().filter(|r| keep.contains(&r.image)).cloned().collect()
}

/// Orders relatives by depth, then region, then image id: the order every listing uses.
pub fn sort_relatives(relatives: &mut [Relative]) {
    relatives.sort_by(|a, b| (a.depth, &a.image).cmp(&(b.depth, &b.image)));
}

#[cfg(test)]
mod account_tests {
    use super::*;
    use crate::ids::{ImageId, Region};

    fn rel(id: &str, depth: u32, parent: Option<&str>, account: &str) -> Relative {
        let at = |i: &str| {
            ImageRef::new(Region::parse("eu-west-1").unwrap(), ImageId::parse(i).unwrap())
        };
        Relative {
            image: at(id),
            depth,
            parent: parent.map(at),
            state: NodeState::Available,
            name: None,
            account: AccountId::parse(account),
        }
    }

    #[test]
    fn an_account_filter_keeps_its_images_and_in_a_tree_the_path_to_them() {
        let (a, b) = ("111111111111", "222222222222");
        let all = [
            rel("ami-01", 1, Some("ami-00"), a),
            rel("ami-02", 2, Some("ami-01"), a),
            rel("ami-03", 3, Some("ami-02"), b),
        ];
        let listed: Vec<String> = only_account(&all, &AccountId::parse(b).unwrap(), false)
            .iter()
            .map(|r| r.image.to_string())
            .collect();
        assert_eq!(listed, vec!["ami-03@eu-west-1"]);
        let tree = only_account(&all, &AccountId::parse(b).unwrap(), true);
        assert_eq!(tree.len(), 3, "ami-01 and ami-02 connect ami-03 to the subject");
        assert!(only_account(&all, &AccountId::parse("333333333333").unwrap(), true).is_empty());
    }
}
