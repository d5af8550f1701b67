//! The CloudTrail records of the guardrail events (docs/cloudtrail-guardrail-events.md), in
//! `fixtures/guardrail-events/`: each reads as the change it depicts, flat or wrapped; failed
//! calls are ignored; no mutation of any of them makes the reader panic.

use std::path::PathBuf;

use serde_json::Value;
use warden::event::{
    guardrail_change, parse_value, EventKind, GuardrailChange, IgnoreReason, ImageCriterion,
    Parsed, GUARDRAIL_EVENTS,
};

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/guardrail-events");
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

fn change_of(record: &Value) -> Option<GuardrailChange> {
    let detail = &record["detail"];
    guardrail_change(
        detail["eventName"].as_str().unwrap_or_default(),
        &detail["requestParameters"],
        &detail["responseElements"],
    )
}

fn criterion(providers: &[&str], names: &[&str]) -> ImageCriterion {
    ImageCriterion {
        image_providers: providers.iter().map(|s| s.to_string()).collect(),
        image_names: names.iter().map(|s| s.to_string()).collect(),
        ..ImageCriterion::default()
    }
}

#[test]
fn every_successful_guardrail_record_reads_as_the_change_it_depicts() {
    let snapshots =
        |s: &str| GuardrailChange::SnapshotBlockPublicAccessEnabled { state: Some(s.into()) };
    let allowed = |s: &str| GuardrailChange::AllowedImagesEnabled { state: Some(s.into()) };
    let flat_criteria = vec![
        ImageCriterion {
            max_days_since_created: Some(300),
            ..criterion(&["amazon", "444455556666"], &[])
        },
        criterion(&["444455556666"], &["golden-*"]),
    ];
    let wrapped_criteria = vec![
        ImageCriterion {
            max_days_since_deprecated: Some(0),
            ..criterion(&["amazon", "aws-marketplace"], &[])
        },
        criterion(&["444455556666"], &["golden-*"]),
    ];
    let expected: Vec<(&str, Option<GuardrailChange>)> = vec![
        ("01-enable-snapshot-block-public-access-all.json", Some(snapshots("block-all-sharing"))),
        (
            "02-enable-snapshot-block-public-access-new-wrapped.json",
            Some(snapshots("block-new-sharing")),
        ),
        (
            "03-disable-snapshot-block-public-access.json",
            Some(GuardrailChange::SnapshotBlockPublicAccessDisabled),
        ),
        (
            "04-disable-snapshot-block-public-access-wrapped.json",
            Some(GuardrailChange::SnapshotBlockPublicAccessDisabled),
        ),
        ("05-enable-allowed-images-settings-audit-mode.json", Some(allowed("audit-mode"))),
        ("06-enable-allowed-images-settings-enabled-wrapped.json", Some(allowed("enabled"))),
        ("07-disable-allowed-images-settings.json", Some(GuardrailChange::AllowedImagesDisabled)),
        (
            "08-replace-image-criteria.json",
            Some(GuardrailChange::ImageCriteriaReplaced { criteria: Some(flat_criteria) }),
        ),
        (
            "09-replace-image-criteria-wrapped.json",
            Some(GuardrailChange::ImageCriteriaReplaced { criteria: Some(wrapped_criteria) }),
        ),
        (
            "10-failed-disable-snapshot-block-public-access.json",
            Some(GuardrailChange::SnapshotBlockPublicAccessDisabled),
        ),
        (
            "11-failed-disable-allowed-images-settings.json",
            Some(GuardrailChange::AllowedImagesDisabled),
        ),
    ];
    let files = fixtures();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every fixture has an expectation and every expectation a fixture");
    for ((name, record), (_, want)) in files.iter().zip(&expected) {
        assert_eq!(&change_of(record), want, "{name}");
        let event_name = record["detail"]["eventName"].as_str().unwrap();
        assert!(GUARDRAIL_EVENTS.contains(&event_name), "{name}");
        assert_eq!(want.as_ref().map(GuardrailChange::event_name), Some(event_name), "{name}");
        if name.contains("-failed-") {
            continue;
        }
        match parse_value(record) {
            Parsed::Event(e) => {
                assert_eq!(
                    Some(&e.kind),
                    want.clone().map(|change| EventKind::GuardrailChanged { change }).as_ref(),
                    "{name}"
                );
                assert_eq!(e.meta.event_name, event_name, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn failed_guardrail_calls_are_ignored_as_failed() {
    for (name, record) in fixtures().iter().filter(|(n, _)| n.contains("-failed-")) {
        match parse_value(record) {
            Parsed::Ignored { reason: IgnoreReason::FailedCall { error_code }, .. } => {
                assert_eq!(error_code, "Client.UnauthorizedOperation", "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_record_that_does_not_show_the_criteria_says_so_rather_than_none() {
    let unlogged = guardrail_change(
        "ReplaceImageCriteriaInAllowedImagesSettings",
        &Value::Null,
        &serde_json::json!({"_return": true}),
    );
    assert_eq!(unlogged, Some(GuardrailChange::ImageCriteriaReplaced { criteria: None }));
    let emptied = guardrail_change(
        "ReplaceImageCriteriaInAllowedImagesSettings",
        &serde_json::json!({"imageCriterion": []}),
        &Value::Null,
    );
    assert_eq!(emptied, Some(GuardrailChange::ImageCriteriaReplaced { criteria: Some(vec![]) }));
    // A part this version does not read is named, not dropped.
    let watermarked = guardrail_change(
        "ReplaceImageCriteriaInAllowedImagesSettings",
        &serde_json::json!({"imageCriterion": {"items": [{"imageWatermark": {"items": [{"content": "x"}]}}]}}),
        &Value::Null,
    );
    let Some(GuardrailChange::ImageCriteriaReplaced { criteria: Some(c) }) = watermarked else {
        panic!("{watermarked:?}")
    };
    assert_eq!(c[0].other, vec!["imageWatermark".to_owned()]);
    assert_eq!(guardrail_change("CreateTags", &Value::Null, &Value::Null), None);
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

#[test]
fn no_mutation_of_a_guardrail_record_makes_the_reader_panic() {
    for (_, record) in fixtures() {
        let detail = &record["detail"];
        let name = detail["eventName"].as_str().unwrap();
        for request in mutations(&detail["requestParameters"]) {
            let _ = guardrail_change(name, &request, &detail["responseElements"]);
        }
        for response in mutations(&detail["responseElements"]) {
            let _ = guardrail_change(name, &detail["requestParameters"], &response);
        }
        for whole in mutations(&record) {
            let _ = parse_value(&whole);
        }
    }
}
