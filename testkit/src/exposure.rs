//! Exposure scenarios on the local stack: real image and snapshot permission changes on moto's
//! EC2, each with the CloudTrail event it would have produced.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{
    ImageBlockPublicAccessEnabledState, LaunchPermission, LaunchPermissionModifications,
    OperationType, PermissionGroup, SnapshotAttributeName,
};
use serde_json::{json, Value};

use crate::cloudtrail::{items, Trail};
use crate::story::ec2;

/// Someone an image or snapshot can be shared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Share {
    All,
    Account(String),
    Organization(String),
    OrganizationalUnit(String),
}

impl Share {
    fn item(&self) -> Value {
        match self {
            Self::All => json!({"group": "all"}),
            Self::Account(a) => json!({"userId": a}),
            Self::Organization(o) => json!({"organizationArn": o}),
            Self::OrganizationalUnit(u) => json!({"organizationalUnitArn": u}),
        }
    }

    fn launch_permission(&self) -> LaunchPermission {
        let p = LaunchPermission::builder();
        match self {
            Self::All => p.group(PermissionGroup::All),
            Self::Account(a) => p.user_id(a),
            Self::Organization(o) => p.organization_arn(o),
            Self::OrganizationalUnit(u) => p.organizational_unit_arn(u),
        }
        .build()
    }
}

/// An image registered on moto (moto gives it one root snapshot): `(image_id, snapshot_id)`.
pub async fn register_image(sdk: &SdkConfig, region: &str, name: &str) -> Result<(String, String)> {
    let client = ec2(sdk, region);
    let image = client
        .register_image()
        .name(name)
        .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
        .root_device_name("/dev/xvda")
        .virtualization_type("hvm")
        .send()
        .await
        .context("RegisterImage")?
        .image_id()
        .context("RegisterImage returned no id")?
        .to_owned();
    let described =
        client.describe_images().image_ids(&image).send().await.context("DescribeImages")?;
    let snapshot = described
        .images()
        .first()
        .and_then(|i| i.block_device_mappings().iter().find_map(|m| m.ebs()?.snapshot_id()))
        .context("the image has no snapshot")?
        .to_owned();
    Ok((image, snapshot))
}

/// Tags a resource.
pub async fn tag(
    sdk: &SdkConfig,
    region: &str,
    resource: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    ec2(sdk, region)
        .create_tags()
        .resources(resource)
        .tags(aws_sdk_ec2::types::Tag::builder().key(key).value(value).build())
        .send()
        .await
        .context("CreateTags")?;
    Ok(())
}

/// ModifyImageAttribute (launch permissions) for real, and its CloudTrail event.
pub async fn modify_launch_permission(
    sdk: &SdkConfig,
    trail: &Trail,
    region: &str,
    image_id: &str,
    add: &[Share],
    remove: &[Share],
) -> Result<Value> {
    modify_launch_permission_with(&ec2(sdk, region), trail, region, image_id, add, remove).await
}

/// [`modify_launch_permission`] through `client` (one acting in another account, say): the
/// event is the trail's, so its account should be the client's.
pub async fn modify_launch_permission_with(
    client: &aws_sdk_ec2::Client,
    trail: &Trail,
    region: &str,
    image_id: &str,
    add: &[Share],
    remove: &[Share],
) -> Result<Value> {
    let mut change = LaunchPermissionModifications::builder();
    for s in add {
        change = change.add(s.launch_permission());
    }
    for s in remove {
        change = change.remove(s.launch_permission());
    }
    client
        .modify_image_attribute()
        .image_id(image_id)
        .launch_permission(change.build())
        .send()
        .await
        .context("ModifyImageAttribute")?;
    let mut permission = serde_json::Map::new();
    if !add.is_empty() {
        permission.insert("add".into(), items(add.iter().map(Share::item).collect()));
    }
    if !remove.is_empty() {
        permission.insert("remove".into(), items(remove.iter().map(Share::item).collect()));
    }
    Ok(trail.api_call(
        region,
        "ModifyImageAttribute",
        json!({"imageId": image_id, "attributeType": "launchPermission", "launchPermission": permission}),
        json!({"_return": true}),
    ))
}

/// ModifySnapshotAttribute (create-volume permissions) for real, and its CloudTrail event.
pub async fn modify_snapshot_permission(
    sdk: &SdkConfig,
    trail: &Trail,
    region: &str,
    snapshot_id: &str,
    add: bool,
    shares: &[Share],
) -> Result<Value> {
    let mut request = ec2(sdk, region)
        .modify_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(if add { OperationType::Add } else { OperationType::Remove });
    for s in shares {
        request = match s {
            Share::All => request.group_names("all"),
            Share::Account(a) => request.user_ids(a),
            _ => anyhow::bail!("snapshots are shared with accounts or everyone only"),
        };
    }
    request.send().await.context("ModifySnapshotAttribute")?;
    let side = if add { "add" } else { "remove" };
    Ok(trail.api_call(
        region,
        "ModifySnapshotAttribute",
        json!({
            "snapshotId": snapshot_id,
            "attributeType": "CREATE_VOLUME_PERMISSION",
            "createVolumePermission": { side: items(shares.iter().map(Share::item).collect()) }
        }),
        json!({"_return": true}),
    ))
}

/// Turns image block public access on (as a careful account has it).
pub async fn enable_block_public_access(sdk: &SdkConfig, region: &str) -> Result<()> {
    ec2(sdk, region)
        .enable_image_block_public_access()
        .image_block_public_access_state(ImageBlockPublicAccessEnabledState::BlockNewSharing)
        .send()
        .await
        .context("EnableImageBlockPublicAccess")?;
    Ok(())
}

/// DisableImageBlockPublicAccess for real, and its CloudTrail event.
pub async fn disable_block_public_access(
    sdk: &SdkConfig,
    trail: &Trail,
    region: &str,
) -> Result<Value> {
    ec2(sdk, region)
        .disable_image_block_public_access()
        .send()
        .await
        .context("DisableImageBlockPublicAccess")?;
    Ok(trail.api_call(
        region,
        "DisableImageBlockPublicAccess",
        Value::Null,
        json!({"imageBlockPublicAccessState": "unblocked"}),
    ))
}
