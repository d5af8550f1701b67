//! The reaper's shell: gather the facts about the snapshots a deregistered image left (or, in
//! the daily sweep, every owned snapshot whose image is gone), decide each with
//! [`super::decide`], carry the decision out, and record it.
//!
//! A snapshot is deleted only where it stays recoverable: a Recycle Bin rule in effect in its
//! region must keep it once tagged. In `report` mode nothing is changed: deletions are only
//! planned (where enforce mode would make them) and reported. In `enforce` mode a snapshot to
//! delete is first tagged [`super::REAPED_TAG_KEY`] (so the Recycle Bin rule retains it for
//! `RECYCLE_DAYS`), then deleted; a failed delete (`InvalidSnapshot.InUse` included) is
//! reported as an error of the run, never swallowed. Every decision becomes an audit item, and
//! the lineage node of the source image records each snapshot's fate: what enforcement did with
//! it (or AWS did), never a report mode's plan. The tag, the delete and the untag after a
//! failed delete are [`crate::removal::tag_then_remove`], shared with the deprecation enforcer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::stream::{self, Stream, StreamExt};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use super::{
    decide, early, image_in_description, BinUsers, Candidate, FoundBy, Keep, Lookup, Settings,
    SnapshotEc2, SnapshotInfo, Verdict,
};
use crate::catalogue::CatalogueError;
use crate::config::Mode;
use crate::event::{EventKind, Grantee, Parsed, SnapshotDeletion, SnapshotReturnCode};
use crate::exposure::ledger::{ShareLedger, SnapshotShares};
use crate::idempotency::{Claim, Idempotency};
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::{LineageNode, LineageStore, StoreError};
use crate::notify::{Notification, Notifier, NotifyError, Severity};
use crate::removal::{refusal, tag_then_remove, Presence, Removable, Removal};

/// How many permission lookups run at once (DescribeSnapshotAttribute's bucket refills 20 a
/// second; the EC2 clients' pacing keeps to it).
pub const CONCURRENCY: usize = 20;

/// How many candidates are decided and carried out at once (each deletion is a chain of
/// requests: the last look, the tag, the delete).
pub const ACTION_CONCURRENCY: usize = 10;

/// What the sweep knows of snapshots' shares when the image listing ends: the ledger's readings
/// and EC2's answers for the likely leads.
struct EarlyShares {
    /// `None`: not read yet (a small region's).
    ledger: Option<SnapshotShares>,
    asked: HashMap<SnapshotId, Lookup<Vec<Grantee>>>,
    /// Taken before the first of `asked` and used for every reading the run records.
    read_at: DateTime<Utc>,
    /// Whether the run notes its sweep with its readings ([`early::Plan::note_sweep`]).
    note_sweep: bool,
}

/// The errors and warnings one candidate's decision adds to the run's report.
#[derive(Default)]
struct Notes {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Notes {
    fn add_to(self, report: &mut RunReport) {
        report.errors.extend(self.errors);
        report.warnings.extend(self.warnings);
    }
}

/// The function name idempotency claims are scoped to.
pub const FUNCTION: &str = "snapshot-reaper";

/// What was done about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "detail", rename_all = "snake_case")]
pub enum Action {
    /// Report mode: it would be deleted.
    Planned,
    /// Tagged and deleted (recoverable from the Recycle Bin).
    Deleted,
    Kept,
    /// The tag or the delete failed; AWS's error.
    Failed(String),
    /// DeregisterImage was called with `deleteAssociatedSnapshots`: AWS deleted it.
    DeletedByAws,
    /// Enforce mode: to be deleted, but the run's time ran out first (see [`crate::budget`]);
    /// the next sweep decides it again.
    LeftForNextRun,
}

/// One snapshot's decision and what came of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub region: Region,
    pub snapshot_id: SnapshotId,
    pub size_gib: u32,
    pub source_image: Option<ImageId>,
    pub found_by: FoundBy,
    pub decision: &'static str,
    pub reason: String,
    pub action: Action,
}

/// One run: an event or a sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// The CloudTrail `eventID`, or `sweep:<region>:<time>`.
    pub trigger: String,
    pub mode: Mode,
    pub outcomes: Vec<Outcome>,
    /// Sweep only: owned snapshots whose description names no image (not AMI snapshots).
    pub not_from_images: usize,
    /// Sweep only: snapshots whose image still exists.
    pub with_live_images: usize,
    /// Lookups and writes that failed (their snapshots were kept): an event with any fails, to
    /// be delivered again.
    pub errors: Vec<String>,
    /// What an operator must put right and a retry would not: no Recycle Bin rule in effect
    /// would keep what the reaper deletes, so those snapshots were kept. The run does not fail
    /// for them; the next sweep decides them again.
    pub warnings: Vec<String>,
    pub price_per_gb_month: f64,
    /// How many of `outcomes` have their audit item written.
    #[serde(skip)]
    audited: usize,
}

impl RunReport {
    fn gib(&self, pick: impl Fn(&Action) -> bool) -> u64 {
        self.outcomes.iter().filter(|o| pick(&o.action)).map(|o| u64::from(o.size_gib)).sum()
    }
    fn count(&self, pick: impl Fn(&Action) -> bool) -> usize {
        self.outcomes.iter().filter(|o| pick(&o.action)).count()
    }
    /// Deletions not started: the run's time ran out first.
    pub fn left_for_next_run(&self) -> usize {
        self.count(|a| matches!(a, Action::LeftForNextRun))
    }
    pub fn deleted_gib(&self) -> u64 {
        self.gib(|a| matches!(a, Action::Deleted))
    }
    pub fn planned_gib(&self) -> u64 {
        self.gib(|a| matches!(a, Action::Planned))
    }
    pub fn failures(&self) -> usize {
        self.count(|a| matches!(a, Action::Failed(_)))
    }
    pub fn monthly_dollars(&self, gib: u64) -> f64 {
        gib as f64 * self.price_per_gb_month
    }
}

/// One audit item: a decision about a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry<'a> {
    pub outcome: &'a Outcome,
    pub trigger: &'a str,
    pub mode: &'static str,
    pub at: DateTime<Utc>,
}

