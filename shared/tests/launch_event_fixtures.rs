//! The CloudTrail records of launches and launch template versions
//! (docs/cloudtrail-launch-events.md), in `fixtures/launch-events/`: each reads as the launch or
//! template version it depicts; failed launches and dry runs are ignored as failed calls; no
//! mutation of any of them makes the reader panic.

use std::path::PathBuf;

use serde_json::Value;
use warden::event::{
    parse_value, EventKind, IgnoreReason, Launch, LaunchTemplateRef, Parsed, LAUNCH_EVENTS,
};
use warden::ids::{ImageId, ImageRef, InstanceId, Region};

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/launch-events");
    let mut files: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn image(region: &str, id: &str) -> Option<ImageRef> {
    Some(ImageRef::new(Region::parse(region).unwrap(), ImageId::parse(id).unwrap()))
}

fn instance(id: &str) -> Option<InstanceId> {
    InstanceId::parse(id)
}

fn template(id: Option<&str>, name: Option<&str>, version: &str) -> Option<LaunchTemplateRef> {
    Some(LaunchTemplateRef {
        id: id.map(str::to_owned),
        name: name.map(str::to_owned),
        version: Some(version.to_owned()),
    })
}

/// What each fixture must read as: the event kind, or the error code of an ignored call.
enum Want {
    Kind(EventKind),
    Failed(&'static str),
}

fn expected() -> Vec<(&'static str, Want)> {
    let launched = |launches: Vec<Launch>, by_auto_scaling: bool| {
        Want::Kind(EventKind::InstancesLaunched { launches, by_auto_scaling })
    };
    let golden = image("us-east-1", "ami-0a1b2c3d4e5f60001");
    let three = ["i-0f1e2d3c4b5a60002", "i-0f1e2d3c4b5a60003", "i-0f1e2d3c4b5a60004"]
        .iter()
        .map(|id| Launch {
            instance_id: instance(id),
            image: golden.clone(),
            launch_template: None,
        })
        .collect();
    vec![
        (
            "01-run-instances-aws-cli.json",
            launched(
                vec![Launch {
                    instance_id: instance("i-0f1e2d3c4b5a60001"),
                    image: image("us-east-1", "ami-0a1b2c3d4e5f60002"),
                    launch_template: None,
                }],
                false,
            ),
        ),
        ("02-run-instances-count-3.json", launched(three, false)),
        (
            // The request names the template by name; the instance's tags give its id.
            "03-run-instances-launch-template-by-name.json",
            launched(
                vec![Launch {
                    instance_id: instance("i-0f1e2d3c4b5a60005"),
                    image: image("us-east-1", "ami-0a1b2c3d4e5f60004"),
                    launch_template: template(
                        Some("lt-0d1e2f3a4b5c60001"),
                        Some("web-server"),
                        "$Default",
                    ),
                }],
                false,
            ),
        ),
        (
            "04-run-instances-auto-scaling.json",
            launched(
                vec![Launch {
                    instance_id: instance("i-0f1e2d3c4b5a60006"),
                    image: golden.clone(),
                    launch_template: template(Some("lt-0d1e2f3a4b5c60002"), None, "4"),
                }],
                true,
            ),
        ),
        (
            "05-run-instances-auto-scaling-fleet-no-template-in-request.json",
            launched(
                vec![Launch {
                    instance_id: instance("i-0f1e2d3c4b5a60007"),
                    image: image("eu-west-1", "ami-0a1b2c3d4e5f60005"),
                    launch_template: template(Some("lt-0d1e2f3a4b5c60003"), None, "1"),
                }],
                true,
            ),
        ),
        ("06-failed-run-instances-unauthorized.json", Want::Failed("Client.UnauthorizedOperation")),
        (
            "07-failed-run-instances-insufficient-capacity.json",
            Want::Failed("Server.InsufficientInstanceCapacity"),
        ),
        ("08-dry-run-run-instances.json", Want::Failed("Client.DryRunOperation")),
        (
            "09-create-launch-template-wrapped.json",
            Want::Kind(EventKind::LaunchTemplateVersionCreated {
                template_id: Some("lt-0d1e2f3a4b5c60005".into()),
                template_name: Some("worker-green-20261120114005".into()),
                version: Some(1),
                image: Some("ami-0a1b2c3d4e5f60001".into()),
            }),
        ),
        (
            "10-create-launch-template-version-ssm-parameter.json",
            Want::Kind(EventKind::LaunchTemplateVersionCreated {
                template_id: Some("lt-0d1e2f3a4b5c60002".into()),
                template_name: Some("web-asg-template".into()),
                version: Some(5),
                image: Some(
                    "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
                        .into(),
                ),
            }),
        ),
    ]
}

#[test]
fn every_launch_record_reads_as_what_it_depicts() {
    let files = fixtures();
    let expected = expected();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every fixture has an expectation and every expectation a fixture");
    for ((name, record), (_, want)) in files.iter().zip(&expected) {
        let event_name = record["detail"]["eventName"].as_str().unwrap();
        assert!(LAUNCH_EVENTS.contains(&event_name), "{name}");
        match (parse_value(record), want) {
            (Parsed::Event(e), Want::Kind(kind)) => {
                assert_eq!(&e.kind, kind, "{name}");
                assert_eq!(e.meta.event_name, event_name, "{name}");
                assert_eq!(Some(e.meta.region.as_str()), record["region"].as_str(), "{name}");
            }
            (
                Parsed::Ignored {
                    reason: IgnoreReason::FailedCall { error_code },
                    event_name: n,
                    ..
                },
                Want::Failed(code),
            ) => {
                assert_eq!(&error_code, code, "{name}");
                assert_eq!(n.as_deref(), Some(event_name), "{name}");
            }
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_launch_from_a_template_keeps_the_image_the_response_names() {
    for (name, record) in fixtures() {
        let Parsed::Event(e) = parse_value(&record) else { continue };
        let EventKind::InstancesLaunched { launches, .. } = e.kind else { continue };
        let response = &record["detail"]["responseElements"]["instancesSet"]["items"];
        assert_eq!(launches.len(), response.as_array().unwrap().len(), "{name}");
        for (launch, item) in launches.iter().zip(response.as_array().unwrap()) {
            assert_eq!(
                launch.image.as_ref().map(|i| i.image_id.as_str()),
                item["imageId"].as_str(),
                "{name}"
            );
            assert_eq!(
                launch.instance_id.as_ref().map(InstanceId::as_str),
                item["instanceId"].as_str(),
                "{name}"
            );
        }
    }
}

#[test]
fn auto_scaling_launches_are_told_apart_from_people() {
    let by_auto_scaling: Vec<(String, bool)> = fixtures()
        .into_iter()
        .filter_map(|(name, record)| match parse_value(&record) {
            Parsed::Event(e) => match e.kind {
                EventKind::InstancesLaunched { by_auto_scaling, .. } => {
                    Some((name, by_auto_scaling))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    let asg: Vec<&str> =
        by_auto_scaling.iter().filter(|(_, asg)| *asg).map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        asg,
        [
            "04-run-instances-auto-scaling.json",
            "05-run-instances-auto-scaling-fleet-no-template-in-request.json"
        ]
    );
    assert_eq!(by_auto_scaling.len(), 5);
}

/// Every way of breaking one field: removed, null, a number, a string, an empty object.
fn mutations(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Value::Object(map) = v {
        for key in map.keys() {
            for replacement in [
                None,
                Some(Value::Null),
                Some(7.into()),
                Some("x".into()),
                Some(serde_json::json!({})),
            ] {
                let mut m = map.clone();
                match replacement {
                    None => {
                        m.remove(key);
                    }
                    Some(r) => {
                        m.insert(key.clone(), r);
                    }
                }
                out.push(Value::Object(m));
            }
            for inner in mutations(&map[key]) {
                let mut m = map.clone();
                m.insert(key.clone(), inner);
                out.push(Value::Object(m));
            }
        }
    }
    if let Value::Array(list) = v {
        for (i, item) in list.iter().enumerate() {
            for inner in mutations(item) {
                let mut l = list.clone();
                l[i] = inner;
                out.push(Value::Array(l));
            }
        }
    }
    out
}

/// A parsed launch keeps its promise whatever the input: every launch names an image or a
/// template, and a template names an id or a name.
fn check_promises(parsed: &Parsed) {
    if let Parsed::Event(e) = parsed {
        if let EventKind::InstancesLaunched { launches, .. } = &e.kind {
            assert!(!launches.is_empty());
            for l in launches {
                assert!(l.image.is_some() || l.launch_template.is_some(), "{l:?}");
                if let Some(t) = &l.launch_template {
                    assert!(t.id.is_some() || t.name.is_some(), "{t:?}");
                }
            }
        }
        if let EventKind::LaunchTemplateVersionCreated { template_id, template_name, .. } = &e.kind
        {
            assert!(template_id.is_some() || template_name.is_some());
        }
    }
}

#[test]
fn no_mutation_of_a_launch_record_makes_the_reader_panic() {
    for (_, record) in fixtures() {
        for whole in mutations(&record) {
            check_promises(&parse_value(&whole));
        }
    }
}
