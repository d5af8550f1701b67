//! Deregistration protection against the local stack: an image EC2 would refuse to deregister
//! is never retired — kept with its reason in report and enforce mode alike, never tagged —
//! while its unprotected twin goes; protection turned on between the plan and the action keeps
//! the image at the last check; and the local stack's EC2 refuses a protected image as AWS does.
//!
//! moto stamps every image with the current time as its creation date, so the families are
//! planned with the clock moved forward (the policy takes `now` as an input).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use chrono::{DateTime, Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::catalogue::CatalogueError;
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::{
    Decision, DeprecationEc2, DeregistrationProtection, ImageFacts, InUseIndex, Keep, Settings,
};
use warden::event::Grantee;
use warden::ids::{AccountId, ImageId, Region};
use warden::recycle_bin::RetentionRule;
use warden_testkit::exposure as share;
use warden_testkit::{estate, recycle_bin, stack, story};

const ACCOUNT: &str = "123456789012";

/// The account these tests act in: a member of this run alone, reached through its role, so
/// that what they leave (protected images, retired ones in the Recycle Bin) is in no other
/// test's way on a shared local stack.
fn member_id() -> String {
    format!("7{:05}000001", std::process::id() % 100_000)
}

/// The member's SDK configuration and clients (through its role), and the own account's
/// clients (whose table the enforcer records into).
async fn member() -> (aws_config::SdkConfig, Clients, Clients) {
    let own_sdk = stack::sdk_config().await;
    let id = member_id();
    warden_testkit::accounts::create_member_role(&own_sdk, &id, "AmiWardenMember", ACCOUNT)
        .await
        .unwrap();
    let own = Clients::new(&own_sdk);
    let account = AccountId::parse(&id).unwrap();
    let clients = warden::aws::org::assume(&own, &account, "AmiWardenMember").await.unwrap();
    (clients.sdk_config().clone(), clients, own)
}

fn settings(mode: Mode) -> Settings {
    warden_testkit::settings::deprecation_settings(mode)
}

/// A family in `region`, one image a label, created in the order given (the last ones are the
/// newest), each with a deadline a day away; two hundred days on, all but the newest two are
/// due. Names sort as they were created, so ranks do not hang on creation times that tie.
async fn family(
    sdk: &aws_config::SdkConfig,
    region: &str,
    labels: &[&'static str],
) -> BTreeMap<&'static str, String> {
    recycle_bin::add_template_image_rule(&member_id(), region).await.unwrap();
    let family = format!("protected{}", std::process::id());
    let mut ids = BTreeMap::new();
    for label in labels {
        let (id, _) =
            share::register_image(sdk, region, &format!("{family}-{label}")).await.unwrap();
        share::tag(sdk, region, &id, "ami-warden:family", &family).await.unwrap();
        estate::deprecate_at(sdk, region, &id, Utc::now() + Duration::days(1)).await.unwrap();
        ids.insert(*label, id);
    }
    ids
}

/// An enforcer in `mode` over `ec2`, without a notifier, recording into `table`.
async fn sweep<E: DeprecationEc2>(
    clients: &Clients,
    table: &str,
    ec2: &E,
    mode: Mode,
    region: &str,
) -> SweepReport {
    let settings = settings(mode);
    let (lineage, audit) =
        (LineageTable::from_clients(clients, table), AuditTable::new(clients, table));
    let ledger = LedgerTable::new(clients, table);
    let enforcer = Enforcer {
        ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: None::<&SnsNotifier>,
        settings: &settings,
        own_account: AccountId::parse(&member_id()),
        stop_by: None,
    };
    enforcer.sweep(&Region::parse(region).unwrap(), Utc::now() + Duration::days(200)).await.unwrap()
}

fn decision(report: &SweepReport, image: &str) -> Decision {
    report.planned.iter().find(|p| p.image_id.as_str() == image).expect("planned").decision.clone()
}

/// How many `operation` requests were made since `before`.
fn asked(clients: &Clients, before: &BTreeMap<(String, String), u64>, operation: &str) -> u64 {
    clients
        .calls()
        .since(before)
        .iter()
        .filter(|((_, op), _)| op == operation)
        .map(|(_, n)| n)
        .sum()
}

async fn protection_of(sdk: &aws_config::SdkConfig, region: &str, image: &str) -> Option<String> {
    let described =
        story::ec2(sdk, region).describe_images().image_ids(image).send().await.unwrap();
    described.images()[0].deregistration_protection().map(str::to_owned)
}

