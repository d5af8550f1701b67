//! The deprecation enforcer's shell: stamp deadlines on new images, and the daily sweep —
//! gather the facts, plan with [`super::plan`], stamp missing deadlines, warn about upcoming
//! ones, and (in `enforce` mode) deregister what the plan retires.
//!
//! An image with deregistration protection in force is never retired, and AMI Warden never
//! turns the protection off: the plan keeps it before any lookup about it, and protection
//! turned on since the plan keeps it at the last check, before it is tagged.
//!
//! An image is retired only where it stays restorable: a Recycle Bin rule in effect in its
//! region must keep it once tagged [`super::RETIRED_TAG_KEY`]. `MODE=report` changes nothing:
//! stamps and deregistrations are planned and reported only. `MODE=enforce` stamps with
//! EnableImageDeprecation, tags and deregisters with DeregisterImage (snapshots kept: the
//! snapshot reaper decides about them, and keeps them while the image is in the Recycle Bin),
//! recording each action as an audit item and the deregistration, with the image's snapshots,
//! on its lineage node. The tag, the deregistration and what follows a failed one are
//! [`crate::removal::tag_then_remove`], the same step the snapshot reaper deletes with.
//!
//! With `PROTECT_NEWEST` ([`super::protect`]), enforce mode also turns deregistration
//! protection (with cooldown) on for each family's newest `KEEP_LATEST` images, tagging them
//! [`PROTECTED_TAG_KEY`] first, and off again, on the images it tagged, once they leave that
//! set; report mode lists those steps. That is the one protection AMI Warden ever turns off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use super::early::EarlyCandidates;
use super::protect::{protection_plan, ProtectionChange, ProtectionStep, PROTECTED_TAG_KEY};
use super::usage;
use super::{
    plan, upcoming, Decision, DeprecationEc2, ImageFacts, InUseIndex, Keep, Planned, Settings,
    REFERENCE_IDS, RETIRED_TAG_KEY, RETIRED_TAG_VALUE,
};
use crate::catalogue::CatalogueError;
use crate::config::Mode;
use crate::event::{Event, EventKind, Grantee, ImageState, Parsed};
use crate::exposure::ledger::{Ledger, ShareLedger};
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::{LineageStore, StateChange, StateFlag, StoreError};
use crate::notify::{Notification, Notifier, NotifyError, Severity};
use crate::quarantine::follow;
use crate::quarantine::run::QuarantineStore;
use crate::recycle_bin::RetentionRule;
use crate::removal::{refusal, tag_then_remove, Presence, Removable, Removal};

/// How many launch-permission lookups run at once.
pub const CONCURRENCY: usize = 8;

/// Images checked together at the last check before deregistering (DescribeImageReferences
/// takes ten ids a request).
pub const LAST_CHECK_BATCH: usize = 10;

/// How many images of a batch are retired (or stamped) at once. Each retirement is a chain of
/// requests (the image, its launch permissions, the tag, the deregistration, the records);
/// one after another they would leave DeregisterImage's bucket (5 a second) mostly idle, so
/// they overlap, and the EC2 clients' pacing keeps each action within its bucket.
pub const ACTION_CONCURRENCY: usize = 10;

/// How many batches of [`LAST_CHECK_BATCH`] are retired at once: twenty retirements, whose
/// DeregisterImage requests wait at most four seconds for EC2's bucket (5 a second), well
/// within the SDK's attempt timeout.
pub const BATCHES_AT_ONCE: usize = 2;

/// How many DescribeImageReferences requests the sweep has in flight at once; EC2's pacing
/// keeps them within the action's bucket.
pub const REFERENCE_REQUESTS: usize = 20;

/// What the last check before deregistering a batch found: the references to its images, and
/// the images themselves as EC2 shows them now (by id; absent: not visible).
struct LastLook {
    in_use: InUseIndex,
    images: Result<BTreeMap<ImageId, ImageFacts>, String>,
}

/// A retirement carried out, and the failure of its lineage write if it failed.
type Retired = (Retirement, Option<String>);

/// Where actions are recorded (the lineage table).
#[allow(async_fn_in_trait)]
pub trait ActionAudit {
    async fn record_action(&self, action: &ActionRecord<'_>) -> Result<(), StoreError>;
}

/// One action on an image, for the audit trail.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRecord<'a> {
    pub region: &'a Region,
    pub image: &'a ImageId,
    /// `stamped`, `deregistered`, or `failed: …`.
    pub action: String,
    pub reason: String,
    pub trigger: &'a str,
    pub mode: &'static str,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Error)]
pub enum EnforcerError {
    #[error("listing the images failed, nothing was decided: {0}")]
    Listing(#[from] CatalogueError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A new image of a quarantined lineage that EC2 does not show yet: retried, so that it is
    /// quarantined once it does.
    #[error("{0} descends from quarantined {1} but is not visible yet: retry")]
    NotVisibleYet(ImageRef, ImageRef),
    /// Quarantining a new image of a quarantined lineage failed: retried (its alert is not
    /// sent twice).
    #[error("quarantining {0} failed: {1}")]
    QuarantineFailed(ImageRef, String),
}

/// What the event path did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcome {
    Stamped {
        image: String,
        deprecate_at: DateTime<Utc>,
    },
    WouldStamp {
        image: String,
        deprecate_at: DateTime<Utc>,
    },
    Unchanged {
        image: String,
        reason: String,
    },
    Ignored {
        reason: String,
    },
    /// A new image of a quarantined lineage: quarantined (enforce) or only alerted (report).
    Quarantined {
        image: String,
        ancestor: String,
        acted: bool,
    },
}

/// A sweep of one region.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepReport {
    pub region: Region,
    pub mode: Mode,
    pub planned: Vec<Planned>,
    /// Deadlines set (enforce) or to set (report).
    pub stamped: Vec<(ImageId, DateTime<Utc>)>,
    pub deregistered: Vec<ImageId>,
    pub warnings: Vec<Planned>,
    /// Failed actions (stamps, deregistrations, audit writes).
    pub errors: Vec<String>,
    /// Due, but not retired: the run's time ran out first ([`Enforcer::stop_by`]). The next
    /// sweep decides them again.
    pub retirements_left: Vec<ImageId>,
    /// Deadlines not stamped for the same reason.
    pub stamps_left: Vec<ImageId>,
    /// `PROTECT_NEWEST`: the protection steps planned (carried out in enforce mode only).
    pub protection: Vec<ProtectionStep>,
    /// The steps of [`Self::protection`] carried out.
    pub protection_done: Vec<ImageId>,
    /// Steps not started: the run's time ran out first.
    pub protection_left: Vec<ImageId>,
    /// `RETIRE_SHARED_UNUSED`: the usage reports started (enforce mode), by image.
    pub usage_reports_started: Vec<(ImageId, String)>,
}

impl SweepReport {
    pub fn to_deregister(&self) -> impl Iterator<Item = &Planned> {
        self.planned.iter().filter(|p| p.decision == Decision::Deregister)
    }
}

