//! The launch guard's shell: reads each launched image's lineage ([`ProvenanceStore`]), learns
//! an unknown one from GetImageAncestry ([`LaunchEc2`]), decides ([`super::decide`]) and sends
//! one notification per event when a launch is CRITICAL or a WARNING, once per CloudTrail
//! eventID (the claim is taken only then: a launch that is fine costs no write).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{decide, Approved, Lineage, Verdict};
use crate::catalogue::CatalogueError;
use crate::event::{Event, EventKind, LaunchTemplateRef, Parsed};
use crate::idempotency::{Claim, Idempotency};
use crate::ids::{ImageId, ImageRef, InstanceId, Region};
use crate::lineage::{EdgeSource, LineageStore, NodeFacts, Origin, Parent, StoreError};
use crate::notify::{Notification, Notifier, NotifyError, Severity};

/// The function name the claims are kept under.
const FUNCTION: &str = "launch-guard";

/// What the launch guard reads of the lineage.
#[allow(async_fn_in_trait)]
pub trait ProvenanceStore {
    /// The image, its ancestors and the quarantines on any of them: one Query of the image's
    /// partition, and one BatchGetItem for its ancestors (none when it has no ancestor).
    async fn lineage_of(&self, image: &ImageRef) -> Result<Lineage, StoreError>;
    /// Notes the owner alias GetImageAncestry reported for an image (`amazon`, …).
    async fn record_owner_alias(&self, image: &ImageRef, alias: &str) -> Result<(), StoreError>;
}

/// One entry of GetImageAncestry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestryEntry {
    pub image: ImageRef,
    pub source: Option<ImageRef>,
    pub owner_alias: Option<String>,
    pub created: Option<DateTime<Utc>>,
}

/// What the launch guard asks of EC2, only off the path where all is well.
#[allow(async_fn_in_trait)]
pub trait LaunchEc2 {
    /// GetImageAncestry: the image and its ancestors, nearest first.
    async fn ancestry(&self, image: &ImageRef) -> Result<Vec<AncestryEntry>, CatalogueError>;
    /// The image a launch template version names (DescribeLaunchTemplateVersions): an `ami-`
    /// id, `resolve:ssm:…`, or `None`.
    async fn template_image(
        &self,
        region: &Region,
        template: &LaunchTemplateRef,
    ) -> Result<Option<String>, CatalogueError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("event {0} is being handled by another delivery: retry later")]
    InProgress(String),
}

/// One launched image and what was decided about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Checked {
    pub image: ImageRef,
    pub instances: Vec<InstanceId>,
    pub verdict: Verdict,
}

/// What the guard did with one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LaunchOutcome {
    Checked { images: Vec<Checked>, alerted: bool, not_checked: Vec<String> },
    Duplicate { event_id: String },
    Ignored { reason: String },
}

pub struct LaunchGuard<'a, S, E, I, N> {
    pub store: &'a S,
    pub ec2: &'a E,
    pub claims: &'a I,
    pub notifier: Option<&'a N>,
    pub approved: &'a [Approved],
}

