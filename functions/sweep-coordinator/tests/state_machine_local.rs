//! The daily sweeps' state machine (statemachine/sweeps.asl.json, as the template deploys it)
//! executed by the local stack's Step Functions emulator, its Lambda tasks run by the real
//! binaries of the coordinator and the three sweeping functions under local Lambda Runtime
//! APIs, over the own account and 6 members in 2 regions (14 units a job).
//!
//! With one member without its role and a tolerance above its 2 units, each job is planned,
//! every unit runs as a Distributed Map child, the Map's results land in S3, and each job's
//! summary names every unit and what the last account holds. With more units failed than the
//! template's default tolerance, the exposure Map Run stops starting units and fails, the failed
//! run's status change goes through the template's EventBridge rule to the coordinator, which
//! summarizes it (naming the units failed and those not reached), and its redrive, once the roles exist, runs only those units and carries the run
//! through every job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::primitives::{DateTime, DateTimeFormat};
use serde_json::{json, Value};
use warden_testkit::inbox::{Inbox, Received};
use warden_testkit::rules::{event_pattern, Rule};
use warden_testkit::runtime_api::{stop_and_collect_logs, Reply, RuntimeApi};
use warden_testkit::{accounts, org, stack};

const OWN: &str = "123456789012";
const REGIONS: [&str; 2] = ["ap-southeast-4", "il-central-1"];
const ROLE: &str = "AmiWardenMember";
const JOBS: [&str; 3] = ["exposure", "deprecation", "reaper"];
/// A job's units: the own account and the 6 members, in each region.
const UNITS: usize = 7 * REGIONS.len();

