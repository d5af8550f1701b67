//! The local-only EC2 extensions of the emulator (dev/moto_ext/ec2.py) behave as AWS does.

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
        .filters(Filter::builder().name("block-device-mapping.snapshot-id").values(&snapshot).build())
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = out.images().iter().filter_map(|i| i.image_id()).collect();
    assert_eq!(ids, vec![image.as_str()]);
}

#[tokio::test]
async fn describe_image_references_takes_at_most_ten_ids() {
    let sdk = stack::sdk_config().await;
    let ids = |n: u64| (0..n).map(|i| format!("ami-{i:017x}")).collect::<Vec<_>>();
    let ask = |n: u64| ec2(&sdk, "sa-east-1").describe_image_references().set_image_ids(Some(ids(n))).include_all_resource_types(true).send();
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
    modify_snapshot_permission(&sdk, &trail, region, &shared, true, &[Share::Account("222233334444".into())]).await.unwrap();
    let listed = |who: &'static str| {
        let client = client.clone();
        async move {
            let out = client.describe_snapshots().owner_ids("self").restorable_by_user_ids(who).send().await.unwrap();
            out.snapshots().iter().filter_map(|s| s.snapshot_id().map(str::to_owned)).collect::<Vec<_>>()
        }
    };
    let everyone = listed("all").await;
    assert!(everyone.contains(&public) && !everyone.contains(&shared) && !everyone.contains(&private), "{everyone:?}");
    let partner = listed("222233334444").await;
    assert!(partner.contains(&shared) && !partner.contains(&public) && !partner.contains(&private), "{partner:?}");
}
