//! Least privilege, checked from what a function really sent: the `aws_calls` each Lambda
//! logs (counted by the SDK interceptor on every client) must all be granted by that
//! function's policies in `template.yaml`.

use std::collections::BTreeSet;

use serde_json::Value;

/// The workspace's template.yaml, found upwards from the running test's package directory
/// (`CARGO_MANIFEST_DIR` at run time, so a build cache shared between checkouts cannot point
/// at another checkout's template).
pub(crate) fn template() -> serde_yaml::Value {
    let start = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = std::path::Path::new(&start)
        .ancestors()
        .map(|d| d.join("template.yaml"))
        .find(|p| p.is_file())
        .expect("template.yaml above the package directory");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("template.yaml"))
        .expect("template.yaml parses")
}

/// The template's conditions that hold only with `Mode=enforce` (`ProtectNewestOn` is
/// `EnforceOn` and `ProtectNewest=true`, `StartUsageReports` is `EnforceOn` and
/// `RetireSharedUnused=true`; the tests' runs with those options set count them on).
const ENFORCE_ONLY: &[&str] = &["EnforceOn", "ProtectNewestOn", "StartUsageReports"];

/// The actions under `v`. A policy under `!If [EnforceOn, …]` (or another of [`ENFORCE_ONLY`])
/// counts only when `enforce` says so (`None`: either way); under any other condition it counts.
fn collect_actions(v: &serde_yaml::Value, enforce: Option<bool>, out: &mut BTreeSet<String>) {
    match v {
        serde_yaml::Value::Tagged(t) if t.tag == "If" => {
            let branches = t.value.as_sequence().map(Vec::as_slice).unwrap_or_default();
            let condition = branches.first().and_then(|c| c.as_str());
            let enforce_only = condition.is_some_and(|c| ENFORCE_ONLY.contains(&c));
            match (enforce_only, enforce, branches.get(1), branches.get(2)) {
                (true, Some(true), Some(then), _) => collect_actions(then, enforce, out),
                (true, Some(false), _, Some(otherwise)) => collect_actions(otherwise, enforce, out),
                _ => branches.iter().skip(1).for_each(|b| collect_actions(b, enforce, out)),
            }
        }
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("Action") {
                    match v {
                        serde_yaml::Value::String(a) => {
                            out.insert(a.clone());
                        }
                        serde_yaml::Value::Sequence(list) => {
                            out.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)))
                        }
                        _ => {}
                    }
                } else {
                    collect_actions(v, enforce, out);
                }
            }
        }
        serde_yaml::Value::Sequence(list) => {
            list.iter().for_each(|v| collect_actions(v, enforce, out))
        }
        serde_yaml::Value::Tagged(t) => collect_actions(&t.value, enforce, out),
        _ => {}
    }
}

/// Every IAM action the function's policies grant with `Mode=enforce` (`Some(true)`),
/// `Mode=report` (`Some(false)`), or either (`None`).
pub fn granted_in(binary: &str, enforce: Option<bool>) -> BTreeSet<String> {
    let t = template();
    let function = t["Resources"]
        .as_mapping()
        .expect("resources")
        .values()
        .find(|r| {
            r["Type"] == "AWS::Serverless::Function"
                && r["Metadata"]["BuildProperties"]["Binary"] == binary
        })
        .unwrap_or_else(|| panic!("no function builds {binary}"));
    let mut out = BTreeSet::new();
    collect_actions(&function["Properties"]["Policies"], enforce, &mut out);
    out
}

/// The IAM actions behind the `aws_calls` of a function's JSON log lines
/// (`DynamoDB.Query=2 EC2.DescribeImages=1` → `dynamodb:Query`, `ec2:DescribeImages`).
pub fn required(logs: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in logs.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let Some(calls) = v["fields"]["aws_calls"].as_str() else { continue };
        for call in calls.split_whitespace() {
            let Some((service, rest)) = call.split_once('.') else { continue };
            let operation = rest.split('=').next().unwrap_or_default();
            let prefix = match service {
                "DynamoDB" => "dynamodb",
                "EC2" => "ec2",
                "SNS" => "sns",
                "AutoScaling" => "autoscaling",
                "STS" => "sts",
                "Organizations" => "organizations",
                "CloudTrail" => "cloudtrail",
                "rbin" => "rbin",
                "S3" => "s3",
                "SecurityHub" => "securityhub",
                other => panic!("unknown service {other} in {call}"),
            };
            if (prefix, operation) == ("s3", "ListObjectsV2") {
                // IAM names listing a bucket ListBucket.
                out.insert("s3:ListBucket".to_owned());
            } else if (prefix, operation) == ("dynamodb", "TransactWriteItems") {
                // IAM checks each item of a transaction as its own action.
                out.insert("dynamodb:PutItem".to_owned());
                out.insert("dynamodb:UpdateItem".to_owned());
            } else {
                out.insert(format!("{prefix}:{operation}"));
            }
        }
    }
    out
}

/// The mode the function says it runs in (the first `mode` on a log line: report or enforce).
fn logged_mode(logs: &str) -> Option<bool> {
    logs.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).find_map(|v| {
        match v["fields"]["mode"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("enforce") => Some(true),
            Some("report") => Some(false),
            _ => None,
        }
    })
}

/// Panics unless every action the logs show was granted, and some were shown: in the mode the
/// function logged it runs in, only by the policies of that mode.
pub fn assert_granted(binary: &str, logs: &str) {
    let needed = required(logs);
    assert!(!needed.is_empty(), "{binary} logged no aws_calls:\n{logs}");
    let granted = granted_in(binary, logged_mode(logs));
    let missing: Vec<&String> = needed.iter().filter(|a| !granted.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "{binary} called {missing:?}, which template.yaml does not grant (granted: {granted:?})"
    );
}

#[cfg(test)]
mod tests {
    use super::granted_in;

    #[test]
    fn what_only_enforce_mode_may_do_is_granted_only_in_enforce_mode() {
        for (binary, destructive) in [
            ("snapshot-reaper", "ec2:DeleteSnapshot"),
            ("deprecation-enforcer", "ec2:DeregisterImage"),
        ] {
            let (report, enforce, either) = (
                granted_in(binary, Some(false)),
                granted_in(binary, Some(true)),
                granted_in(binary, None),
            );
            assert!(
                !report.contains(destructive)
                    && enforce.contains(destructive)
                    && either.contains(destructive),
                "{binary}"
            );
            assert!(
                report.contains("rbin:ListRules") && report.is_subset(&enforce),
                "{binary}: {report:?}"
            );
        }
    }

    #[test]
    fn deregistration_protection_is_granted_only_in_enforce_mode_and_only_to_the_enforcer() {
        let protection =
            ["ec2:EnableImageDeregistrationProtection", "ec2:DisableImageDeregistrationProtection"];
        let report = granted_in("deprecation-enforcer", Some(false));
        let enforce = granted_in("deprecation-enforcer", Some(true));
        for action in protection {
            assert!(!report.contains(action) && enforce.contains(action), "{action}");
            for other in ["snapshot-reaper", "exposure-guard", "lineage-recorder"] {
                assert!(!granted_in(other, None).contains(action), "{other}: {action}");
            }
        }
    }
}
