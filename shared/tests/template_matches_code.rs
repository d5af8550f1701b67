//! `template.yaml` and the code cannot drift apart: each function's EventBridge rules select
//! exactly the events its route declares (which `ami-warden replay` uses), the environment
//! variables the code reads are set, the table schema is the one the tests create, and the
//! dashboard and the alarms show exactly the metrics the code writes, under its dimensions.

use std::collections::BTreeSet;

use serde_yaml::Value;
use warden::routes::ROUTES;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_sequence().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

fn function<'a>(t: &'a Value, binary: &str) -> &'a Value {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| {
            r["Type"] == "AWS::Serverless::Function"
                && r["Metadata"]["BuildProperties"]["Binary"] == binary
        })
        .unwrap_or_else(|| panic!("no function builds binary {binary}"))
}

#[test]
fn each_function_rules_select_exactly_its_routes_events() {
    let t = template();
    for route in ROUTES {
        let f = function(&t, route.function.name());
        let mut api_calls = BTreeSet::new();
        let mut state_changes = false;
        for event in f["Properties"]["Events"].as_mapping().unwrap().values() {
            if event["Type"] != "EventBridgeRule" {
                continue;
            }
            let pattern = &event["Properties"]["Pattern"];
            assert_eq!(strings(&pattern["source"]), BTreeSet::from(["aws.ec2".to_owned()]));
            let detail_types = strings(&pattern["detail-type"]);
            if detail_types.contains("EC2 AMI State Change") {
                state_changes = true;
            } else {
                assert_eq!(
                    detail_types,
                    BTreeSet::from(["AWS API Call via CloudTrail".to_owned()])
                );
                assert_eq!(
                    strings(&pattern["detail"]["eventSource"]),
                    BTreeSet::from(["ec2.amazonaws.com".to_owned()])
                );
                assert_eq!(
                    pattern["detail"]["errorCode"][0]["exists"],
                    Value::Bool(false),
                    "failed calls filtered"
                );
                api_calls.extend(strings(&pattern["detail"]["eventName"]));
            }
            assert!(
                matches!(event["Properties"]["DeadLetterConfig"]["Arn"], Value::Tagged(_)),
                "rule targets dead-letter"
            );
        }
        let declared: BTreeSet<String> = route.api_calls.iter().map(|s| s.to_string()).collect();
        assert_eq!(api_calls, declared, "{}", route.function.name());
        assert_eq!(state_changes, route.ami_state_changes, "{}", route.function.name());
    }
}

#[test]
fn every_environment_variable_each_function_reads_is_set() {
    let t = template();
    let reads: &[(&str, &[&str])] = &[
        ("lineage-recorder", &["LINEAGE_TABLE", "MEMBER_ACCOUNTS", "MEMBER_ROLE_NAME", "RUST_LOG"]),
        (
            "exposure-guard",
            &[
                "LINEAGE_TABLE",
                "TOPIC_ARN",
                "REMEDIATE_PUBLIC",
                "REMEDIATE_SHARES",
                "ALLOWED_ACCOUNT_IDS",
                "ALLOWED_ORG_ARNS",
                "ALLOWED_OU_ARNS",
                "EXEMPT_TAG_KEY",
                "MEMBER_ACCOUNTS",
                "MEMBER_ROLE_NAME",
                "MEMBER_ENFORCE",
                "SWEEP_REGIONS",
                "RUST_LOG",
            ],
        ),
        ("slack-notifier", &["SLACK_WEBHOOK_SECRET", "SLACK_MIN_SEVERITY", "RUST_LOG"]),
        (
            "launch-guard",
            &[
                "LINEAGE_TABLE",
                "TOPIC_ARN",
                "APPROVED_BASES",
                "MEMBER_ACCOUNTS",
                "MEMBER_ROLE_NAME",
                "RUST_LOG",
            ],
        ),
        (
            "deprecation-enforcer",
            &[
                "LINEAGE_TABLE",
                "TOPIC_ARN",
                "MODE",
                "DEPRECATE_AFTER_DAYS",
                "GRACE_DAYS",
                "KEEP_LATEST",
                "PROTECT_NEWEST",
                "RETIRE_SHARED_UNUSED",
                "WARN_DAYS",
                "IN_USE_DAYS",
                "EXEMPT_TAG_KEY",
                "FAMILY_TAG_KEY",
                "MEMBER_ACCOUNTS",
                "MEMBER_ROLE_NAME",
                "MEMBER_ENFORCE",
                "SWEEP_REGIONS",
                "RUST_LOG",
            ],
        ),
        (
            "snapshot-reaper",
            &[
                "LINEAGE_TABLE",
                "TOPIC_ARN",
                "MODE",
                "MIN_AGE_DAYS",
                "EXEMPT_TAG_KEY",
                "SNAPSHOT_PRICE_PER_GB_MONTH",
                "MEMBER_ACCOUNTS",
                "MEMBER_ROLE_NAME",
                "MEMBER_ENFORCE",
                "SWEEP_REGIONS",
                "RUST_LOG",
            ],
        ),
        (
            "sweep-coordinator",
            &["SWEEP_BUCKET", "TOPIC_ARN", "MEMBER_ACCOUNTS", "SWEEP_REGIONS", "RUST_LOG"],
        ),
    ];
    for (binary, names) in reads {
        let vars = &function(&t, binary)["Properties"]["Environment"]["Variables"];
        for name in *names {
            assert!(!vars[*name].is_null(), "{binary}: {name} is not set by the template");
        }
    }
}