#[tokio::test]
async fn a_protected_old_unused_image_is_kept_with_its_reason_while_its_unprotected_twin_is_retired(
) {
    let region = "us-west-1";
    let (sdk, clients, own) = member().await;
    let table = stack::fresh_lineage_table(own.sdk_config(), "deregistration-protection").await;
    let ids = family(&sdk, region, &["1-locked", "1-protected", "1-twin", "2", "3"]).await;
    let ec2 = story::ec2(&sdk, region);
    ec2.enable_image_deregistration_protection()
        .image_id(&ids["1-protected"])
        .with_cooldown(true)
        .send()
        .await
        .unwrap();
    ec2.enable_image_deregistration_protection().image_id(&ids["1-locked"]).send().await.unwrap();
    let adapter = Ec2Deprecation::new(&clients);
    let protected = Decision::Keep(Keep::DeregistrationProtected(
        DeregistrationProtection::EnabledWithCooldown,
    ));
    let locked = Decision::Keep(Keep::DeregistrationProtected(DeregistrationProtection::Enabled));

    // Report mode: the protected images are kept, with the reason, and not asked about image
    // by image: only the images planned to go (here the twin) have their launch permissions
    // read. (A reused stack may hold earlier runs' images in the region: counts cover them.)
    let before = clients.calls().snapshot();
    let report = sweep(&own, &table, &adapter, Mode::Report, region).await;
    assert_eq!(decision(&report, &ids["1-protected"]), protected);
    assert_eq!(
        decision(&report, &ids["1-protected"]).reason(),
        "deregistration protection enabled (with cooldown)"
    );
    assert_eq!(decision(&report, &ids["1-locked"]), locked);
    assert_eq!(decision(&report, &ids["1-locked"]).reason(), "deregistration protection enabled");
    assert_eq!(decision(&report, &ids["1-twin"]), Decision::Deregister);
    let to_go = report.to_deregister().count() as u64;
    assert!(to_go >= 1);
    assert_eq!(asked(&clients, &before, "DescribeImageAttribute"), to_go);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // Enforce mode: the same decisions; the twin goes, the protected ones stay untouched.
    let before = clients.calls().snapshot();
    let enforced = sweep(&own, &table, &adapter, Mode::Enforce, region).await;
    assert_eq!(decision(&enforced, &ids["1-protected"]), protected);
    assert_eq!(decision(&enforced, &ids["1-locked"]), locked);
    let gone: Vec<String> = enforced.deregistered.iter().map(ToString::to_string).collect();
    assert_eq!(
        gone.iter().filter(|i| ids.values().any(|id| id == *i)).collect::<Vec<_>>(),
        vec![&ids["1-twin"]]
    );
    assert!(enforced.errors.is_empty(), "{:?}", enforced.errors);
    // One tag per image retired (the twin's), put on before its deregistration; none on the
    // protected ones, none taken off again.
    let retired = gone.len() as u64;
    assert_eq!(asked(&clients, &before, "CreateTags"), retired);
    assert_eq!(asked(&clients, &before, "DeleteTags"), 0);
    assert_eq!(asked(&clients, &before, "DeregisterImage"), retired);
    assert_eq!(asked(&clients, &before, "DisableImageDeregistrationProtection"), 0);
    for (label, state) in
        [("1-protected", "enabled-with-cooldown"), ("1-locked", "enabled-without-cooldown")]
    {
        let described =
            ec2.describe_images().image_ids(&ids[label]).send().await.unwrap().images()[0].clone();
        assert!(
            described.tags().iter().all(|t| t.key() != Some("ami-warden:retired")),
            "{label}: {described:?}"
        );
        assert_eq!(described.deregistration_protection(), Some(state), "{label}: never turned off");
        // No action on it was recorded (no failed deregistration either).
        let audit = own
            .dynamodb()
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("DEPR#{region}#{}", ids[label])),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(audit.count(), 0, "{label}: {:?}", audit.items());
    }
}

/// The real adapter, except that at the last check (the second DescribeImageReferences lookup
/// of the sweep) someone turns deregistration protection on for the images checked.
struct ProtectedAtLastCheck {
    real: Ec2Deprecation,
    sdk: aws_config::SdkConfig,
    region: &'static str,
    reference_calls: AtomicUsize,
}