/// Where decisions are recorded: the lineage table.
#[allow(async_fn_in_trait)]
pub trait AuditLog {
    /// One audit item per decision.
    async fn record_all(&self, entries: &[AuditEntry<'_>]) -> Result<(), StoreError>;
    /// Notes a snapshot's fate on its image's lineage node (when the node exists).
    /// `map_exists`: whether the node already holds fates (which way of writing comes first).
    async fn record_fate(
        &self,
        image: &ImageRef,
        snapshot: &SnapshotId,
        fate: &str,
        map_exists: bool,
    ) -> Result<(), StoreError>;
}

/// How many decisions wait for their audit items at most: eight BatchWriteItem requests,
/// written at once. A deletion tried does not wait (see [`SnapshotReaper::record_all`]).
const AUDIT_BATCH: usize = 200;

/// What a run knows of the fates recorded on lineage nodes: an image absent from the map has no
/// node (nothing to annotate); `None` when its node could not be read.
type Fates = HashMap<ImageRef, Option<BTreeMap<String, String>>>;

/// The snapshots an event's image may have left: how each was found, and what EC2 said of it
/// when it was asked already.
type Leads = BTreeMap<SnapshotId, (FoundBy, Option<SnapshotInfo>)>;

/// The Recycle Bin rules in effect in each region a run has asked about, or why they could not
/// be read.
type BinRules = BTreeMap<Region, Result<Vec<super::RetentionRule>, String>>;

/// What an event's run knows of the deregistered image besides its snapshots.
struct SourceFacts {
    /// Whether it still exists (registered, or in the Recycle Bin).
    exists: Lookup<bool>,
    /// Which images in the Recycle Bin use which snapshots.
    bin_users: Lookup<BinUsers>,
}

/// One snapshot's deletion, as [`tag_then_remove`] makes it.
struct Deletion<'a, E> {
    ec2: &'a E,
    region: &'a Region,
    snapshot: &'a SnapshotId,
}

impl<E: SnapshotEc2> Removable for Deletion<'_, E> {
    async fn tag(&self) -> Result<(), String> {
        self.ec2.mark_reaped(self.region, self.snapshot).await.map_err(|e| e.to_string())
    }

    async fn remove(&self) -> Result<(), String> {
        self.ec2.delete_snapshot(self.region, self.snapshot).await.map_err(|e| e.to_string())
    }

    /// Not asked: every failed delete counts as refused (`InvalidSnapshot.InUse` above all), and
    /// the tag comes off again. Had a delete happened after all (its answer lost), the snapshot
    /// is in the Recycle Bin already, retained under the rule that matched it when deleted.
    async fn presence(&self) -> Presence {
        Presence::StillThere
    }

    async fn untag(&self) -> Result<(), String> {
        self.ec2.unmark_reaped(self.region, self.snapshot).await.map_err(|e| e.to_string())
    }
}

#[derive(Debug, Error)]
pub enum ReaperError {
    #[error("listing the estate failed, nothing was decided: {0}")]
    Listing(#[from] CatalogueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("event {event_id} is being handled by another delivery; retry later")]
    InProgress { event_id: String },
    /// Some facts could not be established (a call failed) or a delete failed: what could be
    /// decided was decided and recorded; the event fails so that Lambda delivers it again.
    #[error("event {}: done what could be decided, and {} failure(s) left for the retry: {}", .report.trigger, .report.errors.len(), .report.errors.join("; "))]
    Incomplete { report: Box<RunReport> },
}

/// The result of one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcome {
    Reaped { report: RunReport },
    Duplicate { event_id: String },
    Ignored { reason: String },
}

pub struct Reaper<'a, E, L, A, I, N, S> {
    pub ec2: &'a E,
    pub lineage: &'a L,
    pub audit: &'a A,
    /// Readings of create-volume permissions (see [`crate::exposure::ledger::SnapshotShares`]).
    pub ledger: &'a S,
    pub idempotency: &'a I,
    /// Where the run's summary goes; `None` to only return it.
    pub notifier: Option<&'a N>,
    pub settings: &'a Settings,
    /// The account this deployment acts in: only its snapshots are ever deleted.
    pub own_account: Option<AccountId>,
    /// No deletion starts after this (see [`crate::budget`]). `None`: no limit (the CLI).
    pub stop_by: Option<std::time::Instant>,
}

