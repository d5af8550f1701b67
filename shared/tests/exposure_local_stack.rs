//! The exposure guard against the local stack: real permission changes on moto's EC2, the
//! events they would produce, the real SDK adapters, and an SQS queue subscribed to the SNS
//! topic standing in for a subscriber.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{ImageAttributeName, SnapshotAttributeName};
use warden::aws::{
    exposure::Ec2Exposure, idempotency::IdempotencyTable, sns::SnsNotifier, Clients,
};
use warden::event::{parse_value, Grantee};
use warden::exposure::guard::{Guard, GuardOutcome};
use warden::exposure::sweep::{sweep, sweep_notification};
use warden::exposure::Settings;
use warden::ids::{AccountId, Region};
use warden::notify::{Notifier, Severity};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::stack;
use warden_testkit::story::ec2;

const ACCOUNT: &str = "123456789012";
const PARTNER: &str = "222233334444";
const STRANGER: &str = "999988887777";
const ORG: &str = "arn:aws:organizations::123456789012:organization/o-exampleorg";

fn settings(remediate: bool) -> Settings {
    Settings {
        allowed_accounts: [PARTNER.to_owned()].into(),
        allowed_orgs: [ORG.to_owned()].into(),
        allowed_ous: Default::default(),
        remediate_public: remediate,
        remediate_shares: false,
        exempt_tag_key: "ami-warden:exempt".into(),
        full_read_every: chrono::Duration::days(7),
        listing_margin: warden::exposure::LISTING_MARGIN,
    }
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
        let unique = format!("{name}-{}", std::process::id());
        let inbox = Inbox::create(&sdk, &unique).await.unwrap();
        let table = stack::fresh_lineage_table(&sdk, name).await;
        Self {
            clients: Clients::new(&sdk),
            sdk,
            inbox,
            table,
            trail: Trail::new(ACCOUNT, "image-admin"),
        }
    }

    async fn handle(&self, settings: &Settings, event: &serde_json::Value) -> GuardOutcome {
        let ec2 = Ec2Exposure::new(&self.clients);
        let notifier = SnsNotifier::new(&self.clients, &self.inbox.topic_arn);
        let idempotency = IdempotencyTable::new(&self.clients, &self.table);
        let ledger = warden::aws::ledger::LedgerTable::new(&self.clients, &self.table);
        let guard = Guard {
            ledger: &ledger,
            ec2: &ec2,
            notifier: &notifier,
            idempotency: &idempotency,
            settings,
            own_account: AccountId::parse(ACCOUNT),
        };
        guard.handle(&parse_value(event)).await.expect("the guard handles the event")
    }

    async fn launch_permissions(&self, region: &str, image: &str) -> Vec<String> {
        let out = ec2(&self.sdk, region)
            .describe_image_attribute()
            .image_id(image)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .unwrap();
        out.launch_permissions()
            .iter()
            .map(|p| {
                p.group()
                    .map(|g| g.as_str().to_owned())
                    .or(p.user_id().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[tokio::test]
async fn making_an_image_public_alerts_subscribers_with_severity_kind_and_readable_text() {
    let w = World::new("exposure-public").await;
    let (image, _) =
        scenario::register_image(&w.sdk, "us-east-1", "web-golden-2026-11-25").await.unwrap();
    let event = scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();

    let outcome = w.handle(&settings(false), &event).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Critical, kind, .. } if kind == "image-public"),
        "{outcome:?}"
    );

    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(
        (m.severity.as_deref(), m.kind.as_deref()),
        (Some("CRITICAL"), Some("image-public"))
    );
    let subject = m.subject.as_deref().unwrap();
    assert!(
        subject.starts_with("[CRITICAL] image ")
            && subject.contains(&image)
            && subject.len() <= 100,
        "{subject}"
    );
    assert_eq!(m.message["version"], 1);
    let text = m.message["text"].as_str().unwrap();
    assert!(
        text.contains("image-admin-session made image ") && text.contains(") public in us-east-1"),
        "{text}"
    );
    assert!(
        text.contains("web-golden-2026-11-25")
            && text.contains("us-east-1")
            && text.contains(ACCOUNT),
        "{text}"
    );
    assert!(text.contains("Live state: still exposed to everyone (group: all)"), "{text}");
    assert!(text.contains("automatic remediation is off"), "{text}");
    let fields = m.message["fields"].as_array().unwrap();
    let field = |label: &str| {
        fields.iter().find(|f| f["label"] == label).map(|f| f["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        field("Actor").unwrap(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/image-admin/image-admin-session")
    );
    assert_eq!(field("Source IP").unwrap(), "203.0.113.10");
    assert!(m.message["links"][0]["url"].as_str().unwrap().contains(&image));
    // Remediation off: the image stays public.
    assert_eq!(w.launch_permissions("us-east-1", &image).await, vec!["all"]);

    // The same record delivered again alerts nobody.
    let again = w.handle(&settings(false), &w.trail.redelivery(&event)).await;
    assert!(matches!(again, GuardOutcome::Duplicate { .. }), "{again:?}");
    assert!(w.inbox.receive(1, Duration::from_secs(2)).await.unwrap().is_empty());
}

#[tokio::test]
async fn with_remediation_on_the_image_is_private_again_and_the_alert_says_what_was_removed() {
    let w = World::new("exposure-remediate").await;
    let (image, _) = scenario::register_image(&w.sdk, "us-east-1", "api-base").await.unwrap();
    let partner = Share::Account(PARTNER.into());
    let event = scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &image,
        &[Share::All, partner],
        &[],
    )
    .await
    .unwrap();

    let outcome = w.handle(&settings(true), &event).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Critical, .. }),
        "{outcome:?}"
    );
    // group:all removed; the allow-listed partner share is left alone.
    assert_eq!(w.launch_permissions("us-east-1", &image).await, vec![PARTNER]);
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap();
    assert!(text.contains("Action taken: removed the grant to everyone (group: all)."), "{text}");
}

