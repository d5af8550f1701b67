//! CloudTrail AMI, snapshot and launch events, parsed tolerantly into typed values.
//!
//! Input is what EventBridge delivers: an "AWS API Call via CloudTrail" envelope whose `detail`
//! is a CloudTrail record, a bare CloudTrail record, or the native "EC2 AMI State Change"
//! event. Output is a [`Parsed`]: either a typed [`Event`] or [`Parsed::Ignored`] with the
//! reason. Parsing never panics and never fails hard: malformed input, failed calls
//! (`errorCode`, dry runs included) and event names this product does not use are all
//! `Ignored`. Launches (RunInstances) and new launch template versions are read for the images
//! they use (docs/cloudtrail-launch-events.md).
//!
//! This module decides nothing; what to record, alert or delete lives in the policy modules.

mod fields;
mod launch;
mod parse;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{AccountId, ImageRef, InstanceId, Region, SnapshotId};

pub use launch::LAUNCH_EVENTS;
pub use parse::{guardrail_change, parse_event, parse_value, GUARDRAIL_EVENTS};

/// The outcome of parsing one delivered event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
// One `Parsed` exists per invocation, never in bulk, so the size of the typed event costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Event(Event),
    Ignored {
        /// Why the event was not turned into a typed event.
        reason: IgnoreReason,
        /// The CloudTrail `eventID` (or envelope id) when one could be read, for logs.
        event_id: Option<String>,
        /// The event name when one could be read, for logs.
        event_name: Option<String>,
    },
}

/// Why an event was ignored. Each is an expected, non-retryable outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum IgnoreReason {
    /// The input is not JSON, or not an object.
    NotJson(String),
    /// Neither a CloudTrail record, an envelope around one, nor an AMI state change.
    NotCloudTrail,
    /// A CloudTrail record from another service than EC2.
    OtherService(String),
    /// The call failed (`errorCode` present): it changed nothing.
    FailedCall { error_code: String },
    /// An EC2 event name this product does not act on.
    UnhandledEventName(String),
    /// A known event whose fields this product needs are missing or malformed.
    Malformed(String),
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "not a JSON object: {e}"),
            Self::NotCloudTrail => f.write_str("not a CloudTrail record or AMI state change"),
            Self::OtherService(s) => write!(f, "event source {s} is not ec2.amazonaws.com"),
            Self::FailedCall { error_code } => write!(f, "failed call ({error_code})"),
            Self::UnhandledEventName(n) => write!(f, "event name {n} is not handled"),
            Self::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

/// One successful EC2 image or snapshot call (or AMI state change), with who/where/when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub meta: EventMeta,
    pub kind: EventKind,
}

/// Who did what, where and when. Common to every event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventMeta {
    /// CloudTrail `detail.eventID`: stable across redeliveries. The native AMI state change has
    /// no CloudTrail record and a re-emitted one gets a new envelope `id`, but an image reaches
    /// each state once, so its id is the natural key `ami-state:<region>:<ami>:<state>`.
    pub event_id: String,
    /// CloudTrail `eventName`, or `"EC2 AMI State Change"`.
    pub event_name: String,
    pub event_time: DateTime<Utc>,
    /// Where the call was made (`awsRegion`); for CopyImage, the destination region.
    pub region: Region,
    /// The account the record belongs to (`recipientAccountId`, else envelope `account`,
    /// else `userIdentity.accountId`).
    pub account: Option<AccountId>,
    pub actor: Actor,
}

/// The caller, as CloudTrail's `userIdentity`, `sourceIPAddress` and `userAgent` describe it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Actor {
    /// `userIdentity.arn` (for assumed roles, the session ARN).
    pub arn: Option<String>,
    /// `userIdentity.type`, e.g. `IAMUser`, `AssumedRole`, `Root`, `AWSService`.
    pub identity_type: Option<String>,
    /// `userIdentity.sessionContext.sessionIssuer.arn`: the role behind an assumed-role session.
    pub issuer_arn: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `sessionCredentialFromConsole == "true"`.
    pub console: bool,
}

/// A principal a launch or create-volume permission is granted to or removed from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Grantee {
    /// `group: all` — everyone: the resource is public.
    Public,
    /// `group: <other>` — kept verbatim so nothing is silently dropped.
    Group(String),
    Account(String),
    Organization(String),
    OrganizationalUnit(String),
    /// A permission EC2 listed naming no grantee this SDK knows (a kind of grant added since):
    /// still a grant — shared, and exposure — never nobody. Its debug form, as read.
    Unreadable(String),
}

