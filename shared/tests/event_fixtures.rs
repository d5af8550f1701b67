//! Every fixture in `fixtures/events/` parses to exactly what it depicts, and no mutation of any
//! fixture makes the parser panic.

use std::path::PathBuf;

use serde_json::Value;
use warden::event::{
    parse_event, parse_value, EventKind, Grantee, IgnoreReason, ImageState, Parsed,
};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// What a fixture must parse to: the variant (or ignore reason) and its key ids.
fn describe(parsed: &Parsed) -> String {
    match parsed {
        Parsed::Ignored { reason, .. } => match reason {
            IgnoreReason::FailedCall { error_code } => format!("ignored failed {error_code}"),
            IgnoreReason::UnhandledEventName(n) => format!("ignored unhandled {n}"),
            IgnoreReason::OtherService(s) => format!("ignored service {s}"),
            IgnoreReason::Malformed(m) => {
                format!("ignored malformed {}", m.split(':').next().unwrap_or(""))
            }
            other => format!("ignored {other:?}"),
        },
        Parsed::Event(e) => match &e.kind {
            EventKind::ImageCreated { image, instance_id, .. } => {
                format!("created {image} from {instance_id}")
            }
            EventKind::ImageCopied { image, source, .. } => format!("copied {image} from {source}"),
            EventKind::ImageRegistered { image, snapshots, .. } => {
                format!("registered {image} with {}", snapshots.len())
            }
            EventKind::ImageRestored { image, object_key, .. } => {
                format!("restored {image} from {}", object_key.as_deref().unwrap_or("?"))
            }
            EventKind::ImageDeregistered {
                image,
                delete_associated_snapshots,
                snapshot_results,
            } => {
                let results: Vec<String> = snapshot_results
                    .iter()
                    .map(|r| format!(" {}={}", r.snapshot, r.code.as_str()))
                    .collect();
                format!(
                    "deregistered {image} delete={delete_associated_snapshots}{}",
                    results.concat()
                )
            }
            EventKind::LaunchPermissionChanged { image, change } => {
                format!("launch {image} +{:?} -{:?}", change.add, change.remove)
            }
            EventKind::CreateVolumePermissionChanged { snapshot, change } => {
                format!("volume {snapshot} +{:?} -{:?}", change.add, change.remove)
            }
            EventKind::ImageBlockPublicAccessDisabled { state } => {
                format!("bpa disabled {}", state.as_deref().unwrap_or("?"))
            }
            EventKind::GuardrailChanged { change } => format!("guardrail {}", change.event_name()),
            EventKind::DeprecationEnabled { image, deprecate_at } => {
                format!(
                    "deprecation {image} at {}",
                    deprecate_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                )
            }
            EventKind::DeprecationDisabled { image } => format!("undeprecated {image}"),
            EventKind::ImageEnabled { image } => format!("enabled {image}"),
            EventKind::ImageDisabled { image } => format!("disabled {image}"),
            EventKind::SnapshotDeleted { snapshot } => format!("snapshot deleted {snapshot}"),
            EventKind::ImageStateChanged { image, state, .. } => format!("state {image} {state:?}"),
            EventKind::InstancesLaunched { launches, by_auto_scaling } => {
                format!("launched {} by_auto_scaling={by_auto_scaling}", launches.len())
            }
            EventKind::LaunchTemplateVersionCreated { template_id, version, image, .. } => {
                format!("template {template_id:?} version {version:?} image {image:?}")
            }
        },
    }
}

