//! [`ExposureEc2`] over the EC2 API: permissions, owners and tags of images and snapshots,
//! the region's image and snapshot block public access states and Allowed AMIs setting
//! ([`AllowedImagesEc2`]), and the two permission removals.
//!
//! "Does not exist" is `Ok(None)`; only failures to get an answer are errors. Snapshot
//! permissions are removed with the flat `OperationType`/`GroupName.N`/`UserId.N` form, image
//! permissions with the structured `LaunchPermission.Remove` form (the only one that can name
//! organizations and OUs).

use std::collections::BTreeMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, ImageAttributeName, LaunchPermission, LaunchPermissionModifications, OperationType,
    PermissionGroup, SnapshotAttributeName,
};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::event::{Grantee, ImageCriterion};
use crate::exposure::allowed::{AllowedImagesEc2, ImageAllowedFact, InstanceImage};
use crate::exposure::guardrails::{
    AllowedImagesSettings, AllowedImagesState, SnapshotBlockPublicAccess, SnapshotBlockState,
};
use crate::exposure::{Access, ExposureEc2, OwnedImage};
use crate::ids::{AccountId, ImageId, ImageRef, InstanceId, Region, SnapshotId};

/// The EC2-backed exposure adapter.
pub struct Ec2Exposure {
    clients: Clients,
}

impl Ec2Exposure {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }
}

const IMAGE_GONE: &[&str] =
    &["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"];
const SNAPSHOT_GONE: &[&str] = &["InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed"];

fn gone<E: ProvideErrorMetadata>(err: &E, codes: &[&str]) -> bool {
    err.code().is_some_and(|c| codes.contains(&c))
}

