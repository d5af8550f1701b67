//! The template's EventBridge rules on a real matcher: each function's rules are installed on
//! the local stack's EventBridge (moto's pattern matching, not ours) with the function's own
//! SQS queue as target, every fixture event is put on the bus, and each queue must receive
//! exactly the fixtures `warden::routes` — what `ami-warden replay` delivers by — says it
//! should.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use warden::routes::ROUTES;
use warden_testkit::stack;

fn template() -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_fixture_reaches_exactly_the_functions_whose_rules_match_it() {
    let sdk = stack::sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = format!("ami-warden-rules-{}", std::process::id());
    events.create_event_bus().name(&bus).send().await.unwrap();

    // Install every EventBridge rule of every function, targeting one queue per function.
    let t = template();
    let mut queues: BTreeMap<String, String> = BTreeMap::new();
    for resource in t["Resources"].as_mapping().unwrap().values() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned();
        let Some(rules) = resource["Properties"]["Events"].as_mapping() else { continue };
        for (name, rule) in rules {
            if rule["Type"] != "EventBridgeRule" {
                continue;
            }
            if !queues.contains_key(&binary) {
                let url = sqs
                    .create_queue()
                    .queue_name(format!("{bus}-{binary}"))
                    .send()
                    .await
                    .unwrap()
                    .queue_url()
                    .unwrap()
                    .to_owned();
                queues.insert(binary.clone(), url);
            }
            let url = &queues[&binary];
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap();
            let arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
            let pattern: Value = serde_json::to_value(&rule["Properties"]["Pattern"]).unwrap();
            let rule_name = format!("{binary}-{}", name.as_str().unwrap());
            events
                .put_rule()
                .name(&rule_name)
                .event_bus_name(&bus)
                .event_pattern(pattern.to_string())
                .send()
                .await
                .unwrap();
            events
                .put_targets()
                .rule(&rule_name)
                .event_bus_name(&bus)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("queue")
                        .arn(arn)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    }
    assert!(
        ROUTES.iter().all(|r| queues.contains_key(r.function.name())),
        "every routed function has rules: {queues:?}"
    );
    // The sweep coordinator's rule (Step Functions status changes) is installed too: no
    // CloudTrail fixture may reach it, which the comparison below checks (it expects none).
    assert!(queues.contains_key("sweep-coordinator"), "{queues:?}");

    // Put every fixture that is an EventBridge envelope (a bare CloudTrail record never is).
    // The image events, and the launches the launch guard's rule selects.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut files: Vec<_> = ["events", "launch-events"]
        .iter()
        .flat_map(|d| std::fs::read_dir(fixtures.join(d)).unwrap().map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    let mut expected: BTreeMap<String, BTreeSet<String>> =
        queues.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
    let mut put = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(mut event) = serde_json::from_slice::<Value>(&std::fs::read(file).unwrap()) else {
            continue;
        };
        let (Some(source), Some(detail_type)) =
            (event["source"].as_str(), event["detail-type"].as_str())
        else {
            continue;
        };
        let (source, detail_type) = (source.to_owned(), detail_type.to_owned());
        for route in ROUTES {
            if route.matches(&event) {
                expected.get_mut(route.function.name()).unwrap().insert(name.clone());
            }
        }
        // A marker no pattern mentions, to tell deliveries apart (two fixtures share an eventID).
        event["detail"]["_fixture"] = Value::String(name.clone());
        let out = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(source)
                    .detail_type(detail_type)
                    .detail(event["detail"].to_string())
                    .event_bus_name(&bus)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count(), 0, "{name}");
        put += 1;
    }
    assert!(put >= 25, "most fixtures are envelopes ({put})");

    let mut delivered: BTreeMap<String, BTreeSet<String>> =
        queues.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
    let want: usize = expected.values().map(BTreeSet::len).sum();
    let start = Instant::now();
    while delivered.values().map(BTreeSet::len).sum::<usize>() < want
        && start.elapsed() < Duration::from_secs(15)
    {
        for (function, url) in &queues {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            for m in got.messages() {
                let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                delivered
                    .get_mut(function)
                    .unwrap()
                    .insert(body["detail"]["_fixture"].as_str().unwrap().to_owned());
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    // A last look for deliveries that should not have happened.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (function, url) in &queues {
        let got =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        for m in got.messages() {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            delivered
                .get_mut(function)
                .unwrap()
                .insert(body["detail"]["_fixture"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(delivered, expected);
    for route in ROUTES {
        let function = route.function.name();
        assert!(!expected[function].is_empty(), "{function} should see some fixture");
    }
}
