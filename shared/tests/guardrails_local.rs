//! Block public access for snapshots and Allowed AMIs against the local stack: the emulator's
//! operations (dev/moto_ext/ec2.py), the real SDK adapter, the daily sweep's report of both
//! guardrails and of snapshots public but blocked, the guard's alerts on changes to them, and
//! what `lineage impact` and `lineage verify` say of Allowed AMIs.
//!
//! Each test keeps to its own region, since the settings are per account and region.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AllowedImagesSettingsEnabledState, CreationDateConditionRequest, ImageCriterionRequest,
    ScanResultConditionRequest, SnapshotBlockPublicAccessState,
};
use serde_json::{json, Value};
use warden::aws::ec2::Ec2Catalogue;
use warden::aws::lineage_table::LineageTable;
use warden::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, ledger::LedgerTable, sns::SnsNotifier,
    Clients,
};
use warden::event::{guardrail_change, parse_value, Actor, EventMeta, Grantee, GuardrailChange};
use warden::exposure::allowed::{gather, Allowance, AllowedImagesEc2};
use warden::exposure::guard::{Guard, GuardOutcome};
use warden::exposure::guardrails::{AllowedImagesState, SnapshotBlockState};
use warden::exposure::sweep::{sweep, SnapshotExposure};
use warden::exposure::{ExposureEc2, Settings};
use warden::ids::{AccountId, ImageId, ImageRef, Region};
use warden::impact::{add_allowed, impact, OwnAccountOnly};
use warden::lineage::verify::{annotate_allowed, verify};
use warden::lineage::LineageStore;
use warden::notify::Severity;
use warden::recorder::record;
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;
use warden_testkit::story::ec2;

const ACCOUNT: &str = "123456789012";
/// A build account whose images are shared with ACCOUNT.
const PARTNER: &str = "444455556666";

fn settings(remediate: bool) -> Settings {
    Settings {
        allowed_accounts: Default::default(),
        allowed_orgs: Default::default(),
        allowed_ous: Default::default(),
        remediate_public: remediate,
        remediate_shares: remediate,
        exempt_tag_key: "ami-warden:exempt".into(),
        full_read_every: chrono::Duration::days(7),
        listing_margin: warden::exposure::LISTING_MARGIN,
    }
}

fn region(name: &str) -> Region {
    Region::parse(name).unwrap()
}

async fn set_snapshot_block(sdk: &SdkConfig, region: &str, state: SnapshotBlockPublicAccessState) {
    ec2(sdk, region).enable_snapshot_block_public_access().state(state).send().await.unwrap();
}

async fn set_criteria(sdk: &SdkConfig, region: &str, criteria: Vec<ImageCriterionRequest>) {
    ec2(sdk, region)
        .replace_image_criteria_in_allowed_images_settings()
        .set_image_criteria(Some(criteria))
        .send()
        .await
        .unwrap();
}

async fn set_allowed(sdk: &SdkConfig, region: &str, state: AllowedImagesSettingsEnabledState) {
    ec2(sdk, region)
        .enable_allowed_images_settings()
        .allowed_images_settings_state(state)
        .send()
        .await
        .unwrap();
}

fn providers(list: &[&str]) -> ImageCriterionRequest {
    ImageCriterionRequest::builder()
        .set_image_providers(Some(list.iter().map(|s| s.to_string()).collect()))
        .build()
}

