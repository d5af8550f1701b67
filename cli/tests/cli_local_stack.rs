//! `ami-warden` as a user runs it, against the local stack: replay the events of the seed
//! story (played for real on moto), then ask the lineage questions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;
use warden_testkit::story::play_seed_story;

fn ami_warden(table: &str, args: &[&str]) -> Output {
    ami_warden_with(table, args, &[])
}

fn ami_warden_with(table: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ami-warden"))
        .args(args)
        .env("LINEAGE_TABLE", table)
        .envs(env.iter().copied())
        .output()
        .expect("ami-warden runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ami-warden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_events(dir: &Path, events: &[(String, Value)]) {
    for (i, (label, event)) in events.iter().enumerate() {
        std::fs::write(
            dir.join(format!("{:02}-{label}.json", i + 1)),
            serde_json::to_vec(event).unwrap(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn replay_then_query_the_seed_story_like_a_user() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "cli-test").await;
    let story =
        play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "cli").await.unwrap();
    let dir = temp_dir("story");
    write_events(&dir, &story.events);
    std::fs::write(dir.join("99-garbage.json"), b"{not json").unwrap();

    let replay = ami_warden(&table, &["replay", dir.to_str().unwrap()]);
    let out = stdout(&replay);
    assert!(replay.status.success(), "{out}\n{}", String::from_utf8_lossy(&replay.stderr));
    let lines: Vec<&str> = out.lines().collect();
    // One line per event and function: DeregisterImage also goes to the snapshot reaper, and
    // each image-creating call and each AMI that becomes available to the deprecation
    // enforcer (both in report mode by default: they decide and change nothing).
    let creating = story
        .events
        .iter()
        .filter(|(label, _)| {
            ["register", "create", "copy"].iter().any(|p| label.starts_with(p))
                && !label.contains("failed")
        })
        .count();
    // The enforcer also gets the AMI state changes (it looks again, for quarantine, at each
    // image that becomes available, and ignores the other states).
    let state_changes =
        story.events.iter().filter(|(_, e)| e["detail-type"] == "EC2 AMI State Change").count();
    assert!(state_changes > 0, "the story has AMI state changes");
    assert_eq!(lines.len(), story.events.len() + 1 + creating + state_changes + 1, "{out}");
    assert_eq!(out.matches(": deprecation-enforcer: ").count(), creating + state_changes, "{out}");
    // Gen2 is deregistered by the time its copy is replayed: left to the sweep, not an error.
    assert!(out.contains("not visible; left to the daily sweep"), "{out}");
    let reaper = lines
        .iter()
        .find(|l| l.contains("snapshot-reaper:"))
        .expect("the reaper saw the deregistration");
    assert!(reaper.contains("reaped (report mode)"), "{reaper}");
    assert!(lines[0].contains("lineage-recorder: recorded RegisterImage"), "{out}");
    assert!(out.contains("ignored: failed call (Client.InvalidAMIID.NotFound)"), "{out}");
    assert!(lines.last().unwrap().contains("99-garbage.json: ignored: not JSON"), "{out}");

    // Delivered again: every recorded event is now a duplicate.
    let again = stdout(&ami_warden(&table, &["replay", dir.to_str().unwrap()]));
    assert_eq!(again.matches(": recorded ").count(), 0, "{again}");
    assert_eq!(again.matches(": reaped ").count(), 0, "{again}");
    let handled = out.matches(": recorded ").count() + out.matches(": reaped ").count();
    assert_eq!(again.matches(": duplicate ").count(), handled, "{again}");

    let golden = &story.golden;
    let json = ami_warden(
        &table,
        &[
            "lineage",
            "descendants",
            &golden.image_id,
            "--region",
            golden.region,
            "--format",
            "json",
        ],
    );
    assert!(json.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&json.stdout).expect("a JSON array");
    let depths: Vec<u64> = rows.iter().map(|r| r["depth"].as_u64().unwrap()).collect();
    assert_eq!(depths, vec![1, 2, 3, 4]);
    assert_eq!(rows[0]["parent_image_id"], golden.image_id.as_str());
    assert_eq!(rows[1]["state"], "deregistered");
    assert_eq!(rows[1]["region"], "eu-west-1");

    let gen4 = &story.generations[3];
    let anc = ami_warden(
        &table,
        &["lineage", "ancestors", &gen4.image_id, "--region", gen4.region, "--format", "json"],
    );
    let rows: Vec<Value> = serde_json::from_slice(&anc.stdout).expect("a JSON array");
    assert_eq!(rows.last().unwrap()["image_id"], golden.image_id.as_str());
    assert_eq!(rows.last().unwrap()["depth"], 4);

    let tree = stdout(&ami_warden(
        &table,
        &["lineage", "tree", &golden.image_id, "--region", golden.region],
    ));
    assert_eq!(tree.lines().count(), 5, "{tree}");
    assert!(tree.contains("[deregistered]"), "{tree}");

    // The golden image named by its id alone is found in whatever region the chain has it.
    let verify = ami_warden(
        &table,
        &["lineage", "verify", &gen4.image_id, "--region", gen4.region, "--from", &golden.image_id],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    let expected = format!(
        "VERIFIED: {}@{} descends from {}@{}",
        gen4.image_id, gen4.region, golden.image_id, golden.region
    );
    assert!(stdout(&verify).starts_with(&expected), "{}", stdout(&verify));
}

#[tokio::test]
async fn without_account_the_cli_acts_for_the_account_of_its_credentials_and_says_so() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "cli-account").await;
    let story = play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "cli-account")
        .await
        .unwrap();
    let gen4 = &story.generations[3];
    let plan = Command::new(env!("CARGO_BIN_EXE_ami-warden"))
        .args(["deprecation", "--region", gen4.region, "--format", "json"])
        .env("LINEAGE_TABLE", &table)
        .env_remove("AWS_ACCOUNT_ID")
        .output()
        .expect("ami-warden runs");
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(
        stderr.contains("acting for account 123456789012 (from STS GetCallerIdentity)"),
        "{stderr}"
    );
    let reports: Value = serde_json::from_slice(&plan.stdout).expect("a JSON report");
    let planned = reports[0]["planned"].as_array().expect("planned images");
    let gen4_plan = planned.iter().find(|p| p["image_id"] == gen4.image_id.as_str()).expect("Gen4");
    assert!(!gen4_plan.to_string().contains("not owned"), "{gen4_plan}");
}