impl<E: SnapshotEc2, L: LineageStore, A: AuditLog, I: Idempotency, N: Notifier, S: ShareLedger>
    Reaper<'_, E, L, A, I, N, S>
{
    /// Handles a DeregisterImage event.
    pub async fn on_event(
        &self,
        parsed: &Parsed,
        now: DateTime<Utc>,
    ) -> Result<EventOutcome, ReaperError> {
        let event = match parsed {
            Parsed::Ignored { reason, .. } => {
                return Ok(EventOutcome::Ignored { reason: reason.to_string() })
            }
            Parsed::Event(e) => e,
        };
        let EventKind::ImageDeregistered { image, delete_associated_snapshots, snapshot_results } =
            &event.kind
        else {
            return Ok(EventOutcome::Ignored {
                reason: format!("{} is not DeregisterImage", event.meta.event_name),
            });
        };
        let event_id = &event.meta.event_id;
        match self.idempotency.claim(FUNCTION, event_id).await? {
            Claim::Done => return Ok(EventOutcome::Duplicate { event_id: event_id.clone() }),
            Claim::InProgress => {
                return Err(ReaperError::InProgress { event_id: event_id.clone() })
            }
            Claim::Proceed => {}
        }
        let deletion =
            AwsDeletion { asked: *delete_associated_snapshots, results: snapshot_results };
        let result = match self.reap_image(image, &deletion, event_id, now).await {
            Ok(report) if !report.errors.is_empty() => {
                Err(ReaperError::Incomplete { report: Box::new(report) })
            }
            other => other,
        };
        match &result {
            Ok(report) => {
                let summary = format!("{} snapshot(s) decided", report.outcomes.len());
                self.idempotency.complete(FUNCTION, event_id, &summary).await?;
            }
            Err(_) => {
                if let Err(e) = self.idempotency.release(FUNCTION, event_id).await {
                    tracing::warn!(event_id, error = %e, "could not release the claim; the retry waits for its lease");
                }
            }
        }
        result.map(|report| EventOutcome::Reaped { report })
    }

    /// Decides (and in enforce mode deletes) the snapshots a deregistered image left: those its
    /// lineage node records, those DeregisterImage's response named, and those whose
    /// description AWS wrote for it.
    async fn reap_image(
        &self,
        image: &ImageRef,
        deletion: &AwsDeletion<'_>,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<RunReport, ReaperError> {
        let region = &image.region;
        let mut fates = Fates::new();
        let mut report = self.report(event_id.to_owned());
        let mut leads = self.recorded_snapshots(image, &mut fates, &mut report).await;
        for result in deletion.results {
            leads.entry(result.snapshot.clone()).or_insert((FoundBy::Deregistration, None));
        }
        let recorded: BTreeSet<SnapshotId> = leads.keys().cloned().collect();
        self.add_described(image, &mut leads, &mut report).await;
        let source = self.source_facts(image, &mut report).await;
        let mut candidates = Vec::new();
        for (snapshot_id, (found_by, info)) in leads {
            let info = match info {
                Some(info) => info,
                None => match self.ec2.snapshot(region, &snapshot_id).await {
                    Ok(Some(info)) => info,
                    // DeregisterImage deleted it with the image (unless a fate is noted
                    // already: then a delivery before this one found or deleted it).
                    Ok(None)
                        if deletion.deleted(&snapshot_id)
                            && !fate_known(&fates, image, &snapshot_id) =>
                    {
                        let outcome = deleted_with(image, snapshot_id, found_by);
                        self.record(&mut report, outcome, now, &mut fates).await;
                        continue;
                    }
                    Ok(None) => continue, // already gone
                    Err(e) => {
                        report.errors.push(format!("{snapshot_id} kept: {e}"));
                        continue;
                    }
                },
            };
            let (used_by, shared_with) = self
                .users_and_shares(image, &snapshot_id, &info.owner, &source.bin_users, &mut report)
                .await;
            candidates.push(Candidate {
                region: region.clone(),
                origin_verified: recorded.contains(&snapshot_id),
                snapshot: info,
                source_image: Some(image.image_id.clone()),
                found_by,
                used_by,
                source_exists: source.exists.clone(),
                shared_with,
            });
        }
        self.carry_out(&mut report, candidates, now, &mut fates, &|_, _| {}).await;
        self.finish(report, now).await
    }

    /// The snapshots the lineage node of `image` records, noting the fates the node holds in
    /// `fates` (`None` when the node could not be read: an error of the run).
    async fn recorded_snapshots(
        &self,
        image: &ImageRef,
        fates: &mut Fates,
        report: &mut RunReport,
    ) -> Leads {
        match self.lineage.node(image).await {
            Ok(Some(node)) => {
                fates.insert(image.clone(), Some(node.snapshot_fates));
                node.snapshots.into_iter().map(|s| (s, (FoundBy::Lineage, None))).collect()
            }
            Ok(None) => Leads::new(),
            Err(e) => {
                report.errors.push(format!("lineage of {image}: {e}"));
                fates.insert(image.clone(), None);
                Leads::new()
            }
        }
    }

    /// Adds the owned snapshots whose description AWS wrote for `image` to `leads`, with what
    /// EC2 said of them.
    async fn add_described(&self, image: &ImageRef, leads: &mut Leads, report: &mut RunReport) {
        match self.ec2.snapshots_described_for(&image.region, &image.image_id).await {
            Ok(found) => {
                for info in found {
                    let id = info.snapshot_id.clone();
                    leads.entry(id).or_insert((FoundBy::Description, None)).1 = Some(info);
                }
            }
            Err(e) => report.errors.push(format!("snapshots described for {image}: {e}")),
        }
    }

    /// Whether the deregistered `image` still exists, and who in the Recycle Bin uses what.
    async fn source_facts(&self, image: &ImageRef, report: &mut RunReport) -> SourceFacts {
        let region = &image.region;
        let bin = self.ec2.images_in_recycle_bin(region).await;
        let exists = match (self.ec2.image_exists(region, &image.image_id).await, &bin) {
            (Ok(exists), Ok(bin)) => Lookup::Known(exists || bin.contains(&image.image_id)),
            (Err(e), _) => Lookup::Failed(e.to_string()),
            (_, Err(e)) => Lookup::Failed(e.to_string()),
        };
        let bin_users = match &bin {
            Ok(bin) => self.bin_users(region, bin).await,
            Err(e) => Lookup::Failed(e.to_string()),
        };
        // A call that failed is worth a retry of the event (a doubt the facts leave is not).
        if let Lookup::Failed(e) = &exists {
            report.errors.push(format!("whether {image} still exists: {e}"));
        }
        if let (Lookup::Failed(e), Ok(_)) = (&bin_users, &bin) {
            report.errors.push(e.clone());
        }
        SourceFacts { exists, bin_users }
    }

    /// The images that use a snapshot `image` left (live ones and those in the Recycle Bin),
    /// and who else may create volumes from it. Another account's snapshot (an image registered
    /// from a snapshot shared with this one) is kept whatever its users and shares, so they are
    /// not asked.
    async fn users_and_shares(
        &self,
        image: &ImageRef,
        snapshot: &SnapshotId,
        owner: &Option<AccountId>,
        bin_users: &Lookup<BinUsers>,
        report: &mut RunReport,
    ) -> (Lookup<Vec<ImageId>>, Lookup<Vec<Grantee>>) {
        let owned = owner.is_some() && *owner == self.own_account;
        if !owned {
            let unasked = "not asked: not this account's snapshot";
            return (Lookup::Failed(unasked.into()), Lookup::Failed(unasked.into()));
        }
        let used_by = match self.ec2.images_using(&image.region, snapshot).await {
            Ok(images) => {
                with_bin_users(bin_users, snapshot, Some(&image.image_id), Lookup::Known(images))
            }
            Err(e) => {
                report.errors.push(format!("images using {snapshot}: {e}"));
                Lookup::Failed(e.to_string())
            }
        };
        let shared_with = self.shares(&image.region, snapshot).await;
        if let Lookup::Failed(e) = &shared_with {
            report.errors.push(format!("create-volume permissions of {snapshot}: {e}"));
        }
        (used_by, shared_with)
    }

    /// The daily sweep of one region: owned snapshots whose image (named in the description
    /// AWS wrote) no longer exists and that no image uses.
    pub async fn sweep(
        &self,
        region: &Region,
        now: DateTime<Utc>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<RunReport, ReaperError> {
        // The image listing is the long one (a second a page at 10,000 images); the likely
        // leads' shares are read while it goes on.
        let (index, before) = futures_util::future::join(
            self.ec2.image_index(region),
            self.before_listing(region, now),
        )
        .await;
        let (index, (in_bin, snapshots, early)) = (index?, before?);
        let mut report =
            self.report(format!("sweep:{region}:{}", now.format("%Y-%m-%dT%H:%M:%SZ")));
        let leads = sweep_leads(region, snapshots, &index, &in_bin, &mut report);
        let mut fates = Fates::new();
        // The shares still to read, bound by DescribeSnapshotAttribute's bucket, do not wait
        // for the lineage's reads.
        let lead_ids = leads.iter().map(|(info, _)| info.snapshot_id.clone()).collect();
        let (nodes, bin_users, mut shared) = futures_util::future::join3(
            self.source_nodes(&leads, &mut fates, &mut report),
            self.bin_users(region, &in_bin),
            self.all_shares(region, lead_ids, early, now),
        )
        .await;
        if let Lookup::Failed(e) = &bin_users {
            report.errors.push(format!("{e}: every candidate kept"));
        }
        let mut candidates = Vec::new();
        for (info, source) in leads {
            let live =
                Lookup::Known(index.users.get(&info.snapshot_id).cloned().unwrap_or_default());
            let used_by =
                with_bin_users(&bin_users, &info.snapshot_id, Some(&source.image_id), live);
            let shared_with = shared
                .remove(&info.snapshot_id)
                .unwrap_or_else(|| Lookup::Failed("not looked up".into()));
            let origin_verified =
                nodes.get(&source).is_some_and(|node| node.snapshots.contains(&info.snapshot_id));
            candidates.push(Candidate {
                region: region.clone(),
                origin_verified,
                snapshot: info,
                source_image: Some(source.image_id),
                found_by: FoundBy::Sweep,
                used_by,
                source_exists: Lookup::Known(false),
                shared_with,
            });
        }
        self.carry_out(&mut report, candidates, now, &mut fates, progress).await;
        self.finish(report, now).await
    }

    /// What the sweep reads while the image listing goes on: the Recycle Bin's images and the
    /// owned snapshots; then, in a large region, the ledger's share readings and the likely
    /// leads' shares ([`super::early`]).
    async fn before_listing(
        &self,
        region: &Region,
        now: DateTime<Utc>,
    ) -> Result<(BTreeSet<ImageId>, Vec<SnapshotInfo>, EarlyShares), ReaperError> {
        let (in_bin, snapshots) = futures_util::future::join(
            self.ec2.images_in_recycle_bin(region),
            self.ec2.owned_snapshots(region),
        )
        .await;
        let (in_bin, snapshots) = (in_bin?, snapshots?);
        // Taken before asking: a change an event marks from here on outdates these readings.
        let read_at = Utc::now();
        if !early::large(&snapshots, &in_bin) {
            // Its listing is a page: the readings are read once the leads are known (none, no
            // request).
            let nothing =
                EarlyShares { ledger: None, asked: HashMap::new(), read_at, note_sweep: false };
            return Ok((in_bin, snapshots, nothing));
        }
        let ledger = self.share_readings(region).await;
        let unread = early::unread(&snapshots, &in_bin, &ledger, now);
        let early::Plan { read, ask, note_sweep } = early::plan(&unread, &ledger, now);
        // Each answer about images starts its snapshots' reads at once.
        let guessed = stream::iter(ask.chunks(early::IDS_PER_REQUEST).map(|chunk| {
            let unread = &unread;
            async move {
                match self.ec2.owned_among(region, chunk).await {
                    Ok(found) => early::gone(unread, chunk, &found),
                    // Only a guess: these leads' shares are read after the listing instead.
                    Err(e) => {
                        tracing::info!(region = %region, error = %e, "no early share reads");
                        Vec::new()
                    }
                }
            }
        }))
        .buffer_unordered(early::GUESSES_AT_ONCE);
        let to_read = stream::once(async { read }).chain(guessed).flat_map(stream::iter);
        let asked = self.read_shares(region, to_read).await;
        Ok((in_bin, snapshots, EarlyShares { ledger: Some(ledger), asked, read_at, note_sweep }))
    }

    /// The lineage nodes of the images the sweep's `leads` name (one batch read), noting the
    /// fates they hold in `fates` (`None` for each when they could not be read: an error of the
    /// run). The description is a lead; the lineage must confirm it.
    async fn source_nodes(
        &self,
        leads: &[(SnapshotInfo, ImageRef)],
        fates: &mut Fates,
        report: &mut RunReport,
    ) -> HashMap<ImageRef, LineageNode> {
        let sources: Vec<ImageRef> = leads
            .iter()
            .map(|(_, source)| source.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let nodes = match self.lineage.nodes(&sources).await {
            Ok(nodes) => nodes,
            Err(e) => {
                report.errors.push(format!("lineage of {} image(s): {e}", sources.len()));
                fates.extend(sources.iter().map(|s| (s.clone(), None)));
                HashMap::new()
            }
        };
        fates.extend(
            nodes.iter().map(|(image, node)| (image.clone(), Some(node.snapshot_fates.clone()))),
        );
        nodes
    }

    /// Which images in the Recycle Bin use which snapshots, from the lineage (one batch read).
    async fn bin_users(&self, region: &Region, bin: &BTreeSet<ImageId>) -> Lookup<BinUsers> {
        if bin.is_empty() {
            return Lookup::Known(BinUsers::default());
        }
        let refs: Vec<ImageRef> =
            bin.iter().map(|image| ImageRef::new(region.clone(), image.clone())).collect();
        match self.lineage.nodes(&refs).await {
            Ok(nodes) => Lookup::Known(BinUsers::new(bin, |image| {
                nodes
                    .get(&ImageRef::new(region.clone(), image.clone()))
                    .map(|node| node.snapshots.to_vec())
            })),
            Err(e) => Lookup::Failed(format!(
                "lineage of the {} image(s) in the Recycle Bin: {e}",
                bin.len()
            )),
        }
    }

    /// The share readings of the last days the ledger holds for the region (none when they
    /// cannot be read: EC2 is asked instead).
    async fn share_readings(&self, region: &Region) -> SnapshotShares {
        let Some(account) = &self.own_account else {
            return SnapshotShares::default();
        };
        self.ledger.snapshot_shares(account, region).await.unwrap_or_else(|e| {
            tracing::warn!(region = %region, error = %e, "snapshot share readings unreadable; asking EC2");
            SnapshotShares::default()
        })
    }

    /// The create-volume permissions of the leads: from the readings of the last days where no
    /// event contradicts them, from what was read before the listing ended, else from EC2,
    /// [`CONCURRENCY`] lookups at a time. The leads' new readings are recorded for the next
    /// runs; the early reads of snapshots that were not leads are dropped.
    async fn all_shares(
        &self,
        region: &Region,
        snapshots: Vec<SnapshotId>,
        early: EarlyShares,
        now: DateTime<Utc>,
    ) -> HashMap<SnapshotId, Lookup<Vec<Grantee>>> {
        let EarlyShares { ledger, mut asked, read_at, note_sweep } = early;
        let ledger = match ledger {
            Some(ledger) => ledger,
            None if snapshots.is_empty() => SnapshotShares::default(),
            None => self.share_readings(region).await,
        };
        let mut shares = HashMap::new();
        let (mut fresh, mut ask) = (Vec::new(), Vec::new());
        for snapshot in snapshots {
            if let Some(grantees) = ledger.shares_of(&snapshot, now) {
                shares.insert(snapshot, Lookup::Known(grantees));
            } else if let Some(lookup) = asked.remove(&snapshot) {
                fresh.push((snapshot, lookup));
            } else {
                ask.push(snapshot);
            }
        }
        fresh.extend(self.ask_shares(region, ask).await);
        let readings: Vec<(SnapshotId, Vec<Grantee>)> = fresh
            .iter()
            .filter_map(|(snapshot, lookup)| match lookup {
                Lookup::Known(grantees) => Some((snapshot.clone(), grantees.clone())),
                Lookup::Failed(_) => None,
            })
            .collect();
        let record = !readings.is_empty() || note_sweep;
        if let (Some(account), true) = (&self.own_account, record) {
            let ledger = &self.ledger;
            if let Err(e) =
                ledger.record_snapshot_shares(account, region, read_at, &readings, note_sweep).await
            {
                tracing::warn!(region = %region, error = %e, "snapshot share readings not recorded; the next run asks EC2 again");
            }
        }
        shares.extend(fresh);
        shares
    }

    /// The create-volume permissions of `snapshots` from EC2, [`CONCURRENCY`] at a time.
    async fn ask_shares(
        &self,
        region: &Region,
        snapshots: Vec<SnapshotId>,
    ) -> HashMap<SnapshotId, Lookup<Vec<Grantee>>> {
        self.read_shares(region, stream::iter(snapshots)).await
    }

    /// [`Self::ask_shares`] of the snapshots a stream yields, as they come.
    async fn read_shares(
        &self,
        region: &Region,
        snapshots: impl Stream<Item = SnapshotId>,
    ) -> HashMap<SnapshotId, Lookup<Vec<Grantee>>> {
        snapshots
            .map(|snapshot| async move {
                let shares = self.shares(region, &snapshot).await;
                (snapshot, shares)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }

    async fn shares(&self, region: &Region, snapshot: &SnapshotId) -> Lookup<Vec<Grantee>> {
        match self.ec2.create_volume_permissions(region, snapshot).await {
            Ok(grantees) => Lookup::Known(grantees),
            Err(e) => Lookup::Failed(e.to_string()),
        }
    }

    fn report(&self, trigger: String) -> RunReport {
        RunReport {
            trigger,
            mode: self.settings.mode,
            outcomes: Vec::new(),
            not_from_images: 0,
            with_live_images: 0,
            errors: Vec::new(),
            warnings: Vec::new(),
            price_per_gb_month: self.settings.price_per_gb_month,
            audited: 0,
        }
    }

    /// Decides each candidate, carries the decision out and records it, [`ACTION_CONCURRENCY`]
    /// candidates at a time; `progress(done, total)` after each group. Deletions overlap so
    /// that DeleteSnapshot's bucket (5 a second), not each deletion's chain of requests, sets
    /// the pace; the EC2 clients' pacing keeps each action within its bucket.
    async fn carry_out(
        &self,
        report: &mut RunReport,
        candidates: Vec<Candidate>,
        now: DateTime<Utc>,
        fates: &mut Fates,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) {
        let total = candidates.len();
        // The Recycle Bin rules of each region a deletion may be made in, asked once first.
        let mut bin_rules = BinRules::new();
        for c in &candidates {
            if decide(c, self.settings, self.own_account.as_ref(), now) == Verdict::Delete {
                self.retention_rules(&mut bin_rules, &c.region, report).await;
            }
        }
        let (mut candidates, mut done) = (candidates.into_iter().peekable(), 0);
        while candidates.peek().is_some() {
            let group: Vec<Candidate> = candidates.by_ref().take(ACTION_CONCURRENCY).collect();
            let acted: Vec<(Candidate, Verdict, Action, Notes)> =
                stream::iter(group.into_iter().map(|c| {
                    let bin_rules = &bin_rules;
                    async move {
                        let mut notes = Notes::default();
                        let verdict = self.verdict(&c, bin_rules, &mut notes, now);
                        let (verdict, action) = self.act(&c, verdict, bin_rules, &mut notes).await;
                        (c, verdict, action, notes)
                    }
                }))
                .buffered(ACTION_CONCURRENCY)
                .collect()
                .await;
            done += acted.len();
            let outcomes = acted.into_iter().map(|(c, verdict, action, notes)| {
                notes.add_to(report);
                if let Action::Failed(err) = &action {
                    report.errors.push(format!("deleting {}: {err}", c.snapshot.snapshot_id));
                }
                let outcome = outcome(c, verdict, action);
                tracing::info!(snapshot = %outcome.snapshot_id, source_image = ?outcome.source_image, decision = outcome.decision,
                    reason = %outcome.reason, action = ?outcome.action, mode = report.mode.as_str(), "snapshot decision");
                outcome
            });
            let outcomes: Vec<Outcome> = outcomes.collect();
            self.record_all(report, outcomes, now, fates).await;
            progress(done, total);
        }
    }

    /// The policy's verdict on `c`. Deleted, a snapshot must stay recoverable: a rule in effect
    /// in its region keeps it with its tags and the reaper's. Report mode asks too, to plan
    /// what enforce mode would do.
    fn verdict(
        &self,
        c: &Candidate,
        bin_rules: &BinRules,
        notes: &mut Notes,
        now: DateTime<Utc>,
    ) -> Verdict {
        let verdict = decide(c, self.settings, self.own_account.as_ref(), now);
        if verdict != Verdict::Delete {
            return verdict;
        }
        match bin_rules.get(&c.region) {
            None => Verdict::Keep(Keep::LookupFailed("the Recycle Bin rules: not asked".into())),
            Some(Err(e)) => {
                Verdict::Keep(Keep::LookupFailed(format!("the Recycle Bin rules: {e}")))
            }
            Some(Ok(rules)) if super::recoverable(rules, &c.snapshot.tags) => Verdict::Delete,
            Some(Ok(rules)) => {
                // A region without rules is one warning of the run (`retention_rules`).
                if !rules.is_empty() {
                    let keep = Keep::NotRecoverable(c.region.clone());
                    notes.warnings.push(format!("{}: {keep}", c.snapshot.snapshot_id));
                }
                Verdict::Keep(Keep::NotRecoverable(c.region.clone()))
            }
        }
    }

    /// Carries `verdict` out: a keep is kept; a deletion is planned in report mode, left for the
    /// next run once the run's time is nearly up, else made after one more look
    /// ([`Self::delete`]), whose verdict then stands.
    async fn act(
        &self,
        c: &Candidate,
        verdict: Verdict,
        bin_rules: &BinRules,
        notes: &mut Notes,
    ) -> (Verdict, Action) {
        match (verdict, self.settings.mode) {
            (v @ Verdict::Keep(_), _) => (v, Action::Kept),
            (Verdict::Delete, Mode::Report) => (Verdict::Delete, Action::Planned),
            (Verdict::Delete, Mode::Enforce) if crate::budget::out_of_time(self.stop_by) => {
                (Verdict::Delete, Action::LeftForNextRun)
            }
            (Verdict::Delete, Mode::Enforce) => {
                let rules = match bin_rules.get(&c.region) {
                    Some(Ok(rules)) => rules.as_slice(),
                    _ => &[],
                };
                let snapshot = &c.snapshot.snapshot_id;
                let (verdict, action) = self.delete(&c.region, snapshot, rules).await;
                match &verdict {
                    // The last check before deleting could not be made: a failure, not a decision.
                    Verdict::Keep(Keep::LookupFailed(why)) => {
                        notes.errors.push(format!("{snapshot} kept at the last check: {why}"))
                    }
                    // Tagged since the facts were gathered so that no rule keeps it.
                    Verdict::Keep(keep @ Keep::NotRecoverable(_)) => {
                        notes.warnings.push(format!("{snapshot}: {keep}"))
                    }
                    _ => {}
                }
                (verdict, action)
            }
        }
    }

    /// The Recycle Bin rules in effect in `region`, asked at the first snapshot to delete there and kept
    /// in `cache` for the run; no rule is one warning of the run, a failed lookup one error.
    async fn retention_rules<'c>(
        &self,
        cache: &'c mut BinRules,
        region: &Region,
        report: &mut RunReport,
    ) -> &'c Result<Vec<super::RetentionRule>, String> {
        if !cache.contains_key(region) {
            let rules = self.ec2.snapshot_retention_rules(region).await.map_err(|e| e.to_string());
            match &rules {
                Ok(rules) if rules.is_empty() => {
                    report.warnings.push(Keep::NotRecoverable(region.clone()).to_string())
                }
                Ok(_) => {}
                Err(e) => report.errors.push(format!("the Recycle Bin rules of {region}: {e}")),
            }
            cache.insert(region.clone(), rules);
        }
        &cache[region]
    }

    /// Looks once more at the snapshot, then tags and deletes it ([`tag_then_remove`]). A failed
    /// delete takes the tag off again, so the snapshot does not stay deletable under the
    /// reaper's IAM policy.
    async fn delete(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
        bin_rules: &[super::RetentionRule],
    ) -> (Verdict, Action) {
        if let Some(keep) = self.last_look(region, snapshot, bin_rules).await {
            return (Verdict::Keep(keep), Action::Kept);
        }
        let deletion = Deletion { ec2: self.ec2, region, snapshot };
        let action = match tag_then_remove(&deletion).await {
            Removal::Removed => Action::Deleted,
            Removal::NotTagged(e) => Action::Failed(format!("tagging before delete: {e}")),
            Removal::Refused { error, untag_failed } => {
                Action::Failed(refusal(error, untag_failed, super::REAPED_TAG_KEY))
            }
            // Not reached: a deletion takes every failure as a refusal (`Deletion::presence`).
            Removal::Unsure { error, presence } => {
                Action::Failed(format!("{error}; whether it is still there is unknown: {presence}"))
            }
        };
        (Verdict::Delete, action)
    }

    /// Why the snapshot must stay after all, if it must: someone tagged it exempt, none of
    /// `bin_rules` would keep it with its tags now, an image uses it (one may have been
    /// registered from it since the facts were gathered), it is shared, or it is gone.
    async fn last_look(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
        bin_rules: &[super::RetentionRule],
    ) -> Option<Keep> {
        match self.ec2.snapshot(region, snapshot).await {
            Ok(Some(info)) => {
                if let Some(value) = info.tags.get(&self.settings.exempt_tag_key) {
                    let tag = self.settings.exempt_tag_key.clone();
                    return Some(Keep::Exempt { tag, value: value.clone() });
                }
                // Recoverable with the tags it has now, plus the reaper's.
                if !super::recoverable(bin_rules, &info.tags) {
                    return Some(Keep::NotRecoverable(region.clone()));
                }
            }
            Ok(None) => return Some(Keep::LookupFailed("it is no longer there".into())),
            Err(e) => return Some(Keep::LookupFailed(e.to_string())),
        }
        match self.ec2.images_using(region, snapshot).await {
            Ok(images) if images.is_empty() => {}
            Ok(images) => return Some(Keep::UsedBy(images)),
            Err(e) => return Some(Keep::LookupFailed(e.to_string())),
        }
        // The sweep may have decided on a reading of the last days: ask EC2 now.
        match self.ec2.create_volume_permissions(region, snapshot).await {
            Ok(grantees) if grantees.is_empty() => None,
            Ok(grantees) => Some(Keep::SharedWith(grantees)),
            Err(e) => Some(Keep::LookupFailed(e.to_string())),
        }
    }

    /// Adds a decision to the report and notes the snapshot's fate on its image's lineage node
    /// ([`Self::record_all`] of one).
    async fn record(
        &self,
        report: &mut RunReport,
        outcome: Outcome,
        now: DateTime<Utc>,
        fates: &mut Fates,
    ) {
        self.record_all(report, vec![outcome], now, fates).await;
    }

    /// Adds decisions to the report and notes each snapshot's fate on its image's lineage node
    /// (unless the node already says so; in report mode only what AWS did), the notes written
    /// [`ACTION_CONCURRENCY`] at a time (each write is conditional, so two for one node do not
    /// undo each other). The audit items are written [`AUDIT_BATCH`] at a time, and at once
    /// after a deletion was tried, so a run cut short never loses the record of what it deleted.
    async fn record_all(
        &self,
        report: &mut RunReport,
        outcomes: Vec<Outcome>,
        now: DateTime<Utc>,
        fates: &mut Fates,
    ) {
        let writes: Vec<Option<FateWrite>> =
            outcomes.iter().map(|o| fate_write(o, self.settings.mode, now, fates)).collect();
        let results: Vec<Option<Result<(), StoreError>>> =
            stream::iter(outcomes.iter().zip(&writes).map(|(outcome, write)| async move {
                let w = write.as_ref()?;
                Some(
                    self.audit
                        .record_fate(&w.at, &outcome.snapshot_id, &w.fate, w.map_exists)
                        .await,
                )
            }))
            .buffered(ACTION_CONCURRENCY)
            .collect()
            .await;
        let destructive =
            outcomes.iter().any(|o| matches!(o.action, Action::Deleted | Action::Failed(_)));
        for ((outcome, write), result) in outcomes.into_iter().zip(writes).zip(results) {
            match (write, result) {
                (Some(w), Some(Ok(()))) => {
                    if let Some(Some(known)) = fates.get_mut(&w.at) {
                        known.insert(outcome.snapshot_id.to_string(), w.fate);
                    }
                }
                (Some(w), Some(Err(e))) => {
                    report.errors.push(format!("fate of {} on {}: {e}", outcome.snapshot_id, w.at))
                }
                _ => {}
            }
            report.outcomes.push(outcome);
        }
        if destructive || report.outcomes.len() - report.audited >= AUDIT_BATCH {
            self.flush_audit(report, now).await;
        }
    }

    /// Writes the audit items of the decisions that have none yet.
    async fn flush_audit(&self, report: &mut RunReport, now: DateTime<Utc>) {
        let waiting = &report.outcomes[report.audited..];
        if waiting.is_empty() {
            return;
        }
        let entries: Vec<AuditEntry> = waiting
            .iter()
            .map(|outcome| AuditEntry {
                outcome,
                trigger: &report.trigger,
                mode: report.mode.as_str(),
                at: now,
            })
            .collect();
        let result = self.audit.record_all(&entries).await;
        drop(entries);
        if let Err(e) = result {
            let ids: Vec<&str> =
                report.outcomes[report.audited..].iter().map(|o| o.snapshot_id.as_str()).collect();
            report.errors.push(format!("audit of {}: {e}", ids.join(", ")));
        }
        report.audited = report.outcomes.len();
    }

    async fn finish(
        &self,
        mut report: RunReport,
        now: DateTime<Utc>,
    ) -> Result<RunReport, ReaperError> {
        self.flush_audit(&mut report, now).await;
        if let Some(notifier) = self.notifier {
            if !report.outcomes.is_empty()
                || !report.errors.is_empty()
                || !report.warnings.is_empty()
            {
                notifier.publish(&report_notification(&report)).await?;
            }
        }
        Ok(report)
    }
}

/// The sweep's leads: the owned snapshots whose description AWS wrote for an image that is
/// neither registered (`index`) nor in the Recycle Bin (`in_bin`), each with that image. The
/// others are only counted in `report`.
/// A fate to note on an image's lineage node.
struct FateWrite {
    at: ImageRef,
    fate: String,
    /// Whether the node's map of fates exists already (which write to try first).
    map_exists: bool,
}

/// The note `outcome` leaves on its image's node, unless the node says so already or there is
/// none (a plan is not a fate: the audit items and the run's summary hold it).
fn fate_write(
    outcome: &Outcome,
    mode: Mode,
    now: DateTime<Utc>,
    fates: &Fates,
) -> Option<FateWrite> {
    let fate = match (&outcome.action, mode) {
        (Action::Deleted, _) => {
            format!("deleted {} (recoverable from the Recycle Bin)", now.to_rfc3339())
        }
        (Action::DeletedByAws, _) => "deleted by AWS with the image".to_owned(),
        (Action::Kept, Mode::Enforce) => format!("kept: {}", outcome.reason),
        (Action::Failed(e), _) => format!("delete failed: {e}"),
        (Action::Planned | Action::Kept | Action::LeftForNextRun, _) => return None,
    };
    let at = ImageRef::new(outcome.region.clone(), outcome.source_image.clone()?);
    let map_exists = match fates.get(&at)? {
        Some(known) if known.get(outcome.snapshot_id.as_str()) == Some(&fate) => return None,
        Some(known) => !known.is_empty(),
        None => false,
    };
    Some(FateWrite { at, fate, map_exists })
}

fn sweep_leads(
    region: &Region,
    snapshots: Vec<SnapshotInfo>,
    index: &super::ImageIndex,
    in_bin: &BTreeSet<ImageId>,
    report: &mut RunReport,
) -> Vec<(SnapshotInfo, ImageRef)> {
    let mut leads = Vec::new();
    for info in snapshots {
        let Some(source) = image_in_description(&info.description) else {
            report.not_from_images += 1;
            continue;
        };
        if index.images.contains(&source) || in_bin.contains(&source) {
            report.with_live_images += 1;
            continue;
        }
        leads.push((info, ImageRef::new(region.clone(), source)));
    }
    leads
}

/// What DeregisterImage was asked to do with the image's snapshots, and what it said it did.
struct AwsDeletion<'a> {
    asked: bool,
    results: &'a [SnapshotDeletion],
}

impl AwsDeletion<'_> {
    /// Whether AWS deleted `snapshot` with the image. With the response's results only a
    /// `success` counts; a record without them (older ones) is taken at its request's word.
    fn deleted(&self, snapshot: &SnapshotId) -> bool {
        if self.results.is_empty() {
            return self.asked;
        }
        self.results
            .iter()
            .any(|r| &r.snapshot == snapshot && r.code == SnapshotReturnCode::Success)
    }
}

