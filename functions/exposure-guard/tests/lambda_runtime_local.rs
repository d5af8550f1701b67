//! The real `exposure-guard` binary under a local Lambda Runtime API, against the local stack:
//! an API-call event is alerted on (and, with REMEDIATE_PUBLIC, reverted) once, however often it
//! is delivered; the EventBridge "Scheduled Event" runs the sweep; a missing topic is an
//! invocation error so Lambda retries; alerts and sweeps print their metrics for CloudWatch.

use std::time::Duration;

use aws_sdk_ec2::types::ImageAttributeName;
use serde_json::{json, Value};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::emf;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;
use warden_testkit::story::ec2;

async fn start(api: &RuntimeApi, table: &str, topic: &str) -> tokio::process::Child {
    start_with(api, table, topic, &[]).await
}

async fn start_with(
    api: &RuntimeApi,
    table: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let mut envs =
        vec![("LINEAGE_TABLE", table), ("TOPIC_ARN", topic), ("REMEDIATE_PUBLIC", "true")];
    envs.extend_from_slice(extra);
    api.spawn(env!("CARGO_BIN_EXE_exposure-guard"), "exposure-guard", &envs)
}

async fn invoke(api: &mut RuntimeApi, event: Value) -> Reply {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
    assert_eq!(got, id);
    reply
}

#[tokio::test]
async fn the_lambda_alerts_once_reverts_and_sweeps_on_schedule() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-lambda").await;
    let inbox = Inbox::create(&sdk, &format!("guard-lambda-{}", std::process::id())).await.unwrap();
    let trail = Trail::new("123456789012", "contractor");
    let region = "us-west-2";
    let (image, _) = scenario::register_image(&sdk, region, "lambda-guarded").await.unwrap();
    let event =
        scenario::modify_launch_permission(&sdk, &trail, region, &image, &[Share::All], &[])
            .await
            .unwrap();

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &inbox.topic_arn).await;
    let reply = invoke(&mut api, event.clone()).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "alerted" && b["severity"] == "CRITICAL"),
        "{reply:?}"
    );
    let reply = invoke(&mut api, trail.redelivery(&event)).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "duplicate"), "{reply:?}");
    let perms = ec2(&sdk, region)
        .describe_image_attribute()
        .image_id(&image)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert!(perms.launch_permissions().is_empty(), "reverted: {perms:?}");

    let scheduled =
        warden_testkit::runtime_api::scheduled_event("us-east-1", "ami-warden-DailySweep");
    let reply = invoke(&mut api, scheduled).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "swept"), "{reply:?}");

    let got = inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    let kinds: Vec<_> = got.iter().map(|m| m.kind.clone().unwrap_or_default()).collect();
    assert_eq!(kinds, vec!["image-public", "exposure-sweep"]);

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("exposure-guard", &logs);
}

#[tokio::test]
async fn a_publish_failure_is_an_invocation_error_and_the_retry_is_not_a_duplicate() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-lambda-fail").await;
    let trail = Trail::new("123456789012", "contractor");
    let (image, _) =
        scenario::register_image(&sdk, "us-west-2", "lambda-unpublished").await.unwrap();
    let event = scenario::modify_launch_permission(
        &sdk,
        &trail,
        "us-west-2",
        &image,
        &[Share::Account("999988887777".into())],
        &[],
    )
    .await
    .unwrap();
    let mut api = RuntimeApi::start().await;
    let _f = start(&api, &table, "arn:aws:sns:us-east-1:123456789012:no-such-topic").await;
    let reply = invoke(&mut api, event.clone()).await;
    assert!(
        matches!(&reply, Reply::Error(b) if b.to_string().contains("no-such-topic")),
        "{reply:?}"
    );
    // The claim was released: the retry is handled afresh (and fails the same way), not skipped.
    let reply = invoke(&mut api, event).await;
    assert!(matches!(&reply, Reply::Error(_)), "{reply:?}");
}