fn tags<'a>(
    tags: impl IntoIterator<Item = &'a aws_sdk_ec2::types::Tag>,
) -> BTreeMap<String, String> {
    tags.into_iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

impl ExposureEc2 for Ec2Exposure {
    async fn image_access(&self, image: &ImageRef) -> Result<Option<Access>, CatalogueError> {
        let Some(found) =
            super::ec2::describe_image(&self.clients, &image.region, &image.image_id, IMAGE_GONE)
                .await?
        else {
            return Ok(None);
        };
        let Some(permissions) = self.launch_permissions(image).await? else {
            return Ok(None);
        };
        Ok(Some(Access {
            owner: found.owner_id().and_then(AccountId::parse),
            name: found.name().map(str::to_owned),
            tags: tags(found.tags()),
            permissions,
        }))
    }

    async fn launch_permissions(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Vec<Grantee>>, CatalogueError> {
        let result = self
            .clients
            .ec2(&image.region)
            .describe_image_attribute()
            .image_id(image.image_id.as_str())
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await;
        match result {
            Ok(o) => {
                Ok(Some(o.launch_permissions().iter().map(super::ec2::launch_grantee).collect()))
            }
            Err(e) if gone(&e, IMAGE_GONE) => Ok(None),
            Err(e) => Err(failure("DescribeImageAttribute", &image.region, &e)),
        }
    }

    async fn snapshot_access(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<Access>, CatalogueError> {
        let result = self
            .clients
            .ec2(region)
            .describe_snapshots()
            .snapshot_ids(snapshot.as_str())
            .send()
            .await;
        let output = match result {
            Ok(o) => o,
            Err(e) if gone(&e, SNAPSHOT_GONE) => return Ok(None),
            Err(e) => return Err(failure("DescribeSnapshots", region, &e)),
        };
        let Some(found) =
            output.snapshots().iter().find(|s| s.snapshot_id() == Some(snapshot.as_str()))
        else {
            return Ok(None);
        };
        let Some(permissions) = self.create_volume_permissions(region, snapshot).await? else {
            return Ok(None);
        };
        Ok(Some(Access {
            owner: found.owner_id().and_then(AccountId::parse),
            name: found.description().filter(|d| !d.is_empty()).map(str::to_owned),
            tags: tags(found.tags()),
            permissions,
        }))
    }

    async fn create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<Vec<Grantee>>, CatalogueError> {
        let result = self
            .clients
            .ec2(region)
            .describe_snapshot_attribute()
            .snapshot_id(snapshot.as_str())
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await;
        match result {
            Ok(o) => Ok(Some(
                o.create_volume_permissions().iter().map(super::ec2::volume_grantee).collect(),
            )),
            Err(e) if gone(&e, SNAPSHOT_GONE) => Ok(None),
            Err(e) => Err(failure("DescribeSnapshotAttribute", region, &e)),
        }
    }

    async fn images_backed_by(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError> {
        super::ec2::images_using(&self.clients, region, snapshot).await
    }

    async fn block_public_access_state(&self, region: &Region) -> Result<String, CatalogueError> {
        let output = self
            .clients
            .ec2(region)
            .get_image_block_public_access_state()
            .send()
            .await
            .map_err(|e| failure("GetImageBlockPublicAccessState", region, &e))?;
        Ok(output.image_block_public_access_state().unwrap_or("unknown").to_owned())
    }

    async fn snapshot_block_public_access(
        &self,
        region: &Region,
    ) -> Result<SnapshotBlockPublicAccess, CatalogueError> {
        let output = self
            .clients
            .ec2(region)
            .get_snapshot_block_public_access_state()
            .send()
            .await
            .map_err(|e| failure("GetSnapshotBlockPublicAccessState", region, &e))?;
        Ok(SnapshotBlockPublicAccess {
            state: SnapshotBlockState::parse(output.state().map_or("unknown", |s| s.as_str())),
            managed_by: output.managed_by().map(|m| m.as_str().to_owned()),
        })
    }

    async fn remove_launch_permissions(
        &self,
        image: &ImageRef,
        grantees: &[Grantee],
    ) -> Result<(), CatalogueError> {
        let mut remove = LaunchPermissionModifications::builder();
        // An unreadable grant cannot be named in a request: alerted on, not removed.
        for p in grantees.iter().filter_map(launch_permission) {
            remove = remove.remove(p);
        }
        self.clients
            .ec2(&image.region)
            .modify_image_attribute()
            .image_id(image.image_id.as_str())
            .launch_permission(remove.build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("ModifyImageAttribute", &image.region, &e))
    }

    async fn remove_create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
        grantees: &[Grantee],
    ) -> Result<(), CatalogueError> {
        let mut request = self
            .clients
            .ec2(region)
            .modify_snapshot_attribute()
            .snapshot_id(snapshot.as_str())
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .operation_type(OperationType::Remove);
        for g in grantees {
            request = match g {
                Grantee::Public => request.group_names("all"),
                Grantee::Group(name) => request.group_names(name),
                Grantee::Account(a) => request.user_ids(a),
                // Snapshots cannot be shared with organizations or OUs; an unreadable grantee
                // cannot be named in a request (alerted on, not removed).
                Grantee::Organization(_)
                | Grantee::OrganizationalUnit(_)
                | Grantee::Unreadable(_) => request,
            };
        }
        request.send().await.map(|_| ()).map_err(|e| failure("ModifySnapshotAttribute", region, &e))
    }

    async fn owned_images(&self, region: &Region) -> Result<Vec<OwnedImage>, CatalogueError> {
        let images =
            super::ec2::owned_images(&self.clients, region, super::ec2::IMAGE_PAGE).await?;
        Ok(images
            .iter()
            .filter_map(|i| {
                Some(OwnedImage {
                    image_id: i.image_id().and_then(ImageId::parse)?,
                    name: i.name().map(str::to_owned),
                    public: i.public().unwrap_or(false),
                    // Unparseable is unknown, which makes the sweep read the image.
                    created: i
                        .creation_date()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc)),
                    snapshots: super::ec2::snapshots_of_image(i),
                })
            })
            .collect())
    }

    async fn public_snapshot_candidates(
        &self,
        region: &Region,
    ) -> Result<Vec<SnapshotId>, CatalogueError> {
        let mut pages = self
            .clients
            .ec2(region)
            .describe_snapshots()
            .owner_ids("self")
            .restorable_by_user_ids("all")
            .max_results(1000)
            .into_paginator()
            .send();
        let mut snapshots = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("DescribeSnapshots", region, &e))?;
            snapshots.extend(
                page.snapshots()
                    .iter()
                    .filter_map(|s| s.snapshot_id())
                    .filter_map(SnapshotId::parse),
            );
        }
        Ok(snapshots)
    }
}