/// Whether the lineage node of `image` already notes a fate for `snapshot`.
fn fate_known(fates: &Fates, image: &ImageRef, snapshot: &SnapshotId) -> bool {
    matches!(fates.get(image), Some(Some(known)) if known.contains_key(snapshot.as_str()))
}

/// The live users of a snapshot plus the images in the Recycle Bin that use it.
fn with_bin_users(
    bin: &Lookup<BinUsers>,
    snapshot: &SnapshotId,
    source: Option<&ImageId>,
    live: Lookup<Vec<ImageId>>,
) -> Lookup<Vec<ImageId>> {
    match bin {
        Lookup::Known(bin) => bin.add_to(snapshot, source, live),
        Lookup::Failed(why) => Lookup::Failed(format!("images in the Recycle Bin: {why}")),
    }
}

/// A snapshot DeregisterImage deleted with `image` (`deleteAssociatedSnapshots`).
fn deleted_with(image: &ImageRef, snapshot_id: SnapshotId, found_by: FoundBy) -> Outcome {
    Outcome {
        region: image.region.clone(),
        snapshot_id,
        size_gib: 0,
        source_image: Some(image.image_id.clone()),
        found_by,
        decision: "none",
        reason: "DeregisterImage deleted the associated snapshots (deleteAssociatedSnapshots)"
            .into(),
        action: Action::DeletedByAws,
    }
}