#[tokio::test]
async fn an_exempt_image_is_reported_but_left_public() {
    let w = World::new("exposure-exempt").await;
    let (image, _) =
        scenario::register_image(&w.sdk, "us-east-1", "public-marketplace-base").await.unwrap();
    scenario::tag(&w.sdk, "us-east-1", &image, "ami-warden:exempt", "published on purpose")
        .await
        .unwrap();
    let event = scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();
    w.handle(&settings(true), &event).await;
    assert_eq!(w.launch_permissions("us-east-1", &image).await, vec!["all"]);
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap();
    assert!(text.contains("none: exempt: tagged ami-warden:exempt=published on purpose"), "{text}");
}

#[tokio::test]
async fn allow_listed_shares_raise_nothing() {
    let w = World::new("exposure-allowed").await;
    let (image, _) =
        scenario::register_image(&w.sdk, "us-east-1", "shared-with-friends").await.unwrap();
    let shares = [Share::Account(PARTNER.into()), Share::Organization(ORG.into())];
    let event =
        scenario::modify_launch_permission(&w.sdk, &w.trail, "us-east-1", &image, &shares, &[])
            .await
            .unwrap();
    let outcome = w.handle(&settings(true), &event).await;
    assert!(matches!(outcome, GuardOutcome::Quiet { .. }), "{outcome:?}");
    assert!(w.inbox.receive(1, Duration::from_secs(2)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_share_outside_the_allow_list_is_a_warning_and_its_removal_resolves_it() {
    let w = World::new("exposure-stranger").await;
    let (image, _) =
        scenario::register_image(&w.sdk, "us-east-1", "shared-with-stranger").await.unwrap();
    let stranger = Share::Account(STRANGER.into());
    let shared = scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &image,
        std::slice::from_ref(&stranger),
        &[],
    )
    .await
    .unwrap();
    let outcome = w.handle(&settings(true), &shared).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Warning, kind, .. } if kind == "image-shared"),
        "{outcome:?}"
    );
    // Shares are reverted only with REMEDIATE_SHARES.
    assert_eq!(w.launch_permissions("us-east-1", &image).await, vec![STRANGER]);

    let unshared =
        scenario::modify_launch_permission(&w.sdk, &w.trail, "us-east-1", &image, &[], &[stranger])
            .await
            .unwrap();
    let outcome = w.handle(&settings(true), &unshared).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Resolved, .. }),
        "{outcome:?}"
    );
    let got = w.inbox.receive(2, Duration::from_secs(10)).await.unwrap();
    let kinds: Vec<_> = got.iter().map(|m| m.kind.clone().unwrap()).collect();
    assert_eq!(kinds, vec!["image-shared", "exposure-resolved"]);
}

#[tokio::test]
async fn an_exposure_undone_before_the_check_is_reported_as_undone_not_live() {
    let w = World::new("exposure-undone").await;
    let (image, _) = scenario::register_image(&w.sdk, "us-east-1", "briefly-public").await.unwrap();
    let public = scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &image,
        &[Share::All],
        &[],
    )
    .await
    .unwrap();
    scenario::modify_launch_permission(&w.sdk, &w.trail, "us-east-1", &image, &[], &[Share::All])
        .await
        .unwrap();
    let outcome = w.handle(&settings(true), &public).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Warning, summary, .. } if summary.contains("already reverted")),
        "{outcome:?}"
    );
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap();
    assert!(text.contains("already reverted when AMI Warden checked"), "{text}");
}

#[tokio::test]
async fn a_public_snapshot_is_critical_names_the_images_it_backs_and_is_reverted() {
    let w = World::new("exposure-snapshot").await;
    let (image, snapshot) = scenario::register_image(&w.sdk, "us-east-1", "db-base").await.unwrap();
    let event = scenario::modify_snapshot_permission(
        &w.sdk,
        &w.trail,
        "us-east-1",
        &snapshot,
        true,
        &[Share::All],
    )
    .await
    .unwrap();
    let outcome = w.handle(&settings(true), &event).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Critical, kind, .. } if kind == "snapshot-public"),
        "{outcome:?}"
    );
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap();
    assert!(text.contains(&format!("This snapshot backs: {image}.")), "{text}");
    assert!(text.contains("removed the grant to everyone"), "{text}");
    let perms = ec2(&w.sdk, "us-east-1")
        .describe_snapshot_attribute()
        .snapshot_id(&snapshot)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .unwrap();
    assert!(perms.create_volume_permissions().is_empty(), "{perms:?}");
}