#[tokio::test]
async fn in_organization_mode_the_sweep_covers_each_member_and_reports_one_without_its_role() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-org").await;
    let inbox = Inbox::create(&sdk, &format!("guard-org-{}", std::process::id())).await.unwrap();
    let (member, roleless) = ("210987654321", "222233334444");
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    // A public image in the member account, in the function's region.
    let region = "us-east-1";
    let ec2 = warden_testkit::accounts::ec2(&sdk, member, region);
    let image = warden_testkit::accounts::register_image(
        &sdk,
        member,
        region,
        &format!("member-public-{}", std::process::id()),
    )
    .await
    .unwrap();
    scenario::modify_launch_permission_with(
        &ec2,
        &Trail::new(member, "contractor"),
        region,
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();

    let mut api = RuntimeApi::start().await;
    let members = format!("{member},{roleless}");
    let function = start_with(
        &api,
        &table,
        &inbox.topic_arn,
        &[("MEMBER_ACCOUNTS", &members), ("AWS_REGION", region)],
    )
    .await;
    let scheduled = warden_testkit::runtime_api::scheduled_event(region, "ami-warden-DailySweep");
    let reply = invoke(&mut api, scheduled).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    let accounts: Vec<&Value> = body["accounts"].as_array().unwrap().iter().collect();
    assert_eq!(accounts.len(), 2, "own account and the member with its role: {body}");
    assert_eq!(accounts[1]["account"], member);
    let exposed = accounts[1]["report"]["exposed_images"].to_string();
    assert!(
        exposed.contains(&image),
        "the member's public image is found through its role: {exposed}"
    );
    assert!(
        !accounts[0]["report"]["exposed_images"].to_string().contains(&image),
        "not the own account's"
    );
    assert_eq!(body["skipped_accounts"][0]["account"], roleless, "{body}");
    assert!(
        body["skipped_accounts"][0]["reason"].as_str().unwrap().contains("AccessDenied"),
        "{body}"
    );

    let got = inbox.receive(3, Duration::from_secs(10)).await.unwrap();
    let mut kinds: Vec<_> = got.iter().map(|m| m.kind.clone().unwrap_or_default()).collect();
    kinds.sort();
    assert_eq!(kinds, vec!["accounts-not-covered", "exposure-sweep", "exposure-sweep"]);
    assert_eq!(body["failed_accounts"], json!([]), "{body}");
    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("exposure-guard", &logs);
}

#[tokio::test]
async fn in_organization_mode_a_members_event_is_checked_and_reverted_in_the_member_account() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-org-event").await;
    let inbox =
        Inbox::create(&sdk, &format!("guard-org-event-{}", std::process::id())).await.unwrap();
    let (member, roleless) = ("210987654322", "222233334445");
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    let region = "us-east-1";
    let in_member = warden_testkit::accounts::ec2(&sdk, member, region);
    let image = warden_testkit::accounts::register_image(
        &sdk,
        member,
        region,
        &format!("member-event-{}", std::process::id()),
    )
    .await
    .unwrap();
    // A contractor in the member account makes the image public; the event reaches the central bus.
    let event = scenario::modify_launch_permission_with(
        &in_member,
        &Trail::new(member, "contractor"),
        region,
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();

    let mut api = RuntimeApi::start().await;
    let members = format!("{member},{roleless}");
    let function = start_with(
        &api,
        &table,
        &inbox.topic_arn,
        &[("MEMBER_ACCOUNTS", &members), ("AWS_REGION", region), ("MEMBER_ENFORCE", "true")],
    )
    .await;
    let reply = invoke(&mut api, event).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "alerted" && b["severity"] == "CRITICAL"),
        "{reply:?}"
    );
    // Read and reverted in the member account, through its role (the own credentials cannot
    // even see the image).
    let perms = in_member
        .describe_image_attribute()
        .image_id(&image)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert!(perms.launch_permissions().is_empty(), "reverted in the member account: {perms:?}");
    let got = inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(member)
            && text.contains("Live state: still exposed")
            && text.contains("removed the grant"),
        "{text}"
    );

    // A member whose role cannot be assumed: the event fails (retried, then dead-lettered),
    // rather than being judged with credentials that cannot see the member's image.
    let (other, _) = scenario::register_image(&sdk, region, "roleless-event").await.unwrap();
    let unreachable = Trail::new(roleless, "contractor").api_call(
        region,
        "ModifyImageAttribute",
        json!({"imageId": other, "attributeType": "launchPermission", "launchPermission": {"add": {"items": [{"group": "all"}]}}}),
        json!({"_return": true}),
    );
    let reply = invoke(&mut api, unreachable).await;
    assert!(matches!(&reply, Reply::Error(b) if b.to_string().contains(roleless)), "{reply:?}");
    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("exposure-guard", &logs);

    // Without MEMBER_ENFORCE (the member role may be read-only) the alert goes out, with the
    // member's live state, and nothing is changed there.
    let watched = warden_testkit::accounts::register_image(
        &sdk,
        member,
        region,
        &format!("member-watched-{}", std::process::id()),
    )
    .await
    .unwrap();
    let event = scenario::modify_launch_permission_with(
        &in_member,
        &Trail::new(member, "contractor"),
        region,
        &watched,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();
    let mut api = RuntimeApi::start().await;
    let _function = start_with(
        &api,
        &table,
        &inbox.topic_arn,
        &[("MEMBER_ACCOUNTS", member), ("AWS_REGION", region)],
    )
    .await;
    let reply = invoke(&mut api, event).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "alerted" && b["severity"] == "CRITICAL"),
        "{reply:?}"
    );
    let perms = in_member
        .describe_image_attribute()
        .image_id(&watched)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert_eq!(perms.launch_permissions().len(), 1, "left as it is: {perms:?}");
    let got = inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains(&watched) && text.contains("Live state: still exposed"), "{text}");
}