/// What the parser would make of an envelope's who/where/when (the guardrail events' own
/// reading is `guardrail_change`).
fn meta_of(envelope: &Value) -> EventMeta {
    let d = &envelope["detail"];
    EventMeta {
        event_id: d["eventID"].as_str().unwrap().to_owned(),
        event_name: d["eventName"].as_str().unwrap().to_owned(),
        event_time: chrono::DateTime::parse_from_rfc3339(d["eventTime"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc),
        region: region(d["awsRegion"].as_str().unwrap()),
        account: AccountId::parse(d["recipientAccountId"].as_str().unwrap()),
        actor: Actor {
            arn: d["userIdentity"]["arn"].as_str().map(str::to_owned),
            source_ip: d["sourceIPAddress"].as_str().map(str::to_owned),
            ..Actor::default()
        },
    }
}

fn change_of(envelope: &Value) -> GuardrailChange {
    let d = &envelope["detail"];
    guardrail_change(
        d["eventName"].as_str().unwrap(),
        &d["requestParameters"],
        &d["responseElements"],
    )
    .expect("a guardrail event")
}

#[tokio::test]
async fn snapshot_block_public_access_round_trips_through_the_emulator_and_the_adapter() {
    let sdk = stack::sdk_config().await;
    let at = "eu-north-1";
    let adapter = Ec2Exposure::new(&Clients::new(&sdk));
    let client = ec2(&sdk, at);
    client.disable_snapshot_block_public_access().send().await.unwrap();
    let read = adapter.snapshot_block_public_access(&region(at)).await.unwrap();
    assert_eq!(read.state, SnapshotBlockState::Unblocked);
    assert_eq!(read.managed_by.as_deref(), Some("account"));

    let on = client
        .enable_snapshot_block_public_access()
        .state(SnapshotBlockPublicAccessState::BlockAllSharing)
        .send()
        .await
        .unwrap();
    assert_eq!(on.state(), Some(&SnapshotBlockPublicAccessState::BlockAllSharing));
    let read = adapter.snapshot_block_public_access(&region(at)).await.unwrap();
    assert_eq!(read.state, SnapshotBlockState::BlockAllSharing);
    // Per region: another region is untouched.
    let elsewhere = adapter.snapshot_block_public_access(&region("eu-south-1")).await.unwrap();
    assert_eq!(elsewhere.state, SnapshotBlockState::Unblocked);

    let refused = client
        .enable_snapshot_block_public_access()
        .state(SnapshotBlockPublicAccessState::Unblocked)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("InvalidParameterValue"), "{refused:?}");
    let off = client.disable_snapshot_block_public_access().send().await.unwrap();
    assert_eq!(off.state(), Some(&SnapshotBlockPublicAccessState::Unblocked));
}

#[tokio::test]
async fn allowed_amis_settings_round_trip_and_image_allowed_follows_the_criteria() {
    let sdk = stack::sdk_config().await;
    let at = "eu-south-1";
    let adapter = Ec2Exposure::new(&Clients::new(&sdk));
    let (own, _) = scenario::register_image(&sdk, at, "allowed-own").await.unwrap();
    let own_id = ImageId::parse(&own).unwrap();
    let partner = warden_testkit::accounts::register_image(&sdk, PARTNER, at, "partner-golden")
        .await
        .unwrap();
    let instance = warden_testkit::estate::running_instance(&sdk, at, &partner).await.unwrap();

    // Disabled: nothing restricted, ImageAllowed absent.
    ec2(&sdk, at).disable_allowed_images_settings().send().await.unwrap();
    let read = adapter.allowed_images_settings(&region(at)).await.unwrap();
    assert_eq!(read.state, AllowedImagesState::Disabled);
    let facts = adapter.images_allowed(&region(at), std::slice::from_ref(&own_id)).await.unwrap();
    assert_eq!(facts[&own_id].allowed, None);

    // Audit mode, the partner allowed: the own image and the partner's are allowed.
    let with_age = ImageCriterionRequest::builder()
        .image_providers(PARTNER)
        .creation_date_condition(
            CreationDateConditionRequest::builder().maximum_days_since_created(300).build(),
        )
        .build();
    set_criteria(&sdk, at, vec![providers(&["amazon"]), with_age]).await;
    set_allowed(&sdk, at, AllowedImagesSettingsEnabledState::AuditMode).await;
    let read = adapter.allowed_images_settings(&region(at)).await.unwrap();
    assert_eq!(read.state, AllowedImagesState::AuditMode);
    assert_eq!(read.criteria.len(), 2);
    assert_eq!(read.criteria[1].image_providers, vec![PARTNER.to_owned()]);
    assert_eq!(read.criteria[1].max_days_since_created, Some(300));
    let facts = adapter.images_allowed(&region(at), std::slice::from_ref(&own_id)).await.unwrap();
    assert_eq!(facts[&own_id].allowed, Some(true), "own images are always allowed");
    let refused = adapter.instances_on_disallowed_images(&region(at)).await.unwrap();
    assert!(refused.iter().all(|r| r.instance_id.as_str() != instance), "{refused:?}");

    // Only Amazon's: the partner's image is no longer allowed; audit mode says "would not".
    set_criteria(&sdk, at, vec![providers(&["amazon"])]).await;
    let refused = adapter.instances_on_disallowed_images(&region(at)).await.unwrap();
    let row = refused.iter().find(|r| r.instance_id.as_str() == instance).expect("listed");
    assert_eq!((row.image_id.as_str(), row.image_allowed), (partner.as_str(), Some(false)));
    let image = ImageRef::new(region(at), ImageId::parse(&partner).unwrap());
    let facts = gather(&adapter, std::slice::from_ref(&image), true).await;
    assert_eq!(facts.allowance(&image), Allowance::WouldNotBeAllowed);
    set_allowed(&sdk, at, AllowedImagesSettingsEnabledState::Enabled).await;
    let facts = gather(&adapter, std::slice::from_ref(&image), true).await;
    assert_eq!(facts.allowance(&image), Allowance::NotAllowed);
    assert!(facts.failures.is_empty(), "{:?}", facts.failures);

    // What the emulator cannot evaluate, it refuses rather than ignores.
    let scan = ImageCriterionRequest::builder()
        .scan_result_condition(
            ScanResultConditionRequest::builder().max_days_since_last_finding_scan(7).build(),
        )
        .build();
    let err = ec2(&sdk, at)
        .replace_image_criteria_in_allowed_images_settings()
        .image_criteria(scan)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
}