/// What [`Enforcer::plan`] found in a region.
struct RegionPlan {
    planned: Vec<Planned>,
    /// DescribeImageReferences said it is not available in the region.
    references_unavailable: bool,
    /// When the plan retires any image: the region's image retention rules in effect (an image
    /// is retired only where one keeps it once tagged), or why they could not be read.
    retention_rules: Option<Result<Vec<RetentionRule>, String>>,
    /// `PROTECT_NEWEST`'s steps, on the same ranks.
    protection: Vec<ProtectionStep>,
    /// `RETIRE_SHARED_UNUSED`: the shared images no usage report tells about yet, with the
    /// accounts a new report must cover (`None`: every account).
    usage_reports_to_start: Vec<(ImageId, Option<Vec<AccountId>>)>,
}

/// What the usage reports say of one shared image: the decision, and when no report tells, the
/// accounts a new one must cover.
type SharedUsage = (Decision, Option<Option<Vec<AccountId>>>);

/// The launch permissions of the images asked about, or why they could not be read.
type Shares = BTreeMap<ImageId, Result<Vec<Grantee>, String>>;

/// What the steps of one region's sweep share.
struct SweepRun<'r> {
    region: &'r Region,
    /// The audit items' trigger: `sweep:<region>:<time>`.
    trigger: String,
    now: DateTime<Utc>,
    /// The Recycle Bin rules in effect that keep retired images (none: nothing is retired).
    rules: Vec<RetentionRule>,
    /// DescribeImageReferences told the plan that it is not available in the region.
    references_unavailable: bool,
}

/// What came of one retirement.
enum Retirement {
    /// Kept at the last check before deregistering: the plan's decision becomes this.
    Kept(Keep),
    /// Deregistered (restorable from the Recycle Bin), with the snapshots the last check saw.
    Deregistered(Vec<SnapshotId>),
    /// The tag could not be added (AWS's error): nothing was done.
    NotTagged(String),
    /// The deregistration failed: AWS's error, and what became of the tag.
    Failed(String),
}

/// One image's deregistration, as [`tag_then_remove`] makes it.
struct Deregistration<'a, E> {
    ec2: &'a E,
    region: &'a Region,
    image: &'a ImageId,
}

impl<E: DeprecationEc2> Removable for Deregistration<'_, E> {
    async fn tag(&self) -> Result<(), String> {
        self.ec2.mark_retired(self.region, self.image).await.map_err(|e| e.to_string())
    }

    async fn remove(&self) -> Result<(), String> {
        self.ec2.deregister(self.region, self.image).await.map_err(|e| e.to_string())
    }

    async fn presence(&self) -> Presence {
        match self.ec2.image(self.region, self.image).await {
            Ok(None) => Presence::Gone,
            Ok(Some(_)) => Presence::StillThere,
            Err(e) => Presence::Unknown(e.to_string()),
        }
    }

    async fn untag(&self) -> Result<(), String> {
        self.ec2.unmark_retired(self.region, self.image).await.map_err(|e| e.to_string())
    }
}

pub struct Enforcer<'a, E, L, A, N, S> {
    pub ec2: &'a E,
    pub lineage: &'a L,
    pub audit: &'a A,
    /// The share ledger the exposure sweep keeps: launch permissions without asking EC2 image
    /// by image (see [`crate::exposure::ledger`]).
    pub ledger: &'a S,
    pub notifier: Option<&'a N>,
    pub settings: &'a Settings,
    pub own_account: Option<AccountId>,
    /// No retirement or stamp starts after this (see [`crate::budget`]);
    /// the rest is left for the next sweep. `None`: no limit (the CLI).
    pub stop_by: Option<Instant>,
}

