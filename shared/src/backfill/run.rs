//! The backfill run: CloudTrail history through the recorder, then every image AWS lists, with
//! the claims of its other sources, written through the same lineage store.
//!
//! Idempotent and resumable: every write carries a key derived from what it says (the
//! CloudTrail eventID, or the backfill's own key), so a second run, or a run after an
//! interrupted one, writes only what is missing. A region EC2 cannot list, or a source that
//! fails for one image, is reported and skipped; only a failure to write the lineage stops the
//! run (run it again to resume).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{locate, node_writes, Claim, DescriptionLead, ListedImage, Unresolved};
use crate::aws::backfill::{CloudTrailHistory, Ec2Estate, LINEAGE_EVENT_NAMES};
use crate::aws::ec2::Ec2Catalogue;
use crate::aws::lineage_table::LineageTable;
use crate::catalogue::ImageCatalogue;
use crate::event::parse_value;
use crate::ids::{AccountId, ImageId, ImageRef, Region};
use crate::lineage::{EdgeSource, LineageStore, Origin, StateChange, StateFlag, WriteOutcome};
use crate::recorder::{self, record_node, Outcome, RecordError, Written};

/// What the backfill did in one account and region.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionReport {
    pub account: Option<AccountId>,
    pub region: Option<Region>,
    /// CloudTrail records replayed: recorded, already recorded, conflicting, ignored.
    pub events: EventCounts,
    pub images_listed: usize,
    /// Edges written, by the sources that name them (`api+ancestry`, …).
    pub edges_written: BTreeMap<String, usize>,
    /// Nodes written without a parent (no source names one).
    pub roots_written: usize,
    /// Writes already made by an earlier run (or by the recorder): nothing changed.
    pub unchanged: usize,
    pub conflicts: Vec<String>,
    pub unresolved: Vec<Unresolved>,
    /// Sources that could not be read here (the rest of the region still ran).
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EventCounts {
    pub recorded: usize,
    pub duplicate: usize,
    pub conflict: usize,
    pub ignored: usize,
}

impl RegionReport {
    /// Whether this run wrote anything.
    pub fn changed(&self) -> bool {
        self.events.recorded
            + self.events.conflict
            + self.roots_written
            + self.edges_written.values().sum::<usize>()
            > 0
    }
}

/// A step of the run, for progress display.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// Starting a phase in a region.
    Phase { region: &'a Region, what: &'static str },
    /// `done` of `total` images written in `region`.
    Images { region: &'a Region, done: usize, total: usize },
}

/// The sources of one account.
pub struct Backfill<'a> {
    pub account: Option<AccountId>,
    pub estate: &'a Ec2Estate,
    pub catalogue: &'a Ec2Catalogue,
    /// `None` skips CloudTrail (`--no-events`).
    pub history: Option<&'a CloudTrailHistory>,
    pub lineage: &'a LineageTable,
}