#[test]
fn the_recycle_bin_keeps_exactly_what_the_reaper_tags_and_only_tagged_snapshots_can_be_deleted() {
    let t = template();
    let rule = &t["Resources"]["ReapedSnapshotsRecycleBinRule"]["Properties"];
    assert_eq!(rule["ResourceType"], "EBS_SNAPSHOT");
    assert_eq!(rule["ResourceTags"][0]["ResourceTagKey"], warden::reaper::REAPED_TAG_KEY);
    assert_eq!(rule["ResourceTags"][0]["ResourceTagValue"], warden::reaper::REAPED_TAG_VALUE);
    let text =
        serde_yaml::to_string(&function(&t, "snapshot-reaper")["Properties"]["Policies"]).unwrap();
    let delete = text.find("ec2:DeleteSnapshot").expect("DeleteSnapshot granted");
    let condition = &text[delete..];
    assert!(
        condition.contains(&format!("aws:ResourceTag/{}", warden::reaper::REAPED_TAG_KEY)),
        "{text}"
    );
}

#[test]
fn the_recycle_bin_keeps_exactly_what_the_enforcer_tags_and_only_tagged_images_can_be_deregistered()
{
    use warden::deprecation::{RETIRED_TAG_KEY, RETIRED_TAG_VALUE};
    for (name, doc) in [
        ("template.yaml", template()),
        ("organization-member.yaml", infra("organization-member.yaml")),
    ] {
        let rule = &doc["Resources"]["RetiredImagesRecycleBinRule"]["Properties"];
        assert_eq!(rule["ResourceType"], "EC2_IMAGE", "{name}");
        assert_eq!(rule["ResourceTags"][0]["ResourceTagKey"], RETIRED_TAG_KEY, "{name}");
        assert_eq!(rule["ResourceTags"][0]["ResourceTagValue"], RETIRED_TAG_VALUE, "{name}");
        let deregister: Vec<&Value> = statements(&doc)
            .into_iter()
            .filter(|s| s["Effect"] == "Allow" && actions(s).contains("ec2:DeregisterImage"))
            .collect();
        assert!(!deregister.is_empty(), "{name}: DeregisterImage granted");
        for s in deregister {
            assert_eq!(
                actions(s),
                BTreeSet::from(["ec2:DeregisterImage".to_owned()]),
                "{name}: DeregisterImage on its own"
            );
            assert_eq!(
                s["Condition"]["StringEquals"]
                    [format!("aws:ResourceTag/{RETIRED_TAG_KEY}").as_str()],
                RETIRED_TAG_VALUE,
                "{name}: {s:?}"
            );
        }
    }
}

