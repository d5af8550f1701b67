//! [`SnapshotEc2`] over the EC2 API: snapshots, the images that use them, the reaped tag and
//! the delete. "Does not exist" is an answer (`None`, `false`), never an error.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, Region, SnapshotId};
use crate::reaper::early::{GUESSES_AT_ONCE, IDS_PER_REQUEST};
use crate::reaper::{
    image_in_description, DeleteError, ImageIndex, RetentionRule, SnapshotEc2, SnapshotInfo,
    REAPED_TAG_KEY, REAPED_TAG_VALUE,
};

pub struct Ec2Snapshots {
    clients: Clients,
}

impl Ec2Snapshots {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }

    /// The owned images among `images` (at most [`IDS_PER_REQUEST`]).
    async fn owned_of(
        &self,
        region: &Region,
        images: &[ImageId],
    ) -> Result<Vec<ImageId>, CatalogueError> {
        let by_id = Filter::builder()
            .name("image-id")
            .set_values(Some(images.iter().map(|i| i.as_str().to_owned()).collect()))
            .build();
        super::ec2::owned_image_ids(&self.clients, region, by_id).await
    }
}

fn info(s: &aws_sdk_ec2::types::Snapshot) -> Option<SnapshotInfo> {
    Some(SnapshotInfo {
        snapshot_id: s.snapshot_id().and_then(SnapshotId::parse)?,
        owner: s.owner_id().and_then(AccountId::parse),
        size_gib: s.volume_size().and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        started: s
            .start_time()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
        description: s.description().unwrap_or_default().to_owned(),
        tags: s
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect::<BTreeMap<_, _>>(),
    })
}

impl Ec2Snapshots {
    async fn describe(
        &self,
        region: &Region,
        filter: Option<Filter>,
    ) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        let mut pages = self
            .clients
            .ec2(region)
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(filter.map(|f| vec![f]))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("DescribeSnapshots", region, &e))?;
            out.extend(page.snapshots().iter().filter_map(info));
        }
        Ok(out)
    }
}

impl SnapshotEc2 for Ec2Snapshots {
    async fn snapshot(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<SnapshotInfo>, CatalogueError> {
        // Filtered by id rather than named: EC2 throttles DescribeSnapshots calls without a
        // filter in a smaller bucket of their own (50, and 10 a second), which one call a
        // snapshot to delete would empty.
        let by_id = Filter::builder().name("snapshot-id").values(snapshot.as_str()).build();
        let result = self
            .clients
            .ec2(region)
            .describe_snapshots()
            .owner_ids("self")
            .filters(by_id)
            .send()
            .await;
        match result {
            Ok(o) => Ok(o.snapshots().iter().filter_map(info).find(|s| &s.snapshot_id == snapshot)),
            Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => Ok(None),
            Err(e) => Err(failure("DescribeSnapshots", region, &e)),
        }
    }

    async fn snapshots_described_for(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        // A loose server-side filter, then the exact parse: `ami-0abc` must not match `ami-0abcd`.
        let filter = Filter::builder().name("description").values(format!("*{image}*")).build();
        let found = self.describe(region, Some(filter)).await?;
        Ok(found
            .into_iter()
            .filter(|s| image_in_description(&s.description).as_ref() == Some(image))
            .collect())
    }

    async fn images_using(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError> {
        super::ec2::images_using(&self.clients, region, snapshot).await
    }

    async fn create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<Grantee>, CatalogueError> {
        let out = self
            .clients
            .ec2(region)
            .describe_snapshot_attribute()
            .snapshot_id(snapshot.as_str())
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(|e| failure("DescribeSnapshotAttribute", region, &e))?;
        Ok(out.create_volume_permissions().iter().map(super::ec2::volume_grantee).collect())
    }

    async fn image_exists(&self, region: &Region, image: &ImageId) -> Result<bool, CatalogueError> {
        let found = super::ec2::describe_image(
            &self.clients,
            region,
            image,
            &["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"],
        )
        .await?;
        Ok(found.is_some_and(|i| i.state().map(|s| s.as_str()) != Some("deregistered")))
    }

    async fn owned_snapshots(&self, region: &Region) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        self.describe(region, None).await
    }

    async fn image_index(&self, region: &Region) -> Result<ImageIndex, CatalogueError> {
        let mut index = ImageIndex::default();
        for image in super::ec2::owned_images(&self.clients, region, super::ec2::IMAGE_PAGE).await?
        {
            // An image that cannot be named could still use snapshots: fail rather than miss it.
            let id = image.image_id().and_then(ImageId::parse).ok_or_else(|| CatalogueError {
                operation: "DescribeImages",
                region: region.clone(),
                message: format!("an image id EC2 listed cannot be read: {:?}", image.image_id()),
            })?;
            for snapshot in super::ec2::snapshots_of_image(&image) {
                index.users.entry(snapshot).or_default().push(id.clone());
            }
            index.images.insert(id);
        }
        Ok(index)
    }

    async fn owned_among(
        &self,
        region: &Region,
        images: &[ImageId],
    ) -> Result<BTreeSet<ImageId>, CatalogueError> {
        // A filter, not ImageIds: EC2 refuses a whole ImageIds request when one is gone.
        let found: Vec<Vec<ImageId>> =
            stream::iter(images.chunks(IDS_PER_REQUEST).map(|chunk| self.owned_of(region, chunk)))
                .buffer_unordered(GUESSES_AT_ONCE)
                .try_collect()
                .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn mark_reaped(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError> {
        super::recycle_bin::mark(
            &self.clients,
            region,
            snapshot.as_str(),
            REAPED_TAG_KEY,
            REAPED_TAG_VALUE,
        )
        .await
    }

    async fn images_in_recycle_bin(
        &self,
        region: &Region,
    ) -> Result<BTreeSet<ImageId>, CatalogueError> {
        let mut pages = self
            .clients
            .ec2(region)
            .list_images_in_recycle_bin()
            .max_results(1000)
            .into_paginator()
            .send();
        let mut images = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("ListImagesInRecycleBin", region, &e))?;
            images.extend(
                page.images().iter().filter_map(|i| i.image_id()).filter_map(ImageId::parse),
            );
        }
        Ok(images)
    }

    async fn snapshot_retention_rules(
        &self,
        region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError> {
        super::recycle_bin::retention_rules(
            &self.clients,
            region,
            aws_sdk_rbin::types::ResourceType::EbsSnapshot,
        )
        .await
    }

    async fn unmark_reaped(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError> {
        super::recycle_bin::unmark(&self.clients, region, snapshot.as_str(), REAPED_TAG_KEY).await
    }

    async fn delete_snapshot(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), DeleteError> {
        match self.clients.ec2(region).delete_snapshot().snapshot_id(snapshot.as_str()).send().await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(DeleteError {
                code: e.code().unwrap_or("Unknown").to_owned(),
                message: e.message().map(str::to_owned).unwrap_or_else(|| super::describe(&e)),
            }),
        }
    }
}
