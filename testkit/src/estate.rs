//! The deprecation trap estate's building blocks, as real calls on moto: launch templates with
//! several versions, launch configurations and Auto Scaling groups, stopped instances.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};

use crate::story::ec2;

fn autoscaling(sdk: &SdkConfig, region: &str) -> aws_sdk_autoscaling::Client {
    let conf = aws_sdk_autoscaling::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    aws_sdk_autoscaling::Client::from_conf(conf)
}

/// A launch template whose versions name `images` in order (version 1 stays the default).
pub async fn launch_template(
    sdk: &SdkConfig,
    region: &str,
    name: &str,
    images: &[&str],
) -> Result<String> {
    let client = ec2(sdk, region);
    let data = |image: &str| {
        RequestLaunchTemplateData::builder()
            .image_id(image)
            .instance_type(InstanceType::T3Micro)
            .build()
    };
    let first = images.first().context("at least one image")?;
    let created = client
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data(first))
        .send()
        .await
        .context("CreateLaunchTemplate")?;
    let id = created
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .context("no template id")?
        .to_owned();
    for image in &images[1..] {
        client
            .create_launch_template_version()
            .launch_template_id(&id)
            .launch_template_data(data(image))
            .send()
            .await
            .context("CreateLaunchTemplateVersion")?;
    }
    Ok(id)
}

/// A launch configuration for `image` and an (empty) Auto Scaling group using it.
pub async fn auto_scaling_group(
    sdk: &SdkConfig,
    region: &str,
    name: &str,
    image: &str,
) -> Result<()> {
    let client = autoscaling(sdk, region);
    let configuration = format!("{name}-lc");
    client
        .create_launch_configuration()
        .launch_configuration_name(&configuration)
        .image_id(image)
        .instance_type("t3.micro")
        .send()
        .await
        .context("CreateLaunchConfiguration")?;
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(&configuration)
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .availability_zones(format!("{region}a"))
        .send()
        .await
        .context("CreateAutoScalingGroup")?;
    Ok(())
}

/// An instance launched from `image`, then stopped.
pub async fn stopped_instance(sdk: &SdkConfig, region: &str, image: &str) -> Result<String> {
    let id = running_instance(sdk, region, image).await?;
    ec2(sdk, region).stop_instances().instance_ids(&id).send().await.context("StopInstances")?;
    Ok(id)
}

/// An instance launched from `image`, left running.
pub async fn running_instance(sdk: &SdkConfig, region: &str, image: &str) -> Result<String> {
    let client = ec2(sdk, region);
    let run = client
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .context("RunInstances")?;
    let id =
        run.instances().first().and_then(|i| i.instance_id()).context("no instance")?.to_owned();
    Ok(id)
}

/// EnableImageDeprecation at `at` (what a pipeline does to give an image a later deadline).
pub async fn deprecate_at(
    sdk: &SdkConfig,
    region: &str,
    image: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    ec2(sdk, region)
        .enable_image_deprecation()
        .image_id(image)
        .deprecate_at(aws_smithy_types::DateTime::from_secs(at.timestamp()))
        .send()
        .await
        .context("EnableImageDeprecation")?;
    Ok(())
}

/// A Spot Fleet request (target capacity 0: nothing runs) whose launch specification names
/// `image` directly.
pub async fn spot_fleet(sdk: &SdkConfig, region: &str, image: &str) -> Result<String> {
    use aws_sdk_ec2::types::{
        AllocationStrategy, SpotFleetLaunchSpecification, SpotFleetRequestConfigData,
    };
    let spec = SpotFleetLaunchSpecification::builder()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .build();
    let config = SpotFleetRequestConfigData::builder()
        .iam_fleet_role("arn:aws:iam::123456789012:role/spot-fleet")
        .target_capacity(0)
        .allocation_strategy(AllocationStrategy::LowestPrice)
        .launch_specifications(spec)
        .build();
    let out = ec2(sdk, region)
        .request_spot_fleet()
        .spot_fleet_request_config(config)
        .send()
        .await
        .context("RequestSpotFleet")?;
    Ok(out.spot_fleet_request_id().context("no Spot Fleet id")?.to_owned())
}

/// An EC2 Fleet (`maintain`, target capacity 0) over a launch template naming `template_image`,
/// whose override names `image`.
pub async fn ec2_fleet(
    sdk: &SdkConfig,
    region: &str,
    name: &str,
    template_image: &str,
    image: &str,
) -> Result<String> {
    use aws_sdk_ec2::types::{
        FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
        FleetLaunchTemplateSpecificationRequest, FleetType, TargetCapacitySpecificationRequest,
    };
    let template = launch_template(sdk, region, name, &[template_image]).await?;
    let config = FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(
            FleetLaunchTemplateSpecificationRequest::builder()
                .launch_template_id(template)
                .version("$Latest")
                .build(),
        )
        .overrides(
            FleetLaunchTemplateOverridesRequest::builder()
                .image_id(image)
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .build();
    let out = ec2(sdk, region)
        .create_fleet()
        .r#type(FleetType::Maintain)
        .launch_template_configs(config)
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder().total_target_capacity(0).build(),
        )
        .send()
        .await
        .context("CreateFleet")?;
    Ok(out.fleet_id().context("no fleet id")?.to_owned())
}

/// A persistent Spot Instance request for `image`.
pub async fn spot_request(sdk: &SdkConfig, region: &str, image: &str) -> Result<String> {
    use aws_sdk_ec2::types::{RequestSpotLaunchSpecification, SpotInstanceType};
    let out = ec2(sdk, region)
        .request_spot_instances()
        .r#type(SpotInstanceType::Persistent)
        .launch_specification(
            RequestSpotLaunchSpecification::builder()
                .image_id(image)
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .context("RequestSpotInstances")?;
    let request = out
        .spot_instance_requests()
        .first()
        .and_then(|r| r.spot_instance_request_id())
        .context("no Spot request id")?;
    Ok(request.to_owned())
}
