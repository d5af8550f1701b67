//! The local-only extensions the backfill and organization mode meet (dev/moto_ext): EC2's
//! `SourceImageId`/`SourceImageRegion` and `GetImageAncestry`, CloudTrail's `LookupEvents`, and
//! STS refusing a role that does not exist — each as AWS behaves.

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use serde_json::json;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::register_image;
use warden_testkit::story::ec2;
use warden_testkit::{history, stack};

#[tokio::test]
async fn copies_name_their_source_and_ancestry_walks_regions_until_an_ancestor_is_gone() {
    let sdk = stack::sdk_config().await;
    let (home, away) = ("eu-west-3", "eu-north-1");
    let (root, _) = register_image(&sdk, home, "ancestry-root").await.unwrap();
    let copy =
        |region: &'static str, source: String, source_region: &'static str, name: &'static str| {
            let sdk = sdk.clone();
            async move {
                ec2(&sdk, region)
                    .copy_image()
                    .source_image_id(source)
                    .source_region(source_region)
                    .name(name)
                    .send()
                    .await
                    .unwrap()
                    .image_id()
                    .unwrap()
                    .to_owned()
            }
        };
    let middle = copy(away, root.clone(), home, "ancestry-middle").await;
    let leaf = copy(home, middle.clone(), away, "ancestry-leaf").await;

    let described = ec2(&sdk, home).describe_images().image_ids(&leaf).send().await.unwrap();
    let image = &described.images()[0];
    assert_eq!(
        (image.source_image_id(), image.source_image_region()),
        (Some(middle.as_str()), Some(away))
    );
    let root_image = ec2(&sdk, home).describe_images().image_ids(&root).send().await.unwrap();
    assert_eq!(root_image.images()[0].source_image_id(), None, "RegisterImage has no source");

    let chain = ec2(&sdk, home).get_image_ancestry().image_id(&leaf).send().await.unwrap();
    let links: Vec<_> = chain
        .image_ancestry_entries()
        .iter()
        .map(|e| (e.image_id().unwrap().to_owned(), e.source_image_id().map(str::to_owned)))
        .collect();
    assert_eq!(
        links,
        vec![
            (leaf.clone(), Some(middle.clone())),
            (middle.clone(), Some(root.clone())),
            (root.clone(), None)
        ]
    );

    ec2(&sdk, away).deregister_image().image_id(&middle).send().await.unwrap();
    let broken = ec2(&sdk, home).get_image_ancestry().image_id(&leaf).send().await.unwrap();
    assert_eq!(
        broken.image_ancestry_entries().len(),
        1,
        "the chain stops at the deregistered ancestor"
    );
    let unknown =
        ec2(&sdk, home).get_image_ancestry().image_id("ami-0000000000000dead").send().await;
    assert!(unknown.is_err());
}

#[tokio::test]
async fn lookup_events_serves_the_history_newest_first_by_event_name_and_page() {
    let sdk = stack::sdk_config().await;
    let region = "eu-west-3";
    let trail = Trail::with_seed("123456789012", "history", 7);
    let events: Vec<_> = (0..3)
        .map(|n| {
            trail.api_call(
                region,
                "CopyImage",
                json!({"sourceImageId": format!("ami-00{n}"), "sourceRegion": region}),
                json!({"imageId": format!("ami-10{n}")}),
            )
        })
        .chain([trail.api_call(
            region,
            "RegisterImage",
            json!({"name": "x"}),
            json!({"imageId": "ami-200"}),
        )])
        .collect();
    let added = history::record(&events).await.unwrap();
    assert_eq!(added, 4);
    assert_eq!(history::record(&events).await.unwrap(), 0, "a record is kept once");

    let client = aws_sdk_cloudtrail::Client::from_conf(
        aws_sdk_cloudtrail::config::Builder::from(&sdk)
            .region(aws_config::Region::new(region))
            .build(),
    );
    let by_name = LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::EventName)
        .attribute_value("CopyImage")
        .build()
        .unwrap();
    let first = client
        .lookup_events()
        .lookup_attributes(by_name.clone())
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.events().len(), 2);
    let next = client
        .lookup_events()
        .lookup_attributes(by_name)
        .max_results(2)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await
        .unwrap();
    let ours = |page: &aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput| {
        page.events()
            .iter()
            .filter(|e| e.cloud_trail_event().is_some_and(|r| r.contains("ami-10")))
            .count()
    };
    assert!(ours(&first) + ours(&next) >= 3, "every CopyImage record, across pages");
    assert!(first
        .events()
        .iter()
        .chain(next.events())
        .all(|e| e.event_name() == Some("CopyImage")));
}

#[tokio::test]
async fn assume_role_is_refused_for_a_role_that_does_not_exist() {
    let sdk = stack::sdk_config().await;
    let sts = aws_sdk_sts::Client::new(&sdk);
    let missing = sts
        .assume_role()
        .role_arn("arn:aws:iam::333344445555:role/AmiWardenMember")
        .role_session_name("test")
        .send()
        .await;
    let err = missing.expect_err("no such role");
    assert_eq!(aws_sdk_sts::error::ProvideErrorMetadata::code(&err), Some("AccessDenied"));
    warden_testkit::accounts::create_member_role(
        &sdk,
        "333344445555",
        "AmiWardenMember",
        "123456789012",
    )
    .await
    .unwrap();
    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::333344445555:role/AmiWardenMember")
        .role_session_name("test")
        .send()
        .await
        .unwrap();
    assert!(assumed.credentials().is_some());
}
