//! [`ImageCatalogue`] over the EC2 API, asking each image's own region.
//!
//! Events name their region, and a CreateImage in eu-west-1 must ask eu-west-1 about its
//! instance; [`Clients`] keeps one EC2 client per region, built once per container.

use aws_sdk_ec2::error::ProvideErrorMetadata;

use super::Clients;
use crate::catalogue::{CatalogueError, ImageCatalogue};
use crate::ids::{ImageId, ImageRef, InstanceId, Region, SnapshotId};

/// The EC2-backed image catalogue.
pub struct Ec2Catalogue {
    clients: Clients,
}

impl Ec2Catalogue {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }
}

pub(super) fn failure<E>(
    operation: &'static str,
    region: &Region,
    err: &aws_sdk_ec2::error::SdkError<E>,
) -> CatalogueError
where
    E: std::error::Error + 'static,
{
    CatalogueError { operation, region: region.clone(), message: super::describe(err) }
}

impl ImageCatalogue for Ec2Catalogue {
    async fn launch_image_of(
        &self,
        region: &Region,
        instance: &InstanceId,
    ) -> Result<Option<ImageId>, CatalogueError> {
        let result = self
            .clients
            .ec2(region)
            .describe_instances()
            .instance_ids(instance.as_str())
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) if err.code() == Some("InvalidInstanceID.NotFound") => return Ok(None),
            Err(err) => return Err(failure("DescribeInstances", region, &err)),
        };
        let image = output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance.as_str()))
            .and_then(|i| i.image_id())
            .and_then(ImageId::parse);
        Ok(image)
    }

    async fn snapshots_of(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Vec<SnapshotId>>, CatalogueError> {
        let result = self
            .clients
            .ec2(&image.region)
            .describe_images()
            .image_ids(image.image_id.as_str())
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) if err.code() == Some("InvalidAMIID.NotFound") => return Ok(None),
            Err(err) => return Err(failure("DescribeImages", &image.region, &err)),
        };
        let Some(found) =
            output.images().iter().find(|i| i.image_id() == Some(image.image_id.as_str()))
        else {
            return Ok(None);
        };
        Ok(Some(snapshots_of_image(found)))
    }
}

/// DescribeImages' largest page.
pub(super) const IMAGE_PAGE: i32 = 1000;

/// Every image this account owns in `region`, disabled and deprecated ones included, all pages
/// of `page_size` (5 to 1000).
pub(super) async fn owned_images(
    clients: &Clients,
    region: &Region,
    page_size: i32,
) -> Result<Vec<aws_sdk_ec2::types::Image>, CatalogueError> {
    let mut images = Vec::new();
    owned_image_pages(clients, region, page_size, |page| images.extend(page.iter().cloned()))
        .await?;
    Ok(images)
}

/// [`owned_images`], handing each page to `each` as it arrives.
pub(super) async fn owned_image_pages(
    clients: &Clients,
    region: &Region,
    page_size: i32,
    mut each: impl FnMut(&[aws_sdk_ec2::types::Image]),
) -> Result<(), CatalogueError> {
    let mut pages = clients
        .ec2(region)
        .describe_images()
        .owners("self")
        .include_deprecated(true)
        .include_disabled(true)
        .max_results(page_size)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failure("DescribeImages", region, &e))?;
        each(page.images());
    }
    Ok(())
}

/// Owned images (disabled and deprecated included) whose block device mappings use `snapshot`.
pub(super) async fn images_using(
    clients: &Clients,
    region: &Region,
    snapshot: &SnapshotId,
) -> Result<Vec<ImageId>, CatalogueError> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("block-device-mapping.snapshot-id")
        .values(snapshot.as_str())
        .build();
    owned_image_ids(clients, region, filter).await
}

/// The ids of the owned images (disabled and deprecated included) that `filter` selects,
/// sorted, each once.
pub(super) async fn owned_image_ids(
    clients: &Clients,
    region: &Region,
    filter: aws_sdk_ec2::types::Filter,
) -> Result<Vec<ImageId>, CatalogueError> {
    let mut pages = clients
        .ec2(region)
        .describe_images()
        .owners("self")
        .include_deprecated(true)
        .include_disabled(true)
        .filters(filter)
        .into_paginator()
        .send();
    let mut images = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failure("DescribeImages", region, &e))?;
        images.extend(page.images().iter().filter_map(|i| i.image_id()).filter_map(ImageId::parse));
    }
    images.sort();
    images.dedup();
    Ok(images)
}