#[test]
fn protection_is_taken_off_only_images_the_enforcer_marked_and_only_with_protect_newest_in_enforce_mode(
) {
    use warden::deprecation::protect::{PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
    let t = template();
    let condition = serde_yaml::to_string(&t["Conditions"]["ProtectNewestOn"]).unwrap();
    assert!(condition.contains("EnforceOn") && condition.contains("ProtectNewest"), "{condition}");
    let enforcer = function(&t, "deprecation-enforcer");
    let env = &enforcer["Properties"]["Environment"]["Variables"]["PROTECT_NEWEST"];
    assert_eq!(serde_yaml::to_string(env).unwrap().trim(), "!Ref ProtectNewest");
    let disable: Vec<&Value> = statements(&t)
        .into_iter()
        .filter(|s| actions(s).contains("ec2:DisableImageDeregistrationProtection"))
        .collect();
    assert_eq!(disable.len(), 1, "one grant");
    assert_eq!(
        actions(disable[0]),
        BTreeSet::from(["ec2:DisableImageDeregistrationProtection".to_owned()])
    );
    assert_eq!(
        disable[0]["Condition"]["StringEquals"]
            [format!("aws:ResourceTag/{PROTECTED_TAG_KEY}").as_str()],
        PROTECTED_TAG_VALUE
    );
    // Granted only under ProtectNewestOn: the policy around it names that condition.
    let policies = serde_yaml::to_string(&enforcer["Properties"]["Policies"]).unwrap();
    let at = policies.find("ec2:DisableImageDeregistrationProtection").unwrap();
    let opened = policies[..at].rfind("!If").unwrap();
    assert!(policies[opened..at].contains("ProtectNewestOn"), "{}", &policies[opened..at]);
}

#[test]
fn usage_reports_are_read_only_with_retire_shared_unused_and_started_only_in_enforce_mode() {
    let t = template();
    let start = serde_yaml::to_string(&t["Conditions"]["StartUsageReports"]).unwrap();
    assert!(start.contains("EnforceOn") && start.contains("RetireSharedUnusedOn"), "{start}");
    let enforcer = function(&t, "deprecation-enforcer");
    let env = &enforcer["Properties"]["Environment"]["Variables"]["RETIRE_SHARED_UNUSED"];
    assert_eq!(serde_yaml::to_string(env).unwrap().trim(), "!Ref RetireSharedUnused");
    let policies = serde_yaml::to_string(&enforcer["Properties"]["Policies"]).unwrap();
    for (action, condition) in [
        ("ec2:DescribeImageUsageReports", "RetireSharedUnusedOn"),
        ("ec2:DescribeImageUsageReportEntries", "RetireSharedUnusedOn"),
        ("ec2:CreateImageUsageReport", "StartUsageReports"),
    ] {
        let at = policies.find(action).unwrap_or_else(|| panic!("{action} granted"));
        let opened = policies[..at].rfind("!If").unwrap();
        assert!(policies[opened..at].contains(condition), "{action}: {}", &policies[opened..at]);
    }
}

#[test]
fn the_slack_notifier_is_subscribed_to_the_notification_topic() {
    let t = template();
    let events = &function(&t, "slack-notifier")["Properties"]["Events"];
    let sns: Vec<&Value> =
        events.as_mapping().unwrap().values().filter(|e| e["Type"] == "SNS").collect();
    assert_eq!(sns.len(), 1);
}

#[test]
fn lineage_schema_matches_template() {
    let t = template();
    let props = &t["Resources"]["LineageTable"]["Properties"];
    let keys: Vec<(String, String)> = props["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The schema warden_testkit::stack::fresh_lineage_table creates for the tests.
    assert_eq!(keys, vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]);
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
    assert!(props["GlobalSecondaryIndexes"].is_null(), "the test tables have no GSI");
    assert_eq!(t["Resources"]["LineageTable"]["DeletionPolicy"], "Retain");
}

fn infra(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_organization_stackset_deploys_exactly_the_linted_member_template() {
    let org = infra("organization.yaml");
    let body = org["Resources"]["MemberStackSet"]["Properties"]["TemplateBody"]
        .as_str()
        .expect("inline body");
    let deployed: Value = serde_yaml::from_str(body).unwrap();
    assert_eq!(
        deployed,
        infra("organization-member.yaml"),
        "edit infra/organization-member.yaml and the StackSet body together"
    );
}

#[test]
fn member_accounts_forward_every_event_some_function_handles() {
    let member = infra("organization-member.yaml");
    let pattern = &member["Resources"]["ForwardImageEvents"]["Properties"]["EventPattern"];
    let forwarded = strings(&pattern["detail"]["eventName"]);
    let handled: BTreeSet<String> =
        ROUTES.iter().flat_map(|r| r.api_calls.iter().map(|s| s.to_string())).collect();
    assert_eq!(forwarded, handled);
    assert_eq!(pattern["detail"]["errorCode"][0]["exists"], Value::Bool(false));
    let states =
        &member["Resources"]["ForwardAmiStateChanges"]["Properties"]["EventPattern"]["detail-type"];
    assert_eq!(strings(states), BTreeSet::from(["EC2 AMI State Change".to_owned()]));
}

#[test]
fn every_function_and_dead_letter_queue_has_alarms_on_the_topic() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let alarms: Vec<&Value> =
        resources.values().filter(|r| r["Type"] == "AWS::CloudWatch::Alarm").collect();
    for (id, r) in resources {
        let id = id.as_str().unwrap();
        let watched = |metric: &str| {
            alarms.iter().any(|a| {
                a["Properties"]["MetricName"] == metric
                    && serde_yaml::to_string(&a["Properties"]["Dimensions"]).unwrap().contains(id)
                    && serde_yaml::to_string(&a["Properties"]["AlarmActions"])
                        .unwrap()
                        .contains("NotificationTopic")
            })
        };
        if r["Type"] == "AWS::Serverless::Function" {
            assert!(watched("Errors") && watched("Throttles"), "{id} lacks error/throttle alarms");
        }
        if r["Type"] == "AWS::SQS::Queue" {
            assert!(watched("ApproximateNumberOfMessagesVisible"), "{id} lacks a depth alarm");
        }
    }
}

#[test]
fn the_slack_notifier_may_read_only_its_secret() {
    let t = template();
    let text =
        serde_yaml::to_string(&function(&t, "slack-notifier")["Properties"]["Policies"]).unwrap();
    assert!(
        text.contains("secretsmanager:GetSecretValue") && text.contains("SlackWebhookSecretArn"),
        "{text}"
    );
    assert!(!text.contains("Resource: '*'"), "{text}");
}

/// Every IAM statement (and key policy statement) in `v`, at any depth.
fn statements(v: &Value) -> Vec<&Value> {
    match v {
        Value::Mapping(m) if m.contains_key("Effect") && m.contains_key("Action") => vec![v],
        Value::Mapping(m) => m.values().flat_map(statements).collect(),
        Value::Sequence(s) => s.iter().flat_map(statements).collect(),
        Value::Tagged(t) => statements(&t.value),
        _ => Vec::new(),
    }
}

fn actions(statement: &Value) -> BTreeSet<String> {
    match &statement["Action"] {
        Value::String(a) => BTreeSet::from([a.clone()]),
        other => strings(other),
    }
}

#[test]
fn tag_grants_name_only_the_reaped_tag_on_snapshots_and_the_retired_tag_on_images_in_every_template(
) {
    use warden::deprecation::protect::{PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
    use warden::deprecation::{RETIRED_TAG_KEY, RETIRED_TAG_VALUE};
    use warden::quarantine::TAG_KEY as QUARANTINED_TAG_KEY;
    use warden::reaper::{REAPED_TAG_KEY, REAPED_TAG_VALUE};
    // Both also mark the images the enforcer protects (ProtectNewest) and tag the new images
    // of a quarantined lineage; the member role also lets the CLI's release untag those.
    for (name, doc, tags, untags) in [
        ("template.yaml", template(), 5, 3),
        ("organization-member.yaml", infra("organization-member.yaml"), 5, 4),
    ] {
        let grants: Vec<&Value> =
            statements(&doc).into_iter().filter(|s| s["Effect"] == "Allow").collect();
        let untag: Vec<&&Value> =
            grants.iter().filter(|s| actions(s).contains("ec2:DeleteTags")).collect();
        let tag: Vec<&&Value> =
            grants.iter().filter(|s| actions(s).contains("ec2:CreateTags")).collect();
        assert_eq!((untag.len(), tag.len()), (untags, tags), "{name}: the tag and untag grants");
        // The one tag each grant may name, by the resources it names: on images, the retired
        // tag or (their own grants) the protected or the quarantined tag, whose value is the
        // quarantine's reason (no value condition).
        let tag_of = |s: &Value| -> (&str, Option<&str>) {
            let named = strings(&s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]);
            match serde_yaml::to_string(&s["Resource"]).unwrap() {
                // A usage report's scope tag, only as the report is created.
                r if r.contains(":image-usage-report/") && !r.contains(":image/") => {
                    assert_eq!(
                        s["Condition"]["StringEquals"]["ec2:CreateAction"],
                        "CreateImageUsageReport",
                        "{name}: {s:?}"
                    );
                    (warden::deprecation::usage::SCOPE_TAG_KEY, None)
                }
                r if r.contains(":snapshot/") && !r.contains(":image/") => {
                    (REAPED_TAG_KEY, Some(REAPED_TAG_VALUE))
                }
                r if r.contains(":image/")
                    && !r.contains(":snapshot/")
                    && named.contains(PROTECTED_TAG_KEY) =>
                {
                    (PROTECTED_TAG_KEY, Some(PROTECTED_TAG_VALUE))
                }
                r if r.contains(":image/")
                    && !r.contains(":snapshot/")
                    && named.contains(QUARANTINED_TAG_KEY) =>
                {
                    (QUARANTINED_TAG_KEY, None)
                }
                r if r.contains(":image/") && !r.contains(":snapshot/") => {
                    (RETIRED_TAG_KEY, Some(RETIRED_TAG_VALUE))
                }
                r => panic!("{name}: a tag grant on {r}"),
            }
        };
        for s in untag.iter().chain(tag.iter()) {
            let (key, _) = tag_of(s);
            assert_eq!(
                strings(&s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]),
                BTreeSet::from([key.to_owned()]),
                "{name}: {s:?}"
            );
        }
        // A DeleteTags naming no tag deletes them all, and an absent key passes ForAllValues.
        for s in &untag {
            assert_eq!(s["Condition"]["Null"]["aws:TagKeys"], "false", "{name}: {s:?}");
            assert_eq!(
                actions(s),
                BTreeSet::from(["ec2:DeleteTags".to_owned()]),
                "{name}: DeleteTags on its own"
            );
        }
        for s in &tag {
            if let (key, Some(value)) = tag_of(s) {
                assert_eq!(
                    s["Condition"]["StringEquals"][format!("aws:RequestTag/{key}").as_str()],
                    value,
                    "{name}: {s:?}"
                );
            }
        }
    }
}

