//! `RETIRE_SHARED_UNUSED` against the local stack: an old image shared with another account
//! is kept until a usage report tells; enforce mode starts the report (report mode only says it
//! would); a later sweep reads it and retires the image nobody uses while keeping, with the
//! report's figures, the one another account runs an instance of. Off, both are kept as
//! shared, as before. The usage reports are the local-only emulator's (dev/moto_ext).
//!
//! moto stamps every image with the current time as its creation date, so the family is
//! planned with the clock moved forward; the usage reports' seven days count from their real
//! creation time, so that clock is moved only a few days.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, ledger::LedgerTable,
    lineage_table::LineageTable, sns::SnsNotifier, Clients,
};
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::{Decision, Keep, Settings};
use warden::ids::{AccountId, Region};
use warden_testkit::exposure::{self as share, Share};
use warden_testkit::{accounts, cloudtrail::Trail, estate, org, recycle_bin, stack};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "ap-south-1";

/// The image owner: a member of this run alone, so what it leaves is in no other test's way.
fn owner_id() -> String {
    format!("6{:05}000001", std::process::id() % 100_000)
}

/// The account the images are shared with.
fn consumer_id() -> String {
    format!("6{:05}000002", std::process::id() % 100_000)
}

fn settings(mode: Mode, retire_shared_unused: bool) -> Settings {
    Settings {
        mode,
        deprecate_after_days: 1,
        grace_days: 0,
        keep_latest: 2,
        warn_days: 0,
        in_use_days: 0,
        exempt_tag_key: "ami-warden:exempt".into(),
        family_tag_key: "ami-warden:family".into(),
        protect_newest: false,
        retire_shared_unused,
    }
}

async fn sweep(member: &Clients, own: &Clients, table: &str, settings: &Settings) -> SweepReport {
    let ec2 = Ec2Deprecation::new(member);
    let (lineage, audit) = (LineageTable::from_clients(own, table), AuditTable::new(own, table));
    let ledger = LedgerTable::new(own, table);
    let enforcer = Enforcer {
        ec2: &ec2,
        lineage: &lineage,
        audit: &audit,
        ledger: &ledger,
        notifier: None::<&SnsNotifier>,
        settings,
        own_account: AccountId::parse(&owner_id()),
        stop_by: None,
    };
    let now = Utc::now() + Duration::days(3);
    enforcer.sweep(&Region::parse(REGION).unwrap(), now).await.unwrap()
}

fn decision(report: &SweepReport, image: &str) -> Decision {
    report.planned.iter().find(|p| p.image_id.as_str() == image).expect("planned").decision.clone()
}

/// How many `operation` requests were made since `before`.
fn asked(clients: &Clients, before: &BTreeMap<(String, String), u64>, operation: &str) -> u64 {
    let calls = clients.calls().since(before);
    calls.iter().filter(|((_, op), _)| op == operation).map(|(_, n)| n).sum()
}

/// A family of four in the owner's account; the two oldest shared with the consumer, who runs
/// an instance of `used`.
async fn estate(member: &Clients) -> BTreeMap<&'static str, String> {
    let sdk = &stack::in_region(member.sdk_config(), REGION);
    recycle_bin::add_template_image_rule(&owner_id(), REGION).await.unwrap();
    let family = format!("shared{}", std::process::id());
    let trail = Trail::new(&owner_id(), "pipeline");
    let mut ids = BTreeMap::new();
    for label in ["1-unused", "1-used", "2", "3"] {
        let (id, _) =
            share::register_image(sdk, REGION, &format!("{family}-{label}")).await.unwrap();
        share::tag(sdk, REGION, &id, "ami-warden:family", &family).await.unwrap();
        estate::deprecate_at(sdk, REGION, &id, Utc::now() + Duration::days(1)).await.unwrap();
        ids.insert(label, id);
    }
    for label in ["1-unused", "1-used"] {
        let consumer = Share::Account(consumer_id());
        share::modify_launch_permission(sdk, &trail, REGION, &ids[label], &[consumer], &[])
            .await
            .unwrap();
    }
    let own_sdk = stack::sdk_config().await;
    accounts::ec2(&own_sdk, &consumer_id(), REGION)
        .run_instances()
        .image_id(&ids["1-used"])
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn a_shared_image_goes_only_once_a_usage_report_shows_no_account_uses_it() {
    let own_sdk = stack::sdk_config().await;
    let (member, own) =
        org::reach_member(&own_sdk, &owner_id(), "AmiWardenMember", ACCOUNT).await.unwrap();
    let table = stack::fresh_lineage_table(own.sdk_config(), "shared-usage").await;
    let ids = estate(&member).await;
    let shared_with = |report: &SweepReport, label: &str| match decision(report, &ids[label]) {
        Decision::Keep(Keep::SharedWith(_)) => true,
        other => panic!("{label}: {other:?}"),
    };

    // Off: both are kept as shared, and no usage report is asked about.
    let before = member.calls().snapshot();
    let off = sweep(&member, &own, &table, &settings(Mode::Enforce, false)).await;
    assert!(shared_with(&off, "1-unused") && shared_with(&off, "1-used"));
    assert_eq!(asked(&member, &before, "DescribeImageUsageReports"), 0);

    // On, report mode: kept, saying enforce mode starts a report; none is started.
    let before = member.calls().snapshot();
    let report = sweep(&member, &own, &table, &settings(Mode::Report, true)).await;
    for label in ["1-unused", "1-used"] {
        let why = decision(&report, &ids[label]).reason();
        assert!(
            why.contains("no usage report of the last 7 days")
                && why.contains("enforce mode starts one"),
            "{why}"
        );
    }
    assert_eq!(asked(&member, &before, "CreateImageUsageReport"), 0);
    assert!(report.usage_reports_started.is_empty());

    // Enforce mode: still kept this sweep; a report started for each.
    let first = sweep(&member, &own, &table, &settings(Mode::Enforce, true)).await;
    let started: Vec<&str> = first.usage_reports_started.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(started.len(), 2, "{:?}", first.usage_reports_started);
    assert!(
        started.contains(&ids["1-unused"].as_str()) && started.contains(&ids["1-used"].as_str())
    );
    assert!(first.deregistered.is_empty(), "{:?}", first.deregistered);
    assert!(first.errors.is_empty(), "{:?}", first.errors);

    // The next sweep reads them: the unused image goes, the used one stays with the figures.
    let before = member.calls().snapshot();
    let second = sweep(&member, &own, &table, &settings(Mode::Enforce, true)).await;
    let gone: Vec<&str> = second.deregistered.iter().map(|i| i.as_str()).collect();
    assert_eq!(gone, [ids["1-unused"].as_str()], "{:?}", second.planned);
    match decision(&second, &ids["1-used"]) {
        Decision::Keep(Keep::SharedInUse { uses, .. }) => {
            assert_eq!(uses, [format!("{}: 1 ec2:Instance", consumer_id())]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(asked(&member, &before, "CreateImageUsageReport"), 0, "the reports are fresh");
    assert!(second.errors.is_empty(), "{:?}", second.errors);
}