/// Member ids of this run only: the local stack keeps what earlier runs created. Each test has
/// its own `series` of ids, so that the tests can run at once.
fn members(series: u8) -> Vec<String> {
    let run = std::process::id() % 100_000;
    (1..=6).map(|n| format!("{series}{run:05}{n:06}")).collect()
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

/// The JSON object `runs/<run>/<path>` of the sweep bucket, or `None` when there is none.
async fn run_file(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    run: &str,
    path: &str,
) -> Option<Value> {
    let key = format!("runs/{run}/{path}");
    let out = s3(sdk).get_object().bucket(bucket).key(&key).send().await;
    match out {
        Ok(out) => {
            Some(serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap())
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
        Err(e) => panic!("{key}: {e:?}"),
    }
}

async fn summary(sdk: &aws_config::SdkConfig, bucket: &str, run: &str, job: &str) -> Value {
    let summary = run_file(sdk, bucket, run, &format!("{job}/summary.json")).await;
    summary.unwrap_or_else(|| panic!("no {job} summary in run {run}"))
}

/// The definition with the template's substitutions: function ARNs and the bucket. The
/// functions are named after the test (`tag`): each test's Lambda tasks reach its own binaries.
fn definition(bucket: &str, tag: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../statemachine/sweeps.asl.json");
    let asl = std::fs::read_to_string(path).unwrap();
    let arn = |name: &str| format!("arn:aws:lambda:us-east-1:{OWN}:function:{name}-{tag}");
    asl.replace("${SweepCoordinatorArn}", &arn("sweep-coordinator"))
        .replace("${ExposureGuardArn}", &arn("exposure-guard"))
        .replace("${DeprecationEnforcerArn}", &arn("deprecation-enforcer"))
        .replace("${SnapshotReaperArn}", &arn("snapshot-reaper"))
        .replace("${SweepBucket}", bucket)
}

/// One Runtime API per function, `processes` binaries under each (a unit function's
/// concurrent environments), registered with the emulator as the Invoke target of the
/// function named `<function>-<tag>`.
struct Functions {
    running: Vec<(&'static str, tokio::process::Child)>,
    apis: Vec<(&'static str, RuntimeApi)>,
}

impl Functions {
    /// The functions as the template configures them, with this test's lineage table, topic,
    /// bucket and members.
    async fn start(tag: &str, table: &str, topic: &str, bucket: &str, members: &[String]) -> Self {
        let (members, regions) = (members.join(","), REGIONS.join(","));
        let envs = [
            ("LINEAGE_TABLE", table),
            ("TOPIC_ARN", topic),
            ("SWEEP_BUCKET", bucket),
            ("MEMBER_ACCOUNTS", members.as_str()),
            ("SWEEP_REGIONS", regions.as_str()),
            ("MIN_AGE_DAYS", "0"),
        ];
        let (mut running, mut apis, mut targets) = (Vec::new(), Vec::new(), json!({}));
        for (name, processes) in [
            ("sweep-coordinator", 1),
            ("exposure-guard", 3),
            ("deprecation-enforcer", 3),
            ("snapshot-reaper", 3),
        ] {
            let api = RuntimeApi::start().await;
            for _ in 0..processes {
                running.push((name, api.spawn(&binary(name), name, &envs)));
            }
            targets[format!("{name}-{tag}")] = json!(api.invoke_url());
            apis.push((name, api));
        }
        stack::post_extension("/moto-ext/lambda-targets", &targets).await.unwrap();
        Self { running, apis }
    }

    /// Invokes `function` with `event` as EventBridge would, and waits for its reply.
    async fn invoke(&mut self, function: &str, event: Value) -> Reply {
        let api = &mut self.apis.iter_mut().find(|(name, _)| *name == function).unwrap().1;
        api.invoke(event).await;
        api.reply(Duration::from_secs(120)).await.expect("a reply within 120 s").1
    }

    /// Stops every process, checks each function's requests against its IAM policy, and
    /// returns each function's logs.
    async fn stop_and_check_policies(self) -> BTreeMap<&'static str, String> {
        let mut logs: BTreeMap<&str, String> = Default::default();
        for (name, child) in self.running {
            logs.entry(name).or_default().push_str(&stop_and_collect_logs(child).await);
        }
        for (name, logs) in &logs {
            warden_testkit::iam::assert_granted(name, logs);
        }
        logs
    }
}

/// The stack the test's state machine stands for: the template names it `<stack>-sweeps`.
fn stack_name(run: &str) -> String {
    format!("ami-warden-{run}")
}

/// The coordinator's `RunStopped` rule as the template has it, on the local stack's EventBridge.
async fn run_stopped_rule(sdk: &aws_config::SdkConfig, run: &str) -> Rule {
    let stack = stack_name(run);
    let vars = [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", OWN),
        ("AWS::StackName", stack.as_str()),
    ];
    let pattern = event_pattern("SweepCoordinatorFunction", "RunStopped", &vars);
    Rule::create(sdk, &format!("{stack}-stopped"), &pattern).await.unwrap()
}

/// Creates the state machine and starts the run `run`, as the template's schedule does, with a
/// concurrency this machine can run and `tolerated` percent of a job's units allowed to fail.
async fn start(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    run: &str,
    tag: &str,
    tolerated: u32,
) -> String {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let machine = sfn
        .create_state_machine()
        .name(format!("{}-sweeps", stack_name(run)))
        .definition(definition(bucket, tag))
        .role_arn(format!("arn:aws:iam::{OWN}:role/ami-warden-sweeps"))
        .send()
        .await
        .unwrap();
    let input = json!({"max_concurrency": 4, "tolerated_failure_percentage": tolerated});
    let started = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(run)
        .input(input.to_string())
        .send()
        .await
        .unwrap();
    started.execution_arn().to_owned()
}

/// The execution once it no longer runs (or after 10 minutes).
async fn finished(sdk: &aws_config::SdkConfig, execution: &str) -> DescribeExecutionOutput {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let d = sfn.describe_execution().execution_arn(execution).send().await.unwrap();
        if d.status().as_str() != "RUNNING" || Instant::now() > deadline {
            return d;
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

/// Every unit counted, and the units of `without_role` failed (it cannot be assumed).
fn check_counts(job: &str, summary: &Value, without_role: &[&str]) {
    let failing = without_role.len() * REGIONS.len();
    assert_eq!(summary["planned"], json!(UNITS), "{job}: {summary}");
    assert_eq!(summary["done"].as_array().unwrap().len(), UNITS - failing, "{job}: {summary}");
    assert_eq!(summary["not_reached"], json!([]), "{job}: {summary}");
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), failing, "{job}: each member without its role, in both regions");
    for f in failed {
        let account = f["unit"]["account"].as_str().unwrap();
        assert!(without_role.contains(&account), "{f}");
        let cause = f["cause"].as_str().unwrap();
        assert!(cause.contains(&format!("cannot assume arn:aws:iam::{account}")), "{f}");
    }
}

fn check_job(job: &str, summary: &Value, members: &[String]) {
    check_counts(job, summary, &[members[2].as_str()]);
    let last = report(summary, &members[5], REGIONS[1]);
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
    let first = report(summary, &members[0], REGIONS[0]);
    assert_eq!(first["figures"]["findings"], 0, "{first}");
}

/// How many log lines of `logs` say `message`, by the value of their field `field`.
fn logged(logs: &str, message: &str, field: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in logs.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if line["fields"]["message"] == message {
            let value = line["fields"][field].as_str().unwrap_or_default().to_owned();
            *counts.entry(value).or_default() += 1;
        }
    }
    counts
}

/// How many times each unit of a sweeping function's logs ran: one "unit done" or "unit
/// failed" line an invocation.
fn unit_runs(logs: &str) -> BTreeMap<String, usize> {
    let mut runs = logged(logs, "unit done", "unit");
    for (unit, n) in logged(logs, "unit failed", "unit") {
        *runs.entry(unit).or_default() += n;
    }
    runs
}

/// The "Step Functions Execution Status Change" event AWS sends EventBridge for `execution`
/// (the emulator sends none): AWS's documented shape, whose `detail` is what DescribeExecution
/// says, dates in epoch milliseconds.
fn status_change(execution: &DescribeExecutionOutput) -> Value {
    let millis = |d: &DateTime| d.to_millis().unwrap();
    let stopped = execution.stop_date().expect("a stopped execution");
    json!({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "account": OWN, "time": stopped.fmt(DateTimeFormat::DateTime).unwrap(),
        "region": "us-east-1", "resources": [execution.execution_arn()],
        "detail": {
            "executionArn": execution.execution_arn(),
            "stateMachineArn": execution.state_machine_arn(),
            "name": execution.name(), "status": execution.status().as_str(),
            "startDate": millis(execution.start_date()), "stopDate": millis(stopped),
            "input": execution.input(), "inputDetails": {"included": true},
            "output": null, "outputDetails": null,
            "error": execution.error(), "cause": execution.cause(),
        }
    })
}

/// After the failed run: the exposure job's summary, naming each member without its role, and
/// the WARNING naming the jobs never started and saying to redrive; nothing else.
fn check_failure_notices(sent: &[Received], without_role: &[&str]) {
    let mut kinds: Vec<_> = sent.iter().filter_map(|m| m.kind.as_deref()).collect();
    kinds.sort();
    assert_eq!(kinds, ["exposure-summary", "sweeps-not-started"], "{sent:?}");
    for message in sent {
        let text = message.message["text"].as_str().unwrap_or_default();
        if message.kind.as_deref() == Some("exposure-summary") {
            assert!(without_role.iter().all(|m| text.contains(m)), "names each: {text}");
        } else {
            let jobs = text.contains("deprecation sweep, snapshot reaper sweep");
            assert!(jobs && text.contains("redrive"), "{text}");
        }
    }
}

/// The (account, region) of each unit a summary lists under `field`.
fn units_in(summary: &Value, field: &str) -> Vec<(String, String)> {
    let units = summary[field].as_array().unwrap().iter();
    // A failed unit is listed with its cause, a unit not reached on its own.
    let unit = |u: &Value| if u["unit"].is_object() { u["unit"].clone() } else { u.clone() };
    units
        .map(unit)
        .map(|u| {
            (u["account"].as_str().unwrap().to_owned(), u["region"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The failed run's exposure summary: every unit counted, the failed ones all of the members
/// without their role, and the units after the threshold was passed not reached.
fn check_stopped(summary: &Value, without_role: &[&str]) -> Vec<(String, String)> {
    let (failed, not_reached) = (units_in(summary, "failed"), units_in(summary, "not_reached"));
    let done = summary["done"].as_array().unwrap().len();
    assert_eq!(done + failed.len() + not_reached.len(), UNITS, "{summary}");
    assert!(failed.len() >= 2, "past 10 % of 14 units: {summary}");
    assert!(
        failed.iter().all(|(account, _)| without_role.contains(&account.as_str())),
        "{summary}"
    );
    assert!(!not_reached.is_empty(), "no unit is started past the threshold: {summary}");
    let named: Vec<&str> = failed.iter().chain(&not_reached).map(|(a, _)| a.as_str()).collect();
    assert!(without_role.iter().all(|m| named.contains(m)), "{summary}");
    failed
}

/// Each unit ran once, but the exposure units in `failed_before`: once more, in the redrive.
fn check_unit_runs(logs: &BTreeMap<&str, String>, failed_before: &[(String, String)]) {
    let sweepers = ["exposure-guard", "deprecation-enforcer", "snapshot-reaper"];
    for (job, function) in JOBS.into_iter().zip(sweepers) {
        let runs = unit_runs(&logs[function]);
        assert_eq!(runs.len(), UNITS, "{function}: every unit ran: {runs:?}");
        for (unit, n) in &runs {
            let again = job == "exposure"
                && failed_before.iter().any(|(a, r)| unit.contains(a) && unit.contains(r));
            assert_eq!(*n, if again { 2 } else { 1 }, "{function} ran {unit} {n} times");
        }
    }
}

#[tokio::test]
async fn the_daily_state_machine_sweeps_every_unit_and_summarizes_each_job() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "sfn-sweep").await;
    let (members, tag) = (members(4), "daily");
    for member in members.iter().filter(|m| **m != members[2]) {
        accounts::create_member_role(&sdk, member, ROLE, OWN).await.unwrap();
    }
    org::seed_member(&sdk, &table, &members[5], REGIONS[1], ROLE).await.unwrap();
    let run = format!("daily-{}", std::process::id());
    let bucket = format!("ami-warden-sweeps-sfn-{}", std::process::id());
    s3(&sdk).create_bucket().bucket(&bucket).send().await.unwrap();
    let inbox = Inbox::create(&sdk, &format!("sfn-sweeps-{}", std::process::id())).await.unwrap();
    let functions = Functions::start(tag, &table, &inbox.topic_arn, &bucket, &members).await;

    // 20 %: the member without its role's 2 units of 14 (14 %) are more than the default 10 %.
    let execution = finished(&sdk, &start(&sdk, &bucket, &run, tag, 20).await).await;
    assert_eq!(execution.status().as_str(), "SUCCEEDED", "{execution:?}");
    for job in JOBS {
        check_job(job, &summary(&sdk, &bucket, &run, job).await, &members);
    }
    let sent = inbox.receive(3, Duration::from_secs(20)).await.unwrap();
    let subjects: Vec<&str> = sent.iter().filter_map(|m| m.message["subject"].as_str()).collect();
    assert_eq!(subjects.len(), 3, "one notification per job, none from the units: {subjects:?}");
    for message in sent.iter().map(|m| &m.message) {
        let text = message["text"].as_str().unwrap();
        assert!(text.contains(&members[2]), "names the failed member: {text}");
        let link = format!("s3/buckets/{bucket}?region=us-east-1&prefix=runs/{run}/");
        assert!(message.to_string().contains(&link), "links each unit's report: {message}");
    }
    functions.stop_and_check_policies().await;
}

#[tokio::test]
async fn a_run_past_its_tolerance_stops_is_summarized_and_its_redrive_runs_only_the_units_left() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "sfn-redrive").await;
    let (members, tag) = (members(5), "redrive");
    let without_role = [members[1].as_str(), members[3].as_str()];
    for member in members.iter().filter(|m| !without_role.contains(&m.as_str())) {
        accounts::create_member_role(&sdk, member, ROLE, OWN).await.unwrap();
    }
    let run = format!("redriven-{}", std::process::id());
    let bucket = format!("ami-warden-sweeps-redrive-{}", std::process::id());
    s3(&sdk).create_bucket().bucket(&bucket).send().await.unwrap();
    let inbox = Inbox::create(&sdk, &format!("sfn-redrive-{}", std::process::id())).await.unwrap();
    let mut functions = Functions::start(tag, &table, &inbox.topic_arn, &bucket, &members).await;

    // The template's default tolerance, 10 %: two members without their role are 4 of the 14
    // exposure units (29 %). Past the second failure the exposure Map Run starts no more units,
    // and fails, and so does the run.
    let arn = start(&sdk, &bucket, &run, tag, 10).await;
    let failed = finished(&sdk, &arn).await;
    assert_eq!(failed.status().as_str(), "FAILED", "{failed:?}");
    assert_eq!(failed.error(), Some("States.ExceedToleratedFailureThreshold"), "{failed:?}");
    for job in ["deprecation", "reaper"] {
        let plan = run_file(&sdk, &bucket, &run, &format!("{job}/units.json")).await;
        assert_eq!(plan, None, "the jobs after the exposure sweep wait: {job} was planned");
    }

    // EventBridge's rule, the template's pattern, delivers the failed run's status change and
    // neither a run that succeeded nor another state machine's.
    let rule = run_stopped_rule(&sdk, &run).await;
    let event = status_change(&failed);
    let mut succeeded = event.clone();
    succeeded["detail"]["status"] = json!("SUCCEEDED");
    let mut other = event.clone();
    other["detail"]["stateMachineArn"] = json!(format!("{}-other", failed.state_machine_arn()));
    for sent in [&succeeded, &other, &event] {
        rule.put(sent).await.unwrap();
    }
    let delivered = rule.delivered(Duration::from_secs(3)).await.unwrap();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0]["detail"], event["detail"], "{delivered:#?}");

    // The coordinator, handed it: the exposure job, planned and not summarized, is summarized
    // now, naming the units failed and those not reached; one WARNING names the jobs never
    // started.
    let reply = functions.invoke("sweep-coordinator", delivered[0].clone()).await;
    let Reply::Response(after) = &reply else { panic!("{reply:?}") };
    let summarized = after["summarized"].as_array().unwrap();
    assert_eq!(summarized.len(), 1, "{after}");
    assert_eq!(summarized[0]["job"], "exposure", "{after}");
    let exposure = summary(&sdk, &bucket, &run, "exposure").await;
    let failed_units = check_stopped(&exposure, &without_role);
    let counts = ["done", "failed", "not_reached"].map(|f| exposure[f].as_array().unwrap().len());
    assert_eq!(summarized[0]["planned"], UNITS, "{after}");
    for (field, count) in ["done", "failed", "not_reached"].into_iter().zip(counts) {
        assert_eq!(summarized[0][field], count, "{field}: {after}");
    }
    assert_eq!(after["not_started"], json!(["deprecation", "reaper"]), "{after}");
    check_failure_notices(&inbox.receive(3, Duration::from_secs(5)).await.unwrap(), &without_role);

    // The roles fixed, the run is redriven: the same execution, RUNNING again, until it ends.
    for member in without_role {
        accounts::create_member_role(&sdk, member, ROLE, OWN).await.unwrap();
    }
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    sfn.redrive_execution().execution_arn(&arn).send().await.unwrap();
    let redriven = sfn.describe_execution().execution_arn(&arn).send().await.unwrap();
    assert_eq!(redriven.status().as_str(), "RUNNING", "{redriven:?}");
    let redriven = finished(&sdk, &arn).await;
    assert_eq!(redriven.status().as_str(), "SUCCEEDED", "{redriven:?}");
    assert_eq!(redriven.redrive_count(), Some(1), "{redriven:?}");
    for job in JOBS {
        check_counts(job, &summary(&sdk, &bucket, &run, job).await, &[]);
    }
    let sent = inbox.receive(4, Duration::from_secs(5)).await.unwrap();
    let mut kinds: Vec<_> = sent.iter().filter_map(|m| m.kind.as_deref()).collect();
    kinds.sort();
    assert_eq!(kinds, ["deprecation-summary", "exposure-summary", "reaper-summary"], "one a job");

    // Each plan ran once (the redrive resumed at the failed Map), only the failed units ran
    // twice, and those not reached ran once, in the redrive.
    let logs = functions.stop_and_check_policies().await;
    let plans = logged(&logs["sweep-coordinator"], "planned", "job");
    let once: BTreeMap<String, usize> = JOBS.iter().map(|j| (j.to_string(), 1)).collect();
    assert_eq!(plans, once, "{plans:?}");
    check_unit_runs(&logs, &failed_units);
}
