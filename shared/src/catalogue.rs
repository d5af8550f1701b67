//! The questions the domain asks EC2 about images and instances.
//!
//! A narrow trait so policy and recorder code never touches an SDK type; the one
//! implementation over the AWS SDK is [`crate::aws::ec2::Ec2Catalogue`]. "Not found" is an
//! answer (`Ok(None)`), not an error: only failures to get an answer are errors.

use thiserror::Error;

use crate::ids::{ImageId, ImageRef, InstanceId, Region, SnapshotId};

/// EC2 could not answer (throttling, network, permissions). Never a "no".
#[derive(Debug, Error)]
#[error("EC2 {operation} in {region} failed: {message}")]
pub struct CatalogueError {
    pub operation: &'static str,
    pub region: Region,
    pub message: String,
}

#[allow(async_fn_in_trait)]
pub trait ImageCatalogue {
    /// The AMI an instance was launched from; `None` when the instance no longer exists.
    async fn launch_image_of(
        &self,
        region: &Region,
        instance: &InstanceId,
    ) -> Result<Option<ImageId>, CatalogueError>;

    /// The EBS snapshots behind an image's block device mappings; `None` when the image is not
    /// visible (deregistered or never existed).
    async fn snapshots_of(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Vec<SnapshotId>>, CatalogueError>;
}