impl<S, E, I, N> LaunchGuard<'_, S, E, I, N>
where
    S: ProvenanceStore + LineageStore,
    E: LaunchEc2,
    I: Idempotency,
    N: Notifier,
{
    pub async fn on_event(&self, parsed: &Parsed) -> Result<LaunchOutcome, LaunchError> {
        let event = match parsed {
            Parsed::Ignored { reason, .. } => {
                return Ok(LaunchOutcome::Ignored { reason: reason.to_string() })
            }
            Parsed::Event(event) => event,
        };
        let (launched, mut not_checked) = self.launched(event).await;
        if launched.is_empty() && not_checked.is_empty() {
            let reason = format!("{} launches nothing", event.meta.event_name);
            return Ok(LaunchOutcome::Ignored { reason });
        }
        let mut images = Vec::new();
        for (image, instances) in launched {
            match self.check(&image).await {
                Ok(verdict) => images.push(Checked { image, instances, verdict }),
                Err(why) => not_checked.push(format!("{image}: {why}")),
            }
        }
        let Some(alert) = alert(event, &images, !self.approved.is_empty()) else {
            return Ok(LaunchOutcome::Checked { images, alerted: false, not_checked });
        };
        let event_id = &event.meta.event_id;
        match self.claims.claim(FUNCTION, event_id).await? {
            Claim::Done => return Ok(LaunchOutcome::Duplicate { event_id: event_id.clone() }),
            Claim::InProgress => return Err(LaunchError::InProgress(event_id.clone())),
            Claim::Proceed => {}
        }
        let sent = match self.notifier {
            Some(notifier) => notifier.publish(&alert).await.map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = sent {
            if let Err(release) = self.claims.release(FUNCTION, event_id).await {
                tracing::warn!(event_id, error = %release, "could not release the claim");
            }
            return Err(e.into());
        }
        self.claims.complete(FUNCTION, event_id, &alert.subject).await?;
        Ok(LaunchOutcome::Checked { images, alerted: true, not_checked })
    }

    /// The images the event launches (or a new template version names), each with the
    /// instances launched from it; and the launches whose image could not be told.
    async fn launched(&self, event: &Event) -> (BTreeMap<ImageRef, Vec<InstanceId>>, Vec<String>) {
        let region = &event.meta.region;
        let mut images: BTreeMap<ImageRef, Vec<InstanceId>> = BTreeMap::new();
        let mut not_checked = Vec::new();
        match &event.kind {
            EventKind::InstancesLaunched { launches, .. } => {
                for launch in launches {
                    let image = match (&launch.image, &launch.launch_template) {
                        (Some(image), _) => Ok(Some(image.clone())),
                        (None, Some(template)) => self.template_image(region, template).await,
                        (None, None) => Ok(None),
                    };
                    match image {
                        Ok(Some(image)) => {
                            images.entry(image).or_default().extend(launch.instance_id.clone())
                        }
                        Ok(None) => not_checked.push("a launch naming no image".to_owned()),
                        Err(why) => not_checked.push(why),
                    }
                }
            }
            EventKind::LaunchTemplateVersionCreated { image: Some(raw), template_id, .. } => {
                match ImageId::parse(raw) {
                    Some(id) => {
                        images.entry(ImageRef::new(region.clone(), id)).or_default();
                    }
                    None => not_checked.push(format!(
                        "launch template {} names its image as {raw}: not checked",
                        template_id.as_deref().unwrap_or("?")
                    )),
                }
            }
            _ => {}
        }
        (images, not_checked)
    }

    async fn template_image(
        &self,
        region: &Region,
        template: &LaunchTemplateRef,
    ) -> Result<Option<ImageRef>, String> {
        let named = self.ec2.template_image(region, template).await.map_err(|e| e.to_string())?;
        match named.as_deref().map(|raw| (raw, ImageId::parse(raw))) {
            Some((_, Some(id))) => Ok(Some(ImageRef::new(region.clone(), id))),
            Some((raw, None)) => Err(format!("the launch template names its image as {raw}")),
            None => Ok(None),
        }
    }

    /// The verdict on one image; an image the lineage does not know is learnt from
    /// GetImageAncestry first.
    async fn check(&self, image: &ImageRef) -> Result<Verdict, String> {
        let mut lineage = self.store.lineage_of(image).await.map_err(|e| e.to_string())?;
        if !lineage.known() {
            match self.learn(image).await {
                Ok(()) => {
                    lineage = self.store.lineage_of(image).await.map_err(|e| e.to_string())?
                }
                Err(why) => tracing::warn!(image = %image, why, "ancestry not learnt"),
            }
        }
        Ok(decide(&lineage, self.approved))
    }

    /// Records what GetImageAncestry says of `image` as backfilled lineage: one node per entry,
    /// its parent the next one's image, and the owner alias of each that has one.
    async fn learn(&self, image: &ImageRef) -> Result<(), String> {
        let entries = self.ec2.ancestry(image).await.map_err(|e| e.to_string())?;
        for entry in entries.iter().rev() {
            let facts = ancestry_facts(entry);
            match self.store.record_node(&facts).await {
                Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::Cycle { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            if let Some(alias) = &entry.owner_alias {
                self.store
                    .record_owner_alias(&entry.image, alias)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// The node one GetImageAncestry entry makes, keyed as the backfill keys its writes.
fn ancestry_facts(entry: &AncestryEntry) -> NodeFacts {
    let (parent, target) = match &entry.source {
        Some(source) => (Parent::Image(source.clone()), source.to_string()),
        None => (Parent::None, "none".to_owned()),
    };
    let copied = entry.source.as_ref().is_some_and(|s| s.region != entry.image.region);
    NodeFacts {
        image: entry.image.clone(),
        account: None,
        name: None,
        created_at: entry.created,
        origin: copied.then_some(Origin::CopyImage),
        parent,
        snapshots: Vec::new(),
        event_id: format!("backfill:{}:{target}:ancestry", entry.image),
        actor_arn: None,
        sources: vec![EdgeSource::Ancestry],
    }
}

/// The one notification for an event whose launches include a CRITICAL or a WARNING one;
/// `None` when all are fine. `bases` is whether approved bases are configured.
pub fn alert(event: &Event, images: &[Checked], bases: bool) -> Option<Notification> {
    let lines: Vec<(Severity, String)> = images.iter().filter_map(|c| line(c, bases)).collect();
    let severity = lines.iter().map(|(s, _)| *s).max()?;
    let actor = event.meta.actor.arn.clone().unwrap_or_else(|| "?".into());
    let by_auto_scaling =
        matches!(event.kind, EventKind::InstancesLaunched { by_auto_scaling: true, .. });
    let what = if event.meta.event_name == "RunInstances" { "launch" } else { "launch template" };
    let subject = match (severity, images.first()) {
        (Severity::Critical, _) => format!("{what} of an image from a quarantined lineage"),
        (_, Some(first)) if images.len() == 1 => {
            format!("{what} of {}: not from an approved base", first.image)
        }
        _ => format!("{what} of images not from an approved base"),
    };
    let instances: Vec<String> =
        images.iter().flat_map(|c| c.instances.iter().map(ToString::to_string)).collect();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let kind =
        if severity == Severity::Critical { "launch-quarantined" } else { "launch-unapproved" };
    Some(
        Notification::new(severity, kind, subject)
            .text(format!("{} by {actor}:\n{}", event.meta.event_name, text.join("\n")))
            .field("Instances", instances.join(", "))
            .field("Actor", actor)
            .field(
                "Account",
                event.meta.account.as_ref().map(|a| a.to_string()).unwrap_or_default(),
            )
            .field("Region", event.meta.region.to_string())
            .field("Auto Scaling", if by_auto_scaling { "yes" } else { "" }),
    )
}

fn line(checked: &Checked, bases: bool) -> Option<(Severity, String)> {
    let image = &checked.image;
    match &checked.verdict {
        Verdict::Quarantined { quarantine, chain } => {
            let chain: Vec<String> = chain.iter().map(ToString::to_string).collect();
            Some((
                Severity::Critical,
                format!(
                    "{image} descends from quarantined {} ({}, since {} by {}): {}",
                    quarantine.image,
                    quarantine.reason,
                    quarantine.at.format("%Y-%m-%d"),
                    quarantine.by,
                    chain.join(" <- ")
                ),
            ))
        }
        Verdict::NotApproved { ends } => Some((
            Severity::Warning,
            format!("{image} does not descend from an approved base: its chain ends at {ends}"),
        )),
        Verdict::Unknown { why } if bases => {
            Some((Severity::Warning, format!("{image}: provenance unknown ({why})")))
        }
        _ => None,
    }
}
