//! The lineage recorder end to end on the local stack: real EC2 calls on moto, the events they
//! would produce, the real DynamoDB and EC2 adapters. Run with `dev/test` (which starts the
//! stack) or after `eval "$(dev/local-stack up)"`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use warden::aws::ec2::Ec2Catalogue;
use warden::aws::lineage_table::{dump_table, LineageTable};
use warden::aws::Clients;
use warden::event::parse_value;
use warden::ids::{ImageId, ImageRef, Region};
use warden::lineage::{LineageStore, NodeState};
use warden::recorder::{record, Outcome};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::shuffled;
use warden_testkit::stack;
use warden_testkit::story::{play_seed_story, SeedStory, StoryImage};

struct Harness {
    clients: Clients,
    store: LineageTable,
    catalogue: Ec2Catalogue,
}

impl Harness {
    async fn new() -> Self {
        let sdk = stack::sdk_config().await;
        let table = stack::fresh_lineage_table(&sdk, "lineage-test").await;
        let clients = Clients::new(&sdk);
        // Two items a page: every query below runs through the pagination loop.
        let store = LineageTable::from_clients(&clients, table).with_page_size(2);
        let catalogue = Ec2Catalogue::new(&clients);
        Self { clients, store, catalogue }
    }

    async fn deliver(&self, event: &Value) -> Outcome {
        record(&parse_value(event), &self.catalogue, &self.store)
            .await
            .unwrap_or_else(|e| panic!("recording failed: {e}"))
    }

    async fn deliver_all<'a>(&self, events: impl IntoIterator<Item = &'a Value>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for e in events {
            outcomes.push(self.deliver(e).await);
        }
        outcomes
    }

    async fn dump(&self) -> Vec<String> {
        dump_table(self.clients.dynamodb(), self.store.table_name()).await.expect("dump")
    }
}

fn image(i: &StoryImage) -> ImageRef {
    ImageRef::new(Region::parse(i.region).unwrap(), ImageId::parse(&i.image_id).unwrap())
}

async fn story(tag: &str) -> (SeedStory, Trail) {
    let sdk = stack::sdk_config().await;
    let trail = Trail::new("123456789012", "golden-image-pipeline");
    let story = play_seed_story(&sdk, &trail, tag).await.expect("seed story on the local stack");
    (story, trail)
}

fn events(story: &SeedStory) -> Vec<Value> {
    story.events.iter().map(|(_, e)| e.clone()).collect()
}

#[tokio::test]
async fn seed_story_gen1_still_lists_gen3_and_gen4_after_gen2_is_deregistered() {
    let (story, _) = story("desc").await;
    let h = Harness::new().await;
    h.deliver_all(&events(&story)).await;

    let golden = image(&story.golden);
    let descendants = h.store.descendants(&golden).await.unwrap();
    let got: Vec<(String, u32, NodeState)> =
        descendants.iter().map(|r| (r.image.image_id.to_string(), r.depth, r.state)).collect();
    let g = &story.generations;
    assert_eq!(
        got,
        vec![
            (g[0].image_id.clone(), 1, NodeState::Available),
            (g[1].image_id.clone(), 2, NodeState::Deregistered),
            (g[2].image_id.clone(), 3, NodeState::Available),
            (g[3].image_id.clone(), 4, NodeState::Available),
        ]
    );
    // Four descendants at two items a page came back whole: the pages were followed.
    let pages = h.clients.calls().snapshot();
    h.store.descendants(&golden).await.unwrap();
    let queries =
        h.clients.calls().since(&pages).get(&("DynamoDB".into(), "Query".into())).copied();
    assert_eq!(queries, Some(3), "4 items at 2 a page: 2 full pages and an empty last one");
    // Each descendant names its parent, across regions.
    assert_eq!(descendants[3].parent.as_ref(), Some(&image(&g[2])));
    assert_eq!(descendants[1].image.region.as_str(), "eu-west-1");

    let gen1_descendants = h.store.descendants(&image(&g[0])).await.unwrap();
    let ids: Vec<&str> = gen1_descendants.iter().map(|r| r.image.image_id.as_str()).collect();
    assert_eq!(ids, vec![g[1].image_id.as_str(), g[2].image_id.as_str(), g[3].image_id.as_str()]);
}