#[tokio::test]
async fn the_sweep_covers_each_region_of_sweep_regions() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-regions").await;
    let inbox =
        Inbox::create(&sdk, &format!("guard-regions-{}", std::process::id())).await.unwrap();
    // Two regions no other test uses; the function itself runs in the stack's region.
    let (quiet, exposed) = ("ap-east-2", "ap-southeast-5");
    let (image, _) = scenario::register_image(&sdk, exposed, "public-elsewhere").await.unwrap();
    scenario::modify_launch_permission(
        &sdk,
        &Trail::new("123456789012", "contractor"),
        exposed,
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();

    let mut api = RuntimeApi::start().await;
    let regions = format!("{quiet},{exposed}");
    let function = start_with(&api, &table, &inbox.topic_arn, &[("SWEEP_REGIONS", &regions)]).await;
    let scheduled =
        warden_testkit::runtime_api::scheduled_event("us-east-1", "ami-warden-DailySweep");
    let reply = invoke(&mut api, scheduled).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    let swept: Vec<(&str, bool)> = body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["report"]["region"].as_str().unwrap(),
                a["report"]["exposed_images"].to_string().contains(&image),
            )
        })
        .collect();
    assert_eq!(swept, vec![(quiet, false), (exposed, true)], "{body}");
    let got = inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    assert!(got.iter().all(|m| m.kind.as_deref() == Some("exposure-sweep")), "{got:?}");
    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("exposure-guard", &logs);
}

#[tokio::test]
async fn a_sweep_unit_runs_once_per_run_notifies_nothing_and_refuses_another_jobs_unit() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-unit").await;
    let inbox = Inbox::create(&sdk, &format!("guard-unit-{}", std::process::id())).await.unwrap();
    let region = "ap-south-2";
    let (image, _) = scenario::register_image(&sdk, region, "unit-public").await.unwrap();
    let trail = Trail::new("123456789012", "contractor");
    scenario::modify_launch_permission(&sdk, &trail, region, &image, &[Share::All], &[])
        .await
        .unwrap();
    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &inbox.topic_arn).await;
    let unit = |job: &str| {
        json!({"unit": {"job": job, "account": "123456789012", "region": region,
            "run": format!("unit-run-{}", std::process::id())}})
    };

    let reply = invoke(&mut api, unit("exposure")).await;
    let Reply::Response(report) = &reply else { panic!("{reply:?}") };
    assert_eq!(report["unit"]["region"], region, "{report}");
    assert!(report["figures"]["findings"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["severity"], "CRITICAL", "{report}");
    // The same unit of the same run again (a retry after a lost answer): nothing is done twice.
    let reply = invoke(&mut api, unit("exposure")).await;
    let Reply::Response(again) = &reply else { panic!("{reply:?}") };
    assert!(again["summary"].as_str().unwrap().contains("earlier attempt"), "{again}");
    // Units notify nothing: the job's summary speaks for them.
    assert!(inbox.receive(1, Duration::from_secs(2)).await.unwrap().is_empty());
    // Another job's unit is refused, never run by the wrong function.
    let reply = invoke(&mut api, unit("reaper")).await;
    assert!(
        matches!(&reply, Reply::Error(e) if e.to_string().contains("sent to the wrong function")),
        "{reply:?}"
    );

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("exposure-guard", &logs);
}

