//! The real `deprecation-enforcer` binary under a local Lambda Runtime API, against the local
//! stack: a new image's event gets its deadline (enforce mode), a redelivery changes nothing,
//! and the daily "Scheduled Event" runs the sweep; what it stamped and retired is printed as
//! metrics for CloudWatch.

use std::time::Duration;

use serde_json::{json, Value};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::emf;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::snapshots as estate;
use warden_testkit::stack;

async fn invoke(api: &mut RuntimeApi, event: Value) -> Reply {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(60)).await.expect("the function answers");
    assert_eq!(got, id);
    reply
}

/// The function under the local Runtime API, in enforce mode, with `extra` environment.
async fn start(api: &RuntimeApi, table: &str, extra: &[(&str, &str)]) -> tokio::process::Child {
    let mut envs = vec![("LINEAGE_TABLE", table), ("MODE", "enforce")];
    envs.extend_from_slice(extra);
    api.spawn(env!("CARGO_BIN_EXE_deprecation-enforcer"), "deprecation-enforcer", &envs)
}

#[tokio::test]
async fn the_lambda_stamps_new_images_once_and_sweeps_on_schedule() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "deprecation-lambda").await;
    let trail = Trail::new("123456789012", "image-pipeline");
    let snapshot = estate::create_snapshot(&sdk, "us-east-2", 8, "root").await.unwrap();
    let (_, registered) =
        estate::register_from(&sdk, &trail, "us-east-2", "lambda-stamped", &snapshot)
            .await
            .unwrap();

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &[]).await;

    let reply = invoke(&mut api, registered.clone()).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "stamped"), "{reply:?}");
    let reply = invoke(&mut api, trail.redelivery(&registered)).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "unchanged"), "{reply:?}");
    let scheduled =
        warden_testkit::runtime_api::scheduled_event("us-east-1", "ami-warden-DeprecationSweep");
    let reply = invoke(&mut api, scheduled).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "swept" && b["accounts"][0]["report"]["region"] == "us-east-1"
        && b["accounts"][0]["account"] == "123456789012" && b["skipped_accounts"] == json!([])),
        "{reply:?}"
    );

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("deprecation-enforcer", &logs);
}

#[tokio::test]
async fn in_organization_mode_a_members_new_image_is_stamped_in_the_member_account() {
    // A region of its own, table included: the scheduled sweep runs in enforce mode there.
    let (member, region) = ("210987654323", "ca-west-1");
    let sdk = stack::in_region(&stack::sdk_config().await, region);
    let table = stack::fresh_lineage_table(&sdk, "deprecation-org-event").await;
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    let clients = warden::aws::Clients::new(&sdk);
    let in_member = warden::aws::org::assume(
        &clients,
        &warden::ids::AccountId::parse(member).unwrap(),
        "AmiWardenMember",
    )
    .await
    .unwrap();
    let snapshot =
        estate::create_snapshot(in_member.sdk_config(), region, 8, "member root").await.unwrap();
    let trail = Trail::new(member, "image-pipeline");
    let (image, registered) =
        estate::register_from(in_member.sdk_config(), &trail, region, "member-stamped", &snapshot)
            .await
            .unwrap();

    let deadline = || async {
        let described = warden_testkit::accounts::ec2(&sdk, member, region)
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .unwrap();
        described.images()[0].deprecation_time().map(str::to_owned)
    };

    // By default a member is only reported on, even in enforce mode: its role may be read-only.
    let mut api = RuntimeApi::start().await;
    let function =
        start(&api, &table, &[("MEMBER_ACCOUNTS", member), ("AWS_REGION", region)]).await;
    let reply = invoke(&mut api, registered.clone()).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "would_stamp"), "{reply:?}");
    let sweep = warden_testkit::runtime_api::scheduled_event(region, "ami-warden-DeprecationSweep");
    let reply = invoke(&mut api, sweep).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["accounts"][0]["report"]["mode"] == "enforce"
        && b["accounts"][1]["account"] == member && b["accounts"][1]["report"]["mode"] == "report"),
        "{reply:?}"
    );
    assert_eq!(deadline().await, None);
    // An event from an account the deployment does not cover is not its to handle.
    let stranger = Trail::new("333344445555", "image-pipeline").api_call(
        region,
        "RegisterImage",
        json!({"name": "elsewhere"}),
        json!({"imageId": image}),
    );
    let reply = invoke(&mut api, stranger).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"
        && b["reason"].as_str().unwrap().contains("333344445555, which is not in MEMBER_ACCOUNTS")),
        "{reply:?}"
    );
    warden_testkit::runtime_api::stop_and_collect_logs(function).await;

    // With MEMBER_ENFORCE (the member role may act): the own credentials cannot even see the
    // member's image; through its role it is found and stamped.
    let mut api = RuntimeApi::start().await;
    let function = start(
        &api,
        &table,
        &[("MEMBER_ACCOUNTS", member), ("MEMBER_ENFORCE", "true"), ("AWS_REGION", region)],
    )
    .await;
    let reply = invoke(&mut api, trail.redelivery(&registered)).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "stamped"), "{reply:?}");
    assert!(deadline().await.is_some(), "stamped in the member account");

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("deprecation-enforcer", &logs);
}

/// The metrics the enforcer prints for CloudWatch: a new image's deadline is one stamped (its
/// redelivery none); a sweep unit counts the deadlines it set and the images it retired, as its
/// report says. The unit sweeps an account of its own (a member, through its role), so that
/// exactly this test's two new images lack a deadline there.
#[tokio::test]
async fn stamps_and_sweep_units_print_deadlines_stamped_and_images_retired_as_cloudwatch_metrics() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "deprecation-metrics").await;
    let (member, region) = ("210987654388", "eu-south-1");
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    for n in 0..2 {
        let name = format!("metrics-{}-{n}", std::process::id());
        warden_testkit::accounts::register_image(&sdk, member, region, &name).await.unwrap();
    }
    let trail = Trail::new("123456789012", "image-pipeline");
    let snapshot = estate::create_snapshot(&sdk, "us-east-2", 8, "root").await.unwrap();
    let (_, registered) =
        estate::register_from(&sdk, &trail, "us-east-2", "metrics-stamped", &snapshot)
            .await
            .unwrap();

    let mut api = RuntimeApi::start().await;
    let members = [("MEMBER_ACCOUNTS", member), ("MEMBER_ENFORCE", "true")];
    let function = start(&api, &table, &members).await;
    let reply = invoke(&mut api, registered.clone()).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "stamped"), "{reply:?}");
    let reply = invoke(&mut api, trail.redelivery(&registered)).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "unchanged"), "{reply:?}");
    let unit = json!({"unit": {"job": "deprecation", "account": member, "region": region,
        "run": format!("metrics-{}", std::process::id())}});
    let reply = invoke(&mut api, unit).await;
    let Reply::Response(report) = &reply else { panic!("{reply:?}") };

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    let docs = emf::documents(&logs);
    let me = [("Function", "deprecation-enforcer")];
    assert_eq!(emf::values(&docs, "DeadlinesStamped", &me), vec![1.0, 0.0, 2.0], "{logs}");
    let retired = report["figures"]["acted"].as_f64().unwrap();
    assert_eq!(emf::values(&docs, "ImagesRetired", &me), vec![retired], "{report}");
    let unit_line = docs.iter().find(|d| d.get("ImagesRetired").is_some()).unwrap();
    assert_eq!(
        (unit_line["Account"].as_str(), unit_line["Region"].as_str()),
        (Some(member), Some(region))
    );
    assert_eq!(emf::values(&docs, "EventsIgnoredMalformed", &me), vec![0.0, 0.0]);
}
