//! The real `snapshot-reaper` binary under a local Lambda Runtime API, against the local stack:
//! a DeregisterImage event in enforce mode deletes the orphaned snapshot once, however often it
//! is delivered; the daily "Scheduled Event" runs the sweep; what it deleted is printed as
//! metrics for CloudWatch.

use std::time::Duration;

use serde_json::{json, Value};
use warden::aws::{ec2::Ec2Catalogue, lineage_table::LineageTable, Clients};
use warden::event::parse_value;
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::emf;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::snapshots as estate;
use warden_testkit::stack;

async fn invoke(api: &mut RuntimeApi, event: Value) -> Reply {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
    assert_eq!(got, id);
    reply
}

/// The function under the local Runtime API, in enforce mode, with `extra` environment.
async fn start(api: &RuntimeApi, table: &str, extra: &[(&str, &str)]) -> tokio::process::Child {
    let mut envs = vec![("LINEAGE_TABLE", table), ("MODE", "enforce"), ("MIN_AGE_DAYS", "0")];
    envs.extend_from_slice(extra);
    api.spawn(env!("CARGO_BIN_EXE_snapshot-reaper"), "snapshot-reaper", &envs)
}

/// An orphan in `region`, the way one comes about: an image made with CreateImage (AWS writes
/// its snapshot's description), recorded by the lineage recorder's code when it became
/// available (so the reaper can confirm the snapshot's origin), then deregistered; with the
/// Recycle Bin rule a deployment there has. `(RegisterImage event of its base, DeregisterImage
/// event, the orphaned snapshot)`.
async fn orphan(
    sdk: &aws_config::SdkConfig,
    trail: &Trail,
    table: &str,
    region: &str,
    name: &str,
) -> (Value, Value, String) {
    let base_root =
        estate::create_snapshot(sdk, region, 20, &format!("{name} base root")).await.unwrap();
    let (base, registered) =
        estate::register_from(sdk, trail, region, &format!("{name}-base"), &base_root)
            .await
            .unwrap();
    let (image, snapshot) =
        estate::create_image_from_instance(sdk, region, &base, name).await.unwrap();
    let clients = Clients::new(sdk);
    let store = LineageTable::from_clients(&clients, table);
    record(&parse_value(&registered), &Ec2Catalogue::new(&clients), &store).await.unwrap();
    record(
        &parse_value(&trail.ami_state_change(region, &image, "available")),
        &Ec2Catalogue::new(&clients),
        &store,
    )
    .await
    .unwrap();
    let deregistered = estate::deregister(sdk, trail, region, &image, false).await.unwrap();
    warden_testkit::recycle_bin::add_template_rule(trail.account(), region).await.unwrap();
    (registered, deregistered, snapshot)
}

#[tokio::test]
async fn the_lambda_reaps_an_orphan_once_and_sweeps_on_schedule() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "reaper-lambda").await;
    let trail = Trail::new("123456789012", "image-pipeline");
    let region = "us-west-1";
    let (registered, deregistered, snapshot) =
        orphan(&sdk, &trail, &table, region, "lambda-orphan").await;

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &[]).await;

    // Not its event: acknowledged and ignored.
    let reply = invoke(&mut api, registered).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"), "{reply:?}");
    let reply = invoke(&mut api, deregistered.clone()).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(body["outcome"], "reaped", "{body}");
    assert_eq!(body["report"]["mode"], "enforce", "{body}");
    assert_eq!(body["report"]["outcomes"][0]["snapshot_id"], snapshot.as_str(), "{body}");
    assert_eq!(body["report"]["outcomes"][0]["action"]["action"], "deleted", "{body}");
    assert_eq!(estate::snapshot_tags(&sdk, region, &snapshot).await.unwrap(), None, "deleted");
    let reply = invoke(&mut api, trail.redelivery(&deregistered)).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "duplicate"), "{reply:?}");

    let scheduled =
        warden_testkit::runtime_api::scheduled_event("us-east-1", "ami-warden-ReaperSweep");
    let reply = invoke(&mut api, scheduled).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "swept" && b["accounts"][0]["report"]["trigger"].as_str().unwrap().starts_with("sweep:us-east-1:")
        && b["skipped_accounts"] == json!([])),
        "{reply:?}"
    );

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("snapshot-reaper", &logs);
}

#[tokio::test]
async fn in_report_mode_the_lambda_plans_with_the_grants_report_mode_has() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "reaper-lambda-report").await;
    let trail = Trail::new("123456789012", "image-pipeline");
    let region = "us-west-1";
    let (_, deregistered, snapshot) =
        orphan(&sdk, &trail, &table, region, "lambda-report-orphan").await;

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &[("MODE", "report")]).await;
    let reply = invoke(&mut api, deregistered).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(
        (&body["report"]["mode"], &body["report"]["outcomes"][0]["action"]["action"]),
        (&json!("report"), &json!("planned")),
        "{body}"
    );
    assert!(
        estate::snapshot_tags(&sdk, region, &snapshot).await.unwrap().is_some(),
        "report mode deletes nothing"
    );

    // What it asked (the Recycle Bin rules included) is granted without the enforce-only policy.
    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    assert!(logs.contains("rbin.ListRules") || logs.contains("rbin.GetRule"), "{logs}");
    warden_testkit::iam::assert_granted("snapshot-reaper", &logs);
}

