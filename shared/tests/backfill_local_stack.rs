//! The backfill end to end on the local stack: a multi-region estate built with real EC2 calls
//! on moto, CloudTrail's history served by the local extension from the records of those calls,
//! the real EC2, CloudTrail, STS and DynamoDB adapters. Each test plays its story in regions of
//! its own (whole-region listings see only that story's images, and those of earlier runs on a
//! stack that was not restarted, which the assertions leave aside).

use std::collections::BTreeSet;

use serde_json::Value;
use warden::aws::backfill::{CloudTrailHistory, Ec2Estate};
use warden::aws::ec2::Ec2Catalogue;
use warden::aws::lineage_table::{dump_table, LineageTable};
use warden::aws::{org, Clients};
use warden::backfill::run::{Backfill, RegionReport};
use warden::config::Members;
use warden::event::parse_value;
use warden::ids::{AccountId, ImageId, ImageRef, Region};
use warden::lineage::{EdgeSource, LineageStore};
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::story::{play_seed_story_in, SeedStory, StoryImage};
use warden_testkit::{accounts, history, stack};

const OWN: &str = "123456789012";

fn image(i: &StoryImage) -> ImageRef {
    ImageRef::new(Region::parse(i.region).unwrap(), ImageId::parse(&i.image_id).unwrap())
}

fn regions(names: &[&str]) -> Vec<Region> {
    names.iter().map(|r| Region::parse(r).unwrap()).collect()
}

fn events(story: &SeedStory) -> Vec<Value> {
    story.events.iter().map(|(_, e)| e.clone()).collect()
}

/// The graph a table holds about the story's images: each node with its parent, and every
/// closure entry with its depth.
async fn graph(clients: &Clients, table: &str, story: &SeedStory) -> BTreeSet<String> {
    let ours: Vec<String> = std::iter::once(&story.golden)
        .chain(&story.generations)
        .map(|i| format!("#{}", i.image_id))
        .collect();
    let mut graph = BTreeSet::new();
    for line in dump_table(clients.dynamodb(), table).await.unwrap() {
        let item: serde_json::Map<String, Value> = serde_json::from_str(&line).unwrap();
        let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let (pk, sk) = (text("pk"), text("sk"));
        if !pk.starts_with("IMG#") || !ours.iter().any(|id| pk.ends_with(id.as_str())) {
            continue;
        }
        if sk == "NODE" {
            graph.insert(format!(
                "{pk} parent={}@{}",
                text("parent_image_id"),
                text("parent_region")
            ));
        } else if sk.starts_with("D#") || sk.starts_with("A#") {
            graph.insert(format!("{pk} {sk} depth={}", text("depth")));
        }
    }
    graph
}

async fn record_live(clients: &Clients, table: &str, events: &[Value]) {
    let store = LineageTable::from_clients(clients, table);
    let catalogue = Ec2Catalogue::new(clients);
    for event in events {
        record(&parse_value(event), &catalogue, &store).await.expect("recording");
    }
}

