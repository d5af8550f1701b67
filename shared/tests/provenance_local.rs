//! The launch guard against the local stack, through the real adapters: a launch of an image
//! whose chain reaches an approved base costs two DynamoDB requests and no EC2 request; a
//! launch of a descendant of a quarantined image is alerted CRITICAL once, however often its
//! event arrives; an image the lineage does not know is learnt from GetImageAncestry and
//! judged (here: not from an approved base, its chain ending at its root).
//!
//! The images live in a member account of this run alone, reached through its role.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::Value;
use warden::aws::{
    ec2::Ec2Catalogue, idempotency::IdempotencyTable, launch::Ec2Launches,
    lineage_table::LineageTable, Clients,
};
use warden::event::parse_value;
use warden::ids::{ImageId, ImageRef, Region};
use warden::notify::Severity;
use warden::provenance::run::{LaunchGuard, LaunchOutcome};
use warden::provenance::{Approved, Verdict};
use warden::quarantine::run::QuarantineStore;
use warden::quarantine::Quarantine;
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::fakes::FakeNotifier;
use warden_testkit::story::{self, StoryImage};
use warden_testkit::{org, stack};

const ACCOUNT: &str = "123456789012";
const HOME: &str = "ap-northeast-2";
const AWAY: &str = "ap-southeast-2";

fn member_id() -> String {
    format!("4{:05}000001", std::process::id() % 100_000)
}

fn image(i: &StoryImage) -> ImageRef {
    ImageRef::new(Region::parse(i.region).unwrap(), ImageId::parse(&i.image_id).unwrap())
}

/// A RunInstances record of one instance of `image`.
fn run_instances(trail: &Trail, image: &ImageRef, instance: &str) -> Value {
    trail.run_instances(image.region.as_str(), image.image_id.as_str(), instance)
}

/// Requests by service since `before`.
fn requests(clients: &Clients, before: &BTreeMap<(String, String), u64>, service: &str) -> u64 {
    let calls = clients.calls().since(before);
    calls.iter().filter(|((s, _), _)| s == service).map(|(_, n)| n).sum()
}

#[tokio::test]
async fn launches_are_judged_by_their_lineage_quarantine_first_then_the_approved_bases() {
    let own_sdk = stack::sdk_config().await;
    let (member, own) =
        org::reach_member(&own_sdk, &member_id(), "AmiWardenMember", ACCOUNT).await.unwrap();
    let table = stack::fresh_lineage_table(own.sdk_config(), "provenance").await;
    let store = LineageTable::from_clients(&own, table.clone());
    let trail = Trail::new(&member_id(), "pipeline");
    let built = story::play_seed_builds_in(member.sdk_config(), &trail, "provenance", HOME, AWAY)
        .await
        .unwrap();
    let catalogue = Ec2Catalogue::new(&member);
    for (_, event) in &built.events {
        record(&parse_value(event), &catalogue, &store).await.unwrap();
    }
    let gens: Vec<ImageRef> = built.generations.iter().map(image).collect();
    let golden = image(&built.golden);
    let claims = IdempotencyTable::new(&own, table.clone());
    let (ec2, notifier) = (Ec2Launches::new(&member), FakeNotifier::default());
    let approved = [Approved::Image(golden.clone())];
    let guard = LaunchGuard {
        store: &store,
        ec2: &ec2,
        claims: &claims,
        notifier: Some(&notifier),
        approved: &approved,
    };

    // All is well: Gen4 descends from the golden image. Two DynamoDB requests, no EC2.
    let (own_before, member_before) = (own.calls().snapshot(), member.calls().snapshot());
    let launch = run_instances(&trail, &gens[3], "i-0aaaaaaaaaaaaaaa1");
    let outcome = guard.on_event(&parse_value(&launch)).await.unwrap();
    let LaunchOutcome::Checked { images, alerted: false, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(images[0].verdict, Verdict::Approved { base: golden.clone() });
    assert_eq!(requests(&own, &own_before, "DynamoDB"), 2);
    assert_eq!(requests(&member, &member_before, "EC2"), 0);
    assert!(notifier.sent().is_empty());

    // Gen2 quarantined: a launch of Gen4 is CRITICAL, alerted once for two deliveries.
    let quarantine = Quarantine {
        image: gens[1].clone(),
        reason: "CVE-2026-0002".into(),
        by: "arn:aws:iam::123456789012:user/security".into(),
        at: Utc::now(),
        disable: false,
        released: None,
    };
    store.record_quarantine(&quarantine).await.unwrap();
    let launch = run_instances(&trail, &gens[3], "i-0aaaaaaaaaaaaaaa2");
    let first = guard.on_event(&parse_value(&launch)).await.unwrap();
    let LaunchOutcome::Checked { images, alerted: true, .. } = &first else { panic!("{first:?}") };
    let Verdict::Quarantined { chain, .. } = &images[0].verdict else { panic!("{first:?}") };
    assert_eq!(chain, &gens[1..].iter().rev().cloned().collect::<Vec<_>>());
    let again = guard.on_event(&parse_value(&trail.redelivery(&launch))).await.unwrap();
    assert!(matches!(again, LaunchOutcome::Duplicate { .. }), "{again:?}");
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].severity, Severity::Critical);
    assert!(
        sent[0].text.contains("i-0aaaaaaaaaaaaaaa2")
            || sent[0].fields.iter().any(|f| f.value.contains("i-0aaaaaaaaaaaaaaa2"))
    );

    // An image the lineage never saw: learnt from GetImageAncestry, then judged.
    let home = story::ec2(member.sdk_config(), HOME);
    let (root, _) =
        warden_testkit::exposure::register_image(member.sdk_config(), HOME, "provenance-stray")
            .await
            .unwrap();
    let copy = home
        .copy_image()
        .source_image_id(&root)
        .source_region(HOME)
        .name("provenance-stray-copy")
        .send()
        .await
        .unwrap();
    let stray = ImageRef::new(
        Region::parse(HOME).unwrap(),
        ImageId::parse(copy.image_id().unwrap()).unwrap(),
    );
    let outcome = guard
        .on_event(&parse_value(&run_instances(&trail, &stray, "i-0aaaaaaaaaaaaaaa3")))
        .await
        .unwrap();
    let LaunchOutcome::Checked { images, alerted: true, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    let Verdict::NotApproved { ends } = &images[0].verdict else { panic!("{outcome:?}") };
    assert!(ends.starts_with(&format!("{root}@{HOME}")), "{ends}");
    let sent = notifier.sent();
    assert_eq!(sent.last().map(|n| n.severity), Some(Severity::Warning));
}