#[tokio::test]
async fn unknown_image_exits_1_and_bad_arguments_exit_2() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "cli-unknown").await;
    let unknown = ami_warden(
        &table,
        &["lineage", "ancestors", "ami-0000000000000beef", "--region", "us-east-1"],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("is not in lineage table"));
    let bad = ami_warden(&table, &["lineage", "ancestors", "snap-123", "--region", "us-east-1"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn replaying_the_fixture_set_succeeds_and_reports_every_file() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "cli-fixtures").await;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
    let count = std::fs::read_dir(&fixtures).unwrap().count();
    let inbox = Inbox::create(&sdk, &format!("cli-fixtures-{}", std::process::id())).await.unwrap();
    let replay = ami_warden_with(
        &table,
        &["replay", fixtures.to_str().unwrap()],
        &[("TOPIC_ARN", &inbox.topic_arn)],
    );
    let out = stdout(&replay);
    assert!(replay.status.success(), "{out}");
    assert!(out.lines().count() >= count, "{out}");
    assert!(!out.contains(": error: "), "{out}");
    // The public-share fixture reaches the exposure guard; its image does not exist on the local
    // stack, so the alert says the exposure is gone rather than live.
    let public = out
        .lines()
        .find(|l| l.contains("12-modify-image-attribute-public.json: exposure-guard"))
        .expect("routed");
    assert!(public.contains("alerted WARNING image-public"), "{public}");
    // Without a topic the exposure guard cannot do its job: that is an error, not a silent skip.
    let table2 = stack::fresh_lineage_table(&sdk, "cli-fixtures-notopic").await;
    let replay = ami_warden_with(
        &table2,
        &["replay", fixtures.join("12-modify-image-attribute-public.json").to_str().unwrap()],
        &[("TOPIC_ARN", "")],
    );
    assert_eq!(replay.status.code(), Some(1));
    assert!(stdout(&replay).contains("TOPIC_ARN is not set"), "{}", stdout(&replay));
}

#[tokio::test]
async fn verify_is_a_pipeline_gate_and_impact_prints_the_blast_radius() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "cli-verify").await;
    let story =
        play_seed_story(&sdk, &Trail::new("123456789012", "pipeline"), "cli-verify").await.unwrap();
    let dir = temp_dir("verify");
    write_events(&dir, &story.events);
    assert!(ami_warden(&table, &["replay", dir.to_str().unwrap()]).status.success());
    let golden = format!("{}@{}", story.golden.image_id, story.golden.region);
    let gen4 = &story.generations[3];

    let ok = ami_warden(
        &table,
        &["lineage", "verify", &gen4.image_id, "--region", gen4.region, "--from", &golden],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let text = stdout(&ok);
    assert!(text.starts_with("VERIFIED: "), "{text}");
    assert!(
        text.contains("[deregistered] CopyImage from"),
        "the chain runs through the deregistered Gen2:\n{text}"
    );

    let json = ami_warden(
        &table,
        &[
            "lineage",
            "verify",
            &gen4.image_id,
            "--region",
            gen4.region,
            "--from",
            "ami-0000000000000beef",
            "--format",
            "json",
        ],
    );
    assert_eq!(json.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdict["verdict"], "does_not_descend");
    assert!(verdict["breaks"].as_str().unwrap().contains("not an approved base"), "{verdict}");

    let bad = ami_warden(&table, &["lineage", "verify", "snap-123", "--from", &golden]);
    assert_eq!(bad.status.code(), Some(2));

    let gen1 = &story.generations[0];
    let impact = ami_warden(
        &table,
        &[
            "lineage",
            "impact",
            &gen1.image_id,
            "--region",
            gen1.region,
            "--account",
            "123456789012",
        ],
    );
    assert!(impact.status.success(), "{}", String::from_utf8_lossy(&impact.stderr));
    let text = stdout(&impact);
    assert!(
        text.contains(&story.generations[3].image_id)
            && text.lines().any(|l| l.starts_with("total: 4 image(s)")),
        "{text}"
    );
}