#[test]
fn every_fixture_parses_to_what_it_depicts() {
    let public = format!("{:?}", vec![Grantee::Public]);
    let expected: Vec<(&str, String)> = vec![
        ("01-register-image-golden.json", "registered ami-0a1b2c3d4e5f60001@us-east-1 with 2".into()),
        ("02-create-image-console.json", "created ami-0a1b2c3d4e5f60002@us-east-1 from i-0123456789abcdef0".into()),
        ("03-copy-image-cross-region.json", "copied ami-0a1b2c3d4e5f60003@eu-west-1 from ami-0a1b2c3d4e5f60002@us-east-1".into()),
        ("04-copy-image-back-home.json", "copied ami-0a1b2c3d4e5f60004@us-east-1 from ami-0a1b2c3d4e5f60003@eu-west-1".into()),
        ("05-copy-image-golden-replica.json", "copied ami-0a1b2c3d4e5f60005@eu-west-1 from ami-0a1b2c3d4e5f60001@us-east-1".into()),
        ("06-ami-state-available.json", "state ami-0a1b2c3d4e5f60004@us-east-1 Available".into()),
        ("07-deregister-image.json", "deregistered ami-0a1b2c3d4e5f60003@eu-west-1 delete=false".into()),
        ("08-copy-image-back-home-redelivered.json", "copied ami-0a1b2c3d4e5f60004@us-east-1 from ami-0a1b2c3d4e5f60003@eu-west-1".into()),
        ("09-create-restore-image-task.json", "restored ami-0f00000000000aaa2@us-east-1 from ami-0f00000000000aaa1.bin".into()),
        ("10-deregister-image-delete-snapshots.json", "deregistered ami-0f00000000000aaa2@us-east-1 delete=true".into()),
        ("11-ami-state-failed.json", format!("state ami-0f00000000000bbb1@eu-west-1 {:?}", ImageState::Failed)),
        ("12-modify-image-attribute-public.json", format!("launch ami-0e1e2e3e4e5e60001@us-east-1 +{public} -[]")),
        ("13-modify-image-attribute-share-account.json", "launch ami-0e1e2e3e4e5e60001@us-east-1 +[Account(\"444455556666\")] -[]".into()),
        (
            "14-modify-image-attribute-share-org.json",
            "launch ami-0e1e2e3e4e5e60001@us-east-1 +[Organization(\"arn:aws:organizations::999988887777:organization/o-exampleorg1\"), OrganizationalUnit(\"arn:aws:organizations::999988887777:ou/o-exampleorg1/ou-ab12-cd34ef56\")] -[]".into(),
        ),
        ("15-modify-image-attribute-private.json", format!("launch ami-0e1e2e3e4e5e60001@us-east-1 +[] -{public}")),
        ("16-modify-image-attribute-description.json", "ignored unhandled ModifyImageAttribute(description)".into()),
        ("17-modify-image-attribute-items-collapsed.json", format!("launch ami-0e1e2e3e4e5e60001@us-east-1 +{public} -[]")),
        ("18-modify-snapshot-attribute-public.json", format!("volume snap-0e1e2e3e4e5e60001 +{public} -[]")),
        ("19-modify-snapshot-attribute-share-account.json", "volume snap-0e1e2e3e4e5e60001 +[Account(\"444455556666\")] -[]".into()),
        ("20-disable-image-block-public-access.json", "bpa disabled unblocked".into()),
        ("21-disable-image-block-public-access-wrapped.json", "bpa disabled unblocked".into()),
        ("22-enable-image-deprecation.json", "deprecation ami-0a1b2c3d4e5f60004@us-east-1 at 2027-02-18T09:30:07+00:00".into()),
        ("23-enable-image-deprecation-wrapped.json", "deprecation ami-0a1b2c3d4e5f60002@us-east-1 at 2027-02-18T09:40:07+00:00".into()),
        ("24-disable-image-deprecation.json", "undeprecated ami-0a1b2c3d4e5f60002@us-east-1".into()),
        ("25-disable-image.json", "disabled ami-0f00000000000ccc1@us-east-1".into()),
        ("26-enable-image.json", "enabled ami-0f00000000000ccc1@us-east-1".into()),
        ("27-delete-snapshot.json", "snapshot deleted snap-0f00000000000ddd1".into()),
        ("28-failed-create-image-unauthorized.json", "ignored failed Client.UnauthorizedOperation".into()),
        ("29-failed-copy-image-duplicate-name.json", "ignored failed Client.InvalidAMIName.Duplicate".into()),
        ("30-create-tags-unhandled.json", "ignored unhandled CreateTags".into()),
        ("31-bare-cloudtrail-record-copy.json", "copied ami-0a1b2c3d4e5f60006@eu-west-1 from ami-0a1b2c3d4e5f60004@us-east-1".into()),
        ("32-other-service-s3.json", "ignored service s3.amazonaws.com".into()),
        ("33-copy-image-missing-response.json", "ignored malformed CopyImage".into()),
        (
            "34-deregister-image-delete-snapshots-results.json",
            "deregistered ami-0f00000000000aaa5@us-east-1 delete=true snap-0f00000000000aaa3=success snap-0f00000000000aaa4=skipped".into(),
        ),
        ("35-ami-state-disabled.json", format!("state ami-0f00000000000ccc1@us-east-1 {:?}", ImageState::Disabled)),
    ];
    let files = fixtures();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every fixture has an expectation and every expectation a fixture");
    for ((name, bytes), (_, want)) in files.iter().zip(&expected) {
        assert_eq!(&describe(&parse_event(bytes)), want, "{name}");
    }
}

