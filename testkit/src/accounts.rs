//! Other accounts on the local stack, for organization-mode tests.
//!
//! moto keeps every account apart and picks the account of a request from its
//! `x-moto-account-id` header. Test set-up uses that header to build a member account's estate
//! and its role; the product itself reaches members only through STS AssumeRole, as on AWS.

use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Debug)]
struct ActAs(String);

impl Intercept for ActAs {
    fn name(&self) -> &'static str {
        "ActAs"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context.request_mut().headers_mut().insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// An EC2 client acting in `account` and `region` on the local stack.
pub fn ec2(sdk: &SdkConfig, account: &str, region: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .interceptor(ActAs(account.to_owned()))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// Creates `role_name` in `account`, trusting `trusted_account` (what infra/organization.yaml's
/// member stack creates). Idempotent.
pub async fn create_member_role(
    sdk: &SdkConfig,
    account: &str,
    role_name: &str,
    trusted_account: &str,
) -> anyhow::Result<()> {
    let conf =
        aws_sdk_iam::config::Builder::from(sdk).interceptor(ActAs(account.to_owned())).build();
    let iam = aws_sdk_iam::Client::from_conf(conf);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{trusted_account}:root")}, "Action": "sts:AssumeRole"}]
    });
    match iam
        .create_role()
        .role_name(role_name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err)
            if aws_sdk_iam::error::ProvideErrorMetadata::code(&err)
                == Some("EntityAlreadyExists") =>
        {
            Ok(())
        }
        Err(err) => Err(anyhow::anyhow!("CreateRole {role_name} in {account}: {err:?}")),
    }
}

/// Registers an image named `name` in `account`'s `region`, backed by a new 1 GiB snapshot;
/// returns its id.
pub async fn register_image(
    sdk: &SdkConfig,
    account: &str,
    region: &str,
    name: &str,
) -> anyhow::Result<String> {
    use anyhow::Context;
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice};
    let ec2 = ec2(sdk, account, region);
    let volume = ec2
        .create_volume()
        .availability_zone(format!("{region}a"))
        .size(1)
        .send()
        .await
        .context("CreateVolume")?;
    let snapshot = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().unwrap_or_default())
        .send()
        .await
        .context("CreateSnapshot")?;
    let mapping = BlockDeviceMapping::builder()
        .device_name("/dev/xvda")
        .ebs(
            EbsBlockDevice::builder()
                .snapshot_id(snapshot.snapshot_id().unwrap_or_default())
                .build(),
        )
        .build();
    let image = ec2
        .register_image()
        .name(name)
        .root_device_name("/dev/xvda")
        .block_device_mappings(mapping)
        .send()
        .await
        .context("RegisterImage")?;
    image.image_id().map(str::to_owned).context("RegisterImage returned no id")
}