/// The metrics the guard prints for CloudWatch: an alert is an exposure found by its severity
/// (a public image CRITICAL, a share outside the allow-list WARNING), a reverted grant a
/// remediation, garbage a malformed event; a sweep unit's exposed images are the exposures
/// open now, by severity, and its lines name the unit's account and region without making
/// them dimensions.
#[tokio::test]
async fn alerts_and_sweep_units_print_exposures_by_severity_as_cloudwatch_metrics() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "guard-metrics").await;
    let inbox =
        Inbox::create(&sdk, &format!("guard-metrics-{}", std::process::id())).await.unwrap();
    let trail = Trail::new("123456789012", "contractor");
    let (events_region, unit_region) = ("us-west-2", "ap-south-2");
    let (public, _) =
        scenario::register_image(&sdk, events_region, "metrics-public").await.unwrap();
    let (shared, _) =
        scenario::register_image(&sdk, events_region, "metrics-shared").await.unwrap();
    let made_public = scenario::modify_launch_permission(
        &sdk,
        &trail,
        events_region,
        &public,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();
    let outside = [Share::Account("999988887777".into())];
    let made_shared =
        scenario::modify_launch_permission(&sdk, &trail, events_region, &shared, &outside, &[])
            .await
            .unwrap();
    let (open, _) = scenario::register_image(&sdk, unit_region, "metrics-open").await.unwrap();
    scenario::modify_launch_permission(&sdk, &trail, unit_region, &open, &[Share::All], &[])
        .await
        .unwrap();

    let mut api = RuntimeApi::start().await;
    let function = start(&api, &table, &inbox.topic_arn).await;
    let reply = invoke(&mut api, made_public).await;
    assert!(matches!(&reply, Reply::Response(b) if b["remediated"] == true), "{reply:?}");
    let reply = invoke(&mut api, made_shared).await;
    assert!(matches!(&reply, Reply::Response(b) if b["severity"] == "WARNING"), "{reply:?}");
    assert!(matches!(invoke(&mut api, json!("garbage")).await, Reply::Response(_)));
    let run = format!("metrics-run-{}", std::process::id());
    let unit = json!({"unit": {"job": "exposure", "account": "123456789012",
        "region": unit_region, "run": run}});
    let reply = invoke(&mut api, unit).await;
    let Reply::Response(report) = &reply else { panic!("{reply:?}") };

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    let docs = emf::documents(&logs);
    let me = ("Function", "exposure-guard");
    let by = |severity| [me, ("Severity", severity)];
    assert_eq!(emf::values(&docs, "ExposuresFound", &by("CRITICAL")), vec![1.0], "{logs}");
    assert_eq!(emf::values(&docs, "ExposuresFound", &by("WARNING")), vec![1.0]);
    assert_eq!(emf::sum(&docs, "ExposuresFound", &[me]), 2.0, "the total of both severities");
    assert_eq!(emf::values(&docs, "Remediations", &[me]), vec![1.0, 0.0, 0.0]);
    assert_eq!(emf::values(&docs, "EventsIgnoredMalformed", &[me]), vec![0.0, 0.0, 1.0]);
    assert_eq!(emf::values(&docs, "AwsRequests", &[me]).len(), 4, "one line per invocation");
    // The unit's open exposures are its report's: the public ones CRITICAL, the rest WARNING.
    let critical = emf::values(&docs, "ExposuresOpen", &by("CRITICAL"));
    let warning = emf::values(&docs, "ExposuresOpen", &by("WARNING"));
    assert_eq!((critical.len(), warning.len()), (1, 1), "{logs}");
    assert!(critical[0] >= 1.0, "{open} is public: {critical:?}");
    let findings = report["figures"]["findings"].as_f64().unwrap();
    assert_eq!(critical[0] + warning[0], findings, "{report}");
    let unit_lines: Vec<&Value> =
        docs.iter().filter(|d| d.get("ExposuresOpen").is_some()).collect();
    for line in unit_lines {
        assert_eq!(
            (line["Account"].as_str(), line["Region"].as_str()),
            (Some("123456789012"), Some(unit_region))
        );
        assert_eq!(line["Run"], run.as_str());
        let sets = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(!sets.contains("Account") && !sets.contains("Region"), "{sets}");
    }
    assert_eq!(emf::unit(&docs, "ExposuresOpen").as_deref(), Some("Count"));
}