/// One candidate's decision and what came of it.
fn outcome(c: Candidate, verdict: Verdict, action: Action) -> Outcome {
    Outcome {
        region: c.region,
        snapshot_id: c.snapshot.snapshot_id,
        size_gib: c.snapshot.size_gib,
        source_image: c.source_image,
        found_by: c.found_by,
        decision: if verdict == Verdict::Delete { "delete" } else { "keep" },
        reason: verdict.reason(),
        action,
    }
}

/// How many of a run's snapshots came to each end.
struct Tally {
    deleted: usize,
    planned: usize,
    kept: usize,
    by_aws: usize,
    failed: usize,
    left: usize,
}

impl Tally {
    fn of(report: &RunReport) -> Self {
        Self {
            deleted: report.count(|a| matches!(a, Action::Deleted)),
            planned: report.count(|a| matches!(a, Action::Planned)),
            kept: report.count(|a| matches!(a, Action::Kept)),
            by_aws: report.count(|a| matches!(a, Action::DeletedByAws)),
            failed: report.failures(),
            left: report.left_for_next_run(),
        }
    }
}

/// `gib` and what it costs a month.
fn money(report: &RunReport, gib: u64) -> String {
    format!("{gib} GiB, ${:.2}/month", report.monthly_dollars(gib))
}