impl<E, L, A, N, S> Enforcer<'_, E, L, A, N, S>
where
    E: DeprecationEc2,
    L: LineageStore + QuarantineStore,
    A: ActionAudit,
    N: Notifier,
    S: ShareLedger,
{
    /// A new image (CreateImage, CopyImage, RegisterImage, CreateRestoreImageTask): give it a
    /// deadline if it has none, unless it was made from a quarantined lineage (then it is
    /// quarantined, [`crate::quarantine::follow`]). DisableImageDeprecation on an image without
    /// the exempt tag: set it again, and say so. Idempotent: a redelivered event finds the
    /// deadline set.
    pub async fn on_event(
        &self,
        parsed: &Parsed,
        now: DateTime<Utc>,
    ) -> Result<EventOutcome, EnforcerError> {
        let event = match parsed {
            Parsed::Ignored { reason, .. } => {
                return Ok(EventOutcome::Ignored { reason: reason.to_string() })
            }
            Parsed::Event(e) => e,
        };
        let (image, removed) = match &event.kind {
            EventKind::ImageCreated { image, .. }
            | EventKind::ImageCopied { image, .. }
            | EventKind::ImageRegistered { image, .. }
            | EventKind::ImageRestored { image, .. } => (image, false),
            // Someone removed a deadline: respected only on exempt images.
            EventKind::DeprecationDisabled { image } => (image, true),
            // Looked at again once available: only for quarantine (its deadline was stamped
            // on its creating call).
            EventKind::ImageStateChanged { state: ImageState::Available, image, .. } => {
                return Ok(self.follow_quarantine(event, now).await?.unwrap_or_else(|| {
                    EventOutcome::Unchanged {
                        image: image.to_string(),
                        reason: "available; no quarantine in its chain".into(),
                    }
                }))
            }
            _ => {
                return Ok(EventOutcome::Ignored {
                    reason: format!("{} does not create an image", event.meta.event_name),
                })
            }
        };
        if let Some(outcome) = self.follow_quarantine(event, now).await? {
            return Ok(outcome);
        }
        let Some(facts) = self.ec2.image(&image.region, &image.image_id).await? else {
            // Not visible yet (eventual consistency) or already gone: the sweep will see it.
            return Ok(EventOutcome::Unchanged {
                image: image.to_string(),
                reason: "not visible; left to the daily sweep".into(),
            });
        };
        if let Some(value) = facts.tags.get(&self.settings.exempt_tag_key) {
            return Ok(EventOutcome::Unchanged {
                image: image.to_string(),
                reason: format!("exempt: tagged {}={value}", self.settings.exempt_tag_key),
            });
        }
        if let Some(at) = facts.deprecation {
            return Ok(EventOutcome::Unchanged {
                image: image.to_string(),
                reason: format!("already deprecates at {}", at.to_rfc3339()),
            });
        }
        let created = facts.created.unwrap_or(event.meta.event_time);
        let at = super::deadline_to_stamp(created, self.settings, now);
        let outcome = if self.settings.mode == Mode::Report {
            EventOutcome::WouldStamp { image: image.to_string(), deprecate_at: at }
        } else {
            self.ec2.enable_deprecation(&image.region, &image.image_id, at).await?;
            self.audit_action(
                &image.region,
                &image.image_id,
                "stamped".into(),
                format!("deadline {}", at.to_rfc3339()),
                &event.meta.event_id,
                now,
            )
            .await;
            EventOutcome::Stamped { image: image.to_string(), deprecate_at: at }
        };
        if removed {
            if let Some(notifier) = self.notifier {
                notifier.publish(&restamp_notification(event, &facts, at, self.settings)).await?;
            }
        }
        Ok(outcome)
    }

    /// A new image made from a quarantined image or one of its descendants: quarantined in
    /// enforce mode, alerted CRITICAL once in either mode. `None`: no quarantine in its chain.
    async fn follow_quarantine(
        &self,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<EventOutcome>, EnforcerError> {
        let parent = follow::parent_of(self.ec2, self.lineage, event).await;
        let Some((image, parent)) = parent.map_err(|e| match e {
            follow::FollowError::Ec2(e) => EnforcerError::Listing(e),
            follow::FollowError::Store(e) => EnforcerError::Store(e),
        })?
        else {
            return Ok(None);
        };
        let Some(inherited) = follow::inherited(self.lineage, &image, &parent).await? else {
            return Ok(None);
        };
        let ancestor = inherited.quarantine.image.clone();
        let facts = self.ec2.image(&image.region, &image.image_id).await?;
        if facts.is_none() && self.settings.mode == Mode::Enforce {
            return Err(EnforcerError::NotVisibleYet(image, ancestor));
        }
        let followed = follow::quarantine_new(
            self.lineage,
            self.ec2,
            &inherited,
            self.own_account.as_ref(),
            facts.as_ref(),
            &self.settings.exempt_tag_key,
            self.settings.mode,
            now,
        )
        .await?;
        let acted = self.settings.mode == Mode::Enforce
            && followed.error.is_none()
            && matches!(followed.step, crate::quarantine::Step::Act { .. });
        if acted {
            let reason = format!("quarantined: descends from {ancestor}");
            let trigger = &event.meta.event_id;
            self.audit_action(
                &image.region,
                &image.image_id,
                "quarantined".into(),
                reason,
                trigger,
                now,
            )
            .await;
        }
        if let (true, Some(notifier)) = (followed.first, self.notifier) {
            let alert = follow::alert(&inherited, &followed, self.settings.mode, event);
            notifier.publish(&alert).await?;
        }
        if let Some(e) = followed.error {
            return Err(EnforcerError::QuarantineFailed(image, e));
        }
        Ok(Some(EventOutcome::Quarantined {
            image: image.to_string(),
            ancestor: ancestor.to_string(),
            acted,
        }))
    }

    /// Gathers the facts of a region and plans every image; changes nothing.
    ///
    /// What is listed once per region (images, instances, launch templates, Auto Scaling) is
    /// asked first. What can only be asked image by image is asked only about the images the
    /// plan would otherwise retire: DescribeImageReferences ten ids a request, while the
    /// listing is still read ([`Self::images_and_uses`]); the launch
    /// permissions from the share ledger where it knows them for certain, else from EC2,
    /// [`CONCURRENCY`] at a time. An image kept for another reason therefore shows that
    /// reason, not a reference.
    async fn plan(&self, region: &Region, now: DateTime<Utc>) -> Result<RegionPlan, EnforcerError> {
        let (images, in_use) = self.images_and_uses(region, now).await?;
        let candidates = self.unchecked(&images, &in_use, now);
        let shares = self.launch_permissions(region, &images, candidates, now).await;
        let mut planned =
            plan(&images, &in_use, &shares, self.settings, self.own_account.as_ref(), now);
        let usage_reports_to_start = if self.settings.retire_shared_unused {
            self.consult_usage(region, &mut planned, now).await
        } else {
            Vec::new()
        };
        // Retired, an image must stay restorable: report mode asks too, to plan what enforce
        // mode does.
        let retention_rules = if planned.iter().any(|p| p.decision == Decision::Deregister) {
            Some(self.keep_unrestorable(region, &images, &mut planned).await)
        } else {
            None
        };
        let references_unavailable = in_use.references_unavailable;
        let ranks = super::family_ranks(&images, self.settings);
        let protection = protection_plan(&images, &ranks, self.settings, self.own_account.as_ref());
        Ok(RegionPlan {
            planned,
            references_unavailable,
            retention_rules,
            protection,
            usage_reports_to_start,
        })
    }

    /// The region's images and where they are used, references included. The images are read
    /// page by page while the uses are listed, and each page's certain candidates are asked
    /// about references at once ([`EarlyCandidates`]): the references' stream, bound by its
    /// bucket, no longer waits for the whole listing. A candidate of the whole listing not
    /// asked about by then (a family's newest, outranked on a later page) is asked at the end.
    async fn images_and_uses(
        &self,
        region: &Region,
        now: DateTime<Utc>,
    ) -> Result<(Vec<ImageFacts>, InUseIndex), EnforcerError> {
        let (pages, received) = tokio::sync::mpsc::unbounded_channel();
        // The sender goes when the listing ends, however it ends: that closes the pages.
        let listing = async move { self.ec2.images_in_pages(region, &pages).await };
        let (listed, checked) =
            futures_util::future::join(listing, self.check_as_listed(region, received, now)).await;
        listed?;
        let AsListed { images, in_use, asked, mut references } = checked;
        let missing: Vec<ImageId> = self
            .unchecked(&images, &in_use, now)
            .into_iter()
            .filter(|image| !asked.contains(image))
            .collect();
        if !missing.is_empty() {
            references.push(self.references(region, missing).await);
        }
        Ok((images, with_references(in_use, references)))
    }

    /// Lists the uses, then takes each page of images as it comes, asking about its certain
    /// candidates' references [`REFERENCE_IDS`] a request, [`REFERENCE_REQUESTS`] requests at
    /// a time (a page's last few ids wait for the next page's, so no request asks about fewer
    /// than it may, but the last).
    async fn check_as_listed(
        &self,
        region: &Region,
        mut pages: tokio::sync::mpsc::UnboundedReceiver<Vec<ImageFacts>>,
        now: DateTime<Utc>,
    ) -> AsListed {
        let in_use = self.ec2.usage(region).await;
        let mut early =
            EarlyCandidates::new(&in_use, self.settings, self.own_account.as_ref(), now);
        let (mut images, mut asked) = (Vec::new(), BTreeSet::new());
        let references = stream::poll_fn(|cx| pages.poll_recv(cx))
            .flat_map(|page| {
                let ready = early.page(&page);
                images.extend(page);
                asked.extend(ready.iter().cloned());
                stream::iter(ready)
            })
            .chunks(REFERENCE_IDS)
            .map(|ids| self.references(region, ids))
            .buffer_unordered(REFERENCE_REQUESTS)
            .collect()
            .await;
        AsListed { images, in_use, asked, references }
    }

    /// What DescribeImageReferences says of `images`, in an index of its own (one request for
    /// ten ids or fewer).
    async fn references(&self, region: &Region, images: Vec<ImageId>) -> InUseIndex {
        let mut found = InUseIndex::default();
        self.ec2.add_references(region, &images, &mut found).await;
        found
    }

    /// Decides again, from their usage reports, on the images `planned` keeps only because
    /// they are shared; returns those no report tells about yet.
    async fn consult_usage(
        &self,
        region: &Region,
        planned: &mut [Planned],
        now: DateTime<Utc>,
    ) -> Vec<(ImageId, Option<Vec<AccountId>>)> {
        let shared: Vec<(usize, ImageId, Vec<Grantee>)> = planned
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.decision {
                Decision::Keep(Keep::SharedWith(g)) => Some((i, p.image_id.clone(), g.clone())),
                _ => None,
            })
            .collect();
        let verdicts: Vec<(usize, ImageId, SharedUsage)> =
            stream::iter(shared.into_iter().map(|(i, image, grantees)| async move {
                let verdict = self.shared_usage(region, &image, grantees, now).await;
                (i, image, verdict)
            }))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut to_start = Vec::new();
        for (i, image, (decision, start)) in verdicts {
            planned[i].decision = decision;
            if let Some(accounts) = start {
                to_start.push((image, accounts));
            }
        }
        to_start.sort();
        to_start
    }

    /// What the usage reports say of `image`, shared with `grantees`: retired only when the
    /// newest finished report of the last week that covers every grantee shows no use.
    async fn shared_usage(
        &self,
        region: &Region,
        image: &ImageId,
        grantees: Vec<Grantee>,
        now: DateTime<Utc>,
    ) -> SharedUsage {
        let keep = |why: Keep| Decision::Keep(why);
        let Ok(scope) = usage::scope(&grantees) else {
            return (keep(Keep::SharedWith(grantees)), None);
        };
        let reports = match self.ec2.usage_reports(region, image).await {
            Ok(reports) => reports,
            Err(e) => return (keep(Keep::LookupFailed(vec![format!("usage reports: {e}")])), None),
        };
        match usage::next(&reports, &scope, now) {
            usage::Next::Read(report) => {
                match self.ec2.usage_report_entries(region, image, &report.id).await {
                    Err(e) => {
                        let why = format!("usage report {}: {e}", report.id);
                        (keep(Keep::LookupFailed(vec![why])), None)
                    }
                    Ok(entries) => match usage::uses(&entries) {
                        uses if uses.is_empty() => (Decision::Deregister, None),
                        uses => {
                            let day = usage::day(&report);
                            (keep(Keep::SharedInUse { report: report.id, day, uses }), None)
                        }
                    },
                }
            }
            usage::Next::Wait(report) => {
                let why = format!(
                    "usage report {} of {} is not finished",
                    report.id,
                    usage::day(&report)
                );
                (keep(Keep::SharedUsageUnknown { grantees, why }), None)
            }
            usage::Next::Start { accounts, why } => {
                let why = format!("{why}; enforce mode starts one");
                (keep(Keep::SharedUsageUnknown { grantees, why }), Some(accounts))
            }
        }
    }

    /// Starts the usage reports the plan asked for (enforce mode), so that a later sweep can
    /// read them.
    async fn start_usage_reports(
        &self,
        run: &SweepRun<'_>,
        to_start: &[(ImageId, Option<Vec<AccountId>>)],
        report: &mut SweepReport,
    ) {
        for (image, accounts) in to_start {
            if crate::budget::out_of_time(self.stop_by) {
                break;
            }
            match self.ec2.start_usage_report(run.region, image, accounts.as_deref()).await {
                Ok(id) => {
                    let reason = format!("usage report {id} started");
                    self.audit_action(
                        run.region,
                        image,
                        "usage-report".into(),
                        reason,
                        &run.trigger,
                        run.now,
                    )
                    .await;
                    report.usage_reports_started.push((image.clone(), id));
                }
                Err(e) => report.errors.push(format!("usage report for {image}: {e}")),
            }
        }
    }

    /// The images the plan would retire were their launch permissions known.
    fn unchecked(
        &self,
        images: &[ImageFacts],
        in_use: &InUseIndex,
        now: DateTime<Utc>,
    ) -> Vec<ImageId> {
        plan(images, in_use, &Shares::new(), self.settings, self.own_account.as_ref(), now)
            .into_iter()
            .filter(|p| p.decision == Decision::Keep(Keep::SharesNotChecked))
            .map(|p| p.image_id)
            .collect()
    }

    /// The launch permissions of `candidates`: from the share ledger where it knows them for
    /// certain, else from EC2, [`CONCURRENCY`] lookups at a time.
    async fn launch_permissions(
        &self,
        region: &Region,
        images: &[ImageFacts],
        candidates: Vec<ImageId>,
        now: DateTime<Utc>,
    ) -> Shares {
        let ledger = match (&self.own_account, candidates.is_empty()) {
            (Some(account), false) => self.share_ledger(account, region).await,
            _ => None,
        };
        let created: BTreeMap<&ImageId, Option<DateTime<Utc>>> =
            images.iter().map(|i| (&i.image_id, i.created)).collect();
        let mut shares = Shares::new();
        let mut ask = Vec::new();
        for image in candidates {
            let created = created.get(&image).copied().flatten();
            match ledger.as_ref().and_then(|l| l.shares_of(&image, created, now)) {
                Some(grantees) => {
                    shares.insert(image, Ok(grantees));
                }
                None => ask.push(image),
            }
        }
        let asked: Vec<_> = stream::iter(ask.into_iter().map(|image| async move {
            let grants =
                self.ec2.launch_permissions(region, &image).await.map_err(|e| e.to_string());
            (image, grants)
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
        shares.extend(asked);
        shares
    }

    /// The share ledger of `account` in `region`; `None` when it cannot be read (EC2 is asked
    /// instead).
    async fn share_ledger(&self, account: &AccountId, region: &Region) -> Option<Ledger> {
        match self.ledger.load(account, region).await {
            Ok(ledger) => Some(ledger),
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "share ledger unreadable; asking EC2 image by image");
                None
            }
        }
    }

    /// Keeps the images `planned` retires that could not be restored from the Recycle Bin
    /// under the region's rules in effect (all of them when the rules cannot be read); returns
    /// the rules, or why they could not be read.
    async fn keep_unrestorable(
        &self,
        region: &Region,
        images: &[ImageFacts],
        planned: &mut [Planned],
    ) -> Result<Vec<RetentionRule>, String> {
        let found = self.ec2.image_retention_rules(region).await.map_err(|e| e.to_string());
        let facts: BTreeMap<&ImageId, &ImageFacts> =
            images.iter().map(|i| (&i.image_id, i)).collect();
        for p in planned.iter_mut().filter(|p| p.decision == Decision::Deregister) {
            let keep = match (&found, facts.get(&p.image_id)) {
                (Err(e), _) => {
                    Some(Keep::LookupFailed(vec![format!("the Recycle Bin rules: {e}")]))
                }
                (Ok(found), Some(image)) => super::unrestorable(image, region, found),
                (Ok(_), None) => Some(Keep::ChangedSincePlan("not among the images listed".into())),
            };
            if let Some(keep) = keep {
                p.decision = Decision::Keep(keep);
            }
        }
        found
    }

    /// The daily sweep of one region: plan, retire what is due (enforce mode), stamp the
    /// missing deadlines, notify.
    pub async fn sweep(
        &self,
        region: &Region,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, EnforcerError> {
        let RegionPlan {
            planned,
            references_unavailable,
            retention_rules,
            protection,
            usage_reports_to_start,
        } = self.plan(region, now).await?;
        let mut report = SweepReport {
            region: region.clone(),
            mode: self.settings.mode,
            warnings: upcoming(&planned, self.settings, now),
            stamped: Vec::new(),
            deregistered: Vec::new(),
            errors: Vec::new(),
            retirements_left: Vec::new(),
            stamps_left: Vec::new(),
            planned,
            protection,
            protection_done: Vec::new(),
            protection_left: Vec::new(),
            usage_reports_started: Vec::new(),
        };
        let rules = rules_in_effect(region, retention_rules, &report.planned, &mut report.errors);
        let trigger = format!("sweep:{region}:{}", now.format("%Y-%m-%dT%H:%M:%SZ"));
        let run = SweepRun { region, trigger, now, rules, references_unavailable };
        // Deregistrations first, right after the facts were gathered: the stamps (one request
        // per image without a deadline) would otherwise widen the window in which a use the
        // facts do not show can appear.
        let due: Vec<Planned> = report.to_deregister().cloned().collect();
        for p in &due {
            let mode = self.settings.mode.as_str();
            tracing::info!(image = %p.image_id, family = p.family, mode, "retiring image");
        }
        if self.settings.mode == Mode::Enforce {
            self.retire_all(&run, &due, &mut report).await;
            self.protect_all(&run, &mut report).await;
        }
        self.stamp_all(&run, &mut report).await;
        if self.settings.mode == Mode::Enforce {
            self.start_usage_reports(&run, &usage_reports_to_start, &mut report).await;
        }
        self.notify(&report).await?;
        Ok(report)
    }

    /// Retires the `due` images, [`LAST_CHECK_BATCH`] at a time, each batch checked once more
    /// right before. None starts once the run's time is nearly up: the rest is left for the
    /// next sweep.
    async fn retire_all(&self, run: &SweepRun<'_>, due: &[Planned], report: &mut SweepReport) {
        let out_of_time = || crate::budget::out_of_time(self.stop_by);
        if due.is_empty() {
            return;
        }
        if out_of_time() {
            return leave_retirements(run.region, due, report);
        }
        // The families ranked again, once, right before the deregistrations: a newer image
        // deregistered or disabled since the plan must not leave a family short of KEEP_LATEST.
        let ranks = self
            .ec2
            .images(run.region)
            .await
            .map(|images| super::family_ranks(&images, self.settings))
            .map_err(|e| e.to_string());
        // Batches overlap, each looked at once more right before its retirements, so that the
        // buckets, not the batches' round trips, set the pace.
        let results: Vec<Vec<Option<Retired>>> = stream::iter(
            due.chunks(LAST_CHECK_BATCH).map(|batch| self.retire_batch(run, batch, &ranks)),
        )
        .buffered(BATCHES_AT_ONCE)
        .collect()
        .await;
        let mut left = Vec::new();
        for (p, result) in due.iter().zip(results.into_iter().flatten()) {
            match result {
                Some((retirement, lineage_error)) => {
                    note_retirement(p, retirement, lineage_error, report)
                }
                None => left.push(p.clone()),
            }
        }
        if !left.is_empty() {
            leave_retirements(run.region, &left, report);
        }
    }

    /// Retires one batch: its last look (the references, and one DescribeImages for all),
    /// then its images [`ACTION_CONCURRENCY`] at a time. Each starts only while there is time
    /// (`None`: left for the next sweep).
    async fn retire_batch(
        &self,
        run: &SweepRun<'_>,
        batch: &[Planned],
        ranks: &Result<BTreeMap<ImageId, usize>, String>,
    ) -> Vec<Option<Retired>> {
        let out_of_time = || crate::budget::out_of_time(self.stop_by);
        if out_of_time() {
            return batch.iter().map(|_| None).collect();
        }
        let ids: Vec<ImageId> = batch.iter().map(|p| p.image_id.clone()).collect();
        let in_use = self.in_use_now(run, batch, ranks).await;
        // The images themselves last, right before acting on them: a change made while the
        // references were asked about is seen.
        let images = self.ec2.images_by_id(run.region, &ids).await.map_err(|e| e.to_string());
        let look = LastLook { in_use, images };
        stream::iter(batch.iter().map(|p| {
            let rank = ranks.as_ref().map_or(usize::MAX, |r| super::rank_of(r, &p.image_id));
            let look = &look;
            async move {
                if out_of_time() {
                    return None;
                }
                let retirement = self.retire(run, p, rank, look).await;
                let lineage_error = self.persist_retirement(run, p, &retirement).await;
                Some((retirement, lineage_error))
            }
        }))
        .buffered(ACTION_CONCURRENCY)
        .collect()
        .await
    }

    /// What references the images of `batch` now (instances, launch templates, SSM
    /// parameters, Image Builder recipes): the last check, as close to the deregistrations as
    /// it gets. Families that could not be ranked again are one of its failures.
    async fn in_use_now(
        &self,
        run: &SweepRun<'_>,
        batch: &[Planned],
        ranks: &Result<BTreeMap<ImageId, usize>, String>,
    ) -> InUseIndex {
        let ids: Vec<ImageId> = batch.iter().map(|p| p.image_id.clone()).collect();
        let mut in_use = InUseIndex::default();
        self.ec2.add_references(run.region, &ids, &mut in_use).await;
        // An API that answered the plan cannot be missing now: that answer is a failure.
        if in_use.references_unavailable && !run.references_unavailable {
            in_use.failures.push(
                "DescribeImageReferences answered the last check that it is not available".into(),
            );
        }
        if let Err(e) = ranks {
            in_use.failures.push(format!("the families' images: {e}"));
        }
        in_use
    }

    /// Retires one image if the last check lets it go: tagged first, so that the Recycle Bin
    /// keeps it (and the role may deregister it), then deregistered.
    async fn retire(
        &self,
        run: &SweepRun<'_>,
        p: &Planned,
        rank: usize,
        look: &LastLook,
    ) -> Retirement {
        let image = match self.last_check(run.region, p, rank, look, &run.rules, run.now).await {
            Ok(image) => image,
            Err(keep) => return Retirement::Kept(keep),
        };
        let deregistration =
            Deregistration { ec2: self.ec2, region: run.region, image: &p.image_id };
        match tag_then_remove(&deregistration).await {
            Removal::Removed => Retirement::Deregistered(image.snapshots),
            Removal::NotTagged(e) => Retirement::NotTagged(e),
            // Untagged again, so the image does not stay deregistrable under the role.
            Removal::Refused { error, untag_failed } => {
                Retirement::Failed(refusal(error, untag_failed, RETIRED_TAG_KEY))
            }
            // Not known: the tag stays, and with it the image (kept as restored).
            Removal::Unsure { error, presence } => Retirement::Failed(format!(
                "{error}; whether it is still registered is unknown: {presence}"
            )),
        }
    }

    /// Records what came of one retirement, as an audit item (unless kept at the last check)
    /// and, once deregistered, on the image's lineage node with its snapshots (while it is in
    /// the Recycle Bin, the reaper keeps what it needs). Returns the lineage write's failure.
    async fn persist_retirement(
        &self,
        run: &SweepRun<'_>,
        p: &Planned,
        retirement: &Retirement,
    ) -> Option<String> {
        let audit = |action: String| {
            let reason = p.decision.reason();
            self.audit_action(run.region, &p.image_id, action, reason, &run.trigger, run.now)
        };
        match retirement {
            Retirement::Kept(_) => None,
            Retirement::Deregistered(snapshots) => {
                audit("deregistered (restorable from the Recycle Bin)".to_owned()).await;
                let change = deregistered(run, &p.image_id, snapshots.clone());
                self.lineage.record_state(&change).await.err().map(|e| e.to_string())
            }
            Retirement::NotTagged(e) => {
                audit(format!("failed: tagging before deregistering: {e}")).await;
                None
            }
            Retirement::Failed(failure) => {
                audit(format!("failed: {failure}")).await;
                None
            }
        }
    }

    /// Carries out the protection steps, [`ACTION_CONCURRENCY`] at a time; none starts once the
    /// run's time is nearly up (left for the next sweep, which plans them again).
    async fn protect_all(&self, run: &SweepRun<'_>, report: &mut SweepReport) {
        if report.protection.is_empty() {
            return;
        }
        // Planned again on what EC2 says now: the retirements took a while, and protection
        // someone else turned on meanwhile must never become AMI Warden's to take off.
        let steps = match self.ec2.images(run.region).await {
            Ok(images) => {
                let ranks = super::family_ranks(&images, self.settings);
                protection_plan(&images, &ranks, self.settings, self.own_account.as_ref())
            }
            Err(e) => {
                report
                    .errors
                    .push(format!("protection: the images not listed again ({e}): no step taken"));
                report.protection_left =
                    report.protection.iter().map(|s| s.image_id.clone()).collect();
                return;
            }
        };
        report.protection = steps.clone();
        let results: Vec<Option<Result<String, String>>> =
            stream::iter(steps.iter().map(|step| async move {
                if crate::budget::out_of_time(self.stop_by) {
                    return None;
                }
                let result = self.protection_step(run.region, step).await;
                let action = match &result {
                    Ok(done) => done.clone(),
                    Err(e) => format!("failed: {e}"),
                };
                let reason = step.reason(self.settings.keep_latest);
                let (region, image) = (run.region, &step.image_id);
                self.audit_action(region, image, action, reason, &run.trigger, run.now).await;
                Some(result)
            }))
            .buffered(ACTION_CONCURRENCY)
            .collect()
            .await;
        for (step, result) in steps.into_iter().zip(results) {
            match result {
                Some(Ok(done)) => {
                    tracing::info!(image = %step.image_id, family = step.family, done, "deregistration protection");
                    report.protection_done.push(step.image_id);
                }
                Some(Err(e)) => report.errors.push(format!("protection of {}: {e}", step.image_id)),
                None => report.protection_left.push(step.image_id),
            }
        }
    }

    /// One protection step. Protect: tag, then enable with cooldown (the tag taken off again
    /// when enabling fails, so that it never marks an image AMI Warden did not protect).
    /// Unprotect: disable, then take the tag off (kept when disabling fails: still ours).
    async fn protection_step(
        &self,
        region: &Region,
        step: &ProtectionStep,
    ) -> Result<String, String> {
        let image = &step.image_id;
        let untag =
            || async { self.ec2.unmark_protected(region, image).await.map_err(|e| e.to_string()) };
        match step.change {
            ProtectionChange::Protect => {
                self.ec2
                    .mark_protected(region, image)
                    .await
                    .map_err(|e| format!("tagging {PROTECTED_TAG_KEY}: {e}; not protected"))?;
                if let Err(e) = self.ec2.enable_protection(region, image).await {
                    return Err(match untag().await {
                        Ok(()) => format!("{e}; not protected (the tag was taken off again)"),
                        Err(u) => format!(
                            "{e}; not protected, and the tag {PROTECTED_TAG_KEY} could not be taken off again ({u}): the next sweep takes it off or protects it"
                        ),
                    });
                }
                Ok("protected (deregistration protection with cooldown)".into())
            }
            ProtectionChange::Unprotect => {
                self.ec2
                    .disable_protection(region, image)
                    .await
                    .map_err(|e| format!("{e}; still protected"))?;
                untag().await.map_err(|e| {
                    format!("protection disabled, but the tag {PROTECTED_TAG_KEY} could not be taken off ({e}): the next sweep takes it off")
                })?;
                Ok("unprotected (still protected 24 h by the cooldown)".into())
            }
            ProtectionChange::Untag => {
                untag().await?;
                Ok(format!("untagged {PROTECTED_TAG_KEY} (its protection was off already)"))
            }
        }
    }

    /// Stamps the deadlines the plan sets (report mode only lists them), [`ACTION_CONCURRENCY`]
    /// at a time. None starts once the run's time is nearly up: the rest is left for the next
    /// sweep.
    async fn stamp_all(&self, run: &SweepRun<'_>, report: &mut SweepReport) {
        let stamps: Vec<(ImageId, DateTime<Utc>)> = report
            .planned
            .iter()
            .filter_map(|p| p.stamp.map(|at| (p.image_id.clone(), at)))
            .collect();
        // The run may have taken a while since `now`: never ask for a time now past. A request
        // may also wait for its turn in EC2's bucket (the clients' pacing) before it is sent, so
        // the earliest time is taken half a minute on: a deadline set for the minute the request
        // arrives in would be refused ("The deprecation time cannot be in the past").
        let when = |at: DateTime<Utc>| {
            at.max(super::earliest_allowed(Utc::now() + chrono::Duration::seconds(30)))
        };
        if self.settings.mode != Mode::Enforce {
            report.stamped = stamps.into_iter().map(|(image, at)| (image, when(at))).collect();
            return;
        }
        let results: Vec<Option<Result<DateTime<Utc>, CatalogueError>>> =
            stream::iter(stamps.iter().map(|(image, at)| async move {
                if crate::budget::out_of_time(self.stop_by) {
                    return None;
                }
                let at = when(*at);
                Some(self.stamp(run, image, at).await.map(|()| at))
            }))
            .buffered(ACTION_CONCURRENCY)
            .collect()
            .await;
        for ((image, _), result) in stamps.into_iter().zip(results) {
            match result {
                Some(Ok(at)) => report.stamped.push((image, at)),
                Some(Err(e)) => report.errors.push(format!("stamping {image}: {e}")),
                None => report.stamps_left.push(image),
            }
        }
        if !report.stamps_left.is_empty() {
            tracing::warn!(region = %run.region, left = report.stamps_left.len(), "the run's time is nearly up: the other deadlines are left for the next sweep");
        }
    }

    /// Sets one image's deadline, and records that as an audit item.
    async fn stamp(
        &self,
        run: &SweepRun<'_>,
        image: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        self.ec2.enable_deprecation(run.region, image, at).await?;
        let reason = format!("deadline {}", at.to_rfc3339());
        self.audit_action(run.region, image, "stamped".into(), reason, &run.trigger, run.now).await;
        Ok(())
    }

    /// The sweep's notifications: the deadlines that are near, and the retirements done (or
    /// planned), failed or left.
    async fn notify(&self, report: &SweepReport) -> Result<(), EnforcerError> {
        let Some(notifier) = self.notifier else { return Ok(()) };
        if !report.warnings.is_empty() {
            notifier.publish(&warning_notification(report)).await?;
        }
        if report.to_deregister().next().is_some()
            || !report.errors.is_empty()
            || !report.stamps_left.is_empty()
        {
            notifier.publish(&retirement_notification(report)).await?;
        }
        if !report.protection.is_empty() {
            notifier.publish(&protection_notification(report, self.settings.keep_latest)).await?;
        }
        Ok(())
    }

    /// The image as EC2 shows it now, if it may still be deregistered; else why it must stay.
    /// Decided again on what EC2 says at the last check before deregistering — the image itself
    /// (exempt tag, deadline, last launch, state, deregistration protection), its `rank` in its
    /// family as listed just before the deregistrations, the references found now, its launch
    /// permissions — and whether it is restorable with its tags now under `rules`. A failed
    /// lookup keeps it.
    async fn last_check(
        &self,
        region: &Region,
        planned: &Planned,
        rank: usize,
        look: &LastLook,
        rules: &[RetentionRule],
        now: DateTime<Utc>,
    ) -> Result<ImageFacts, Keep> {
        let now_in_use = &look.in_use;
        if !now_in_use.failures.is_empty() {
            return Err(Keep::LookupFailed(now_in_use.failures.clone()));
        }
        let image = match look.images.as_ref().map(|found| found.get(&planned.image_id)) {
            Ok(Some(image)) => image.clone(),
            Ok(None) => return Err(Keep::ChangedSincePlan("EC2 no longer lists it".into())),
            Err(e) => return Err(Keep::LookupFailed(vec![format!("the image: {e}")])),
        };
        if image.state != planned.state {
            return Err(Keep::ChangedSincePlan(format!(
                "its state is {} (the plan saw {})",
                image.state, planned.state
            )));
        }
        // The plan retires only images without protection in force: any now was turned on
        // since (DeregisterImage would be refused). Kept before it is tagged.
        if image.deregistration_protection.protects_at(now) {
            return Err(Keep::ChangedSincePlan(image.deregistration_protection.to_string()));
        }
        // The plan retires only images with a deadline of their own (a deadline it would stamp
        // is never past): none now means someone took it off.
        let Some(deadline) = image.deprecation else {
            return Err(Keep::ChangedSincePlan("its deadline was taken off".into()));
        };
        // Asked every time: a share made since the plan (or since the ledger's reading) counts.
        let shares = BTreeMap::from([(
            image.image_id.clone(),
            self.ec2.launch_permissions(region, &image.image_id).await.map_err(|e| e.to_string()),
        )]);
        let decision = match super::decide(
            &image,
            &planned.family,
            rank,
            Some(deadline),
            now_in_use,
            &shares,
            self.settings,
            self.own_account.as_ref(),
            now,
        ) {
            // Shared: only a finished usage report read now lets it go.
            Decision::Keep(Keep::SharedWith(grantees)) if self.settings.retire_shared_unused => {
                self.shared_usage(region, &image.image_id, grantees, now).await.0
            }
            other => other,
        };
        match decision {
            Decision::Keep(keep) => Err(keep),
            Decision::Deregister => match super::unrestorable(&image, region, rules) {
                Some(keep) => Err(keep),
                None => Ok(image),
            },
        }
    }

    async fn audit_action(
        &self,
        region: &Region,
        image: &ImageId,
        action: String,
        reason: String,
        trigger: &str,
        at: DateTime<Utc>,
    ) {
        let record = ActionRecord {
            region,
            image,
            action,
            reason,
            trigger,
            mode: self.settings.mode.as_str(),
            at,
        };
        if let Err(e) = self.audit.record_action(&record).await {
            tracing::error!(image = %image, error = %e, "audit write failed");
        }
    }
}

/// What [`DeprecationEnforcer::check_as_listed`] gathered.
struct AsListed {
    images: Vec<ImageFacts>,
    in_use: InUseIndex,
    /// The images asked about references.
    asked: BTreeSet<ImageId>,
    /// What each batch of references found.
    references: Vec<InUseIndex>,
}

/// `in_use` with what each batch of references found. A region without DescribeImageReferences
/// answers every request alike; batches that disagree about it are a failure, as requests
/// within one batch that disagree are ([`DeprecationEc2::add_references`]).
fn with_references(mut in_use: InUseIndex, batches: Vec<InUseIndex>) -> InUseIndex {
    let unavailable = batches.iter().filter(|b| b.references_unavailable).count();
    if unavailable > 0 && unavailable < batches.len() {
        in_use.failures.push(format!(
            "DescribeImageReferences: {unavailable} of {} batches answered that the API is unavailable",
            batches.len()
        ));
    }
    for batch in batches {
        in_use.merge(batch);
    }
    in_use
}

/// The Recycle Bin rules a sweep retires under, and the errors of the run they make: no rule in
/// effect, images their own tags exclude, or rules that could not be read (then none is
/// retired). `found` is `None` when the plan retires nothing, so no rule was asked for.
fn rules_in_effect(
    region: &Region,
    found: Option<Result<Vec<RetentionRule>, String>>,
    planned: &[Planned],
    errors: &mut Vec<String>,
) -> Vec<RetentionRule> {
    let unrecoverable = planned
        .iter()
        .filter(|p| matches!(p.decision, Decision::Keep(Keep::NotRecoverable(_))))
        .count();
    match found {
        Some(Ok(rules)) if rules.is_empty() => {
            errors.push(format!(
                "no Recycle Bin rule in {region} keeps images tagged {RETIRED_TAG_KEY}={RETIRED_TAG_VALUE}: none is retired there (the templates deploy one)"
            ));
            rules
        }
        Some(Ok(rules)) => {
            if unrecoverable > 0 {
                errors.push(format!(
                    "{unrecoverable} image(s) in {region} not retired: no Recycle Bin rule in effect keeps them once tagged {RETIRED_TAG_KEY}={RETIRED_TAG_VALUE} (their own tags exclude them)"
                ));
            }
            rules
        }
        Some(Err(e)) => {
            errors.push(format!("the Recycle Bin rules of {region}: {e}: none is retired"));
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Leaves the retirements of `rest` for the next sweep: the run's time is nearly up.
/// What came of one retirement, in the report.
fn note_retirement(
    p: &Planned,
    retirement: Retirement,
    lineage_error: Option<String>,
    report: &mut SweepReport,
) {
    match retirement {
        Retirement::Kept(keep) => {
            tracing::warn!(image = %p.image_id, reason = %keep, "kept at the last check before deregistering");
            if let Some(planned) = report.planned.iter_mut().find(|q| q.image_id == p.image_id) {
                planned.decision = Decision::Keep(keep);
            }
        }
        Retirement::Deregistered(_) => {
            if let Some(e) = lineage_error {
                report.errors.push(format!("lineage state of {}: {e}", p.image_id));
            }
            report.deregistered.push(p.image_id.clone());
        }
        Retirement::NotTagged(e) => {
            report.errors.push(format!("tagging {} before deregistering: {e}", p.image_id))
        }
        Retirement::Failed(failure) => {
            report.errors.push(format!("deregistering {}: {failure}", p.image_id))
        }
    }
}

fn leave_retirements(region: &Region, rest: &[Planned], report: &mut SweepReport) {
    report.retirements_left = rest.iter().map(|p| p.image_id.clone()).collect();
    tracing::warn!(region = %region, left = report.retirements_left.len(), "the run's time is nearly up: the other retirements are left for the next sweep");
}

/// The lineage state change of an image the sweep `run` deregistered, with its `snapshots`.
fn deregistered(run: &SweepRun<'_>, image: &ImageId, snapshots: Vec<SnapshotId>) -> StateChange {
    StateChange {
        image: ImageRef::new(run.region.clone(), image.clone()),
        flag: StateFlag::Deregistered,
        event_id: format!("{}:{image}", run.trigger),
        event_name: "DeregisterImage (deprecation-enforcer)".into(),
        at: run.now,
        snapshots,
        snapshots_deleted_by_aws: false,
        snapshot_results: Vec::new(),
        actor_arn: None,
    }
}

/// WARNING: someone removed the deadline of an image that is not exempt.
fn restamp_notification(
    event: &crate::event::Event,
    facts: &super::ImageFacts,
    at: DateTime<Utc>,
    settings: &Settings,
) -> Notification {
    let actor = event.meta.actor.arn.clone().unwrap_or_else(|| "an unknown principal".into());
    let done = if settings.mode == Mode::Enforce {
        "AMI Warden set it again"
    } else {
        "report mode: AMI Warden would set it again"
    };
    let image = format!(
        "{}{}",
        facts.image_id,
        facts.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    );
    Notification::new(Severity::Warning, "deprecation-removed", format!("deprecation removed from image {image} in {}", event.meta.region))
        .text(format!(
            "{actor} removed the deprecation deadline of image {image} in {} at {}. Only images tagged {} may go without one; {done}: {}.",
            event.meta.region,
            event.meta.event_time.to_rfc3339(),
            settings.exempt_tag_key,
            at.to_rfc3339()
        ))
        .field("Image", image)
        .field("Region", event.meta.region.to_string())
        .field("Actor", actor)
        .field("Deadline", at.to_rfc3339())
        .details(json!({"event_id": event.meta.event_id, "image": facts.image_id, "deprecate_at": at, "mode": settings.mode == Mode::Enforce}))
}

/// One planned image as a line of a notification: id, name, family, age, deadline, why.
pub fn line(p: &Planned) -> String {
    format!(
        "  {} {} (family {}, {} days old, deadline {}): {}\n",
        p.image_id,
        p.name.as_deref().unwrap_or("-"),
        p.family,
        p.age_days.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
        p.deadline.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "none".into()),
        p.decision.reason()
    )
}

/// INFO: the images whose deadline is near.
pub fn warning_notification(report: &SweepReport) -> Notification {
    let mut text =
        format!("These images in {} reach their deprecation deadline soon:\n", report.region);
    for p in &report.warnings {
        text.push_str(&line(p));
    }
    text.push_str("Tag an image with the exempt tag, or use it, to keep it past its deadline.\n");
    Notification::new(
        Severity::Info,
        "deprecation-upcoming",
        format!(
            "{} image(s) in {} reach their deprecation deadline soon",
            report.warnings.len(),
            report.region
        ),
    )
    .text(text)
    .field("Region", report.region.to_string())
    .field("Images", report.warnings.len().to_string())
    .details(json!({"region": report.region, "upcoming": report.warnings}))
}

/// WARNING: deregistrations done (enforce) or planned (report), with reasons.
pub fn retirement_notification(report: &SweepReport) -> Notification {
    let retire: Vec<&Planned> = report.to_deregister().collect();
    let left_note = if report.retirements_left.is_empty() {
        String::new()
    } else {
        format!(", {} left for the next sweep", report.retirements_left.len())
    };
    let subject = if report.mode == Mode::Enforce {
        format!(
            "deprecation: deregistered {} image(s) in {}{left_note}",
            report.deregistered.len(),
            report.region
        )
    } else {
        format!(
            "deprecation (report mode): would deregister {} image(s) in {}",
            retire.len(),
            report.region
        )
    };
    let mut text =
        format!("Mode: {}. Stamped deadlines: {}.\n", report.mode.as_str(), report.stamped.len());
    let (done, left): (Vec<&Planned>, Vec<&Planned>) =
        retire.iter().copied().partition(|p| !report.retirements_left.contains(&p.image_id));
    for p in &done {
        text.push_str(&line(p));
    }
    if !left.is_empty() || !report.stamps_left.is_empty() {
        text.push_str(&format!(
            "The run's time ran out: {} retirement(s) and {} deadline(s) are left for the next sweep.\n",
            left.len(),
            report.stamps_left.len()
        ));
        for p in &left {
            text.push_str(&line(p));
        }
    }
    for e in &report.errors {
        text.push_str(&format!("  error: {e}\n"));
    }
    let severity = Severity::Warning;
    Notification::new(severity, "deprecation-retirement", subject)
        .text(text)
        .field("Region", report.region.to_string())
        .field("Mode", report.mode.as_str())
        .field("Deregistered", report.deregistered.len().to_string())
        .field("Planned", if report.mode == Mode::Report { retire.len().to_string() } else { String::new() })
        .field("Errors", report.errors.len().to_string())
        .details(json!({"region": report.region, "retire": retire, "deregistered": report.deregistered, "errors": report.errors,
            "retirements_left": report.retirements_left, "stamps_left": report.stamps_left}))
}

/// INFO: the deregistration protection turned on or off (enforce), or that would be (report).
pub fn protection_notification(report: &SweepReport, keep_latest: u32) -> Notification {
    let enforce = report.mode == Mode::Enforce;
    let count = |change: ProtectionChange| {
        let steps = report.protection.iter().filter(|s| s.change == change);
        if enforce {
            steps.filter(|s| report.protection_done.contains(&s.image_id)).count()
        } else {
            steps.count()
        }
    };
    let (protect, unprotect) =
        (count(ProtectionChange::Protect), count(ProtectionChange::Unprotect));
    let subject = if enforce {
        format!(
            "deprecation: protected {protect}, unprotected {unprotect} image(s) in {}",
            report.region
        )
    } else {
        format!(
            "deprecation (report mode): would protect {protect}, unprotect {unprotect} image(s) in {}",
            report.region
        )
    };
    let mut text = format!(
        "Mode: {}. Deregistration protection (with cooldown) on each family's newest {keep_latest} images (PROTECT_NEWEST).\n",
        report.mode.as_str()
    );
    for step in &report.protection {
        let done = match (enforce, step.change) {
            (true, _) if report.protection_left.contains(&step.image_id) => {
                "left for the next sweep"
            }
            (true, _) if !report.protection_done.contains(&step.image_id) => "failed",
            (true, ProtectionChange::Protect) => "protected",
            (true, ProtectionChange::Unprotect) => "unprotected",
            (true, ProtectionChange::Untag) => "untagged",
            (false, ProtectionChange::Protect) => "would protect",
            (false, ProtectionChange::Unprotect) => "would unprotect",
            (false, ProtectionChange::Untag) => "would untag",
        };
        text.push_str(&format!(
            "  {done}: {} {}: {}\n",
            step.image_id,
            step.name.as_deref().unwrap_or("-"),
            step.reason(keep_latest)
        ));
    }
    let errors: Vec<&String> =
        report.errors.iter().filter(|e| e.starts_with("protection of ")).collect();
    for e in &errors {
        text.push_str(&format!("  error: {e}\n"));
    }
    let severity = if errors.is_empty() { Severity::Info } else { Severity::Warning };
    Notification::new(severity, "deprecation-protection", subject)
        .text(text)
        .field("Region", report.region.to_string())
        .field("Mode", report.mode.as_str())
        .field("Protected", protect.to_string())
        .field("Unprotected", unprotect.to_string())
        .details(json!({"region": report.region, "protection": report.protection,
            "done": report.protection_done, "left": report.protection_left, "errors": errors}))
}