/// An Allowed AMIs criterion as GetAllowedImagesSettings answers it.
fn criterion(c: &aws_sdk_ec2::types::ImageCriterion) -> ImageCriterion {
    let mut other = Vec::new();
    if !c.image_watermarks().is_empty() {
        other.push("image watermarks".to_owned());
    }
    if c.scan_result_condition().is_some() {
        other.push("a scan result condition".to_owned());
    }
    ImageCriterion {
        image_providers: c.image_providers().to_vec(),
        image_names: c.image_names().to_vec(),
        marketplace_product_codes: c.marketplace_product_codes().to_vec(),
        max_days_since_created: c
            .creation_date_condition()
            .and_then(|d| d.maximum_days_since_created())
            .map(i64::from),
        max_days_since_deprecated: c
            .deprecation_time_condition()
            .and_then(|d| d.maximum_days_since_deprecated())
            .map(i64::from),
        other,
    }
}

impl AllowedImagesEc2 for Ec2Exposure {
    async fn allowed_images_settings(
        &self,
        region: &Region,
    ) -> Result<AllowedImagesSettings, CatalogueError> {
        let output = self
            .clients
            .ec2(region)
            .get_allowed_images_settings()
            .send()
            .await
            .map_err(|e| failure("GetAllowedImagesSettings", region, &e))?;
        Ok(AllowedImagesSettings {
            state: AllowedImagesState::parse(output.state().unwrap_or("unknown")),
            criteria: output.image_criteria().iter().map(criterion).collect(),
            managed_by: output.managed_by().map(|m| m.as_str().to_owned()),
        })
    }

    async fn images_allowed(
        &self,
        region: &Region,
        images: &[ImageId],
    ) -> Result<BTreeMap<ImageId, ImageAllowedFact>, CatalogueError> {
        let result = self
            .clients
            .ec2(region)
            .describe_images()
            .set_image_ids(Some(images.iter().map(|i| i.as_str().to_owned()).collect()))
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await;
        let found = match result {
            Ok(o) => o.images().to_vec(),
            // One unknown id fails the whole request: ask image by image.
            Err(e) if gone(&e, IMAGE_GONE) && images.len() > 1 => {
                let mut found = Vec::new();
                for image in images {
                    found.extend(
                        super::ec2::describe_image(&self.clients, region, image, IMAGE_GONE)
                            .await?,
                    );
                }
                found
            }
            Err(e) if gone(&e, IMAGE_GONE) => Vec::new(),
            Err(e) => return Err(failure("DescribeImages", region, &e)),
        };
        Ok(found
            .iter()
            .filter_map(|i| {
                let id = i.image_id().and_then(ImageId::parse)?;
                Some((id, ImageAllowedFact { allowed: i.image_allowed() }))
            })
            .collect())
    }

    async fn instances_on_disallowed_images(
        &self,
        region: &Region,
    ) -> Result<Vec<InstanceImage>, CatalogueError> {
        let mut pages = self
            .clients
            .ec2(region)
            .describe_instance_image_metadata()
            .filters(Filter::builder().name("image-allowed").values("false").build())
            .max_results(1000)
            .into_paginator()
            .send();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("DescribeInstanceImageMetadata", region, &e))?;
            rows.extend(page.instance_image_metadata().iter().filter_map(|m| {
                let image = m.image_metadata()?;
                Some(InstanceImage {
                    instance_id: m.instance_id().and_then(InstanceId::parse)?,
                    state: m.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()),
                    image_id: image.image_id().and_then(ImageId::parse)?,
                    image_allowed: image.image_allowed(),
                })
            }));
        }
        Ok(rows)
    }
}

/// The launch permission naming `grantee` in a request; `None` for one no request can name.
pub(crate) fn launch_permission(grantee: &Grantee) -> Option<LaunchPermission> {
    let p = LaunchPermission::builder();
    let p = match grantee {
        Grantee::Public => p.group(PermissionGroup::All),
        Grantee::Group(name) => p.group(PermissionGroup::from(name.as_str())),
        Grantee::Account(a) => p.user_id(a),
        Grantee::Organization(o) => p.organization_arn(o),
        Grantee::OrganizationalUnit(u) => p.organizational_unit_arn(u),
        Grantee::Unreadable(_) => return None,
    };
    Some(p.build())
}