#[tokio::test]
async fn the_sweep_reports_both_guardrails_and_a_snapshot_public_but_blocked() {
    let sdk = stack::sdk_config().await;
    let at = "ap-northeast-3";
    let trail = Trail::new(ACCOUNT, "image-admin");
    let (image, snapshot) = scenario::register_image(&sdk, at, "blocked-snapshot").await.unwrap();
    scenario::modify_snapshot_permission(&sdk, &trail, at, &snapshot, true, &[Share::All])
        .await
        .unwrap();
    set_snapshot_block(&sdk, at, SnapshotBlockPublicAccessState::BlockAllSharing).await;
    set_criteria(&sdk, at, vec![providers(&["amazon", PARTNER])]).await;
    set_allowed(&sdk, at, AllowedImagesSettingsEnabledState::AuditMode).await;
    let adapter = Ec2Exposure::new(&Clients::new(&sdk));
    let report = sweep(&adapter, &settings(false), &region(at), None, &|_, _, _| {}).await.unwrap();

    let snap = report
        .exposed_snapshots
        .iter()
        .find(|s| s.snapshot_id.as_str() == snapshot)
        .expect("the snapshot whose permissions say public");
    assert_eq!(snap.state, SnapshotExposure::PublicButBlocked);
    assert_eq!(snap.exposure, vec![Grantee::Public]);
    assert_eq!(snap.backs.iter().map(|i| i.as_str()).collect::<Vec<_>>(), vec![image.as_str()]);
    let bpa = report.snapshot_block_public_access.as_ref().expect("read");
    assert_eq!(bpa.state, SnapshotBlockState::BlockAllSharing);
    let allowed = report.allowed_images.as_ref().expect("read");
    assert_eq!(allowed.state, AllowedImagesState::AuditMode);
    assert_eq!(allowed.criteria[0].image_providers, vec!["amazon".to_owned(), PARTNER.to_owned()]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // (A stack reused by earlier runs holds their snapshots too, all as blocked.)
    assert_eq!(report.public_count(), 0);
    assert_eq!(report.blocked_count(), report.exposed_snapshots.len());
    assert_eq!(report.severity(), Severity::Warning);

    // block-new-sharing keeps existing public shares: the same snapshot is public again.
    set_snapshot_block(&sdk, at, SnapshotBlockPublicAccessState::BlockNewSharing).await;
    let report = sweep(&adapter, &settings(false), &region(at), None, &|_, _, _| {}).await.unwrap();
    let snap =
        report.exposed_snapshots.iter().find(|s| s.snapshot_id.as_str() == snapshot).unwrap();
    assert_eq!(snap.state, SnapshotExposure::Public);
    assert_eq!(report.severity(), Severity::Critical);
}

struct World {
    sdk: SdkConfig,
    clients: Clients,
    inbox: Inbox,
    table: String,
    trail: Trail,
}

impl World {
    async fn new(name: &str) -> Self {
        let sdk = stack::sdk_config().await;
        let inbox = Inbox::create(&sdk, &format!("{name}-{}", std::process::id())).await.unwrap();
        let table = stack::fresh_lineage_table(&sdk, name).await;
        Self { clients: Clients::new(&sdk), sdk, inbox, table, trail: Trail::new(ACCOUNT, "admin") }
    }

    async fn alert(&self, settings: &Settings, event: &Value) -> GuardOutcome {
        self.guard(settings, false, event).await
    }

    /// The event through the parser and `Guard::handle`, as the function runs it.
    async fn handle(&self, settings: &Settings, event: &Value) -> GuardOutcome {
        self.guard(settings, true, event).await
    }

    async fn guard(&self, settings: &Settings, parsed: bool, event: &Value) -> GuardOutcome {
        let ec2 = Ec2Exposure::new(&self.clients);
        let notifier = SnsNotifier::new(&self.clients, &self.inbox.topic_arn);
        let idempotency = IdempotencyTable::new(&self.clients, &self.table);
        let ledger = LedgerTable::new(&self.clients, &self.table);
        let guard = Guard {
            ec2: &ec2,
            notifier: &notifier,
            idempotency: &idempotency,
            ledger: &ledger,
            settings,
            own_account: AccountId::parse(ACCOUNT),
        };
        if parsed {
            return guard.handle(&parse_value(event)).await.expect("handled");
        }
        guard.alert_guardrail(&meta_of(event), &change_of(event)).await.expect("alerted")
    }
}

#[tokio::test]
async fn a_guardrail_event_reaches_the_guard_through_the_parser_once_and_a_failed_one_not_at_all() {
    let w = World::new("guardrail-handle").await;
    let at = "me-central-1";
    ec2(&w.sdk, at).disable_snapshot_block_public_access().send().await.unwrap();
    let off = w.trail.api_call(
        at,
        "DisableSnapshotBlockPublicAccess",
        Value::Null,
        json!({"state": "unblocked"}),
    );
    assert_eq!(
        severity_kind(&w.handle(&settings(false), &off).await),
        (Severity::Critical, "snapshot-block-public-access-disabled".into())
    );
    let again = w.handle(&settings(false), &w.trail.redelivery(&off)).await;
    assert!(matches!(again, GuardOutcome::Duplicate { .. }), "{again:?}");
    let failed = w.trail.failed_call(
        at,
        "DisableAllowedImagesSettings",
        Value::Null,
        "Client.UnauthorizedOperation",
        "You are not authorized to perform this operation.",
    );
    let ignored = w.handle(&settings(true), &failed).await;
    assert!(matches!(ignored, GuardOutcome::Ignored { .. }), "{ignored:?}");
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1, "one alert for the two deliveries, none for the failed call");
}