#[tokio::test]
async fn seed_story_gen4_traces_through_deregistered_gen2_back_to_golden() {
    let (story, _) = story("anc").await;
    let h = Harness::new().await;
    h.deliver_all(&events(&story)).await;

    let g = &story.generations;
    let ancestors = h.store.ancestors(&image(&g[3])).await.unwrap();
    let got: Vec<(String, u32, NodeState)> =
        ancestors.iter().map(|r| (r.image.image_id.to_string(), r.depth, r.state)).collect();
    assert_eq!(
        got,
        vec![
            (g[2].image_id.clone(), 1, NodeState::Available),
            (g[1].image_id.clone(), 2, NodeState::Deregistered),
            (g[0].image_id.clone(), 3, NodeState::Available),
            (story.golden.image_id.clone(), 4, NodeState::Available),
        ]
    );
    // Gen1's parent is the golden image, found through the instance it was created from.
    let gen1 = h.store.node(&image(&g[0])).await.unwrap().expect("gen1 recorded");
    assert_eq!(gen1.parent, Some(image(&story.golden)));
    // The golden image's snapshots come from its RegisterImage block device mappings (moto
    // ignores those mappings and reports a snapshot of its own once the image is available;
    // both are recorded).
    let golden = h.store.node(&image(&story.golden)).await.unwrap().expect("golden recorded");
    assert!(
        golden.snapshots.iter().any(|s| s.as_str() == story.golden_snapshot),
        "{:?}",
        golden.snapshots
    );
    assert_eq!(golden.parent, None);
}

#[tokio::test]
async fn copy_recorded_before_parent_is_known_still_links() {
    let (story, _) = story("reverse").await;
    let in_order = Harness::new().await;
    in_order.deliver_all(&events(&story)).await;

    let reversed = Harness::new().await;
    let mut backwards = events(&story);
    backwards.reverse();
    reversed.deliver_all(&backwards).await;

    assert_eq!(reversed.dump().await, in_order.dump().await);
    let golden = image(&story.golden);
    assert_eq!(reversed.store.descendants(&golden).await.unwrap().len(), 4);
}

#[tokio::test]
async fn every_order_with_every_event_delivered_twice_yields_the_identical_table() {
    let (story, trail) = story("orders").await;
    let reference = Harness::new().await;
    reference.deliver_all(&events(&story)).await;
    let want = reference.dump().await;

    let base = events(&story);
    let twice: Vec<Value> =
        base.iter().cloned().chain(base.iter().map(|e| trail.redelivery(e))).collect();
    for seed in 1..=6 {
        let h = Harness::new().await;
        h.deliver_all(&shuffled(&twice, seed)).await;
        assert_eq!(h.dump().await, want, "delivery order seed {seed}");
    }
}

#[tokio::test]
async fn redelivered_event_is_a_duplicate_and_writes_nothing() {
    let (story, trail) = story("dup").await;
    let h = Harness::new().await;
    let all = events(&story);
    h.deliver_all(&all).await;
    let before = h.dump().await;
    let copy = &all[4];
    let outcome = h.deliver(&trail.redelivery(copy)).await;
    assert!(matches!(outcome, Outcome::Duplicate { .. }), "{outcome:?}");
    assert_eq!(h.dump().await, before);
}

