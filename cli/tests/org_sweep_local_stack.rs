//! `ami-warden exposure|deprecation|snapshots --organization` over a simulated organization on
//! the local stack: the own account and 20 member accounts in 2 regions, told apart as moto
//! does and reached only through STS AssumeRole. One member has no role. The last member has a
//! public image and a snapshot its deregistered image left behind.

use std::process::Command;

use serde_json::Value;
use warden_testkit::{accounts, org, stack};

const OWN: &str = "123456789012";
const REGIONS: [&str; 2] = ["ap-northeast-3", "me-central-1"];
const ROLE: &str = "AmiWardenMember";

/// Member ids of this run only: the local stack keeps what earlier runs created.
fn members() -> Vec<String> {
    let run = std::process::id() % 100_000;
    (1..=20).map(|n| format!("3{run:05}{n:06}")).collect()
}

/// The member whose role was never deployed.
fn without_role() -> String {
    members()[6].clone()
}

fn sweep(table: &str, command: &str) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ami-warden"))
        .args([command, "--organization", "--region", &REGIONS.join(","), "--parallel", "8"])
        .args(["--format", "json"])
        .env("LINEAGE_TABLE", table)
        .env("MEMBER_ACCOUNTS", members().join(","))
        .env("MIN_AGE_DAYS", "0")
        .env_remove("AWS_ACCOUNT_ID")
        .output()
        .expect("ami-warden runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: not JSON ({e}):\n{stderr}"));
    (out.status.code(), summary, stderr)
}

/// The unit of `account` in `region` among the done ones.
fn unit<'a>(summary: &'a Value, account: &str, region: &str) -> &'a Value {
    summary["done"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unit"]["account"] == account && r["unit"]["region"] == region)
        .unwrap_or_else(|| panic!("no report for {account} {region}: {summary}"))
}

#[tokio::test]
async fn every_unit_is_reported_the_member_without_its_role_is_named_and_the_last_is_swept() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "org-sweep").await;
    for member in members().iter().filter(|m| **m != without_role()) {
        accounts::create_member_role(&sdk, member, ROLE, OWN).await.unwrap();
    }
    let last = members()[19].clone();
    org::seed_member(&sdk, &table, &last, REGIONS[1], ROLE).await.unwrap();

    for command in ["exposure", "deprecation", "snapshots"] {
        let (code, summary, stderr) = sweep(&table, command);
        assert_eq!(code, Some(1), "{command}: a failed unit makes exit 1\n{stderr}");
        assert!(stderr.contains("21 account(s) x 2 region(s) = 42 units"), "{stderr}");
        assert_eq!(summary["planned"], 42, "{command}: {summary}");
        assert_eq!(summary["done"].as_array().unwrap().len(), 40, "{command}: {summary}");
        assert_eq!(summary["not_reached"].as_array().unwrap().len(), 0, "{summary}");
        let failed = summary["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 2, "{command}: the member without its role, in both regions");
        for f in failed {
            assert_eq!(f["unit"]["account"], without_role().as_str(), "{f}");
            let cause = f["cause"].as_str().unwrap();
            assert!(
                cause.contains(&format!("cannot assume arn:aws:iam::{}", without_role())),
                "{cause}"
            );
        }
        let last_unit = unit(&summary, &last, REGIONS[1]);
        match command {
            "exposure" => {
                assert_eq!(last_unit["figures"]["findings"], 1, "{last_unit}");
                assert_eq!(last_unit["severity"], "CRITICAL", "{last_unit}");
                assert!(
                    last_unit["summary"].as_str().unwrap().contains("(1 public)"),
                    "{last_unit}"
                );
            }
            "deprecation" => {
                // Report mode: decided, nothing deregistered; the public image is counted.
                assert!(
                    last_unit["summary"].as_str().unwrap().starts_with("1 image(s)"),
                    "{last_unit}"
                );
                assert_eq!(last_unit["figures"]["acted"], 0, "{last_unit}");
            }
            _ => {
                assert_eq!(last_unit["figures"]["findings"], 1, "the orphan: {last_unit}");
                assert_eq!(last_unit["figures"]["acted"], 0, "report mode: {last_unit}");
            }
        }
        // The other members' units ran in their own, empty, estates.
        let first = unit(&summary, &members()[0], REGIONS[0]);
        assert_eq!(first["figures"]["findings"], 0, "{first}");
    }
}
