//! A member account with something for each daily sweep to find, for organization tests.

use warden::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::event::parse_value;
use warden::ids::AccountId;
use warden::recorder::record;

use crate::cloudtrail::Trail;
use crate::snapshots as estate;
use crate::{accounts, stack};

/// What `member` holds in `region` once seeded: a public image, and the snapshot of an image
/// deregistered since, whose events the lineage recorder saw (as it would have on AWS).
pub struct Seeded {
    pub public_image: String,
    pub orphan_snapshot: String,
}

/// Seeds `member` (reached through `role`, as the product reaches it) in `region`, recording
/// its lineage in `table`, and adds the template's Recycle Bin rule there.
pub async fn seed_member(
    sdk: &aws_config::SdkConfig,
    table: &str,
    member: &str,
    region: &str,
    role: &str,
) -> anyhow::Result<Seeded> {
    let id =
        AccountId::parse(member).ok_or_else(|| anyhow::anyhow!("{member} is no account id"))?;
    let in_member = warden::aws::org::assume(&Clients::new(sdk), &id, role)
        .await
        .map_err(anyhow::Error::msg)?;
    let msdk = &stack::in_region(in_member.sdk_config(), region);
    let trail = Trail::new(member, "pipeline");
    let root = estate::create_snapshot(msdk, region, 8, "org base root").await?;
    let (base, registered) = estate::register_from(msdk, &trail, region, "org-base", &root).await?;
    let everyone = aws_sdk_ec2::types::LaunchPermission::builder().group("all".into()).build();
    accounts::ec2(sdk, member, region)
        .modify_image_attribute()
        .image_id(&base)
        .launch_permission(
            aws_sdk_ec2::types::LaunchPermissionModifications::builder().add(everyone).build(),
        )
        .send()
        .await?;
    let store = LineageTable::from_clients(&Clients::new(sdk), table);
    let catalogue = Ec2Catalogue::new(&in_member);
    record(&parse_value(&registered), &catalogue, &store).await.map_err(anyhow::Error::msg)?;
    let (image, snapshot) =
        estate::create_image_from_instance(msdk, region, &base, "org-orphan").await?;
    let available = trail.ami_state_change(region, &image, "available");
    record(&parse_value(&available), &catalogue, &store).await.map_err(anyhow::Error::msg)?;
    estate::deregister(msdk, &trail, region, &image, false).await?;
    crate::recycle_bin::add_template_rule(member, region).await?;
    Ok(Seeded { public_image: base, orphan_snapshot: snapshot })
}

/// A member account of this test run, reached as the product reaches one: creates its role
/// (trusting `trusted`, as infra/organization.yaml's member stack does) and assumes it.
/// Returns the member's clients and the own account's.
pub async fn reach_member(
    own_sdk: &aws_config::SdkConfig,
    member: &str,
    role: &str,
    trusted: &str,
) -> anyhow::Result<(Clients, Clients)> {
    accounts::create_member_role(own_sdk, member, role, trusted).await?;
    let own = Clients::new(own_sdk);
    let id =
        AccountId::parse(member).ok_or_else(|| anyhow::anyhow!("{member} is no account id"))?;
    let clients = warden::aws::org::assume(&own, &id, role).await.map_err(anyhow::Error::msg)?;
    Ok((clients, own))
}
