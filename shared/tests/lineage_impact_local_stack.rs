//! `lineage impact` and `lineage verify` against the local stack: the seed story recorded by
//! the real recorder, uses added with real calls (an instance from Gen4 in the away region, a
//! non-default launch template version naming Gen3, an Auto Scaling group's launch
//! configuration naming Gen1), then the blast radius of Gen1 and the provenance of Gen4.

use warden::aws::org::MemberClients;
use warden::aws::{
    deprecation::Ec2Deprecation, ec2::Ec2Catalogue, lineage_table::LineageTable, Clients,
};
use warden::config::Members;
use warden::event::parse_value;
use warden::ids::{AccountId, ImageId, ImageRef, Region};
use warden::impact::{impact, OwnAccountOnly};
use warden::lineage::verify::{verify, Verdict};
use warden::lineage::{LineageStore, NodeState};
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::story::{play_seed_story, AWAY, HOME};
use warden_testkit::{accounts, estate, stack};

fn at(region: &str, id: &str) -> ImageRef {
    ImageRef::new(Region::parse(region).unwrap(), ImageId::parse(id).unwrap())
}

#[tokio::test]
async fn impact_lists_every_descendant_with_its_uses_and_verify_walks_through_deregistered_images()
{
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "impact").await;
    let store = LineageTable::from_clients(&clients, &table);
    let story =
        play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "impact").await.unwrap();
    for (_, event) in &story.events {
        record(&parse_value(event), &Ec2Catalogue::new(&clients), &store).await.unwrap();
    }
    let [gen1, gen2, gen3, gen4] = [0, 1, 2, 3].map(|i| story.generations[i].clone());
    let pid = std::process::id();
    estate::stopped_instance(&sdk, AWAY, &gen4.image_id).await.unwrap();
    estate::launch_template(
        &sdk,
        HOME,
        &format!("impact-{pid}"),
        &[&story.golden.image_id, &gen3.image_id, &story.golden.image_id],
    )
    .await
    .unwrap();
    estate::auto_scaling_group(&sdk, HOME, &format!("impact-{pid}"), &gen1.image_id).await.unwrap();

    let before = clients.calls().snapshot();
    let ec2 = Ec2Deprecation::new(&clients);
    let others = OwnAccountOnly::<Ec2Deprecation>::default();
    let result = impact(
        &store,
        &ec2,
        &others,
        &at(gen1.region, &gen1.image_id),
        AccountId::parse("123456789012").as_ref(),
        &|_| {},
    )
    .await
    .unwrap();
    let calls = clients.calls().since(&before);
    let count = |service: &str, op: &str| {
        calls.get(&(service.to_owned(), op.to_owned())).copied().unwrap_or(0)
    };
    assert_eq!(
        count("EC2", "DescribeInstances"),
        2,
        "in-use lookups once per region, not per image: {calls:?}"
    );

    let uses = |img: &warden_testkit::story::StoryImage| {
        result
            .affected
            .iter()
            .find(|a| a.image.image_id.as_str() == img.image_id)
            .unwrap()
            .uses
            .join("; ")
    };
    assert_eq!(result.affected.len(), 4, "Gen1 and its three descendants");
    assert!(uses(&gen1).contains("Auto Scaling group impact-"), "{}", uses(&gen1));
    assert!(uses(&gen3).contains("version 2"), "{}", uses(&gen3));
    assert!(uses(&gen4).contains("(stopped)"), "{}", uses(&gen4));
    let gone = result.affected.iter().find(|a| a.image.image_id.as_str() == gen2.image_id).unwrap();
    assert_eq!((gone.state, gone.uses.len()), (NodeState::Deregistered, 0));
    assert_eq!((result.total.images, result.total.images_in_use), (4, 3));
    assert_eq!(result.total.instances_by_state.get("stopped"), Some(&1));
    assert_eq!(result.per_location.len(), 2, "{:?}", result.per_location.keys());
    let graph = warden::impact::mermaid(&result);
    assert!(graph.contains(":::inuse") && graph.contains(":::gone"), "{graph}");

    // Provenance: Gen4 comes from the golden image, through the deregistered Gen2.
    let gen4_ref = at(gen4.region, &gen4.image_id);
    let subject = store.node(&gen4_ref).await.unwrap().unwrap();
    let ancestors = store.ancestors(&gen4_ref).await.unwrap();
    let mut wanted: Vec<ImageRef> = ancestors.iter().map(|r| r.image.clone()).collect();
    wanted.push(gen4_ref.clone());
    let nodes = store.nodes(&wanted).await.unwrap();
    let golden = at(story.golden.region, &story.golden.image_id);
    let Verdict::Descends { base, chain } =
        verify(&subject, &ancestors, &nodes, &[golden.clone().into()])
    else {
        panic!("Gen4 descends from golden")
    };
    assert_eq!(base, golden);
    assert_eq!(chain.len(), 5);
    assert_eq!(chain[2].state, NodeState::Deregistered);
    assert!(chain.iter().all(|l| l.event_id.is_some() && l.actor.is_some()), "{chain:#?}");
    // Not from an unrelated base.
    let unrelated = at(HOME, "ami-0000000000000dead");
    assert!(matches!(
        verify(&subject, &ancestors, &nodes, &[unrelated.into()]),
        Verdict::DoesNotDescend { .. }
    ));
}

/// Organization mode: a descendant in a member account has its uses looked up there, through
/// the member's role; one in an account without the role is listed as not checked, with why.
#[tokio::test]
async fn impact_looks_up_uses_in_member_accounts_through_their_role() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "impact-org").await;
    let store = LineageTable::from_clients(&clients, &table);
    let (own, member, roleless) = ("123456789012", "210987654321", "222233334444");
    accounts::create_member_role(&sdk, member, "AmiWardenMember", own).await.unwrap();
    let region = "us-east-1";
    let (root, _) =
        warden_testkit::exposure::register_image(&sdk, region, "impact-org-root").await.unwrap();
    // The member's copy of the root, with an instance running from it, in the member account.
    let member_ec2 = accounts::ec2(&sdk, member, region);
    let copy =
        accounts::register_image(&sdk, member, region, "impact-org-member-copy").await.unwrap();
    let run =
        member_ec2.run_instances().image_id(&copy).min_count(1).max_count(1).send().await.unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_owned();
    let copied = |account: &str, id: &str| {
        Trail::new(account, "pipeline").api_call(
            region,
            "CopyImage",
            serde_json::json!({"sourceImageId": root, "sourceRegion": region, "name": "copy"}),
            serde_json::json!({"imageId": id}),
        )
    };
    for event in [copied(member, &copy), copied(roleless, "ami-0f0f0f0f0f0f0f0f0")] {
        record(&parse_value(&event), &Ec2Catalogue::new(&clients), &store).await.unwrap();
    }

    let members = MemberClients::new(&clients, &Members::Organization, "AmiWardenMember").unwrap();
    let ec2 = Ec2Deprecation::new(&clients);
    let result =
        impact(&store, &ec2, &members, &at(region, &root), AccountId::parse(own).as_ref(), &|_| {})
            .await
            .unwrap();
    let in_member = result.affected.iter().find(|a| a.image.image_id.as_str() == copy).unwrap();
    assert!(in_member.uses.iter().any(|u| u.contains(&instance)), "{:?}", in_member.uses);
    assert_eq!(result.not_checked.len(), 1, "{:?}", result.not_checked);
    assert!(
        result.not_checked[0].contains(roleless) && result.not_checked[0].contains("AccessDenied"),
        "{:?}",
        result.not_checked
    );
}