/// The snapshot ids of an image's block device mappings.
pub(super) fn snapshots_of_image(image: &aws_sdk_ec2::types::Image) -> Vec<SnapshotId> {
    let mut snapshots: Vec<SnapshotId> = image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).and_then(SnapshotId::parse))
        .collect();
    snapshots.dedup();
    snapshots
}

/// A launch permission as the domain's grantee.
pub(super) fn launch_grantee(p: &aws_sdk_ec2::types::LaunchPermission) -> crate::event::Grantee {
    use crate::event::Grantee;
    if let Some(org) = p.organization_arn() {
        return Grantee::Organization(org.to_owned());
    }
    if let Some(ou) = p.organizational_unit_arn() {
        return Grantee::OrganizationalUnit(ou.to_owned());
    }
    group_or_user(p.group(), p.user_id(), || format!("{p:?}"))
}

/// A create-volume permission as the domain's grantee.
pub(super) fn volume_grantee(
    p: &aws_sdk_ec2::types::CreateVolumePermission,
) -> crate::event::Grantee {
    group_or_user(p.group(), p.user_id(), || format!("{p:?}"))
}

/// A permission naming none of the grantees this SDK knows is [`Grantee::Unreadable`](crate::event::Grantee::Unreadable).
fn group_or_user(
    group: Option<&aws_sdk_ec2::types::PermissionGroup>,
    user: Option<&str>,
    raw: impl Fn() -> String,
) -> crate::event::Grantee {
    use crate::event::Grantee;
    match (group, user) {
        (Some(aws_sdk_ec2::types::PermissionGroup::All), _) => Grantee::Public,
        (Some(other), _) => Grantee::Group(other.as_str().to_owned()),
        (None, Some(user)) => Grantee::Account(user.to_owned()),
        (None, None) => Grantee::Unreadable(raw()),
    }
}

/// One image by id, disabled and deprecated included; `None` when EC2 answers with one of the
/// `gone` error codes (e.g. `InvalidAMIID.NotFound`) or does not list it.
pub(super) async fn describe_image(
    clients: &Clients,
    region: &Region,
    image: &ImageId,
    gone: &[&str],
) -> Result<Option<aws_sdk_ec2::types::Image>, CatalogueError> {
    let result = clients
        .ec2(region)
        .describe_images()
        .image_ids(image.as_str())
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await;
    match result {
        Ok(o) => Ok(o.images().iter().find(|i| i.image_id() == Some(image.as_str())).cloned()),
        Err(e) if e.code().is_some_and(|c| gone.contains(&c)) => Ok(None),
        Err(e) => Err(failure("DescribeImages", region, &e)),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{CreateVolumePermission, LaunchPermission, PermissionGroup};

    use super::{launch_grantee, volume_grantee};
    use crate::event::Grantee;

    #[test]
    fn a_permission_this_sdk_cannot_read_is_a_grant_not_nobody() {
        assert!(matches!(
            launch_grantee(&LaunchPermission::builder().build()),
            Grantee::Unreadable(_)
        ));
        assert!(matches!(
            volume_grantee(&CreateVolumePermission::builder().build()),
            Grantee::Unreadable(_)
        ));
        // The kinds it knows keep their meaning.
        assert_eq!(
            launch_grantee(&LaunchPermission::builder().group(PermissionGroup::All).build()),
            Grantee::Public
        );
        assert_eq!(
            volume_grantee(&CreateVolumePermission::builder().user_id("111122223333").build()),
            Grantee::Account("111122223333".into())
        );
        let ou = "arn:aws:organizations::111122223333:ou/o-abc/ou-x";
        assert_eq!(
            launch_grantee(&LaunchPermission::builder().organizational_unit_arn(ou).build()),
            Grantee::OrganizationalUnit(ou.into())
        );
    }
}