#[tokio::test]
async fn concurrent_deliveries_converge_on_the_sequential_table() {
    let (story, trail) = story("concurrent").await;
    let sequential = Harness::new().await;
    sequential.deliver_all(&events(&story)).await;
    let want = sequential.dump().await;

    let h = Arc::new(Harness::new().await);
    let base = events(&story);
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let h = Arc::clone(&h);
        let mine: Vec<Value> =
            shuffled(&base, worker + 11).iter().map(|e| trail.redelivery(e)).collect();
        tasks.push(tokio::spawn(async move {
            for e in &mine {
                h.deliver(e).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    assert_eq!(h.dump().await, want);
}

#[tokio::test]
async fn failed_calls_are_ignored_and_write_nothing() {
    let (story, _) = story("failed").await;
    let h = Harness::new().await;
    let (_, failed) = story
        .events
        .iter()
        .find(|(label, _)| label == "copy-missing-failed")
        .expect("failed call event");
    let outcome = h.deliver(failed).await;
    assert!(
        matches!(&outcome, Outcome::Ignored { reason } if reason.contains("Client.InvalidAMIID.NotFound")),
        "{outcome:?}"
    );
    assert!(h.dump().await.is_empty());
}

#[tokio::test]
async fn create_image_of_a_vanished_instance_records_the_parent_as_unknown() {
    let trail = Trail::new("123456789012", "pipeline");
    let h = Harness::new().await;
    let event = trail.api_call(
        "us-east-1",
        "CreateImage",
        serde_json::json!({"instanceId": "i-0fffffffffffffff0", "name": "orphan-build"}),
        serde_json::json!({"imageId": "ami-0123400000000abcd"}),
    );
    let outcome = h.deliver(&event).await;
    assert!(
        matches!(&outcome, Outcome::Recorded { summary } if summary.contains("parent unknown")),
        "{outcome:?}"
    );
    let node = h
        .store
        .node(&ImageRef::new(
            Region::parse("us-east-1").unwrap(),
            ImageId::parse("ami-0123400000000abcd").unwrap(),
        ))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(node.parent, None);
    assert!(node.parent_note.as_deref().unwrap_or_default().contains("i-0fffffffffffffff0"));
    assert_eq!(node.state, NodeState::Pending);
}

#[tokio::test]
async fn copy_image_lineage_costs_no_ec2_call_and_one_dynamodb_write() {
    let (story, _) = story("cost").await;
    let h = Harness::new().await;
    let all = events(&story);
    let (copy_at, _) =
        story.events.iter().enumerate().find(|(_, (l, _))| l == "copy-gen3").expect("copy");
    h.deliver_all(&all[..copy_at]).await;

    let before = h.clients.calls().snapshot();
    let outcome = h.deliver(&all[copy_at]).await;
    assert!(matches!(outcome, Outcome::Recorded { .. }), "{outcome:?}");
    let calls: BTreeMap<(String, String), u64> = h.clients.calls().since(&before);
    let ec2: u64 = calls.iter().filter(|((s, _), _)| s == "EC2").map(|(_, n)| n).sum();
    let writes: u64 = calls
        .iter()
        .filter(|((s, op), _)| {
            s == "DynamoDB"
                && ["PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem"]
                    .contains(&op.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(ec2, 0, "{calls:?}");
    assert_eq!(writes, 1, "{calls:?}");
}

fn fixture_events() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "expected the fixture set in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            serde_json::from_slice(&std::fs::read(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

#[tokio::test]
async fn fixtures_delivered_twice_in_many_orders_yield_the_identical_table() {
    let fixtures = fixture_events();
    let reference = Harness::new().await;
    reference.deliver_all(&fixtures).await;
    let want = reference.dump().await;
    assert!(
        want.iter().any(|line| line.contains("D#")),
        "the fixtures record some lineage: {want:#?}"
    );

    let twice: Vec<Value> = fixtures.iter().chain(fixtures.iter()).cloned().collect();
    for seed in 1..=8 {
        let h = Harness::new().await;
        h.deliver_all(&shuffled(&twice, seed)).await;
        assert_eq!(h.dump().await, want, "delivery order seed {seed}");
    }
}

#[tokio::test]
async fn a_copy_that_would_close_a_cycle_is_reported_and_not_recorded() {
    let trail = Trail::new("123456789012", "pipeline");
    let h = Harness::new().await;
    let copy = |from: &str, to: &str| {
        trail.api_call(
            "us-east-1",
            "CopyImage",
            serde_json::json!({"sourceRegion": "us-east-1", "sourceImageId": from, "name": "x"}),
            serde_json::json!({"imageId": to}),
        )
    };
    h.deliver(&copy("ami-0c0c0c0c0c0c0c0c1", "ami-0c0c0c0c0c0c0c0c2")).await;
    let before = h.dump().await;
    let outcome = h.deliver(&copy("ami-0c0c0c0c0c0c0c0c2", "ami-0c0c0c0c0c0c0c0c1")).await;
    assert!(
        matches!(&outcome, Outcome::Ignored { reason } if reason.contains("cycle")),
        "{outcome:?}"
    );
    assert_eq!(h.dump().await, before);
    let itself = h.deliver(&copy("ami-0c0c0c0c0c0c0c0c3", "ami-0c0c0c0c0c0c0c0c3")).await;
    assert!(matches!(&itself, Outcome::Ignored { .. }), "{itself:?}");
}

/// The same image id string in two regions (possible across accounts) is two images: two
/// nodes, two families, never mixed.
#[tokio::test]
async fn the_same_image_id_in_two_regions_is_two_images() {
    let h = Harness::new().await;
    let trail = Trail::with_seed("123456789012", "pipeline", 99);
    let id = "ami-0123456789abcdef0";
    let (east, west) = ("us-east-1", "eu-west-1");
    let events = [
        trail.api_call(
            east,
            "RegisterImage",
            serde_json::json!({"name": "east-root"}),
            serde_json::json!({"imageId": id}),
        ),
        trail.api_call(
            west,
            "RegisterImage",
            serde_json::json!({"name": "west-root"}),
            serde_json::json!({"imageId": id}),
        ),
        trail.api_call(
            east,
            "CopyImage",
            serde_json::json!({"sourceImageId": id, "sourceRegion": east, "name": "east-child"}),
            serde_json::json!({"imageId": "ami-0e0000000000000e1"}),
        ),
        trail.api_call(
            east,
            "CopyImage",
            serde_json::json!({"sourceImageId": id, "sourceRegion": west, "name": "from-west"}),
            serde_json::json!({"imageId": "ami-0e0000000000000e2"}),
        ),
    ];
    h.deliver_all(&events).await;
    let at = |region: &str, id: &str| {
        ImageRef::new(Region::parse(region).unwrap(), ImageId::parse(id).unwrap())
    };
    let east_root = h.store.node(&at(east, id)).await.unwrap().unwrap();
    let west_root = h.store.node(&at(west, id)).await.unwrap().unwrap();
    assert_eq!(
        (east_root.name.as_deref(), west_root.name.as_deref()),
        (Some("east-root"), Some("west-root"))
    );
    let names = |rs: Vec<warden::lineage::Relative>| {
        rs.into_iter().map(|r| r.name.unwrap_or_default()).collect::<Vec<_>>()
    };
    assert_eq!(names(h.store.descendants(&at(east, id)).await.unwrap()), vec!["east-child"]);
    assert_eq!(names(h.store.descendants(&at(west, id)).await.unwrap()), vec!["from-west"]);
    let ancestors = h.store.ancestors(&at(east, "ami-0e0000000000000e2")).await.unwrap();
    assert_eq!(
        ancestors.iter().map(|r| (r.image.clone(), r.name.clone())).collect::<Vec<_>>(),
        vec![(at(west, id), Some("west-root".into()))]
    );
}

/// Sets a record's time (the envelope's and CloudTrail's), to deliver changes out of order.
fn at(mut event: Value, time: &str) -> Value {
    event["time"] = Value::from(time);
    if event["detail"].get("eventTime").is_some() {
        event["detail"]["eventTime"] = Value::from(time);
    }
    event
}

#[tokio::test]
async fn a_disabled_image_shows_disabled_until_a_newer_enable_whatever_the_delivery_order() {
    let trail = Trail::new("123456789012", "pipeline");
    let h = Harness::new().await;
    let id = "ami-0d15ab1ed0000e001";
    let image = ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse(id).unwrap());
    let call = |name: &str| {
        trail.api_call(
            "us-east-1",
            name,
            serde_json::json!({"imageId": id}),
            serde_json::json!({"_return": true}),
        )
    };
    let register = at(
        trail.api_call(
            "us-east-1",
            "RegisterImage",
            serde_json::json!({"name": "disable-me"}),
            serde_json::json!({"imageId": id}),
        ),
        "2026-11-20T10:00:00Z",
    );
    let available =
        at(trail.ami_state_change("us-east-1", id, "available"), "2026-11-20T10:01:00Z");
    let disable = at(call("DisableImage"), "2026-11-20T10:10:00Z");
    let disabled = at(trail.ami_state_change("us-east-1", id, "disabled"), "2026-11-20T10:10:02Z");
    let enable = at(call("EnableImage"), "2026-11-20T10:20:00Z");

    h.deliver_all([&register, &available, &disabled]).await;
    let node = h.store.node(&image).await.unwrap().unwrap();
    assert_eq!(node.state, NodeState::Disabled);
    assert_eq!(node.enablement.as_ref().map(|e| e.by_event.as_str()), Some("EC2 AMI State Change"));

    // EnableImage arrives, then the older DisableImage call, then the old `available` again.
    h.deliver(&enable).await;
    h.deliver(&disable).await;
    h.deliver(&trail.redelivery(&available)).await;
    let node = h.store.node(&image).await.unwrap().unwrap();
    assert_eq!(node.state, NodeState::Available, "{:?}", node.enablement);
    assert_eq!(node.enablement.map(|e| e.by_event), Some("EnableImage".into()));
    let again = h.deliver(&trail.redelivery(&enable)).await;
    assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
}

#[tokio::test]
async fn deregistration_with_its_snapshots_records_each_return_code_on_the_node() {
    let trail = Trail::new("123456789012", "pipeline");
    let h = Harness::new().await;
    let id = "ami-0de1e7e500000e001";
    let image = ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse(id).unwrap());
    let deregister = trail.api_call(
        "us-east-1",
        "DeregisterImage",
        serde_json::json!({"imageId": id, "deleteAssociatedSnapshots": true}),
        serde_json::json!({"_return": true, "deleteSnapshotResultSet": {"items": [
            {"snapshotId": "snap-0de1e7e500000e001", "returnCode": "success"},
            {"snapshotId": "snap-0de1e7e500000e002", "returnCode": "skipped"}
        ]}}),
    );
    h.deliver(&deregister).await;
    let node = h.store.node(&image).await.unwrap().unwrap();
    assert_eq!(node.state, NodeState::Deregistered);
    assert!(node.snapshots_deleted_by_aws);
    let codes: Vec<(&str, &str)> =
        node.snapshot_return_codes.iter().map(|(s, c)| (s.as_str(), c.as_str())).collect();
    assert_eq!(
        codes,
        [("snap-0de1e7e500000e001", "success"), ("snap-0de1e7e500000e002", "skipped")]
    );
    let ids: Vec<&str> = node.snapshots.iter().map(|s| s.as_str()).collect();
    assert_eq!(ids, ["snap-0de1e7e500000e001", "snap-0de1e7e500000e002"], "the node learns them");
    let tree = warden::lineage::render(
        warden::lineage::View::Tree,
        warden::lineage::Format::Text,
        &node,
        &[],
    );
    assert!(
        tree.contains("snap-0de1e7e500000e002: not deleted: other images use it (skipped)"),
        "{tree}"
    );
}
