//! `PROTECT_NEWEST` against the local stack, through the real adapter: report mode lists the
//! steps and changes nothing; enforce mode marks and protects (with cooldown) each family's
//! newest `KEEP_LATEST` images, takes protection off only the image it had protected that left
//! that set (still protected by the cooldown, its mark gone), and never touches protection
//! someone else enabled. It acts in a member account of its own, so that what it leaves is in
//! no other test's way on a shared local stack.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::Mode;
use warden::deprecation::protect::{ProtectionChange, PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::Settings;
use warden::ids::{AccountId, Region};
use warden_testkit::exposure as share;
use warden_testkit::{estate, stack, story};

const ACCOUNT: &str = "123456789012";

/// This run's own member account (another series than the other protection tests').
fn member_id() -> String {
    format!("7{:05}000002", std::process::id() % 100_000)
}

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
    Settings {
        mode,
        deprecate_after_days: 90,
        grace_days: 14,
        keep_latest: 2,
        warn_days: 0,
        in_use_days: 30,
        exempt_tag_key: "ami-warden:exempt".into(),
        family_tag_key: "ami-warden:family".into(),
        protect_newest: true,
        retire_shared_unused: false,
    }
}

async fn sweep(
    clients: &Clients,
    own: &Clients,
    table: &str,
    mode: Mode,
    region: &str,
) -> SweepReport {
    let settings = settings(mode);
    let (lineage, audit) = (LineageTable::from_clients(own, table), AuditTable::new(own, table));
    let ledger = LedgerTable::new(own, table);
    let ec2 = Ec2Deprecation::new(clients);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: None::<&SnsNotifier>,
        settings: &settings,
        own_account: AccountId::parse(&member_id()),
        stop_by: None,
    };
    enforcer.sweep(&Region::parse(region).unwrap(), Utc::now()).await.unwrap()
}

/// DescribeImages' protection and whether the image carries AMI Warden's mark.
async fn protection_of(sdk: &aws_config::SdkConfig, region: &str, image: &str) -> (String, bool) {
    let described =
        story::ec2(sdk, region).describe_images().image_ids(image).send().await.unwrap();
    let image = &described.images()[0];
    let marked = image.tags().iter().any(|t| t.key() == Some(PROTECTED_TAG_KEY));
    (image.deregistration_protection().unwrap_or_default().to_owned(), marked)
}

#[tokio::test]
async fn the_newest_are_protected_and_only_warden_s_own_protection_is_taken_off() {
    let region = "eu-north-1";
    let (sdk, clients, own) = member().await;
    let table = stack::fresh_lineage_table(own.sdk_config(), "protect-newest").await;
    // One family; names sort as created, so "4" is the newest. Deadlines are far away: nothing
    // is retired.
    let family = format!("newest{}", std::process::id());
    let mut ids = BTreeMap::new();
    for label in ["1-ours", "2-theirs", "3", "4"] {
        let (id, _) =
            share::register_image(&sdk, region, &format!("{family}-{label}")).await.unwrap();
        share::tag(&sdk, region, &id, "ami-warden:family", &family).await.unwrap();
        estate::deprecate_at(&sdk, region, &id, Utc::now() + Duration::days(60)).await.unwrap();
        ids.insert(label, id);
    }
    let ec2 = story::ec2(&sdk, region);
    // "1-ours": protected by AMI Warden on an earlier sweep, when it was among the newest.
    share::tag(&sdk, region, &ids["1-ours"], PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE).await.unwrap();
    for label in ["1-ours", "2-theirs"] {
        ec2.enable_image_deregistration_protection()
            .image_id(&ids[label])
            .with_cooldown(true)
            .send()
            .await
            .unwrap();
    }

    let report = sweep(&clients, &own, &table, Mode::Report, region).await;
    let steps: BTreeMap<String, ProtectionChange> =
        report.protection.iter().map(|s| (s.image_id.to_string(), s.change)).collect();
    let expected = BTreeMap::from([
        (ids["1-ours"].clone(), ProtectionChange::Unprotect),
        (ids["3"].clone(), ProtectionChange::Protect),
        (ids["4"].clone(), ProtectionChange::Protect),
    ]);
    assert_eq!(steps, expected);
    assert!(report.protection_done.is_empty());
    assert_eq!(protection_of(&sdk, region, &ids["4"]).await, ("disabled".into(), false));

    let enforced = sweep(&clients, &own, &table, Mode::Enforce, region).await;
    assert!(enforced.errors.is_empty(), "{:?}", enforced.errors);
    assert_eq!(enforced.protection_done.len(), 3, "{:?}", enforced.protection);
    for label in ["3", "4"] {
        assert_eq!(
            protection_of(&sdk, region, &ids[label]).await,
            ("enabled-with-cooldown".into(), true),
            "{label}"
        );
    }
    let (ours, marked) = protection_of(&sdk, region, &ids["1-ours"]).await;
    assert!(ours.starts_with("disabled-after"), "still protected by the cooldown: {ours}");
    assert!(!marked, "the mark goes with the protection AMI Warden gave");
    assert_eq!(
        protection_of(&sdk, region, &ids["2-theirs"]).await,
        ("enabled-with-cooldown".into(), false),
        "someone else's protection is never touched"
    );
    // The image that left the newest is kept by the cooldown, not retired.
    let kept = enforced.planned.iter().find(|p| p.image_id.as_str() == ids["1-ours"]).unwrap();
    assert!(kept.decision.reason().contains("deregistration protection"), "{kept:?}");

    let again = sweep(&clients, &own, &table, Mode::Enforce, region).await;
    assert!(again.protection.is_empty(), "nothing left to do: {:?}", again.protection);
}