/// A permission change: what was added and what was removed, from the parsed items.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PermissionChange {
    pub add: Vec<Grantee>,
    pub remove: Vec<Grantee>,
}

/// One criterion of the Allowed AMIs setting (an image must match every part it names; the
/// setting allows an image any of its criteria matches), as a request logged it or
/// GetAllowedImagesSettings answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageCriterion {
    /// Account ids and the aliases `amazon`, `aws-marketplace`, `aws-backup-vault`, `none`.
    pub image_providers: Vec<String>,
    /// Names, with `?` and `*` wildcards.
    pub image_names: Vec<String>,
    pub marketplace_product_codes: Vec<String>,
    pub max_days_since_created: Option<i64>,
    pub max_days_since_deprecated: Option<i64>,
    /// The names of the parts this version does not read (watermarks, scan results, …): still
    /// part of the criterion, never dropped silently.
    pub other: Vec<String>,
}

/// A change to one of the account's regional guardrails, as the CloudTrail record states it.
/// CloudTrail logs what was asked, not what the setting was before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum GuardrailChange {
    /// EnableSnapshotBlockPublicAccess: the mode asked for (`block-all-sharing`,
    /// `block-new-sharing`), when the record shows it.
    SnapshotBlockPublicAccessEnabled { state: Option<String> },
    /// DisableSnapshotBlockPublicAccess: public sharing of snapshots is allowed again.
    SnapshotBlockPublicAccessDisabled,
    /// EnableAllowedImagesSettings: `enabled` or `audit-mode`, when the record shows it.
    AllowedImagesEnabled { state: Option<String> },
    /// DisableAllowedImagesSettings: every AMI may be discovered and used.
    AllowedImagesDisabled,
    /// ReplaceImageCriteriaInAllowedImagesSettings: the new criteria, `None` when the record
    /// does not show them.
    ImageCriteriaReplaced { criteria: Option<Vec<ImageCriterion>> },
}

impl GuardrailChange {
    /// The CloudTrail event name of the change.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::SnapshotBlockPublicAccessEnabled { .. } => "EnableSnapshotBlockPublicAccess",
            Self::SnapshotBlockPublicAccessDisabled => "DisableSnapshotBlockPublicAccess",
            Self::AllowedImagesEnabled { .. } => "EnableAllowedImagesSettings",
            Self::AllowedImagesDisabled => "DisableAllowedImagesSettings",
            Self::ImageCriteriaReplaced { .. } => "ReplaceImageCriteriaInAllowedImagesSettings",
        }
    }
}

/// One item of DeregisterImage's `deleteSnapshotResultSet`: a snapshot the call was asked to
/// delete with the image, and what EC2 did with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotDeletion {
    pub snapshot: SnapshotId,
    pub code: SnapshotReturnCode,
}

/// `DeleteSnapshotReturnCode.returnCode`. Only `success` means the snapshot is gone; any other
/// code leaves it in place (the reaper decides about it like any other snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotReturnCode {
    Success,
    /// Not deleted: other images use it.
    Skipped,
    /// Not deleted: the caller may not DeleteSnapshot.
    MissingPermissions,
    InternalError,
    ClientError,
    /// A code this version does not know, kept as logged.
    Other(String),
}

impl SnapshotReturnCode {
    pub fn parse(raw: &str) -> Self {
        match raw.trim() {
            "success" => Self::Success,
            "skipped" => Self::Skipped,
            "missing-permissions" => Self::MissingPermissions,
            "internal-error" => Self::InternalError,
            "client-error" => Self::ClientError,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "success",
            Self::Skipped => "skipped",
            Self::MissingPermissions => "missing-permissions",
            Self::InternalError => "internal-error",
            Self::ClientError => "client-error",
            Self::Other(code) => code,
        }
    }

    /// What the code means for the snapshot, in words.
    pub fn meaning(&self) -> &'static str {
        match self {
            Self::Success => "deleted with the image",
            Self::Skipped => "not deleted: other images use it",
            Self::MissingPermissions => "not deleted: the caller may not delete snapshots",
            Self::InternalError => "not deleted: EC2 internal error",
            Self::ClientError => "not deleted: client error",
            Self::Other(_) => "not deleted (unknown return code)",
        }
    }
}

