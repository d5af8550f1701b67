//! The real `lineage-recorder` binary under a local Lambda Runtime API, against the local
//! stack: what Lambda would see. Bad input is acknowledged (a response, not an error), an AWS
//! failure is an error (so Lambda retries and then dead-letters the event).

use std::time::Duration;

use serde_json::{json, Value};
use warden_testkit::cloudtrail::Trail;
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
