//! Quarantine follows the lineage: a new image copied or created from a quarantined image, or
//! from any of its descendants, is quarantined when the deprecation enforcer sees its event
//! (enforce mode: tagged, deprecated now, disabled when the quarantine says so) and alerted
//! CRITICAL with its chain, in report mode too.
//!
//! The parent comes from the event (CopyImage's source; CreateImage's instance's launch image,
//! asked of EC2), not from the lineage, which the recorder may not have written yet. The image
//! is looked at again when it becomes `available` (the native state change), with its parent
//! from the lineage by then: a copy still `pending` at its event is disabled then, when the
//! quarantine disables, and an image whose chain the lineage did not know at its event is
//! caught. The alert is sent once: the step's record ([`QuarantineStore::record_undo`]) is
//! written first and a later delivery finds it.

use chrono::{DateTime, Utc};

use super::run::{carry_out, record, QuarantineStore};
use super::{follow, step, Quarantine, Step};
use crate::config::Mode;
use crate::deprecation::DeprecationEc2;
use crate::event::{Event, EventKind, ImageState};
use crate::ids::{AccountId, ImageRef};
use crate::lineage::{LineageStore, StoreError};
use crate::notify::{Notification, Severity};

/// What following the lineage found for one new image.
#[derive(Clone, Debug, PartialEq)]
pub struct Inherited {
    pub quarantine: Quarantine,
    /// The new image, its parent, …, up to the quarantined image.
    pub chain: Vec<ImageRef>,
}

/// The active quarantine a new image inherits from its parent's chain, if any. `parent` is
/// the image it was made from.
pub async fn inherited(
    store: &(impl LineageStore + QuarantineStore),
    image: &ImageRef,
    parent: &ImageRef,
) -> Result<Option<Inherited>, StoreError> {
    let ancestors = store.ancestors(parent).await?;
    let mut line = vec![parent.clone()];
    line.extend(ancestors.into_iter().map(|r| r.image));
    let found = store.quarantines_of(&line).await?;
    let Some(quarantine) = follow(&found).cloned() else { return Ok(None) };
    let upto = line.iter().position(|i| *i == quarantine.image).map_or(line.len(), |p| p + 1);
    let mut chain = vec![image.clone()];
    chain.extend(line.into_iter().take(upto));
    Ok(Some(Inherited { quarantine, chain }))
}

/// The image a new image was made from, as its event (and for CreateImage, EC2) says; for the
/// native state change to `available`, as the lineage recorded it by then.
pub async fn parent_of(
    ec2: &impl DeprecationEc2,
    store: &impl LineageStore,
    event: &Event,
) -> Result<Option<(ImageRef, ImageRef)>, FollowError> {
    match &event.kind {
        EventKind::ImageCopied { image, source, .. } => Ok(Some((image.clone(), source.clone()))),
        EventKind::ImageCreated { image, instance_id, .. } => {
            let parent = ec2.launch_image_of(&image.region, instance_id).await?;
            Ok(parent.map(|p| (image.clone(), ImageRef::new(image.region.clone(), p))))
        }
        EventKind::ImageStateChanged { image, state: ImageState::Available, .. } => {
            let parent = store.node(image).await?.and_then(|n| n.parent);
            Ok(parent.map(|p| (image.clone(), p)))
        }
        _ => Ok(None),
    }
}

/// Why the parent of a new image could not be told.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Ec2(#[from] crate::catalogue::CatalogueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of a new image of a quarantined lineage.
#[derive(Clone, Debug, PartialEq)]
pub struct Followed {
    pub step: Step,
    /// Whether this delivery recorded it (a redelivery finds it recorded: no second alert).
    pub first: bool,
    pub error: Option<String>,
}

/// Records and (enforce mode) carries out the quarantine of a new image of a quarantined
/// lineage. `facts` is what EC2 says of it now.
#[allow(clippy::too_many_arguments)]
pub async fn quarantine_new(
    store: &impl QuarantineStore,
    ec2: &impl DeprecationEc2,
    inherited: &Inherited,
    account: Option<&AccountId>,
    facts: Option<&crate::deprecation::ImageFacts>,
    exempt_tag_key: &str,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<Followed, StoreError> {
    let q = &inherited.quarantine;
    let image = &inherited.chain[0];
    let step = step(q, image, account, facts, exempt_tag_key, now);
    // Whether a delivery before this one alerted already: the step's record (enforce mode),
    // or a mark that the image was seen (report mode, which acts on nothing and so leaves
    // release nothing to undo).
    let (first, error) = match (&step, mode) {
        (Step::Act { undo, deprecate_at }, Mode::Enforce) => {
            match record(store, ec2, q, undo).await {
                Ok((undo, new)) => (new, carry_out(ec2, q, &undo, *deprecate_at).await.err()),
                // Not recorded: whether an earlier delivery was is asked of the store.
                Err(e) => {
                    (store.undos(&q.image, std::slice::from_ref(image)).await?.is_empty(), Some(e))
                }
            }
        }
        _ => (store.record_seen(&q.image, image).await?, None),
    };
    Ok(Followed { step, first, error })
}

/// The CRITICAL alert of a new image of a quarantined lineage.
pub fn alert(
    inherited: &Inherited,
    followed: &Followed,
    mode: Mode,
    event: &Event,
) -> Notification {
    let q = &inherited.quarantine;
    let image = &inherited.chain[0];
    let chain: Vec<String> = inherited.chain.iter().map(ToString::to_string).collect();
    let done = match (&followed.step, mode, &followed.error) {
        (_, _, Some(e)) => format!("quarantining it failed: {e}"),
        (Step::Act { .. }, Mode::Enforce, None) => "quarantined: tagged and deprecated now".into(),
        (Step::Act { .. }, Mode::Report, _) => "report mode: not touched".into(),
        (Step::Skip { why, .. }, _, _) => why.clone(),
    };
    let actor = event.meta.actor.arn.clone().unwrap_or_else(|| "?".into());
    Notification::new(
        Severity::Critical,
        "quarantine-lineage",
        format!("{image} was made from quarantined {} ({})", q.image, q.reason),
    )
    .text(format!(
        "{} by {actor}: {image} descends from {}, quarantined by {} on {} ({}).\nChain: {}\n{done}",
        event.meta.event_name,
        q.image,
        q.by,
        q.at.format("%Y-%m-%d"),
        q.reason,
        chain.join(" <- ")
    ))
    .field("Image", image.to_string())
    .field("Quarantined ancestor", q.image.to_string())
    .field("Reason", q.reason.clone())
    .field("Actor", actor)
    .field("Done", done)
}
