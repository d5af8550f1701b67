//! The real `lineage-recorder` binary under a local Lambda Runtime API, against the local
//! stack: what Lambda would see. Bad input is acknowledged (a response, not an error), an AWS
//! failure is an error (so Lambda retries and then dead-letters the event).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;
use warden_testkit::story::play_seed_story;

async fn start_function(api: &RuntimeApi, table: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lineage-recorder"))
        .envs(api.lambda_env("lineage-recorder"))
        .env("LINEAGE_TABLE", table)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lineage-recorder starts")
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
    let story = play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "lambda").await.unwrap();
    let mut api = RuntimeApi::start().await;
    let function = start_function(&api, &table).await;

    for (label, event) in &story.events {
        let reply = invoke(&mut api, event.clone()).await;
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