async fn backfill(
    clients: &Clients,
    table: &str,
    regions: &[Region],
    with_history: bool,
) -> Vec<RegionReport> {
    let (estate, catalogue, history) =
        (Ec2Estate::new(clients), Ec2Catalogue::new(clients), CloudTrailHistory::new(clients));
    let lineage = LineageTable::from_clients(clients, table).with_page_size(3);
    let run = Backfill {
        account: AccountId::parse(OWN),
        estate: &estate,
        catalogue: &catalogue,
        history: with_history.then_some(&history),
        lineage: &lineage,
    };
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    run.run(regions, since, &|_| {}).await.expect("backfill")
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_with_cloudtrail_reproduces_the_recorded_graph_and_a_rerun_changes_nothing() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let (home, away) = ("af-south-1", "me-south-1");
    let story = play_seed_story_in(&sdk, &Trail::new(OWN, "pipeline"), "backfill", home, away)
        .await
        .unwrap();
    let events = events(&story);
    let live = stack::fresh_lineage_table(&sdk, "backfill-live").await;
    record_live(&clients, &live, &events).await;

    history::record(&events).await.unwrap();
    let table = stack::fresh_lineage_table(&sdk, "backfill").await;
    let reports = backfill(&clients, &table, &regions(&[home, away]), true).await;
    assert_eq!(
        graph(&clients, &table, &story).await,
        graph(&clients, &live, &story).await,
        "backfill = what the recorder saw live"
    );
    let listed: usize = reports.iter().map(|r| r.images_listed).sum();
    assert!(listed >= 4, "golden, gen1, gen3, gen4 (gen2 is deregistered): {reports:#?}");
    let replayed: usize = reports.iter().map(|r| r.events.recorded).sum();
    assert!(
        replayed >= 6,
        "register, create, 3 copies, deregister (the failed copy is ignored): {reports:#?}"
    );
    assert!(reports.iter().all(|r| r.conflicts.is_empty() && r.errors.is_empty()), "{reports:#?}");

    // Each edge lists every source that names it.
    let store = LineageTable::from_clients(&clients, &table);
    let sources = |i: &StoryImage| {
        let store = store.clone();
        let at = image(i);
        async move { store.node(&at).await.unwrap().unwrap().parent_sources }
    };
    use EdgeSource::*;
    let (gen1, gen2, gen3, gen4) = (
        &story.generations[0],
        &story.generations[1],
        &story.generations[2],
        &story.generations[3],
    );
    assert_eq!(
        sources(gen1).await,
        vec![Event, Api, SnapshotDescription],
        "CreateImage: its snapshot names the instance"
    );
    assert_eq!(sources(gen2).await, vec![Event], "gen2 is gone: only CloudTrail remembers it");
    assert_eq!(
        sources(gen3).await,
        vec![Event, Api, Ancestry, SnapshotDescription],
        "its parent is gone from the listing"
    );
    assert_eq!(sources(gen4).await, vec![Event, Api, SnapshotDescription]);

    // Idempotent: a second run writes nothing.
    let before = dump_table(clients.dynamodb(), &table).await.unwrap();
    let again = backfill(&clients, &table, &regions(&[home, away]), true).await;
    assert_eq!(
        dump_table(clients.dynamodb(), &table).await.unwrap(),
        before,
        "a re-run changes nothing"
    );
    assert!(again.iter().all(|r| !r.changed()), "{again:#?}");
    assert_eq!(again.iter().map(|r| r.events.duplicate).sum::<usize>(), replayed);
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_from_the_apis_then_live_events_converge_and_a_conflicting_source_is_reported() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let (home, away) = ("ap-east-1", "eu-south-1");
    let story = play_seed_story_in(&sdk, &Trail::new(OWN, "pipeline"), "backfill-api", home, away)
        .await
        .unwrap();
    let (golden, gen2, gen3) =
        (image(&story.golden), image(&story.generations[1]), image(&story.generations[2]));
    // A snapshot whose description claims gen3 was copied from the golden image (anyone can
    // write such a description on a snapshot they copy).
    let ec2 = warden_testkit::story::ec2(&sdk, home);
    let volume =
        ec2.create_volume().availability_zone(format!("{home}a")).size(1).send().await.unwrap();
    ec2.create_snapshot()
        .volume_id(volume.volume_id().unwrap())
        .description(format!("Copied for DestinationAmi {} from SourceAmi {} for SourceSnapshot snap-0f0f0f0f. Task created on 1,764,000,000.", gen3.image_id, golden.image_id))
        .send()
        .await
        .unwrap();

    let table = stack::fresh_lineage_table(&sdk, "backfill-api").await;
    let reports = backfill(&clients, &table, &regions(&[home, away]), false).await;
    let conflicts: Vec<&String> = reports
        .iter()
        .flat_map(|r| &r.conflicts)
        .filter(|c| c.contains(&gen3.to_string()))
        .collect();
    assert_eq!(conflicts.len(), 1, "{reports:#?}");
    assert!(
        conflicts[0].contains(&golden.to_string()) && conflicts[0].contains(&gen2.to_string()),
        "{}",
        conflicts[0]
    );
    let store = LineageTable::from_clients(&clients, &table);
    assert_eq!(
        store.node(&gen3).await.unwrap().unwrap().parent,
        Some(gen2.clone()),
        "the recorded edge is kept"
    );
    assert_eq!(
        store.conflicts(&gen3).await.unwrap(),
        vec![("snapshot-description".to_owned(), golden.clone(), gen2.clone())]
    );
    // Without CloudTrail, gen2 (deregistered) is known only as gen3's parent.
    assert_eq!(store.node(&gen2).await.unwrap().unwrap().parent, None);
    assert_eq!(
        store.descendants(&golden).await.unwrap().len(),
        1,
        "gen1 only: the chain breaks at gen2"
    );

    // The live events arrive afterwards: the graph is the one the recorder alone builds.
    record_live(&clients, &table, &events(&story)).await;
    let live = stack::fresh_lineage_table(&sdk, "backfill-api-live").await;
    record_live(&clients, &live, &events(&story)).await;
    assert_eq!(graph(&clients, &table, &story).await, graph(&clients, &live, &story).await);
    assert_eq!(store.descendants(&golden).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_mode_reaches_members_through_their_role_and_skips_one_without_it() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let (member, roleless) = ("210987654321", "222233334444");
    accounts::create_member_role(&sdk, member, "AmiWardenMember", OWN).await.unwrap();
    // The member's own estate: an image registered at home and copied to a second region.
    let (home, away) = ("us-east-2", "us-west-2");
    let root = accounts::register_image(&sdk, member, home, "member-golden").await.unwrap();
    let copy = accounts::ec2(&sdk, member, away)
        .copy_image()
        .source_image_id(&root)
        .source_region(home)
        .name("member-copy")
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();

    let members = Members::Accounts(vec![
        AccountId::parse(member).unwrap(),
        AccountId::parse(roleless).unwrap(),
    ]);
    let reached =
        org::accounts(&clients, AccountId::parse(OWN).as_ref(), &members, "AmiWardenMember").await;
    let ids: Vec<Option<String>> =
        reached.reachable.iter().map(|(a, _)| a.as_ref().map(|a| a.to_string())).collect();
    assert_eq!(ids, vec![Some(OWN.to_owned()), Some(member.to_owned())]);
    assert_eq!(reached.skipped.len(), 1);
    assert_eq!(reached.skipped[0].account.as_str(), roleless);
    assert!(reached.skipped[0].reason.contains("AccessDenied"), "{}", reached.skipped[0].reason);

    // The member's clients act in the member account: its images, its lineage.
    let (_, member_clients) = &reached.reachable[1];
    let table = stack::fresh_lineage_table(&sdk, "backfill-org").await;
    let lineage = LineageTable::from_clients(&clients, &table);
    let (estate, catalogue) = (Ec2Estate::new(member_clients), Ec2Catalogue::new(member_clients));
    let run = Backfill {
        account: AccountId::parse(member),
        estate: &estate,
        catalogue: &catalogue,
        history: None,
        lineage: &lineage,
    };
    let reports = run.run(&regions(&[home, away]), chrono::Utc::now(), &|_| {}).await.unwrap();
    assert!(reports.iter().map(|r| r.images_listed).sum::<usize>() >= 2, "{reports:#?}");
    let copy_ref = ImageRef::new(Region::parse(away).unwrap(), ImageId::parse(&copy).unwrap());
    let node = lineage.node(&copy_ref).await.unwrap().unwrap();
    assert_eq!(
        node.parent,
        Some(ImageRef::new(Region::parse(home).unwrap(), ImageId::parse(&root).unwrap()))
    );
    assert_eq!(node.account.as_ref().map(AccountId::as_str), Some(member));
}
