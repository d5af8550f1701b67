//! What AWS still knows about the images of an account: DescribeImages with its source fields,
//! snapshot descriptions, `GetImageAncestry`, and CloudTrail's 90-day event history.

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ec2::{failure, owned_images, snapshots_of_image, IMAGE_PAGE};
use super::Clients;
use crate::backfill::{parse_description, DescriptionLead, ListedImage};
use crate::catalogue::CatalogueError;
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};

/// The EC2 side of the backfill, in one account.
#[derive(Clone)]
pub struct Ec2Estate {
    clients: Clients,
}

fn region_of(raw: Option<&str>) -> Option<Region> {
    raw.and_then(Region::parse)
}

impl Ec2Estate {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }

    /// Every owned image in `region` (disabled and deprecated included), all pages.
    pub async fn images(&self, region: &Region) -> Result<Vec<ListedImage>, CatalogueError> {
        let images = owned_images(&self.clients, region, IMAGE_PAGE).await?;
        Ok(images
            .iter()
            .filter_map(|i| {
                let id = ImageId::parse(i.image_id()?)?;
                let source = match (
                    i.source_image_id().and_then(ImageId::parse),
                    region_of(i.source_image_region()),
                ) {
                    (Some(source), Some(source_region)) => {
                        Some(ImageRef::new(source_region, source))
                    }
                    // A source id without its region is the same region's (AWS omits it then).
                    (Some(source), None) => Some(ImageRef::new(region.clone(), source)),
                    _ => None,
                };
                Some(ListedImage {
                    image: ImageRef::new(region.clone(), id),
                    owner: i.owner_id().and_then(AccountId::parse),
                    name: i.name().map(str::to_owned),
                    created_at: i
                        .creation_date()
                        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.with_timezone(&Utc)),
                    state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    snapshots: snapshots_of_image(i),
                    source,
                })
            })
            .collect())
    }

    /// The owned snapshots in `region` whose description AWS wrote for a copied or created
    /// image, with what it says.
    pub async fn snapshot_leads(
        &self,
        region: &Region,
    ) -> Result<Vec<(SnapshotId, DescriptionLead)>, CatalogueError> {
        let mut pages = self
            .clients
            .ec2(region)
            .describe_snapshots()
            .owner_ids("self")
            .max_results(1000)
            .into_paginator()
            .send();
        let mut leads = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("DescribeSnapshots", region, &e))?;
            for snapshot in page.snapshots() {
                let (Some(id), Some(lead)) = (
                    snapshot.snapshot_id().and_then(SnapshotId::parse),
                    snapshot.description().and_then(parse_description),
                ) else {
                    continue;
                };
                leads.push((id, lead));
            }
        }
        Ok(leads)
    }

    /// `GetImageAncestry`: the chain from `image` towards its root, as `(child, parent)` links.
    /// Each entry's region is the previous entry's `SourceImageRegion`.
    pub async fn ancestry(
        &self,
        image: &ImageRef,
    ) -> Result<Vec<(ImageRef, ImageRef)>, CatalogueError> {
        let entries = super::launch::ancestry(&self.clients, image).await?;
        // The chain as links, up to the first entry that names no parent (the root).
        Ok(entries.into_iter().map_while(|e| Some((e.image, e.source?))).collect())
    }

    /// The regions enabled for the account (`--all-regions`).
    pub async fn enabled_regions(&self, any: &Region) -> Result<Vec<Region>, CatalogueError> {
        let out = self
            .clients
            .ec2(any)
            .describe_regions()
            .send()
            .await
            .map_err(|e| failure("DescribeRegions", any, &e))?;
        let mut regions: Vec<Region> =
            out.regions().iter().filter_map(|r| r.region_name().and_then(Region::parse)).collect();
        regions.sort();
        Ok(regions)
    }
}

/// The image events CloudTrail still holds (90 days), per region.
#[derive(Clone)]
pub struct CloudTrailHistory {
    clients: Clients,
}

/// The calls whose records change lineage.
pub const LINEAGE_EVENT_NAMES: [&str; 5] =
    ["CreateImage", "CopyImage", "RegisterImage", "CreateRestoreImageTask", "DeregisterImage"];

impl CloudTrailHistory {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }

    /// The records of `event_name` calls in `region` since `since`, oldest first, each the
    /// CloudTrail record as JSON (what EventBridge delivers as `detail`).
    pub async fn records(
        &self,
        region: &Region,
        event_name: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Value>, CatalogueError> {
        let fail = |e: String| CatalogueError {
            operation: "LookupEvents",
            region: region.clone(),
            message: e,
        };
        let client = self.clients.cloudtrail(region);
        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::EventName)
            .attribute_value(event_name)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut pages = client
            .lookup_events()
            .lookup_attributes(attribute)
            .start_time(aws_smithy_types::DateTime::from_secs(since.timestamp()))
            .max_results(50)
            .into_paginator()
            .send();
        let mut records = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(super::describe(&e)))?;
            for event in page.events() {
                match event.cloud_trail_event().map(serde_json::from_str::<Value>) {
                    Some(Ok(record)) => records.push(record),
                    _ => tracing::warn!(
                        event_id = event.event_id(),
                        "CloudTrail event without a readable record; skipped"
                    ),
                }
            }
        }
        records.reverse();
        Ok(records)
    }
}