impl DeprecationEc2 for ProtectedAtLastCheck {
    async fn images(&self, r: &Region) -> Result<Vec<ImageFacts>, CatalogueError> {
        self.real.images(r).await
    }
    async fn image(&self, r: &Region, i: &ImageId) -> Result<Option<ImageFacts>, CatalogueError> {
        self.real.image(r, i).await
    }
    async fn usage(&self, r: &Region) -> InUseIndex {
        self.real.usage(r).await
    }
    async fn add_references(&self, r: &Region, images: &[ImageId], index: &mut InUseIndex) {
        if self.reference_calls.fetch_add(1, Ordering::SeqCst) == 1 {
            let ec2 = story::ec2(&self.sdk, self.region);
            for image in images {
                ec2.enable_image_deregistration_protection()
                    .image_id(image.as_str())
                    .send()
                    .await
                    .unwrap();
            }
        }
        self.real.add_references(r, images, index).await
    }
    async fn launch_permissions(
        &self,
        r: &Region,
        i: &ImageId,
    ) -> Result<Vec<Grantee>, CatalogueError> {
        self.real.launch_permissions(r, i).await
    }
    async fn enable_deprecation(
        &self,
        r: &Region,
        i: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        self.real.enable_deprecation(r, i, at).await
    }
    async fn deregister(&self, r: &Region, i: &ImageId) -> Result<(), CatalogueError> {
        self.real.deregister(r, i).await
    }
    async fn image_retention_rules(
        &self,
        r: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError> {
        self.real.image_retention_rules(r).await
    }
    async fn mark_retired(&self, r: &Region, i: &ImageId) -> Result<(), CatalogueError> {
        self.real.mark_retired(r, i).await
    }
    async fn unmark_retired(&self, r: &Region, i: &ImageId) -> Result<(), CatalogueError> {
        self.real.unmark_retired(r, i).await
    }
}

#[tokio::test]
async fn protection_turned_on_after_the_plan_keeps_the_image_at_the_last_check_untagged() {
    let region = "ap-southeast-4";
    let (sdk, clients, own) = member().await;
    let table =
        stack::fresh_lineage_table(own.sdk_config(), "deregistration-protection-late").await;
    let ids = family(&sdk, region, &["1", "2", "3"]).await;
    let adapter = ProtectedAtLastCheck {
        real: Ec2Deprecation::new(&clients),
        sdk: sdk.clone(),
        region,
        reference_calls: AtomicUsize::new(0),
    };
    let before = clients.calls().snapshot();
    let report = sweep(&own, &table, &adapter, Mode::Enforce, region).await;
    assert_eq!(adapter.reference_calls.load(Ordering::SeqCst), 2, "the plan's and the last check");
    let oldest = decision(&report, &ids["1"]);
    assert_eq!(
        oldest,
        Decision::Keep(Keep::ChangedSincePlan("deregistration protection enabled".into()))
    );
    assert_eq!(oldest.reason(), "changed since the plan: deregistration protection enabled");
    assert!(report.deregistered.is_empty(), "{report:#?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(asked(&clients, &before, "CreateTags"), 0, "kept before it was tagged");
    assert_eq!(asked(&clients, &before, "DeregisterImage"), 0);
    assert_eq!(
        protection_of(&sdk, region, &ids["1"]).await.as_deref(),
        Some("enabled-without-cooldown")
    );
}

#[tokio::test]
async fn the_local_stacks_ec2_refuses_to_deregister_a_protected_image_as_aws_does() {
    let region = "ap-southeast-5";
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let ec2 = story::ec2(&sdk, region);
    let (image, _) = share::register_image(&sdk, region, &format!("guarded{}", std::process::id()))
        .await
        .unwrap();
    let refused = || async {
        let err = ec2.deregister_image().image_id(&image).send().await.unwrap_err();
        err.code().map(str::to_owned)
    };
    assert_eq!(protection_of(&sdk, region, &image).await.as_deref(), Some("disabled"));

    let enabled = ec2.enable_image_deregistration_protection().image_id(&image).send().await;
    assert_eq!(enabled.unwrap().r#return(), Some("enabled-without-cooldown"));
    assert_eq!(refused().await.as_deref(), Some("OperationNotPermitted"));
    ec2.disable_image_deregistration_protection().image_id(&image).send().await.unwrap();
    assert_eq!(protection_of(&sdk, region, &image).await.as_deref(), Some("disabled"));

    // With the cooldown, disabling leaves it protected for 24 hours.
    ec2.enable_image_deregistration_protection()
        .image_id(&image)
        .with_cooldown(true)
        .send()
        .await
        .unwrap();
    assert_eq!(protection_of(&sdk, region, &image).await.as_deref(), Some("enabled-with-cooldown"));
    ec2.disable_image_deregistration_protection().image_id(&image).send().await.unwrap();
    assert_eq!(refused().await.as_deref(), Some("OperationNotPermitted"));
    let facts = Ec2Deprecation::new(&clients)
        .image(&Region::parse(region).unwrap(), &ImageId::parse(&image).unwrap())
        .await
        .unwrap()
        .expect("still registered");
    let DeregistrationProtection::DisabledAfter(until) = facts.deregistration_protection else {
        panic!("{:?}", facts.deregistration_protection)
    };
    let expected = Utc::now() + Duration::hours(24);
    assert!((until - expected).num_seconds().abs() <= 120, "{until} vs {expected}");
    assert!(facts.deregistration_protection.protects_at(Utc::now()));
    assert!(!facts.deregistration_protection.protects_at(Utc::now() + Duration::hours(25)));

    let unknown = ec2.enable_image_deregistration_protection().image_id("ami-0000000000000000f");
    assert_eq!(
        unknown.send().await.unwrap_err().code(),
        Some("InvalidAMIID.NotFound"),
        "an unknown image"
    );
}
