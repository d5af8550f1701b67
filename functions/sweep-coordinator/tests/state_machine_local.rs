//! The daily sweeps' state machine (statemachine/sweeps.asl.json, as the template deploys it)
//! executed by the local stack's Step Functions emulator, its Lambda tasks run by the real
//! binaries of the coordinator and the three sweeping functions under local Lambda Runtime
//! APIs. Over the own account and 6 members in 2 regions, one member without its role and the
//! last one seeded: each job is planned, every unit runs as a Distributed Map child, the Map's
//! results land in S3, and each job's summary names every unit and what the last account holds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_testkit::inbox::Inbox;
use warden_testkit::runtime_api::{stop_and_collect_logs, RuntimeApi};
use warden_testkit::{accounts, org, stack};

const OWN: &str = "123456789012";
const REGIONS: [&str; 2] = ["ap-southeast-4", "il-central-1"];
const ROLE: &str = "AmiWardenMember";
const JOBS: [&str; 3] = ["exposure", "deprecation", "reaper"];

/// Member ids of this run only: the local stack keeps what earlier runs created.
fn members() -> Vec<String> {
    let run = std::process::id() % 100_000;
    (1..=6).map(|n| format!("4{run:05}{n:06}")).collect()
}

fn without_role() -> String {
    members()[2].clone()
}

/// A function binary of this workspace: built beside this test's own executable.
fn binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("the target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built (cargo build --workspace --bins)", path.display());
    path.to_string_lossy().into_owned()
}

fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build(),
    )
}