/// The one summary notification of a run.
pub fn report_notification(report: &RunReport) -> Notification {
    let t = Tally::of(report);
    let severity =
        if t.failed > 0 || t.left > 0 || !report.errors.is_empty() || !report.warnings.is_empty() {
            Severity::Warning
        } else {
            Severity::Info
        };
    let planned = if report.mode == Mode::Report {
        format!("{} ({})", t.planned, money(report, report.planned_gib()))
    } else {
        String::new()
    };
    let warnings =
        if report.warnings.is_empty() { String::new() } else { report.warnings.len().to_string() };
    Notification::new(severity, "snapshot-reaper", report_subject(report, &t))
        .text(report_text(report, &t))
        .field("Mode", report.mode.as_str())
        .field("Deleted", format!("{} ({})", t.deleted, money(report, report.deleted_gib())))
        .field("Would delete", planned)
        .field("Kept", t.kept.to_string())
        .field("Left for the next run", if t.left > 0 { t.left.to_string() } else { String::new() })
        .field("Errors", (report.errors.len()).to_string())
        .field("Warnings", warnings)
        .field("Run", report.trigger.clone())
        .details(json!({ "report": report }))
}

/// What the run did (enforce) or would do (report), in one line.
fn report_subject(report: &RunReport, t: &Tally) -> String {
    let Tally { deleted, planned, kept, failed, left, .. } = t;
    match report.mode {
        Mode::Enforce => {
            let left_note =
                if *left > 0 { format!(", {left} left for the next run") } else { String::new() };
            format!(
                "snapshot reaper: deleted {deleted} ({}), kept {kept}, {failed} failed{left_note}",
                money(report, report.deleted_gib())
            )
        }
        Mode::Report => format!(
            "snapshot reaper (report mode): would delete {planned} ({}), kept {kept}",
            money(report, report.planned_gib())
        ),
    }
}