#[test]
fn a_redelivered_record_keeps_its_event_id() {
    let files = fixtures();
    let id = |name: &str| {
        let bytes = &files.iter().find(|(n, _)| n == name).unwrap().1;
        match parse_event(bytes) {
            Parsed::Event(e) => e.meta.event_id,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(id("04-copy-image-back-home.json"), id("08-copy-image-back-home-redelivered.json"));
}

#[test]
fn console_actor_details_are_read() {
    let files = fixtures();
    let bytes =
        &files.iter().find(|(n, _)| n == "12-modify-image-attribute-public.json").unwrap().1;
    let Parsed::Event(e) = parse_event(bytes) else { panic!() };
    assert!(e.meta.actor.console);
    assert!(e
        .meta
        .actor
        .arn
        .as_deref()
        .unwrap()
        .contains("assumed-role/AWSReservedSSO_PlatformAdmin"));
    assert_eq!(e.meta.actor.source_ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(e.meta.account.as_ref().map(|a| a.as_str()), Some("111122223333"));
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn replacement(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::from(rng.next() as i64),
        2 => Value::from(-1.5),
        3 => Value::from(""),
        4 => Value::from("ami-\u{0}\u{ffff}"),
        5 => serde_json::json!([]),
        6 => serde_json::json!({"items": {"items": null}}),
        _ => serde_json::json!([{"group": 7}, "all", null]),
    }
}

/// Replaces one random node of the tree (object member or array element) with junk.
fn mutate(v: &mut Value, rng: &mut Rng) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
            if rng.below(3) == 0 {
                map.insert(key, replacement(rng));
            } else if rng.below(4) == 0 {
                map.remove(&key);
            } else {
                mutate(map.get_mut(&key).unwrap(), rng);
            }
        }
        Value::Array(list) if !list.is_empty() => {
            let i = rng.below(list.len());
            mutate(&mut list[i], rng);
        }
        other => *other = replacement(rng),
    }
}

#[test]
fn no_mutation_of_any_fixture_panics_the_parser() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut parsed = 0usize;
    for (name, bytes) in fixtures() {
        // Every truncation point.
        for cut in 0..bytes.len() {
            let _ = parse_event(&bytes[..cut]);
        }
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        for _ in 0..400 {
            let mut v = original.clone();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut v, &mut rng);
            }
            let result = std::panic::catch_unwind(|| parse_value(&v));
            assert!(result.is_ok(), "{name}: parser panicked on {v}");
            parsed += 1;
        }
    }
    assert!(parsed > 10_000);
}
