//! The real `sweep-coordinator` binary under a local Lambda Runtime API, against the local
//! stack's S3 and SNS: a plan is written where the Distributed Map's ItemReader reads it; a
//! summary is made from result files in the shape the Map's ResultWriter writes (AWS's
//! documented manifest and result rows); a failed run's unsummarized jobs are summarized (and a
//! job whose redriven Map Run wrote newer results, again); and every request it sent is granted
//! by its policy.

use std::time::Duration;

use serde_json::{json, Value};
use warden_testkit::emf;
use warden_testkit::inbox::Inbox;
use warden_testkit::runtime_api::{Reply, RuntimeApi};
use warden_testkit::stack;

const MEMBERS: &str = "210000000001,210000000002";

fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build(),
    )
}

async fn put(sdk: &aws_config::SdkConfig, bucket: &str, key: &str, body: &Value) {
    s3(sdk)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
}

async fn get(sdk: &aws_config::SdkConfig, bucket: &str, key: &str) -> Value {
    let out = s3(sdk).get_object().bucket(bucket).key(key).send().await.unwrap();
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

async fn invoke(api: &mut RuntimeApi, event: Value) -> Reply {
    let id = api.invoke(event).await;
    let (got, reply) = api.reply(Duration::from_secs(30)).await.expect("the function answers");
    assert_eq!(got, id);
    reply
}

/// A result row as ResultWriter writes it: `Input` and `Output` are JSON strings.
fn row(unit: &Value, status: &str, output: Option<Value>, cause: Option<&str>) -> Value {
    let mut row = json!({
        "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:ami-warden-sweeps/x:1",
        "Input": json!({"unit": unit}).to_string(), "InputDetails": {"Included": true},
        "Name": "1", "RedriveCount": 0, "StartDate": "2026-12-07T06:00:00.000Z",
        "StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:ami-warden-sweeps",
        "Status": status, "StopDate": "2026-12-07T06:00:03.000Z"
    });
    if let Some(output) = output {
        row["Output"] = json!(output.to_string());
        row["OutputDetails"] = json!({"Included": true});
    }
    if let Some(cause) = cause {
        row["Error"] = json!("Lambda.Unknown");
        row["Cause"] = json!(json!({"errorMessage": cause, "errorType": "Error"}).to_string());
    }
    row
}

fn report(unit: &Value, findings: u64) -> Value {
    json!({"unit": unit, "figures": {"findings": findings, "acted": 0, "left": 0, "errors": 0},
        "severity": if findings > 0 { "CRITICAL" } else { "INFO" },
        "summary": format!("{findings} exposed image(s)")})
}

/// Writes a Map Run's results for `units`: the first three succeeded, the fourth failed, the
/// rest never ran.
async fn write_results(sdk: &aws_config::SdkConfig, bucket: &str, run: &str, units: &[Value]) {
    let prefix = format!("runs/{run}/exposure/results/0f3c9a1e-map-run");
    let done: Vec<Value> = units[..3]
        .iter()
        .enumerate()
        .map(|(i, u)| row(u, "SUCCEEDED", Some(report(u, i as u64)), None))
        .collect();
    let cause = "cannot assume arn:aws:iam::210000000002:role/AmiWardenMember: AccessDenied";
    let failed = vec![row(&units[3], "FAILED", None, Some(cause))];
    put(sdk, bucket, &format!("{prefix}/SUCCEEDED_0.json"), &json!(done)).await;
    put(sdk, bucket, &format!("{prefix}/FAILED_0.json"), &json!(failed)).await;
    let manifest = json!({
        "DestinationBucket": bucket,
        "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:ami-warden-sweeps/ExposureUnits:0f3c9a1e",
        "ResultFiles": {
            "FAILED": [{"Key": format!("{prefix}/FAILED_0.json"), "Size": 1}],
            "PENDING": [],
            "SUCCEEDED": [{"Key": format!("{prefix}/SUCCEEDED_0.json"), "Size": 1}]
        }
    });
    put(sdk, bucket, &format!("{prefix}/manifest.json"), &manifest).await;
}

/// The summaries also count the units for CloudWatch, by job and in total: the coverage alarm
/// watches those that failed or were never reached.
#[tokio::test]
async fn plans_the_units_then_summarizes_naming_and_counting_every_failed_and_unreached_unit() {
    let sdk = stack::sdk_config().await;
    let bucket = format!("ami-warden-sweeps-{}", std::process::id());
    s3(&sdk).create_bucket().bucket(&bucket).send().await.unwrap();
    let inbox = Inbox::create(&sdk, &format!("coordinator-{}", std::process::id())).await.unwrap();
    let mut api = RuntimeApi::start().await;
    let envs = [
        ("SWEEP_BUCKET", bucket.as_str()),
        ("TOPIC_ARN", inbox.topic_arn.as_str()),
        ("MEMBER_ACCOUNTS", MEMBERS),
        ("SWEEP_REGIONS", "us-east-1,eu-west-1"),
    ];
    let function = api.spawn(env!("CARGO_BIN_EXE_sweep-coordinator"), "sweep-coordinator", &envs);
    let run = format!("exec-{}", std::process::id());

    let reply = invoke(&mut api, json!({"plan": {"job": "exposure", "run": run}})).await;
    let Reply::Response(plan) = &reply else { panic!("{reply:?}") };
    assert_eq!(plan["units"], 6, "3 accounts x 2 regions: {plan}");
    let units = get(&sdk, &bucket, plan["key"].as_str().unwrap()).await;
    let units = units.as_array().unwrap().clone();
    let accounts: Vec<&str> = units.iter().map(|u| u["account"].as_str().unwrap()).collect();
    assert_eq!(accounts[..2], ["123456789012", "123456789012"], "the own account first");
    assert!(units.iter().all(|u| u["job"] == "exposure" && u["run"] == run.as_str()));

    write_results(&sdk, &bucket, &run, &units).await;
    let reply = invoke(&mut api, json!({"summarize": {"job": "exposure", "run": run}})).await;
    let Reply::Response(summary) = &reply else { panic!("{reply:?}") };
    assert_eq!(
        (&summary["done"], &summary["failed"], &summary["not_reached"]),
        (&json!(3), &json!(1), &json!(2))
    );
    let sent = inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let n = &sent[0].message;
    assert!(n["subject"].as_str().unwrap().contains("3 of 6 units (3 not covered)"), "{n}");
    let text = n["text"].as_str().unwrap();
    let name = |u: &Value| {
        format!("exposure {} {}", u["account"].as_str().unwrap(), u["region"].as_str().unwrap())
    };
    assert!(
        text.contains(&format!("- {}: FAILED: Lambda.Unknown: cannot assume", name(&units[3]))),
        "{text}"
    );
    assert!(text.contains(&format!("- {}\n", name(&units[4]))), "{text}");
    assert!(text.contains(&format!("- {}\n", name(&units[5]))), "{text}");

    // The run then failed after planning the deprecation sweep: only that job is summarized.
    invoke(&mut api, json!({"plan": {"job": "deprecation", "run": run}})).await;
    let stopped = json!({"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "detail": {"name": run, "status": "FAILED"}});
    let reply = invoke(&mut api, stopped.clone()).await;
    let Reply::Response(after) = &reply else { panic!("{reply:?}") };
    let summarized = after["summarized"].as_array().unwrap();
    assert_eq!(summarized.len(), 1, "{after}");
    assert_eq!(
        (&summarized[0]["job"], &summarized[0]["not_reached"]),
        (&json!("deprecation"), &json!(6))
    );
    assert_eq!(after["not_started"], json!(["reaper"]), "{after}");
    let sent = inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    let subjects: Vec<&str> = sent.iter().filter_map(|m| m.message["subject"].as_str()).collect();
    assert!(
        subjects.iter().any(|s| s.contains("snapshot reaper sweep not started")),
        "{subjects:?}"
    );

    // Redriven, the run fails at the exposure job again, whose Map Run writes newer results:
    // that job is summarized again; the deprecation sweep, with no newer results, is not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_results(&sdk, &bucket, &run, &units).await;
    let reply = invoke(&mut api, stopped).await;
    let Reply::Response(again) = &reply else { panic!("{reply:?}") };
    let jobs: Vec<&Value> =
        again["summarized"].as_array().unwrap().iter().map(|s| &s["job"]).collect();
    assert_eq!(jobs, [&json!("exposure")], "{again}");
    let sent = inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    assert!(sent.iter().any(|m| m.message["subject"].as_str().unwrap().contains("3 of 6 units")));

    let logs = warden_testkit::runtime_api::stop_and_collect_logs(function).await;
    warden_testkit::iam::assert_granted("sweep-coordinator", &logs);
    let docs = emf::documents(&logs);
    let me = ("Function", "sweep-coordinator");
    let of = |metric: &str, job: &str| emf::values(&docs, metric, &[me, ("Job", job)]);
    let counted = ["UnitsSwept", "UnitsFailed", "UnitsNotReached"].map(|m| of(m, "exposure"));
    assert_eq!(counted, [vec![3.0; 2], vec![1.0; 2], vec![2.0; 2]], "{logs}");
    let counted = ["UnitsSwept", "UnitsFailed", "UnitsNotReached"].map(|m| of(m, "deprecation"));
    assert_eq!(counted, [vec![0.0], vec![0.0], vec![6.0]]);
    assert!(of("UnitsSwept", "reaper").is_empty(), "a job not started has no summary");
    assert_eq!(emf::sum(&docs, "UnitsNotReached", &[me]), 10.0, "the total over the jobs");
    assert_eq!(emf::sum(&docs, "UnitsFailed", &[me]), 2.0);
    let requests = emf::values(&docs, "AwsRequests", &[me]);
    assert_eq!(requests.len(), 5, "one line per invocation: {requests:?}");
    assert!(requests.iter().all(|n| *n >= 1.0), "each step reads or writes S3: {requests:?}");
}