/// Each snapshot's line, the run's errors and warnings, and what comes next.
fn report_text(report: &RunReport, t: &Tally) -> String {
    let mut text = format!("Run {} in {} mode.\n", report.trigger, report.mode.as_str());
    for o in &report.outcomes {
        let source = o.source_image.as_ref().map(|i| format!(" (from {i})")).unwrap_or_default();
        text.push_str(&format!(
            "  {} {} {} GiB{source}: {}\n",
            verb(&o.action),
            o.snapshot_id,
            o.size_gib,
            o.reason
        ));
    }
    for e in &report.errors {
        text.push_str(&format!("  error: {e}\n"));
    }
    for w in &report.warnings {
        text.push_str(&format!("  warning: {w}\n"));
    }
    if !report.errors.is_empty() && !report.trigger.starts_with("sweep:") {
        text.push_str("Lambda delivers this event again: what could not be decided now is decided then, in another summary.\n");
    }
    if t.by_aws > 0 {
        text.push_str(&format!("{} snapshot(s) were deleted by AWS with their image.\n", t.by_aws));
    }
    if t.left > 0 {
        text.push_str(&format!(
            "The run's time ran out: {} deletion(s) are left for the next sweep.\n",
            t.left
        ));
    }
    text
}

/// What happened to a snapshot, as the summary says it.
fn verb(action: &Action) -> &'static str {
    match action {
        Action::Deleted => "deleted",
        Action::Planned => "would delete",
        Action::Kept => "kept",
        Action::Failed(_) => "FAILED to delete",
        Action::DeletedByAws => "deleted by AWS",
        Action::LeftForNextRun => "left for the next run",
    }
}
