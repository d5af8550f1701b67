//! The real `launch-guard` binary under a local Lambda Runtime API, against the local stack:
//! a launch of an approved image is checked and not alerted; a launch of a quarantined
//! image's descendant is alerted CRITICAL once (a redelivery is a duplicate); an image the
//! lineage does not know is learnt from GetImageAncestry and warned about; garbage is
//! acknowledged. Every request the function made is granted by its policies in template.yaml.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use warden::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::event::parse_value;
use warden::ids::{ImageId, ImageRef, Region};
use warden::quarantine::run::QuarantineStore;
use warden::quarantine::Quarantine;
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::inbox::Inbox;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;
use warden_testkit::story::{play_seed_builds, StoryImage};

fn launch_of(trail: &Trail, image: &StoryImage, instance: &str) -> Value {
    trail.run_instances(image.region, &image.image_id, instance)
}

async fn invoke(api: &mut RuntimeApi, event: Value) -> Value {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
    assert_eq!(got, id);
    match reply {
        Reply::Response(body) => body,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_lambda_binary_alerts_on_quarantined_and_unapproved_launches_only() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "launch-guard").await;
    let trail = Trail::new("123456789012", "pipeline");
    let story = play_seed_builds(&sdk, &trail, "launch-guard").await.unwrap();
    let clients = Clients::new(&sdk);
    let store = LineageTable::from_clients(&clients, table.clone());
    for (_, event) in &story.events {
        record(&parse_value(event), &Ec2Catalogue::new(&clients), &store).await.unwrap();
    }
    let gen1 = &story.generations[0];
    store
        .record_quarantine(&Quarantine {
            image: ImageRef::new(
                Region::parse(gen1.region).unwrap(),
                ImageId::parse(&gen1.image_id).unwrap(),
            ),
            reason: "CVE-2026-0003".into(),
            by: "security".into(),
            at: Utc::now(),
            disable: false,
            released: None,
        })
        .await
        .unwrap();
    let inbox = Inbox::create(&sdk, &format!("launch-guard-{}", std::process::id())).await.unwrap();
    let golden = format!("{}@{}", story.golden.image_id, story.golden.region);
    let mut api = RuntimeApi::start().await;
    let function = api.spawn(
        env!("CARGO_BIN_EXE_launch-guard"),
        "launch-guard",
        &[("LINEAGE_TABLE", &table), ("TOPIC_ARN", &inbox.topic_arn), ("APPROVED_BASES", &golden)],
    );

    let fine = invoke(&mut api, launch_of(&trail, &story.golden, "i-0bbbbbbbbbbbbbbb1")).await;
    assert_eq!(
        (fine["outcome"].as_str(), fine["alerted"].as_bool()),
        (Some("checked"), Some(false)),
        "{fine}"
    );
    let gen4 = &story.generations[3];
    let launch = launch_of(&trail, gen4, "i-0bbbbbbbbbbbbbbb2");
    let critical = invoke(&mut api, launch.clone()).await;
    assert_eq!(critical["images"][0]["verdict"]["verdict"], "quarantined", "{critical}");
    assert_eq!(critical["alerted"], true, "{critical}");
    let again = invoke(&mut api, trail.redelivery(&launch)).await;
    assert_eq!(again["outcome"], "duplicate", "{again}");
    // An image the lineage never saw: learnt from GetImageAncestry, not from the golden image.
    let (stray, _) =
        warden_testkit::exposure::register_image(&sdk, "us-east-1", "launch-guard-stray")
            .await
            .unwrap();
    let warned =
        invoke(&mut api, trail.run_instances("us-east-1", &stray, "i-0bbbbbbbbbbbbbbb3")).await;
    assert_eq!(warned["images"][0]["verdict"]["verdict"], "not_approved", "{warned}");
    let garbage = invoke(&mut api, json!({"hello": "world"})).await;
    assert_eq!(garbage["outcome"], "ignored", "{garbage}");

    let received = inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    let severities: Vec<Option<&str>> = received.iter().map(|r| r.severity.as_deref()).collect();
    assert_eq!(
        severities,
        [Some("CRITICAL"), Some("WARNING")],
        "one alert each, none for the fine launch"
    );
    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("launch-guard", &logs);
}
