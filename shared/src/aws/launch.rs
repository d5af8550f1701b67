//! [`LaunchEc2`] over the SDK: GetImageAncestry with each entry's owner alias and creation
//! date, and the image a launch template version names.

use chrono::{DateTime, Utc};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::event::LaunchTemplateRef;
use crate::ids::{ImageId, ImageRef, Region};
use crate::provenance::run::{AncestryEntry, LaunchEc2};

pub struct Ec2Launches {
    clients: Clients,
}

impl Ec2Launches {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }
}

impl LaunchEc2 for Ec2Launches {
    async fn ancestry(&self, image: &ImageRef) -> Result<Vec<AncestryEntry>, CatalogueError> {
        ancestry(&self.clients, image).await
    }

    async fn template_image(
        &self,
        region: &Region,
        template: &LaunchTemplateRef,
    ) -> Result<Option<String>, CatalogueError> {
        let out = self
            .clients
            .ec2(region)
            .describe_launch_template_versions()
            .set_launch_template_id(template.id.clone())
            .set_launch_template_name(if template.id.is_some() {
                None
            } else {
                template.name.clone()
            })
            .versions(template.version.clone().unwrap_or_else(|| "$Default".into()))
            .send()
            .await
            .map_err(|e| failure("DescribeLaunchTemplateVersions", region, &e))?;
        Ok(out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.image_id())
            .map(str::to_owned))
    }
}

/// GetImageAncestry: `image` and its ancestors, nearest first, each with its owner alias and
/// creation date. Each entry's region is the previous entry's `SourceImageRegion`. The
/// backfill reads the same chain as links ([`super::backfill::Ec2Estate::ancestry`]).
pub(crate) async fn ancestry(
    clients: &Clients,
    image: &ImageRef,
) -> Result<Vec<AncestryEntry>, CatalogueError> {
    let out = clients
        .ec2(&image.region)
        .get_image_ancestry()
        .image_id(image.image_id.as_str())
        .send()
        .await
        .map_err(|e| failure("GetImageAncestry", &image.region, &e))?;
    // Each entry's region is the previous entry's SourceImageRegion.
    let mut region = image.region.clone();
    let mut entries = Vec::new();
    for entry in out.image_ancestry_entries() {
        let Some(id) = entry.image_id().and_then(ImageId::parse) else { break };
        let source_region =
            entry.source_image_region().and_then(Region::parse).unwrap_or_else(|| region.clone());
        let source = entry
            .source_image_id()
            .and_then(ImageId::parse)
            .map(|s| ImageRef::new(source_region.clone(), s));
        entries.push(AncestryEntry {
            image: ImageRef::new(region.clone(), id),
            source,
            owner_alias: entry.image_owner_alias().map(str::to_owned),
            created: entry
                .creation_date()
                .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?)),
        });
        region = source_region;
    }
    Ok(entries)
}
