//! The real `lineage-recorder` binary under a local Lambda Runtime API, against the local
//! stack: what Lambda would see. Bad input is acknowledged (a response, not an error), an AWS
//! failure is an error (so Lambda retries and then dead-letters the event), and each
//! invocation's metrics are printed for CloudWatch.

use std::time::Duration;

use serde_json::{json, Value};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::emf;
use warden_testkit::faults::{Fault, FaultProxy, Mix};
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;
use warden_testkit::story::play_seed_story;

async fn start_function(api: &RuntimeApi, table: &str) -> tokio::process::Child {
    start_with(api, table, &[]).await
}

async fn start_with(
    api: &RuntimeApi,
    table: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let mut envs = vec![("LINEAGE_TABLE", table)];
    envs.extend_from_slice(extra);
    api.spawn(env!("CARGO_BIN_EXE_lineage-recorder"), "lineage-recorder", &envs)
}

async fn invoke(api: &mut RuntimeApi, event: Value) -> Reply {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
    assert_eq!(got, id);
    reply
}

#[tokio::test]
async fn the_lambda_binary_records_the_story_and_acknowledges_bad_input() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "lambda-test").await;
    let story =
        play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "lambda").await.unwrap();
    let mut api = RuntimeApi::start().await;
    let function = start_function(&api, &table).await;

    let mut request_ids = Vec::new();
    for (label, event) in &story.events {
        let id = api.invoke(event.clone()).await;
        let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
        assert_eq!(got, id);
        request_ids.push(id);
        let Reply::Response(body) = reply else { panic!("{label}: {reply:?}") };
        let expected = if label.contains("failed") { "ignored" } else { "recorded" };
        assert_eq!(body["outcome"], expected, "{label}: {body}");
    }
    // Garbage is acknowledged, not retried.
    let reply = invoke(&mut api, json!({"hello": "world"})).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"), "{reply:?}");
    let reply = invoke(&mut api, json!([1, 2, 3])).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"), "{reply:?}");

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("lineage-recorder", &logs);
    // Each decision's line carries the runtime's invocation span, whose requestId is the
    // invocation's, and the handler's span naming the event.
    let decisions: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["aws_calls"].is_string())
        .collect();
    for id in &request_ids {
        let line = decisions
            .iter()
            .find(|line| line["spans"][0]["requestId"] == id.as_str())
            .unwrap_or_else(|| panic!("no decision logged in invocation {id}:\n{logs}"));
        assert_eq!(line["spans"][1]["name"], "event", "{line}");
        assert!(line["spans"][1]["event_id"].as_str().is_some_and(|e| !e.is_empty()), "{line}");
    }
}

#[tokio::test]
async fn an_aws_failure_is_an_invocation_error_so_lambda_retries() {
    let _ = stack::sdk_config().await;
    let mut api = RuntimeApi::start().await;
    let _function = start_function(&api, "no-such-table").await;
    let trail = Trail::new("123456789012", "pipeline");
    let event = trail.api_call(
        "us-east-1",
        "CopyImage",
        json!({"sourceRegion": "us-east-1", "sourceImageId": "ami-0aaaaaaaaaaaaaaa1", "name": "x"}),
        json!({"imageId": "ami-0aaaaaaaaaaaaaaa2"}),
    );
    let reply = invoke(&mut api, event).await;
    let Reply::Error(body) = reply else { panic!("expected an error, got {reply:?}") };
    assert!(body.to_string().contains("no-such-table"), "{body}");
}

/// Organization mode: a member account's CreateImage names an instance in the member account;
/// the recorder looks it up there, through the member role. A member it cannot reach fails the
/// event (retried, then dead-lettered) rather than recording a guess; an account that is not a
/// member is ignored.
#[tokio::test]
async fn a_member_accounts_create_image_is_resolved_in_that_account() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "lambda-member").await;
    let (member, roleless, region) = ("210987654321", "222233334444", "us-east-1");
    warden_testkit::accounts::create_member_role(&sdk, member, "AmiWardenMember", "123456789012")
        .await
        .unwrap();
    let ec2 = warden_testkit::accounts::ec2(&sdk, member, region);
    let base = warden_testkit::accounts::register_image(&sdk, member, region, "member-base")
        .await
        .unwrap();
    let run = ec2.run_instances().image_id(&base).min_count(1).max_count(1).send().await.unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_owned();
    let image = ec2
        .create_image()
        .instance_id(&instance)
        .name("member-app")
        .send()
        .await
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    let created = |account: &str| {
        Trail::new(account, "pipeline").api_call(
            region,
            "CreateImage",
            json!({"instanceId": instance, "name": "member-app"}),
            json!({"imageId": image}),
        )
    };

    let mut api = RuntimeApi::start().await;
    let members = format!("{member},{roleless}");
    let function = start_with(&api, &table, &[("MEMBER_ACCOUNTS", &members)]).await;
    let reply = invoke(&mut api, created(member)).await;
    let Reply::Response(body) = &reply else { panic!("{reply:?}") };
    assert_eq!(body["outcome"], "recorded", "{body}");
    assert!(
        body["summary"].as_str().unwrap().contains(&format!("parent {base}@{region}")),
        "{body}"
    );
    let reply = invoke(&mut api, created(roleless)).await;
    assert!(
        matches!(&reply, Reply::Error(e) if e.to_string().contains("AccessDenied")),
        "{reply:?}"
    );
    // An account MEMBER_ACCOUNTS does not list (the organization forwards from whole OUs):
    // acknowledged and ignored, not failed into the dead-letter queue.
    let reply = invoke(&mut api, created("333344445555")).await;
    assert!(
        matches!(&reply, Reply::Response(b) if b["outcome"] == "ignored"
        && b["reason"].as_str().unwrap().contains("333344445555, which is not in MEMBER_ACCOUNTS")),
        "{reply:?}"
    );

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("lineage-recorder", &logs);
}

