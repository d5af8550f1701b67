//! Snapshot scenarios on the local stack: snapshots, images registered from them (one snapshot
//! can back several images), disabled images, deregistrations — real EC2 calls on moto, each
//! with the CloudTrail event it would have produced.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, VolumeType};
use serde_json::{json, Value};

use crate::cloudtrail::{items, Trail};
use crate::story::ec2;

/// A new volume's snapshot, with `description`.
pub async fn create_snapshot(
    sdk: &SdkConfig,
    region: &str,
    size_gib: i32,
    description: &str,
) -> Result<String> {
    let client = ec2(sdk, region);
    let volume = client
        .create_volume()
        .availability_zone(format!("{region}a"))
        .size(size_gib)
        .send()
        .await
        .context("CreateVolume")?;
    let snapshot = client
        .create_snapshot()
        .volume_id(volume.volume_id().context("no volume id")?)
        .description(description)
        .send()
        .await
        .context("CreateSnapshot")?;
    Ok(snapshot.snapshot_id().context("no snapshot id")?.to_owned())
}

/// RegisterImage from an existing snapshot, and its event: `(image_id, event)`.
pub async fn register_from(
    sdk: &SdkConfig,
    trail: &Trail,
    region: &str,
    name: &str,
    snapshot: &str,
) -> Result<(String, Value)> {
    let image = ec2(sdk, region)
        .register_image()
        .name(name)
        .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
        .root_device_name("/dev/xvda")
        .virtualization_type("hvm")
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    EbsBlockDevice::builder()
                        .snapshot_id(snapshot)
                        .volume_size(8)
                        .volume_type(VolumeType::Gp3)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .context("RegisterImage")?
        .image_id()
        .context("no image id")?
        .to_owned();
    let event = trail.api_call(
        region,
        "RegisterImage",
        json!({
            "name": name, "architecture": "x86_64", "rootDeviceName": "/dev/xvda", "virtualizationType": "hvm",
            "blockDeviceMapping": items(vec![json!({"deviceName": "/dev/xvda",
                "ebs": {"snapshotId": snapshot, "volumeSize": 8, "volumeType": "gp3"}})])
        }),
        json!({"imageId": image}),
    );
    Ok((image, event))
}

/// DeregisterImage for real (the snapshots stay unless `delete_snapshots`), and its event.
pub async fn deregister(
    sdk: &SdkConfig,
    trail: &Trail,
    region: &str,
    image: &str,
    delete_snapshots: bool,
) -> Result<Value> {
    let mut request = ec2(sdk, region).deregister_image().image_id(image);
    if delete_snapshots {
        request = request.delete_associated_snapshots(true);
    }
    let out = request.send().await.context("DeregisterImage")?;
    // The record's response is the call's: `deleteSnapshotResultSet` when snapshots were to go.
    let mut response = json!({"_return": true});
    if let Some(results) = out.delete_snapshot_results.as_deref() {
        let items: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "snapshotId": r.snapshot_id(),
                    "returnCode": r.return_code().map(|c| c.as_str()),
                })
            })
            .collect();
        response["deleteSnapshotResultSet"] = json!({ "items": items });
    }
    Ok(trail.api_call(
        region,
        "DeregisterImage",
        json!({"imageId": image, "deleteAssociatedSnapshots": delete_snapshots}),
        response,
    ))
}

/// DisableImage.
pub async fn disable_image(sdk: &SdkConfig, region: &str, image: &str) -> Result<()> {
    ec2(sdk, region).disable_image().image_id(image).send().await.context("DisableImage")?;
    Ok(())
}

/// An image made with CreateImage from an instance (so AWS writes the snapshot's description
/// `Created by CreateImage(i-…) for ami-…`): `(image_id, snapshot_id)`.
pub async fn create_image_from_instance(
    sdk: &SdkConfig,
    region: &str,
    base_image: &str,
    name: &str,
) -> Result<(String, String)> {
    let client = ec2(sdk, region);
    let run = client
        .run_instances()
        .image_id(base_image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .context("RunInstances")?;
    let instance =
        run.instances().first().and_then(|i| i.instance_id()).context("no instance")?.to_owned();
    let image = client
        .create_image()
        .instance_id(&instance)
        .name(name)
        .send()
        .await
        .context("CreateImage")?;
    let image = image.image_id().context("no image id")?.to_owned();
    let described =
        client.describe_images().image_ids(&image).send().await.context("DescribeImages")?;
    let snapshot = described
        .images()
        .first()
        .and_then(|i| i.block_device_mappings().iter().find_map(|m| m.ebs()?.snapshot_id()))
        .context("no snapshot")?
        .to_owned();
    Ok((image, snapshot))
}

/// Whether a snapshot still exists, and its tags.
pub async fn snapshot_tags(
    sdk: &SdkConfig,
    region: &str,
    snapshot: &str,
) -> Result<Option<Vec<(String, String)>>> {
    match ec2(sdk, region).describe_snapshots().snapshot_ids(snapshot).send().await {
        Ok(o) => Ok(o.snapshots().first().map(|s| {
            s.tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })),
        Err(e) => {
            let text = format!("{e:?}");
            if text.contains("InvalidSnapshot.NotFound") {
                Ok(None)
            } else {
                Err(anyhow::anyhow!("DescribeSnapshots: {text}"))
            }
        }
    }
}