/// The partitions of the table `binary`'s one DynamoDB statement lets it touch.
fn table_partitions(t: &Value, binary: &str) -> BTreeSet<String> {
    let statements = statements(&function(t, binary)["Properties"]["Policies"]);
    let table: Vec<&&Value> = statements
        .iter()
        .filter(|s| actions(s).iter().any(|a| a.starts_with("dynamodb:")))
        .collect();
    assert_eq!(table.len(), 1, "{binary}: {table:?}");
    strings(&table[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
}

fn prefixes<'a>(p: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    p.into_iter().map(|prefix| format!("{prefix}*")).collect()
}

#[test]
fn the_exposure_guard_may_touch_only_its_claims_and_the_share_ledger() {
    let written = prefixes(
        std::iter::once(warden::aws::idempotency::PARTITION_PREFIX)
            .chain(warden::aws::ledger::PARTITION_PREFIXES),
    );
    assert_eq!(table_partitions(&template(), "exposure-guard"), written);
}

#[test]
fn the_lineage_recorder_may_touch_only_the_lineage() {
    assert_eq!(
        table_partitions(&template(), "lineage-recorder"),
        prefixes(warden::aws::lineage_table::PARTITION_PREFIXES)
    );
}

#[test]
fn member_roles_trust_only_the_central_functions_roles_and_the_named_cli_principals() {
    let t = template();
    let path = t["Globals"]["Function"]["RolePath"]
        .as_str()
        .expect("the functions' roles have a path")
        .to_owned();
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"] == "AWS::Serverless::Function" {
            let props = &resource["Properties"];
            assert!(
                props["Role"].is_null() && props["RolePath"].is_null(),
                "{name:?}: its role must be the generated one, under {path}"
            );
        }
    }
    let member = infra("organization-member.yaml");
    let role = &member["Resources"]["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]
        ["Statement"][0];
    let condition =
        serde_yaml::to_string(&role["Condition"]["ArnLike"]["aws:PrincipalArn"]).unwrap();
    assert!(condition.contains(&format!(":role{path}*")), "{condition}");
    assert!(condition.contains("CliPrincipalArns"), "{condition}");
}

