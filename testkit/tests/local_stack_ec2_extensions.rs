//! The local-only EC2 extensions of the emulator (dev/moto_ext/ec2.py, recycle_bin.py) behave
//! as AWS does.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ImageBlockPublicAccessEnabledState};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{modify_snapshot_permission, register_image, Share};
use warden_testkit::snapshots::create_snapshot;
use warden_testkit::stack;
use warden_testkit::story::ec2;

#[tokio::test]
async fn image_block_public_access_round_trips_per_region() {
    let sdk = stack::sdk_config().await;
    let client = ec2(&sdk, "sa-east-1");
    client
        .enable_image_block_public_access()
        .image_block_public_access_state(ImageBlockPublicAccessEnabledState::BlockNewSharing)
        .send()
        .await
        .unwrap();
    let got = client.get_image_block_public_access_state().send().await.unwrap();
    assert_eq!(got.image_block_public_access_state(), Some("block-new-sharing"));
    let off = client.disable_image_block_public_access().send().await.unwrap();
    assert_eq!(off.image_block_public_access_state().map(|s| s.as_str()), Some("unblocked"));
    let got = client.get_image_block_public_access_state().send().await.unwrap();
    assert_eq!(got.image_block_public_access_state(), Some("unblocked"));
}

#[tokio::test]
async fn describe_images_filters_by_block_device_snapshot() {
    let sdk = stack::sdk_config().await;
    let (image, snapshot) = register_image(&sdk, "sa-east-1", "filter-me").await.unwrap();
    let (_other, _) = register_image(&sdk, "sa-east-1", "not-me").await.unwrap();
    let out = ec2(&sdk, "sa-east-1")
        .describe_images()
        .owners("self")
        .filters(
            Filter::builder().name("block-device-mapping.snapshot-id").values(&snapshot).build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = out.images().iter().filter_map(|i| i.image_id()).collect();
    assert_eq!(ids, vec![image.as_str()]);
    // Backed by an EBS snapshot: `ebs`, as AWS says (moto alone says `standard`).
    assert_eq!(out.images()[0].root_device_type(), Some(&aws_sdk_ec2::types::DeviceType::Ebs));
}

#[tokio::test]
async fn describe_image_references_takes_at_most_ten_ids() {
    let sdk = stack::sdk_config().await;
    let ids = |n: u64| (0..n).map(|i| format!("ami-{i:017x}")).collect::<Vec<_>>();
    let ask = |n: u64| {
        ec2(&sdk, "sa-east-1")
            .describe_image_references()
            .set_image_ids(Some(ids(n)))
            .include_all_resource_types(true)
            .send()
    };
    assert!(ask(10).await.unwrap().image_references().is_empty());
    let refused = ask(11).await.unwrap_err();
    assert_eq!(refused.code(), Some("InvalidParameterValue"), "{refused:?}");
}

#[tokio::test]
async fn describe_snapshots_keeps_only_what_restorable_by_names() {
    let sdk = stack::sdk_config().await;
    let region = "sa-east-1";
    let client = ec2(&sdk, region);
    let public = create_snapshot(&sdk, region, 1, "restorable by all").await.unwrap();
    let shared = create_snapshot(&sdk, region, 1, "restorable by a partner").await.unwrap();
    let private = create_snapshot(&sdk, region, 1, "private").await.unwrap();
    let trail = Trail::new("123456789012", "tester");
    modify_snapshot_permission(&sdk, &trail, region, &public, true, &[Share::All]).await.unwrap();
    modify_snapshot_permission(
        &sdk,
        &trail,
        region,
        &shared,
        true,
        &[Share::Account("222233334444".into())],
    )
    .await
    .unwrap();
    let listed = |who: &'static str| {
        let client = client.clone();
        async move {
            let out = client
                .describe_snapshots()
                .owner_ids("self")
                .restorable_by_user_ids(who)
                .send()
                .await
                .unwrap();
            out.snapshots()
                .iter()
                .filter_map(|s| s.snapshot_id().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let everyone = listed("all").await;
    assert!(
        everyone.contains(&public) && !everyone.contains(&shared) && !everyone.contains(&private),
        "{everyone:?}"
    );
    let partner = listed("222233334444").await;
    assert!(
        partner.contains(&shared) && !partner.contains(&public) && !partner.contains(&private),
        "{partner:?}"
    );
}

/// The Recycle Bin (dev/moto_ext/recycle_bin.py): a tag-level rule keeps what has one of its
/// tags, a Region-level rule all but what has one of its exclusion tags, the longest retention
/// wins, rules are per region, and what is in the bin is not described until restored.
#[tokio::test]
async fn the_recycle_bin_keeps_what_its_rules_select() {
    use warden_testkit::exposure::tag;
    use warden_testkit::recycle_bin::{add_rule, snapshots_in_bin};
    let sdk = stack::sdk_config().await;
    let region = "ap-southeast-3"; // no other test's: what is binned stays for the stack's life
    let client = ec2(&sdk, region);
    let days =
        |d: u32| serde_json::json!({"RetentionPeriodValue": d, "RetentionPeriodUnit": "DAYS"});
    add_rule(region, &serde_json::json!({"ResourceType": "EBS_SNAPSHOT", "RetentionPeriod": days(3), "ResourceTags": [
        {"ResourceTagKey": "keep", "ResourceTagValue": "a"}, {"ResourceTagKey": "keep", "ResourceTagValue": "b"}]}))
        .await
        .unwrap();
    add_rule(region, &serde_json::json!({"ResourceType": "EBS_SNAPSHOT", "RetentionPeriod": days(9), "ResourceTags": [
        {"ResourceTagKey": "long", "ResourceTagValue": "yes"}]}))
        .await
        .unwrap();
    let a = create_snapshot(&sdk, region, 1, "a").await.unwrap();
    let both = create_snapshot(&sdk, region, 1, "b and long").await.unwrap();
    let wrong_value = create_snapshot(&sdk, region, 1, "c").await.unwrap();
    tag(&sdk, region, &a, "keep", "a").await.unwrap();
    tag(&sdk, region, &both, "keep", "b").await.unwrap();
    tag(&sdk, region, &both, "long", "yes").await.unwrap();
    tag(&sdk, region, &wrong_value, "keep", "c").await.unwrap();
    for s in [&a, &both, &wrong_value] {
        client.delete_snapshot().snapshot_id(s.as_str()).send().await.unwrap();
    }
    let binned = snapshots_in_bin(&sdk, region).await.unwrap();
    assert!(binned.contains(&(a.clone(), 3 * 86_400)), "{binned:?}");
    assert!(binned.contains(&(both.clone(), 9 * 86_400)), "the longest retention: {binned:?}");
    assert!(binned.iter().all(|(s, _)| s != &wrong_value), "{binned:?}");
    // Rules are per region: the same tag in a region without rules keeps nothing.
    let elsewhere = create_snapshot(&sdk, "sa-east-1", 1, "a elsewhere").await.unwrap();
    tag(&sdk, "sa-east-1", &elsewhere, "keep", "a").await.unwrap();
    ec2(&sdk, "sa-east-1").delete_snapshot().snapshot_id(&elsewhere).send().await.unwrap();
    assert!(
        snapshots_in_bin(&sdk, "sa-east-1").await.unwrap().iter().all(|(s, _)| s != &elsewhere),
        "rules are per region"
    );
    let refused = client
        .restore_snapshot_from_recycle_bin()
        .snapshot_id(&wrong_value)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("InvalidSnapshot.NotFound"), "{refused:?}");

    // Images: a Region-level rule with an exclusion tag.
    add_rule(region, &serde_json::json!({"ResourceType": "EC2_IMAGE", "RetentionPeriod": days(5), "ExcludeResourceTags": [
        {"ResourceTagKey": "bin", "ResourceTagValue": "never"}]}))
        .await
        .unwrap();
    let (kept, _) = register_image(&sdk, region, "binned-image").await.unwrap();
    let (gone, _) = register_image(&sdk, region, "excluded-image").await.unwrap();
    tag(&sdk, region, &gone, "bin", "never").await.unwrap();
    for i in [&kept, &gone] {
        client.deregister_image().image_id(i.as_str()).send().await.unwrap();
    }
    let listed = client.list_images_in_recycle_bin().send().await.unwrap();
    let binned =
        listed.images().iter().find(|i| i.image_id() == Some(kept.as_str())).expect("in the bin");
    assert_eq!(binned.name(), Some("binned-image"));
    assert!(
        listed.images().iter().all(|i| i.image_id() != Some(gone.as_str())),
        "excluded by its tag"
    );
}