impl Backfill<'_> {
    /// Backfills `regions` with CloudTrail records since `since`.
    pub async fn run(
        &self,
        regions: &[Region],
        since: DateTime<Utc>,
        progress: &dyn Fn(Progress),
    ) -> Result<Vec<RegionReport>, RecordError> {
        let mut reports = self.empty_reports(regions);
        // 1. What CloudTrail recorded: the authoritative source, through the recorder itself.
        if let Some(history) = self.history {
            for region in regions {
                progress(Progress::Phase { region, what: "CloudTrail history" });
                let report = reports.get_mut(region).expect("every region has a report");
                self.replay_history(history, region, since, report).await?;
            }
        }
        // 2. What EC2 lists, in every region first: a description names its source by id only,
        //    and the regions' listings together say where that id lives.
        let listing = self.list_estate(regions, &mut reports, progress).await;
        // 3. Each image with every claim on its parent, most trusted first.
        for (region, images) in &listing.listed {
            let report = reports.get_mut(region).expect("every region has a report");
            for (done, image) in images.iter().enumerate() {
                progress(Progress::Images { region, done, total: images.len() });
                let claims = self.claims(image, &listing, report).await?;
                self.write_claims(image, &claims, report).await?;
                if image.state == "available" {
                    self.record_available(image).await?;
                }
            }
            progress(Progress::Images { region, done: images.len(), total: images.len() });
        }
        Ok(reports.into_values().collect())
    }

    /// One empty report per region, so that a region with nothing to say is still reported.
    fn empty_reports(&self, regions: &[Region]) -> BTreeMap<Region, RegionReport> {
        regions
            .iter()
            .map(|r| {
                let report = RegionReport {
                    account: self.account.clone(),
                    region: Some(r.clone()),
                    ..Default::default()
                };
                (r.clone(), report)
            })
            .collect()
    }

    /// The images and snapshot descriptions of every region. A region whose images cannot be
    /// listed is skipped; one whose snapshots cannot be listed goes on without descriptions.
    async fn list_estate(
        &self,
        regions: &[Region],
        reports: &mut BTreeMap<Region, RegionReport>,
        progress: &dyn Fn(Progress),
    ) -> Listing {
        let mut listed: BTreeMap<Region, Vec<ListedImage>> = BTreeMap::new();
        let mut leads: BTreeMap<ImageRef, Vec<DescriptionLead>> = BTreeMap::new();
        for region in regions {
            progress(Progress::Phase { region, what: "images and snapshots" });
            let report = reports.get_mut(region).expect("every region has a report");
            match self.estate.images(region).await {
                Ok(images) => {
                    report.images_listed = images.len();
                    listed.insert(region.clone(), images);
                }
                Err(err) => {
                    report.errors.push(format!("{err}: region skipped"));
                    continue;
                }
            }
            match self.estate.snapshot_leads(region).await {
                Ok(found) => {
                    for (_, lead) in found {
                        leads
                            .entry(ImageRef::new(region.clone(), lead.image().clone()))
                            .or_default()
                            .push(lead);
                    }
                }
                Err(err) => report.errors.push(format!("{err}: snapshot descriptions not used")),
            }
        }
        Listing::new(listed, leads)
    }

    /// Every claim the sources make on `image`'s parent, most trusted first.
    async fn claims(
        &self,
        image: &ListedImage,
        listing: &Listing,
        report: &mut RegionReport,
    ) -> Result<Vec<Claim>, RecordError> {
        let mut claims = Vec::new();
        if let Some(source) = &image.source {
            claims.push(Claim { parent: source.clone(), source: EdgeSource::Api, origin: None });
            if !listing.listed_refs.contains(source) {
                // The chain leaves what this account lists: ask AWS for the rest of it.
                self.ancestry(image, &mut claims, report).await?;
            }
        }
        for lead in listing.leads.get(&image.image).map(Vec::as_slice).unwrap_or_default() {
            self.description_claim(image, lead, &listing.known, &mut claims, report).await;
        }
        Ok(claims)
    }

    /// Writes `image`'s node with its claims, counting in `report` what each write did.
    async fn write_claims(
        &self,
        image: &ListedImage,
        claims: &[Claim],
        report: &mut RegionReport,
    ) -> Result<(), RecordError> {
        for facts in node_writes(image, claims) {
            let sources = facts.sources.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("+");
            match record_node(self.lineage, &facts).await? {
                Written::Done(WriteOutcome::Recorded) if facts.sources.is_empty() => {
                    report.roots_written += 1
                }
                Written::Done(WriteOutcome::Recorded) => {
                    *report.edges_written.entry(sources).or_default() += 1
                }
                Written::Done(WriteOutcome::Duplicate) => report.unchanged += 1,
                Written::Conflict(why) => report.conflicts.push(why),
                Written::Cycle => report.unresolved.push(Unresolved {
                    image: image.image.clone(),
                    source: facts.sources.first().copied().unwrap_or(EdgeSource::Api),
                    detail: "would close a cycle in the lineage".into(),
                }),
            }
        }
        Ok(())
    }

    /// Records that a listed `available` image is available, with its snapshots: the state the
    /// recorder would have written from its state-change event.
    async fn record_available(&self, image: &ListedImage) -> Result<(), RecordError> {
        let change = StateChange {
            image: image.image.clone(),
            flag: StateFlag::Available,
            event_id: format!("backfill:{}:available", image.image),
            event_name: "Backfill".into(),
            at: Utc::now(),
            snapshots: image.snapshots.clone(),
            snapshots_deleted_by_aws: false,
            snapshot_results: Vec::new(),
            actor_arn: None,
        };
        self.lineage.record_state(&change).await.map(|_| ()).map_err(RecordError::Store)
    }

    async fn replay_history(
        &self,
        history: &CloudTrailHistory,
        region: &Region,
        since: DateTime<Utc>,
        report: &mut RegionReport,
    ) -> Result<(), RecordError> {
        for name in LINEAGE_EVENT_NAMES {
            let records = match history.records(region, name, since).await {
                Ok(records) => records,
                Err(err) => {
                    report.errors.push(format!("{err}: {name} history not replayed"));
                    continue;
                }
            };
            for record in records {
                match recorder::record(&parse_value(&record), self.catalogue, self.lineage).await? {
                    Outcome::Recorded { .. } => report.events.recorded += 1,
                    Outcome::Duplicate { .. } => report.events.duplicate += 1,
                    Outcome::Conflict { summary } => {
                        report.events.conflict += 1;
                        report.conflicts.push(summary);
                    }
                    Outcome::Ignored { .. } => report.events.ignored += 1,
                }
            }
        }
        Ok(())
    }

    /// `GetImageAncestry` for `image`: its own link is a claim; the links above it are written
    /// at once as claims about those ancestors (which this account does not list).
    async fn ancestry(
        &self,
        image: &ListedImage,
        claims: &mut Vec<Claim>,
        report: &mut RegionReport,
    ) -> Result<(), RecordError> {
        let links = match self.estate.ancestry(&image.image).await {
            Ok(links) => links,
            Err(err) => {
                report.unresolved.push(Unresolved {
                    image: image.image.clone(),
                    source: EdgeSource::Ancestry,
                    detail: err.to_string(),
                });
                return Ok(());
            }
        };
        for (child, parent) in links {
            let claim = Claim { parent, source: EdgeSource::Ancestry, origin: None };
            if child == image.image {
                claims.push(claim);
                continue;
            }
            let foreign = ListedImage {
                image: child,
                owner: None,
                name: None,
                created_at: None,
                state: String::new(),
                snapshots: Vec::new(),
                source: None,
            };
            for facts in node_writes(&foreign, &[claim]) {
                match record_node(self.lineage, &facts).await? {
                    Written::Done(WriteOutcome::Recorded) => {
                        *report.edges_written.entry("ancestry".into()).or_default() += 1
                    }
                    Written::Done(WriteOutcome::Duplicate) => report.unchanged += 1,
                    Written::Conflict(why) => report.conflicts.push(why),
                    Written::Cycle => {}
                }
            }
        }
        Ok(())
    }

    /// The claim a snapshot description makes, if it can be pinned to one image.
    async fn description_claim(
        &self,
        image: &ListedImage,
        lead: &DescriptionLead,
        known: &BTreeMap<Region, Vec<ImageId>>,
        claims: &mut Vec<Claim>,
        report: &mut RegionReport,
    ) {
        let unresolved = |detail: String| Unresolved {
            image: image.image.clone(),
            source: EdgeSource::SnapshotDescription,
            detail,
        };
        let claim = match lead {
            DescriptionLead::Copied { source, .. } => {
                let by_api = image
                    .source
                    .as_ref()
                    .filter(|s| &s.image_id == source)
                    .map(|s| s.region.clone());
                match by_api.or_else(|| locate(source, known)) {
                    Some(region) => Claim {
                        parent: ImageRef::new(region, source.clone()),
                        source: EdgeSource::SnapshotDescription,
                        origin: Some(Origin::CopyImage),
                    },
                    None => {
                        report.unresolved.push(unresolved(format!(
                            "copied from {source}, whose region is not known"
                        )));
                        return;
                    }
                }
            }
            DescriptionLead::Created { instance, .. } => {
                match self.catalogue.launch_image_of(&image.image.region, instance).await {
                    Ok(Some(launch)) => Claim {
                        parent: ImageRef::new(image.image.region.clone(), launch),
                        source: EdgeSource::SnapshotDescription,
                        origin: Some(Origin::CreateImage),
                    },
                    Ok(None) => {
                        report.unresolved.push(unresolved(format!(
                            "created from {instance}, which no longer exists"
                        )));
                        return;
                    }
                    Err(err) => {
                        report.unresolved.push(unresolved(err.to_string()));
                        return;
                    }
                }
            }
        };
        if !claims.contains(&claim) {
            claims.push(claim);
        }
    }
}

/// What EC2 lists in every region, read before any image is written.
struct Listing {
    listed: BTreeMap<Region, Vec<ListedImage>>,
    /// The snapshot descriptions' leads, by the image they were made for.
    leads: BTreeMap<ImageRef, Vec<DescriptionLead>>,
    /// The listed ids per region: where an id named in a description lives.
    known: BTreeMap<Region, Vec<ImageId>>,
    /// Every listed image; a source outside these leaves what this account lists.
    listed_refs: BTreeSet<ImageRef>,
}

impl Listing {
    fn new(
        listed: BTreeMap<Region, Vec<ListedImage>>,
        leads: BTreeMap<ImageRef, Vec<DescriptionLead>>,
    ) -> Self {
        let known = listed
            .iter()
            .map(|(r, images)| {
                (r.clone(), images.iter().map(|i| i.image.image_id.clone()).collect())
            })
            .collect();
        let listed_refs = listed.values().flatten().map(|i| i.image.clone()).collect();
        Self { listed, leads, known, listed_refs }
    }
}