fn severity_kind(outcome: &GuardOutcome) -> (Severity, String) {
    match outcome {
        GuardOutcome::Alerted { severity, kind, .. } => (*severity, kind.clone()),
        other => panic!("expected an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn guardrail_changes_alert_on_the_live_state_alike_in_report_and_enforce_mode() {
    let w = World::new("guardrail-alerts").await;
    let at = "ca-west-1";
    let (_, snapshot) = scenario::register_image(&w.sdk, at, "guardrail-snapshot").await.unwrap();
    scenario::modify_snapshot_permission(&w.sdk, &w.trail, at, &snapshot, true, &[Share::All])
        .await
        .unwrap();
    set_snapshot_block(&w.sdk, at, SnapshotBlockPublicAccessState::BlockAllSharing).await;

    // Switching to block-new-sharing makes the snapshot public again: CRITICAL.
    set_snapshot_block(&w.sdk, at, SnapshotBlockPublicAccessState::BlockNewSharing).await;
    let weakened = w.trail.api_call(
        at,
        "EnableSnapshotBlockPublicAccess",
        json!({"state": "block-new-sharing"}),
        json!({"state": "block-new-sharing"}),
    );
    let report_mode = w.alert(&settings(false), &weakened).await;
    let enforce_mode = w.alert(&settings(true), &weakened).await;
    assert_eq!(
        severity_kind(&report_mode),
        (Severity::Critical, "snapshot-block-public-access-changed".into())
    );
    assert_eq!(severity_kind(&report_mode), severity_kind(&enforce_mode));
    let got = w.inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].message["text"], got[1].message["text"], "the same alert either way");
    let text = got[0].message["text"].as_str().unwrap();
    // (A stack reused by earlier runs may hold their public snapshots too.)
    assert!(text.contains("whose permissions say public: ") && text.contains(&snapshot), "{text}");
    // Nothing was changed: the setting and the share stay as they were.
    let state = ec2(&w.sdk, at).get_snapshot_block_public_access_state().send().await.unwrap();
    assert_eq!(state.state(), Some(&SnapshotBlockPublicAccessState::BlockNewSharing));

    // Turned off: CRITICAL.
    ec2(&w.sdk, at).disable_snapshot_block_public_access().send().await.unwrap();
    let off = w.trail.api_call(
        at,
        "DisableSnapshotBlockPublicAccess",
        Value::Null,
        json!({"state": "unblocked"}),
    );
    assert_eq!(
        severity_kind(&w.alert(&settings(false), &off).await),
        (Severity::Critical, "snapshot-block-public-access-disabled".into())
    );

    // Allowed AMIs: criteria replaced while enforced, then disabled: WARNING each.
    set_allowed(&w.sdk, at, AllowedImagesSettingsEnabledState::Enabled).await;
    set_criteria(&w.sdk, at, vec![providers(&["amazon"])]).await;
    let replaced = w.trail.api_call(
        at,
        "ReplaceImageCriteriaInAllowedImagesSettings",
        json!({"imageCriterion": {"items": [{"imageProvider": {"items": [{"content": "amazon"}]}}]}}),
        json!({"_return": true}),
    );
    assert_eq!(
        severity_kind(&w.alert(&settings(true), &replaced).await),
        (Severity::Warning, "allowed-amis-criteria-replaced".into())
    );
    ec2(&w.sdk, at).disable_allowed_images_settings().send().await.unwrap();
    let disabled = w.trail.api_call(
        at,
        "DisableAllowedImagesSettings",
        Value::Null,
        json!({"allowedImagesSettingsState": "disabled"}),
    );
    assert_eq!(
        severity_kind(&w.alert(&settings(true), &disabled).await),
        (Severity::Warning, "allowed-amis-disabled".into())
    );
    let got = w.inbox.receive(3, Duration::from_secs(10)).await.unwrap();
    let replaced_text = got[1].message["text"].as_str().unwrap();
    assert!(
        replaced_text.contains("enforced now: enabled (1 criteria: providers amazon)"),
        "{replaced_text}"
    );
    let state = ec2(&w.sdk, at).get_allowed_images_settings().send().await.unwrap();
    assert_eq!(state.state(), Some("disabled"), "the guard changes no setting");
}