fn state_machine() -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../statemachine/sweeps.asl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The binary of the function a `${Name}` substitution of the state machine names.
fn substituted_binary(t: &Value, placeholder: &str) -> String {
    let name = placeholder.trim_start_matches("${").trim_end_matches('}');
    let machine = &t["Resources"]["SweepStateMachine"]["Properties"];
    let Value::Tagged(get_att) = &machine["DefinitionSubstitutions"][name] else {
        panic!("{name} is not a !GetAtt")
    };
    let target = get_att.value.as_str().unwrap().trim_end_matches(".Arn").to_owned();
    let binary = &t["Resources"][target.as_str()]["Metadata"]["BuildProperties"]["Binary"];
    binary.as_str().unwrap().to_owned()
}

#[test]
fn the_daily_sweep_runs_each_job_in_order_through_its_own_function_one_unit_per_child() {
    let (t, sm) = (template(), state_machine());
    let states = &sm["States"];
    let mut at = sm["StartAt"].as_str().unwrap().to_owned();
    let mut jobs = Vec::new();
    for (job, title, binary) in [
        ("exposure", "Exposure", "exposure-guard"),
        ("deprecation", "Deprecation", "deprecation-enforcer"),
        ("reaper", "Reaper", "snapshot-reaper"),
    ] {
        assert_eq!(at, format!("Plan{title}"));
        let plan = &states[&at];
        assert_eq!(plan["Parameters"]["Payload"]["plan"]["job"], job);
        let coordinator = plan["Parameters"]["FunctionName"].as_str().unwrap();
        assert_eq!(substituted_binary(&t, coordinator), "sweep-coordinator");
        let map = &states[plan["Next"].as_str().unwrap()];
        assert_eq!(map["Type"], "Map");
        assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED");
        assert_eq!(map["ItemReader"]["Resource"], "arn:aws:states:::s3:getObject");
        assert_eq!(map["ResultWriter"]["Resource"], "arn:aws:states:::s3:putObject");
        assert_eq!(map["ItemSelector"]["unit.$"], "$$.Map.Item.Value", "a child gets {{unit}}");
        let processor = &map["ItemProcessor"];
        let unit = &processor["States"][processor["StartAt"].as_str().unwrap()];
        let function = unit["Parameters"]["FunctionName"].as_str().unwrap();
        assert_eq!(substituted_binary(&t, function), binary, "{job}");
        let retried: Vec<&str> = unit["Retry"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
            .filter_map(|e| e.as_str())
            .collect();
        for error in ["Lambda.TooManyRequestsException", "States.Timeout", "Sandbox.Timedout"] {
            assert!(retried.contains(&error), "{job}: a unit is retried on {error}");
        }
        // A timed-out unit is retried only once its claim has run out, so the retry runs it
        // rather than finding it still claimed; the Task outlasts the function.
        let lease = warden::handler::UNIT_LEASE_SECONDS;
        let timeout_retry =
            unit["Retry"].as_array().unwrap().iter().find(|r| {
                r["ErrorEquals"].as_array().unwrap().iter().any(|e| e == "States.Timeout")
            });
        let wait = timeout_retry.unwrap()["IntervalSeconds"].as_i64().unwrap();
        assert!(900 + wait >= lease, "{job}: the timeout retry waits out the claim");
        assert!(unit["TimeoutSeconds"].as_i64().unwrap() > lease, "{job}");
        assert!(map.get("Catch").is_none(), "a Map past its tolerance fails, for a redrive");
        let summarize = &states[map["Next"].as_str().unwrap()];
        assert_eq!(summarize["Parameters"]["Payload"]["summarize"]["job"], job);
        jobs.push(job);
        at = summarize["Next"].as_str().unwrap_or_default().to_owned();
    }
    assert_eq!(jobs, ["exposure", "deprecation", "reaper"]);
    assert!(at.is_empty(), "the reaper's summary ends the run");
    // The schedule's input gives what the Maps read their concurrency and tolerance from.
    let daily = &t["Resources"]["SweepStateMachine"]["Properties"]["Events"]["Daily"];
    assert_eq!(daily["Type"], "ScheduleV2");
    let Value::Tagged(input) = &daily["Properties"]["Input"] else { panic!("Input is a !Sub") };
    let input = input.value.as_str().unwrap();
    assert!(input.contains(r#""max_concurrency": ${SweepMaxConcurrency}"#), "{input}");
    assert!(
        input.contains(r#""tolerated_failure_percentage": ${SweepToleratedFailurePercentage}"#),
        "{input}"
    );
}

#[test]
fn no_function_has_a_schedule_of_its_own_any_more() {
    let t = template();
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        let events = resource["Properties"]["Events"].as_mapping().into_iter().flatten();
        for (event, e) in events {
            assert_ne!(e["Type"], "Schedule", "{name:?}.{event:?}: the state machine sweeps now");
        }
    }
}

#[test]
fn the_deprecation_enforcer_may_delete_only_claims() {
    let t = template();
    let statements = statements(&function(&t, "deprecation-enforcer")["Properties"]["Policies"]);
    let deleting: Vec<&&Value> =
        statements.iter().filter(|s| actions(s).contains("dynamodb:DeleteItem")).collect();
    assert_eq!(deleting.len(), 1, "{deleting:?}");
    assert_eq!(actions(deleting[0]), BTreeSet::from(["dynamodb:DeleteItem".to_owned()]));
    let keys =
        strings(&deleting[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
    assert_eq!(keys, prefixes([warden::aws::idempotency::PARTITION_PREFIX]));
}

/// `text` with each `${Name}` (or `${Name.Arn}`, `${AWS::Region}`) replaced by its name.
fn names_for_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else { break };
        out.push_str(&rest[start + 2..start + end]);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The dashboard's body as CloudFormation makes it when every condition holds: each `!Sub`
/// variable given its `!If`'s first branch, every other placeholder left as its name
/// (`ExposureGuardFunction`, `SweepCoverageAlarm.Arn`).
fn dashboard_body(t: &Value) -> serde_json::Value {
    let Value::Tagged(sub) = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"] else {
        panic!("the dashboard's body is a !Sub")
    };
    let mut text = sub.value[0].as_str().expect("the body's text").to_owned();
    for (name, value) in sub.value[1].as_mapping().into_iter().flatten() {
        let Value::Tagged(when) = value else { panic!("{name:?} is an !If") };
        let Value::Tagged(then) = &when.value[1] else { panic!("{name:?}'s branch is a !Sub") };
        let then = then.value.as_str().expect("a !Sub of text");
        text = text.replace(&format!("${{{}}}", name.as_str().unwrap()), then);
    }
    serde_json::from_str(&names_for_placeholders(&text))
        .unwrap_or_else(|e| panic!("the dashboard's body is not JSON ({e})"))
}

/// The dimension names a metric the code writes can be read under, or `None` for a metric
/// the code does not write.
fn dimension_sets(name: &str) -> Option<Vec<Vec<&'static str>>> {
    use warden::metrics::{FUNCTION, METRICS, SPLITS};
    if METRICS.iter().any(|m| m.name == name) {
        return Some(vec![vec![FUNCTION]]);
    }
    let split = SPLITS.iter().find(|s| s.metric.name == name)?;
    Some(vec![vec![FUNCTION], vec![FUNCTION, split.by]])
}

/// Whether `dimensions` (name, value) are how the code writes metric `name`: one of its sets,
/// `Function` naming a function of the template, `Severity` and `Job` values the code uses.
fn written_as(t: &Value, name: &str, dimensions: &[(String, String)]) -> Result<(), String> {
    let sets = dimension_sets(name).ok_or(format!("{name}: the code writes no such metric"))?;
    let names: Vec<&str> = dimensions.iter().map(|(n, _)| n.as_str()).collect();
    if !sets.iter().any(|set| set == &names) {
        return Err(format!("{name} is not written under the dimensions {names:?}"));
    }
    for (dimension, value) in dimensions {
        let known = match dimension.as_str() {
            "Function" => t["Resources"][value.as_str()]["Type"] == "AWS::Serverless::Function",
            "Severity" => ["CRITICAL", "WARNING"].contains(&value.as_str()),
            "Job" => warden::sweep::Job::ALL.iter().any(|j| j.as_str() == value),
            _ => false,
        };
        if !known {
            return Err(format!("{name}: {dimension} = {value} is never written"));
        }
    }
    Ok(())
}

#[test]
fn the_dashboard_graphs_every_metric_the_code_writes_and_no_other() {
    let t = template();
    let body = dashboard_body(&t);
    let mut graphed = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap().iter().filter(|w| w["type"] == "metric") {
        for line in widget["properties"]["metrics"].as_array().unwrap() {
            let line = line.as_array().unwrap();
            assert_eq!(line[0], warden::metrics::NAMESPACE, "{line:?}");
            let name = line[1].as_str().unwrap();
            let strings: Vec<String> =
                line[2..].iter().map_while(|v| v.as_str().map(str::to_owned)).collect();
            let dimensions: Vec<(String, String)> =
                strings.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            written_as(&t, name, &dimensions).unwrap_or_else(|e| panic!("dashboard: {e}"));
            graphed.insert(name.to_owned());
        }
    }
    let written: BTreeSet<String> = warden::metrics::METRICS
        .iter()
        .map(|m| m.name.to_owned())
        .chain(warden::metrics::SPLITS.iter().map(|s| s.metric.name.to_owned()))
        .collect();
    assert_eq!(graphed, written, "every metric the code writes is graphed");
}

#[test]
fn the_dashboard_shows_every_alarm_of_the_template() {
    let t = template();
    let body = dashboard_body(&t);
    let shown: BTreeSet<String> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["type"] == "alarm")
        .flat_map(|w| w["properties"]["alarms"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().trim_end_matches(".Arn").to_owned())
        .collect();
    let alarms: BTreeSet<String> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, alarms);
}

/// The metric an alarm (or one of its metric math inputs) watches: namespace, name, dimensions.
fn watched(metric: &Value) -> (String, String, Vec<(String, String)>) {
    let dimensions = metric["Dimensions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|d| {
            let value = match &d["Value"] {
                Value::Tagged(reference) => reference.value.as_str().unwrap_or_default().to_owned(),
                value => value.as_str().unwrap_or_default().to_owned(),
            };
            (d["Name"].as_str().unwrap().to_owned(), value)
        })
        .collect();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&metric["Namespace"]), text(&metric["MetricName"]), dimensions)
}

#[test]
fn alarms_on_ami_wardens_metrics_watch_what_the_code_writes() {
    let t = template();
    let mut on_ours = BTreeSet::new();
    for (id, alarm) in t["Resources"].as_mapping().unwrap() {
        if alarm["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let p = &alarm["Properties"];
        let inputs = p["Metrics"].as_sequence().into_iter().flatten();
        let metrics = std::iter::once(p).chain(inputs.map(|m| &m["MetricStat"]["Metric"]));
        for (namespace, name, dimensions) in metrics.map(watched) {
            if namespace == warden::metrics::NAMESPACE {
                written_as(&t, &name, &dimensions).unwrap_or_else(|e| panic!("{id:?}: {e}"));
                on_ours.insert(id.as_str().unwrap().to_owned());
            }
        }
    }
    let expected = ["OpenCriticalExposuresAlarm", "SweepCoverageAlarm", "SweepNotRunAlarm"];
    assert_eq!(on_ours, expected.map(str::to_owned).into_iter().collect());
}