#[tokio::test]
async fn in_organization_mode_a_members_orphan_is_reaped_in_the_member_account() {
    // A region of its own, table included: the scheduled sweep runs in enforce mode there.
    let (member, region) = ("210987654324", "ap-southeast-4");
    let sdk = stack::in_region(&stack::sdk_config().await, region);
    let table = stack::fresh_lineage_table(&sdk, "reaper-org-event").await;
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    let clients = Clients::new(&sdk);
    let in_member = warden::aws::org::assume(
        &clients,
        &warden::ids::AccountId::parse(member).unwrap(),
        "AmiWardenMember",
    )
    .await
    .unwrap();
    let msdk = in_member.sdk_config();
    let trail = Trail::new(member, "image-pipeline");
    let base_root = estate::create_snapshot(msdk, region, 20, "member base root").await.unwrap();
    let (base, registered) =
        estate::register_from(msdk, &trail, region, "member-base", &base_root).await.unwrap();
    // Two orphans, recorded as the recorder records a member's images (looked up there).
    let store = LineageTable::from_clients(&clients, &table);
    record(&parse_value(&registered), &Ec2Catalogue::new(&in_member), &store).await.unwrap();
    let mut orphans = Vec::new();
    for name in ["member-watched", "member-orphan"] {
        let (image, snapshot) =
            estate::create_image_from_instance(msdk, region, &base, name).await.unwrap();
        record(
            &parse_value(&trail.ami_state_change(region, &image, "available")),
            &Ec2Catalogue::new(&in_member),
            &store,
        )
        .await
        .unwrap();
        orphans.push((
            estate::deregister(msdk, &trail, region, &image, false).await.unwrap(),
            snapshot,
        ));
    }
    let [(watched_event, watched), (deregistered, snapshot)] = &orphans[..] else { unreachable!() };
    // The Recycle Bin rule infra/organization-member.yaml deploys in the member's region.
    warden_testkit::recycle_bin::add_template_rule(member, region).await.unwrap();
    let sweep = warden_testkit::runtime_api::scheduled_event(region, "ami-warden-ReaperSweep");

    // By default a member is only reported on, even in enforce mode: its role may be read-only.
    let mut api = RuntimeApi::start().await;
    let function =
        start(&api, &table, &[("MEMBER_ACCOUNTS", member), ("AWS_REGION", region)]).await;
    let reply = invoke(&mut api, watched_event.clone()).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(
        (&body["report"]["mode"], &body["report"]["outcomes"][0]["action"]["action"]),
        (&json!("report"), &json!("planned")),
        "{body}"
    );
    let reply = invoke(&mut api, sweep.clone()).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(
        (&body["accounts"][0]["report"]["mode"], &body["accounts"][1]["report"]["mode"]),
        (&json!("enforce"), &json!("report")),
        "{body}"
    );
    assert!(estate::snapshot_tags(msdk, region, watched).await.unwrap().is_some(), "left as it is");
    warden_testkit::runtime_api::stop_and_collect_logs(function).await;

    // With MEMBER_ENFORCE (the member role may act): deleted in the member account.
    let mut api = RuntimeApi::start().await;
    let function = start(
        &api,
        &table,
        &[("MEMBER_ACCOUNTS", member), ("MEMBER_ENFORCE", "true"), ("AWS_REGION", region)],
    )
    .await;
    let reply = invoke(&mut api, deregistered.clone()).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(body["report"]["outcomes"][0]["snapshot_id"], snapshot.as_str(), "{body}");
    assert_eq!(body["report"]["outcomes"][0]["action"]["action"], "deleted", "{body}");
    assert_eq!(
        estate::snapshot_tags(msdk, region, snapshot).await.unwrap(),
        None,
        "deleted in the member account"
    );

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("snapshot-reaper", &logs);
}

/// The metrics a reaped orphan prints for CloudWatch: one snapshot deleted, its size reclaimed
/// and what it cost a month at `SNAPSHOT_PRICE_PER_GB_MONTH`; an event that is no CloudTrail
/// record counts as malformed and deletes nothing.
#[tokio::test]
async fn a_reaped_orphan_prints_its_snapshot_gib_and_dollars_saved_as_cloudwatch_metrics() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "reaper-metrics").await;
    let trail = Trail::new("123456789012", "image-pipeline");
    let (_, deregistered, _) = orphan(&sdk, &trail, &table, "us-west-1", "metrics-orphan").await;

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &[("SNAPSHOT_PRICE_PER_GB_MONTH", "0.5")]).await;
    let reply = invoke(&mut api, deregistered).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    let deleted: Vec<&Value> = body["report"]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"]["action"] == "deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{body}");
    let gib = deleted[0]["size_gib"].as_f64().unwrap();
    let reply = invoke(&mut api, json!({"detail-type": "something else"})).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"), "{reply:?}");

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    let docs = emf::documents(&logs);
    let me = [("Function", "snapshot-reaper")];
    assert_eq!(emf::values(&docs, "SnapshotsDeleted", &me), vec![1.0], "{logs}");
    assert_eq!(emf::values(&docs, "GiBReclaimed", &me), vec![gib]);
    assert_eq!(emf::values(&docs, "DollarsPerMonthSaved", &me), vec![gib * 0.5]);
    assert_eq!(emf::values(&docs, "EventsIgnoredMalformed", &me), vec![0.0, 1.0]);
    let units: Vec<Option<String>> = ["SnapshotsDeleted", "GiBReclaimed", "DollarsPerMonthSaved"]
        .map(|m| emf::unit(&docs, m))
        .into();
    assert_eq!(units, [Some("Count".into()), Some("Gigabytes".into()), Some("None".into())]);
}