/// One instance a RunInstances call launched, and the image it was launched from as far as the
/// record shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Launch {
    /// `responseElements.instancesSet.items[].instanceId`; `None` when the record lists no
    /// instance (no response, or an item without a readable id).
    pub instance_id: Option<InstanceId>,
    /// The image, in the event's region: the response item's `imageId`, else the request's
    /// (`requestParameters.instancesSet.items[].imageId`). `None` when only a launch template
    /// names it; then `launch_template` is set and the guard resolves the image from it.
    pub image: Option<ImageRef>,
    /// The launch template the instance came from, when the record names one (the request's
    /// `launchTemplate`, completed from the instance's `aws:ec2launchtemplate:*` tags).
    pub launch_template: Option<LaunchTemplateRef>,
}

/// A launch template as a record names it. At least one of `id` and `name` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LaunchTemplateRef {
    /// `lt-…`.
    pub id: Option<String>,
    pub name: Option<String>,
    /// As given: a version number (`"3"`), `$Latest` or `$Default`; `None` means the default
    /// version.
    pub version: Option<String>,
}

/// The state reported by the native "EC2 AMI State Change" event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    Pending,
    Available,
    Failed,
    Deregistered,
    Disabled,
}

/// Every event kind the product reads, one variant per EC2 call (plus the state change).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// CreateImage: a new image from an instance. The parent is the instance's launch AMI,
    /// which the event does not carry.
    ImageCreated { image: ImageRef, instance_id: InstanceId, name: Option<String> },
    /// CopyImage, logged in the destination region: `image` is the copy, `source` the original
    /// (`sourceImageId` in `sourceRegion`).
    ImageCopied { image: ImageRef, source: ImageRef, name: Option<String> },
    /// RegisterImage: no parent; the snapshots come from the block device mappings.
    ImageRegistered { image: ImageRef, name: Option<String>, snapshots: Vec<SnapshotId> },
    /// CreateRestoreImageTask: an image restored from an S3 object; no parent image is named.
    ImageRestored {
        image: ImageRef,
        name: Option<String>,
        bucket: Option<String>,
        object_key: Option<String>,
    },
    /// DeregisterImage. `delete_associated_snapshots` is what the record says; CloudTrail logs
    /// `false` even when the caller omitted the field. `snapshot_results` is the response's
    /// `deleteSnapshotResultSet`: what became of each associated snapshot (empty when the
    /// snapshots were not to be deleted, or the record predates the field).
    ImageDeregistered {
        image: ImageRef,
        delete_associated_snapshots: bool,
        snapshot_results: Vec<SnapshotDeletion>,
    },
    /// ModifyImageAttribute on `launchPermission` (other attributes are ignored).
    LaunchPermissionChanged { image: ImageRef, change: PermissionChange },
    /// ModifySnapshotAttribute on `createVolumePermission`.
    CreateVolumePermissionChanged { snapshot: SnapshotId, change: PermissionChange },
    /// DisableImageBlockPublicAccess: account/region level.
    ImageBlockPublicAccessDisabled { state: Option<String> },
    /// A change to block public access for snapshots or to Allowed AMIs (one of
    /// [`GUARDRAIL_EVENTS`]): account/region level.
    GuardrailChanged { change: GuardrailChange },
    /// EnableImageDeprecation.
    DeprecationEnabled { image: ImageRef, deprecate_at: Option<DateTime<Utc>> },
    /// DisableImageDeprecation.
    DeprecationDisabled { image: ImageRef },
    /// EnableImage (re-enables a disabled image).
    ImageEnabled { image: ImageRef },
    /// DisableImage.
    ImageDisabled { image: ImageRef },
    /// DeleteSnapshot.
    SnapshotDeleted { snapshot: SnapshotId },
    /// The native "EC2 AMI State Change" event (`detail.ImageId`, `detail.State`).
    ImageStateChanged { image: ImageRef, state: ImageState, error_message: Option<String> },
    /// RunInstances: one [`Launch`] per instance the response lists (one launch without an
    /// instance id when the record lists none). Every launch names an image, a launch template,
    /// or both. `by_auto_scaling`: the caller is Auto Scaling (`userIdentity.invokedBy` is
    /// `autoscaling.amazonaws.com`, or the role is the service-linked
    /// `AWSServiceRoleForAutoScaling`).
    InstancesLaunched { launches: Vec<Launch>, by_auto_scaling: bool },
    /// CreateLaunchTemplate (version 1 of a new template) or CreateLaunchTemplateVersion. `image`
    /// is `LaunchTemplateData.ImageId` as given: an `ami-` id, a `resolve:ssm:…` parameter, or
    /// `None` when the record shows none (a version based on `SourceVersion` may inherit one).
    LaunchTemplateVersionCreated {
        template_id: Option<String>,
        template_name: Option<String>,
        version: Option<i64>,
        image: Option<String>,
    },
}
