//! The local-only EC2 extensions of the emulator (dev/moto_ext/ec2.py) behave as AWS does.

use aws_sdk_ec2::types::{Filter, ImageBlockPublicAccessEnabledState};
use warden_testkit::exposure::register_image;
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