/// The requests a decision's log line says it cost (`DynamoDB.TransactWriteItems=1 …`).
fn logged_requests(line: &Value) -> f64 {
    let calls = line["fields"]["aws_calls"].as_str().unwrap_or_default();
    calls.split_whitespace().filter_map(|c| c.rsplit('=').next()?.parse::<f64>().ok()).sum()
}

/// Every invocation prints one metrics line for CloudWatch (embedded metric format, namespace
/// `AmiWarden`, dimension `Function`): a copy is a lineage node and an edge, a registration a
/// node, a redelivery nothing; garbage is counted as malformed, a failed call is not; and the
/// requests counted are those the decision's log line names.
#[tokio::test]
async fn each_invocation_prints_its_lineage_counts_and_requests_as_cloudwatch_metrics() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "lambda-metrics").await;
    let trail = Trail::new("123456789012", "pipeline");
    let region = "us-east-1";
    let (golden, copy) = ("ami-0eeeeeeeeeeeeeee1", "ami-0eeeeeeeeeeeeeee2");
    let registered = trail.api_call(
        region,
        "RegisterImage",
        json!({"name": "golden"}),
        json!({"imageId": golden}),
    );
    let copied = trail.api_call(
        region,
        "CopyImage",
        json!({"sourceRegion": region, "sourceImageId": golden, "name": "copy"}),
        json!({"imageId": copy}),
    );
    let failed = trail.failed_call(
        region,
        "CopyImage",
        json!({"sourceRegion": region, "sourceImageId": golden, "name": "x"}),
        "Client.UnauthorizedOperation",
        "denied",
    );
    let mut api = RuntimeApi::start().await;
    let function = start_function(&api, &table).await;
    let events =
        [registered, copied.clone(), trail.redelivery(&copied), json!({"hello": 1}), failed];
    for event in events {
        assert!(matches!(invoke(&mut api, event).await, Reply::Response(_)));
    }

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    let docs = emf::documents(&logs);
    assert_eq!(docs.len(), 5, "one line per invocation:\n{logs}");
    let me = [("Function", "lineage-recorder")];
    let per_invocation = |name: &str| emf::values(&docs, name, &me);
    assert_eq!(per_invocation("LineageNodesRecorded"), vec![1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(per_invocation("LineageEdgesRecorded"), vec![0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(per_invocation("EventsIgnoredMalformed"), vec![0.0, 0.0, 0.0, 1.0, 0.0]);
    assert_eq!(per_invocation("AwsThrottles"), vec![0.0; 5]);
    let decisions: Vec<f64> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["aws_calls"].is_string())
        .map(|line| logged_requests(&line))
        .collect();
    assert_eq!(per_invocation("AwsRequests"), decisions, "{logs}");
    assert!(decisions[1] >= 1.0 && decisions[3] == 0.0, "{decisions:?}");
    for doc in &docs {
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "AmiWarden");
    }
    for (name, unit) in [("LineageNodesRecorded", "Count"), ("AwsRequests", "Count")] {
        assert_eq!(emf::unit(&docs, name).as_deref(), Some(unit));
    }
}

/// A throttled write is retried by the SDK: both attempts are requests, one is a throttle.
#[tokio::test]
async fn a_throttled_answer_is_counted_as_a_throttle_and_its_retry_as_a_request() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "lambda-throttled").await;
    let proxy = FaultProxy::in_front_of_local_stack(Mix::NONE, 25).await;
    let endpoint = proxy.endpoint_url();
    let mut api = RuntimeApi::start().await;
    let function = start_with(&api, &table, &[("AWS_ENDPOINT_URL", &endpoint)]).await;
    let copied = Trail::new("123456789012", "pipeline").api_call(
        "us-east-1",
        "CopyImage",
        json!({"sourceRegion": "us-east-1", "sourceImageId": "ami-0fffffffffffffff1", "name": "c"}),
        json!({"imageId": "ami-0fffffffffffffff2"}),
    );
    proxy.inject_next("TransactWriteItems", Fault::Throttle);
    let reply = invoke(&mut api, copied).await;
    assert!(matches!(&reply, Reply::Response(b) if b["outcome"] == "recorded"), "{reply:?}");

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    let docs = emf::documents(&logs);
    let me = [("Function", "lineage-recorder")];
    assert_eq!(emf::values(&docs, "AwsThrottles", &me), vec![1.0], "{logs}");
    let requests = emf::sum(&docs, "AwsRequests", &me);
    assert!(requests >= 2.0, "the throttled attempt and its retry: {requests}");
    assert_eq!(proxy.counts().of(Fault::Throttle), 1);
}