async fn summary(sdk: &aws_config::SdkConfig, bucket: &str, run: &str, job: &str) -> Value {
    let key = format!("runs/{run}/{job}/summary.json");
    let out = s3(sdk).get_object().bucket(bucket).key(&key).send().await;
    let out = out.unwrap_or_else(|e| panic!("no {key}: {e:?}"));
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

/// The definition with the template's substitutions: function ARNs and the bucket.
fn definition(bucket: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../statemachine/sweeps.asl.json");
    let asl = std::fs::read_to_string(path).unwrap();
    let arn = |name: &str| format!("arn:aws:lambda:us-east-1:{OWN}:function:{name}");
    asl.replace("${SweepCoordinatorArn}", &arn("sweep-coordinator"))
        .replace("${ExposureGuardArn}", &arn("exposure-guard"))
        .replace("${DeprecationEnforcerArn}", &arn("deprecation-enforcer"))
        .replace("${SnapshotReaperArn}", &arn("snapshot-reaper"))
        .replace("${SweepBucket}", bucket)
}

/// One Runtime API per function, `processes` binaries under each (a unit function's
/// concurrent environments), registered with the emulator as the function's Invoke target.
struct Functions {
    running: Vec<(&'static str, tokio::process::Child)>,
    _apis: Vec<RuntimeApi>,
}

impl Functions {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let (mut running, mut apis, mut targets) = (Vec::new(), Vec::new(), json!({}));
        for (name, processes) in [
            ("sweep-coordinator", 1),
            ("exposure-guard", 3),
            ("deprecation-enforcer", 3),
            ("snapshot-reaper", 3),
        ] {
            let api = RuntimeApi::start().await;
            for _ in 0..processes {
                running.push((name, api.spawn(&binary(name), name, envs)));
            }
            targets[name] = json!(api.invoke_url());
            apis.push(api);
        }
        stack::post_extension("/moto-ext/lambda-targets", &targets).await.unwrap();
        Self { running, _apis: apis }
    }

    /// Stops every process and checks each function's requests against its IAM policy.
    async fn stop_and_check_policies(self) {
        let mut logs: std::collections::BTreeMap<&str, String> = Default::default();
        for (name, child) in self.running {
            logs.entry(name).or_default().push_str(&stop_and_collect_logs(child).await);
        }
        for (name, logs) in logs {
            warden_testkit::iam::assert_granted(name, &logs);
        }
    }
}

async fn execute(sdk: &aws_config::SdkConfig, bucket: &str, run: &str) -> Value {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let machine = sfn
        .create_state_machine()
        .name(format!("ami-warden-sweeps-{run}"))
        .definition(definition(bucket))
        .role_arn(format!("arn:aws:iam::{OWN}:role/ami-warden-sweeps"))
        .send()
        .await
        .unwrap();
    // The input the template's schedule gives it, with a concurrency this machine can run.
    let input = json!({"max_concurrency": 4, "tolerated_failure_percentage": 10});
    let started = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(run)
        .input(input.to_string())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let d = sfn.describe_execution().execution_arn(started.execution_arn()).send().await;
        let d = d.unwrap();
        if d.status().as_str() != "RUNNING" || Instant::now() > deadline {
            return json!({"status": d.status().as_str(), "output": d.output(),
                "error": d.error(), "cause": d.cause()});
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn report<'a>(summary: &'a Value, account: &str, region: &str) -> &'a Value {
    let done = summary["done"].as_array().unwrap();
    done.iter()
        .find(|r| r["unit"]["account"] == account && r["unit"]["region"] == region)
        .unwrap_or_else(|| panic!("no report for {account} {region}: {summary}"))
}

fn check_job(job: &str, summary: &Value, last: &str) {
    let units = (members().len() + 1) * REGIONS.len();
    assert_eq!(summary["planned"], json!(units), "{job}: {summary}");
    assert_eq!(summary["done"].as_array().unwrap().len(), units - 2, "{job}: {summary}");
    assert_eq!(summary["not_reached"], json!([]), "{job}: {summary}");
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{job}: the member without its role, in both regions");
    for f in failed {
        assert_eq!(f["unit"]["account"], without_role().as_str(), "{f}");
        let cause = f["cause"].as_str().unwrap();
        assert!(cause.contains(&format!("cannot assume arn:aws:iam::{}", without_role())), "{f}");
    }
    let last = report(summary, last, REGIONS[1]);
    match job {
        "exposure" => assert_eq!(
            (&last["figures"]["findings"], &last["severity"]),
            (&json!(1), &json!("CRITICAL")),
            "{last}"
        ),
        "deprecation" => {
            assert!(last["summary"].as_str().unwrap().starts_with("1 image(s)"), "{last}");
            assert_eq!(last["figures"]["acted"], 0, "report mode: {last}");
        }
        _ => assert_eq!(
            (&last["figures"]["findings"], &last["figures"]["acted"]),
            (&json!(1), &json!(0)),
            "the orphan, in report mode: {last}"
        ),
    }
    let first = report(summary, &members()[0], REGIONS[0]);
    assert_eq!(first["figures"]["findings"], 0, "{first}");
}

#[tokio::test]
async fn the_daily_state_machine_sweeps_every_unit_and_summarizes_each_job() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "sfn-sweep").await;
    for member in members().iter().filter(|m| **m != without_role()) {
        accounts::create_member_role(&sdk, member, ROLE, OWN).await.unwrap();
    }
    let last = members()[5].clone();
    org::seed_member(&sdk, &table, &last, REGIONS[1], ROLE).await.unwrap();
    let run = format!("daily-{}", std::process::id());
    let bucket = format!("ami-warden-sweeps-sfn-{}", std::process::id());
    s3(&sdk).create_bucket().bucket(&bucket).send().await.unwrap();
    let inbox = Inbox::create(&sdk, &format!("sfn-sweeps-{}", std::process::id())).await.unwrap();
    let (members_list, regions) = (members().join(","), REGIONS.join(","));
    let functions = Functions::start(&[
        ("LINEAGE_TABLE", table.as_str()),
        ("TOPIC_ARN", inbox.topic_arn.as_str()),
        ("SWEEP_BUCKET", bucket.as_str()),
        ("MEMBER_ACCOUNTS", members_list.as_str()),
        ("SWEEP_REGIONS", regions.as_str()),
        ("MIN_AGE_DAYS", "0"),
    ])
    .await;

    let execution = execute(&sdk, &bucket, &run).await;
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    for job in JOBS {
        check_job(job, &summary(&sdk, &bucket, &run, job).await, &last);
    }
    let sent = inbox.receive(3, Duration::from_secs(20)).await.unwrap();
    let subjects: Vec<&str> = sent.iter().filter_map(|m| m.message["subject"].as_str()).collect();
    assert_eq!(subjects.len(), 3, "one notification per job, none from the units: {subjects:?}");
    for message in sent.iter().map(|m| &m.message) {
        let text = message["text"].as_str().unwrap();
        assert!(text.contains(&without_role()), "names the failed member: {text}");
        let link = format!("s3/buckets/{bucket}?region=us-east-1&prefix=runs/{run}/");
        assert!(message.to_string().contains(&link), "links each unit's report: {message}");
    }
    functions.stop_and_check_policies().await;
}