#[tokio::test]
async fn impact_and_verify_say_whether_each_image_is_allowed_and_name_instances_on_refused_ones() {
    let w = World::new("guardrail-impact").await;
    let at = "ap-southeast-4";
    let store = LineageTable::from_clients(&w.clients, &w.table);
    let catalogue = Ec2Catalogue::new(&w.clients);
    // The partner's golden image, shared with this account, and this account's build from it.
    let golden = warden_testkit::accounts::register_image(&w.sdk, PARTNER, at, "partner-golden")
        .await
        .unwrap();
    let registered = Trail::new(PARTNER, "builder").api_call(
        at,
        "RegisterImage",
        json!({"name": "partner-golden"}),
        json!({"imageId": golden}),
    );
    let (build, _) = scenario::register_image(&w.sdk, at, "team-build").await.unwrap();
    let copied = w.trail.api_call(
        at,
        "CopyImage",
        json!({"sourceRegion": at, "sourceImageId": golden, "name": "team-build"}),
        json!({"imageId": build}),
    );
    for event in [&registered, &copied] {
        record(&parse_value(event), &catalogue, &store).await.unwrap();
    }
    let on_golden = warden_testkit::estate::running_instance(&w.sdk, at, &golden).await.unwrap();
    let on_build = warden_testkit::estate::running_instance(&w.sdk, at, &build).await.unwrap();
    set_criteria(&w.sdk, at, vec![providers(&["amazon"])]).await;
    set_allowed(&w.sdk, at, AllowedImagesSettingsEnabledState::Enabled).await;

    let own = AccountId::parse(ACCOUNT);
    let golden_ref = ImageRef::new(region(at), ImageId::parse(&golden).unwrap());
    let build_ref = ImageRef::new(region(at), ImageId::parse(&build).unwrap());
    let deprecation = warden::aws::deprecation::Ec2Deprecation::new(&w.clients);
    let others = OwnAccountOnly::<warden::aws::deprecation::Ec2Deprecation>::default();
    let mut result =
        impact(&store, &deprecation, &others, &golden_ref, own.as_ref(), &|_| {}).await.unwrap();
    add_allowed(&mut result, &Ec2Exposure::new(&w.clients), own.as_ref()).await;
    let allowed_of = |image: &ImageRef| {
        result.affected.iter().find(|a| &a.image == image).and_then(|a| a.allowed.clone())
    };
    assert_eq!(allowed_of(&golden_ref), Some(Allowance::NotAllowed));
    assert_eq!(allowed_of(&build_ref), Some(Allowance::Allowed), "own images are never restricted");
    let refused: Vec<&str> =
        result.not_allowed_instances.iter().map(|r| r.instance_id.as_str()).collect();
    assert_eq!(refused, vec![on_golden.as_str()], "not {on_build}");
    assert_eq!(result.not_allowed_instances[0].image, golden_ref);
    let table = warden::impact::table(&result);
    assert!(
        table.contains(&format!("instance {on_golden} (running) runs {golden_ref}: NOT allowed")),
        "{table}"
    );
    assert!(result.not_checked.iter().any(|n| n.contains(PARTNER)), "{:?}", result.not_checked);
    assert_eq!(warden::impact::notification(&result).severity, Severity::Warning);

    // Audit mode: the same instance, "would not be allowed".
    set_allowed(&w.sdk, at, AllowedImagesSettingsEnabledState::AuditMode).await;
    let mut result =
        impact(&store, &deprecation, &others, &golden_ref, own.as_ref(), &|_| {}).await.unwrap();
    add_allowed(&mut result, &Ec2Exposure::new(&w.clients), own.as_ref()).await;
    assert_eq!(result.not_allowed_instances[0].allowed, Allowance::WouldNotBeAllowed);

    // Verify: the build descends from the partner's golden image; each link says its allowance.
    let subject = store.node(&build_ref).await.unwrap().unwrap();
    let ancestors = store.ancestors(&build_ref).await.unwrap();
    let nodes = store.nodes(&[build_ref.clone(), golden_ref.clone()]).await.unwrap();
    let mut verdict = verify(&subject, &ancestors, &nodes, &[golden_ref.clone().into()]);
    let chain: Vec<ImageRef> = verdict.chain().iter().map(|l| l.image.clone()).collect();
    annotate_allowed(&mut verdict, &gather(&Ec2Exposure::new(&w.clients), &chain, false).await);
    let said: Vec<Option<Allowance>> = verdict.chain().iter().map(|l| l.allowed.clone()).collect();
    assert_eq!(said[0], Some(Allowance::Allowed));
    // The local stack cannot show another account's image (moto shares nothing across
    // accounts); on AWS DescribeImages reports it, in audit mode with ImageAllowed false.
    assert!(matches!(said[1], Some(Allowance::Unknown(_))), "{said:?}");
    ec2(&w.sdk, at).disable_allowed_images_settings().send().await.unwrap();
    annotate_allowed(&mut verdict, &gather(&Ec2Exposure::new(&w.clients), &chain, false).await);
    assert!(verdict.chain().iter().all(|l| l.allowed == Some(Allowance::NotRestricted)));
}