#[tokio::test]
async fn turning_off_image_block_public_access_is_critical() {
    let w = World::new("exposure-bpa").await;
    let region = "ca-central-1";
    scenario::enable_block_public_access(&w.sdk, region).await.unwrap();
    let event = scenario::disable_block_public_access(&w.sdk, &w.trail, region).await.unwrap();
    let outcome = w.handle(&settings(true), &event).await;
    assert!(
        matches!(&outcome, GuardOutcome::Alerted { severity: Severity::Critical, kind, .. } if kind == "block-public-access-disabled"),
        "{outcome:?}"
    );
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    let text = got[0].message["text"].as_str().unwrap();
    assert!(
        text.contains("turned off image block public access") && text.contains("Live state: off"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_call_is_ignored() {
    let w = World::new("exposure-failed").await;
    let event = w.trail.failed_call(
        "us-east-1",
        "ModifyImageAttribute",
        serde_json::json!({"imageId": "ami-0123456789abcdef0", "attributeType": "launchPermission",
            "launchPermission": {"add": {"items": [{"group": "all"}]}}}),
        "Client.UnauthorizedOperation",
        "You are not authorized to perform this operation.",
    );
    let outcome = w.handle(&settings(true), &event).await;
    assert!(matches!(outcome, GuardOutcome::Ignored { .. }), "{outcome:?}");
}

#[tokio::test]
async fn the_sweep_reports_public_and_outside_shares_and_public_snapshots_in_one_summary() {
    let w = World::new("exposure-sweep").await;
    // A region no other test uses, so the sweep sees exactly this estate.
    let region = "ap-southeast-2";
    let (public, _) = scenario::register_image(&w.sdk, region, "sweep-public").await.unwrap();
    let (shared, _) = scenario::register_image(&w.sdk, region, "sweep-shared").await.unwrap();
    let (friendly, _) = scenario::register_image(&w.sdk, region, "sweep-friendly").await.unwrap();
    let (private, _) = scenario::register_image(&w.sdk, region, "sweep-private").await.unwrap();
    let (backed, snapshot) =
        scenario::register_image(&w.sdk, region, "sweep-snapshot").await.unwrap();
    scenario::modify_launch_permission(&w.sdk, &w.trail, region, &public, &[Share::All], &[])
        .await
        .unwrap();
    scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        region,
        &shared,
        &[Share::Account(STRANGER.into())],
        &[],
    )
    .await
    .unwrap();
    scenario::modify_launch_permission(
        &w.sdk,
        &w.trail,
        region,
        &friendly,
        &[Share::Account(PARTNER.into())],
        &[],
    )
    .await
    .unwrap();
    scenario::modify_snapshot_permission(&w.sdk, &w.trail, region, &snapshot, true, &[Share::All])
        .await
        .unwrap();

    let ec2 = Ec2Exposure::new(&w.clients);
    let report =
        sweep(&ec2, &settings(false), &Region::parse(region).unwrap(), None, &|_, _, _| {})
            .await
            .unwrap();
    // The region is this test's alone, but a reused stack may hold earlier runs' images.
    assert!(report.images_checked >= 5);
    let exposed = |id: &str| {
        report.exposed_images.iter().find(|i| i.image_id.as_str() == id).map(|i| i.exposure.clone())
    };
    assert_eq!(exposed(&public), Some(vec![Grantee::Public]));
    assert_eq!(exposed(&shared), Some(vec![Grantee::Account(STRANGER.into())]));
    assert_eq!(exposed(&friendly), None, "an allow-listed share is not exposure");
    assert_eq!(exposed(&private), None);
    let snap = report
        .exposed_snapshots
        .iter()
        .find(|s| s.snapshot_id.as_str() == snapshot)
        .expect("the public snapshot");
    assert_eq!(snap.backs.iter().map(|i| i.as_str()).collect::<Vec<_>>(), vec![backed.as_str()]);
    assert!(
        report.exposed_snapshots.iter().all(|s| s.exposure.contains(&Grantee::Public)),
        "only confirmed public snapshots"
    );
    assert_eq!(report.block_public_access.as_deref(), Some("unblocked"));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.severity(), Severity::Critical);

    let notifier = SnsNotifier::new(&w.clients, &w.inbox.topic_arn);
    notifier.publish(&sweep_notification(&[report], Some(ACCOUNT))).await.unwrap();
    let got = w.inbox.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got[0].kind.as_deref(), Some("exposure-sweep"));
    let subject = got[0].subject.as_deref().unwrap();
    assert!(
        subject.starts_with("[CRITICAL] exposure sweep: ") && subject.contains(" public, "),
        "{subject}"
    );
    let text = got[0].message["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("image {public} (sweep-public) exposed to everyone (group: all)")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "snapshot {snapshot} exposed to everyone (group: all); backs {backed}"
        )),
        "{text}"
    );
}
