//! The share ledger on the local stack: the exposure sweep writes what it read, the exposure
//! guard marks what an event changed, the deprecation sweep reads the ledger instead of asking
//! EC2 image by image, and asks EC2 once more before deregistering on the ledger's word.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use warden::aws::{
    audit::AuditTable, deprecation::Ec2Deprecation, exposure::Ec2Exposure,
    idempotency::IdempotencyTable, ledger::LedgerTable, lineage_table::LineageTable,
    sns::SnsNotifier, Clients,
};
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::{Decision, Keep, Settings};
use warden::event::{parse_value, Grantee};
use warden::exposure::guard::Guard;
use warden::exposure::ledger::{record_sweep, ShareLedger};
use warden::exposure::sweep::sweep as exposure_sweep;
use warden::ids::{AccountId, ImageId, Region};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::exposure::{self as scenario, Share};
use warden_testkit::inbox::Inbox;
use warden_testkit::{estate, recycle_bin, stack};

const ACCOUNT: &str = "123456789012";
const PARTNER: &str = "222233334444";
const REGION: &str = "eu-west-2";

struct World {
    clients: Clients,
    table: String,
    family: String,
}

impl World {
    fn settings(&self, mode: Mode) -> Settings {
        Settings {
            mode,
            deprecate_after_days: 0,
            grace_days: 0,
            keep_latest: 1,
            warn_days: 0,
            in_use_days: 30,
            exempt_tag_key: "ami-warden:exempt".into(),
            family_tag_key: "ami-warden:family".into(),
            protect_newest: false,
            retire_shared_unused: false,
        }
    }

    /// A deprecation sweep a day from now; with the requests it sent, by operation.
    async fn deprecation(
        &self,
        mode: Mode,
    ) -> (BTreeMap<String, Decision>, SweepReport, BTreeMap<String, u64>) {
        let ec2 = Ec2Deprecation::new(&self.clients);
        let (lineage, audit) = (
            LineageTable::from_clients(&self.clients, &self.table),
            AuditTable::new(&self.clients, &self.table),
        );
        let ledger = LedgerTable::new(&self.clients, &self.table);
        let settings = self.settings(mode);
        let enforcer = Enforcer {
            ec2: &ec2,
            lineage: &lineage,
            audit: &audit,
            ledger: &ledger,
            notifier: None::<&SnsNotifier>,
            settings: &settings,
            own_account: AccountId::parse(ACCOUNT),
            stop_by: None,
        };
        let before = self.clients.calls().snapshot();
        let report = enforcer
            .sweep(&Region::parse(REGION).unwrap(), Utc::now() + Duration::days(1))
            .await
            .unwrap();
        let calls =
            self.clients.calls().since(&before).into_iter().map(|((_, op), n)| (op, n)).collect();
        let ours = report
            .planned
            .iter()
            .filter(|p| p.family == self.family)
            .map(|p| (p.name.clone().unwrap(), p.decision.clone()))
            .collect();
        (ours, report, calls)
    }

    /// The exposure sweep, and the ledger it leaves; returns the ledger's writes.
    async fn exposure_sweep(&self) -> usize {
        let ec2 = Ec2Exposure::new(&self.clients);
        let settings = warden::exposure::Settings {
            exempt_tag_key: "ami-warden:exempt".into(),
            ..Default::default()
        };
        let (region, account) =
            (Region::parse(REGION).unwrap(), AccountId::parse(ACCOUNT).unwrap());
        let ledger = LedgerTable::new(&self.clients, &self.table);
        let known = ledger.load(&account, &region).await.unwrap();
        let report =
            exposure_sweep(&ec2, &settings, &region, Some(&known), &|_, _, _| {}).await.unwrap();
        record_sweep(&ledger, &account, &region, &known, &report.shares).await.unwrap()
    }
}

fn asked(calls: &BTreeMap<String, u64>, operation: &str) -> u64 {
    calls.get(operation).copied().unwrap_or(0)
}

fn shared_with_partner() -> Decision {
    Decision::Keep(Keep::SharedWith(vec![Grantee::Account(PARTNER.into())]))
}

#[tokio::test]
async fn the_deprecation_sweep_trusts_the_ledger_only_as_far_as_it_can_and_asks_ec2_before_deregistering(
) {
    recycle_bin::add_template_image_rule(ACCOUNT, REGION).await.unwrap();
    let sdk = stack::sdk_config().await;
    let w = World {
        clients: Clients::new(&sdk),
        table: stack::fresh_lineage_table(&sdk, "ledger").await,
        family: format!("ledger{}", std::process::id()),
    };
    let trail = Trail::new(ACCOUNT, "image-admin");
    let mut ids = BTreeMap::new();
    // Four images of one family, all past their deadline tomorrow; the newest is kept.
    for n in 0..4 {
        let name = format!("{}-{n}", w.family);
        let (image, _) = scenario::register_image(&sdk, REGION, &name).await.unwrap();
        scenario::tag(&sdk, REGION, &image, "ami-warden:family", &w.family).await.unwrap();
        estate::deprecate_at(&sdk, REGION, &image, Utc::now() + Duration::hours(1)).await.unwrap();
        ids.insert(n, (name, image));
    }
    let name = |n: usize| ids[&n].0.clone();
    let image = |n: usize| ids[&n].1.clone();
    scenario::modify_launch_permission(
        &sdk,
        &trail,
        REGION,
        &image(1),
        &[Share::Account(PARTNER.into())],
        &[],
    )
    .await
    .unwrap();

    // No sweep yet: every candidate's permissions are asked of EC2.
    let (plan, report, calls) = w.deprecation(Mode::Report).await;
    let candidates = report
        .planned
        .iter()
        .filter(|p| {
            matches!(p.decision, Decision::Deregister | Decision::Keep(Keep::SharedWith(_)))
        })
        .count();
    assert_eq!(asked(&calls, "DescribeImageAttribute"), candidates as u64);
    assert_eq!(plan[&name(1)], shared_with_partner());

    // After the exposure sweep: the same plan, with no permission asked of EC2.
    assert!(w.exposure_sweep().await >= 1);
    let ledger = LedgerTable::new(&w.clients, &w.table)
        .load(&AccountId::parse(ACCOUNT).unwrap(), &Region::parse(REGION).unwrap())
        .await
        .unwrap();
    assert!(ledger.swept_at.is_some());
    assert_eq!(
        ledger.images[&ImageId::parse(&image(1)).unwrap()].grantees,
        vec![Grantee::Account(PARTNER.into())]
    );
    let (from_ledger, _, calls) = w.deprecation(Mode::Report).await;
    assert_eq!(from_ledger, plan);
    assert_eq!(asked(&calls, "DescribeImageAttribute"), 0);
    assert_eq!(w.exposure_sweep().await, 0, "a sweep that reads the same writes nothing");
    assert_eq!(plan[&name(0)], Decision::Deregister);
    assert_eq!(plan[&name(2)], Decision::Deregister);
    assert!(
        matches!(plan[&name(3)], Decision::Keep(Keep::NewestOfFamily { .. })),
        "{:?}",
        plan[&name(3)]
    );

    // A share whose event has not been handled: the report cannot know of it, but enforcement
    // asks EC2 before deregistering and keeps the image.
    let late = scenario::modify_launch_permission(
        &sdk,
        &trail,
        REGION,
        &image(2),
        &[Share::Account(PARTNER.into())],
        &[],
    )
    .await
    .unwrap();
    let (stale, _, _) = w.deprecation(Mode::Report).await;
    assert_eq!(stale[&name(2)], Decision::Deregister, "the ledger's word, in report mode");
    let (enforced, report, calls) = w.deprecation(Mode::Enforce).await;
    assert_eq!(enforced[&name(2)], shared_with_partner(), "kept at the last check");
    assert_eq!(enforced[&name(0)], Decision::Deregister);
    let gone: Vec<String> = report.deregistered.iter().map(ToString::to_string).collect();
    assert!(
        gone.contains(&image(0)) && !gone.contains(&image(2)) && !gone.contains(&image(1)),
        "{gone:?}"
    );
    let retired_elsewhere = report.deregistered.len() as u64 - 1;
    assert_eq!(
        asked(&calls, "DescribeImageAttribute"),
        2 + retired_elsewhere,
        "one last check per image about to be deregistered (the others came from the ledger)"
    );

    // The guard handles the late event: the ledger stops speaking for that image.
    let inbox = Inbox::create(&sdk, &format!("ledger-{}", std::process::id())).await.unwrap();
    let (ec2, notifier) =
        (Ec2Exposure::new(&w.clients), SnsNotifier::new(&w.clients, &inbox.topic_arn));
    let (idempotency, ledger) =
        (IdempotencyTable::new(&w.clients, &w.table), LedgerTable::new(&w.clients, &w.table));
    let settings = warden::exposure::Settings {
        exempt_tag_key: "ami-warden:exempt".into(),
        ..Default::default()
    };
    let guard = Guard {
        ec2: &ec2,
        notifier: &notifier,
        idempotency: &idempotency,
        ledger: &ledger,
        settings: &settings,
        own_account: AccountId::parse(ACCOUNT),
    };
    guard.handle(&parse_value(&late)).await.unwrap();
    let (after_event, _, calls) = w.deprecation(Mode::Report).await;
    assert_eq!(after_event[&name(2)], shared_with_partner());
    assert_eq!(
        asked(&calls, "DescribeImageAttribute"),
        1,
        "only the changed image is asked of EC2"
    );

    // The next exposure sweep reads it, and the ledger speaks for it again. (A sweep that
    // began within the second of the event's CloudTrail time could not tell whether its reading
    // came after the change, and would leave the image marked; this one begins later.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(w.exposure_sweep().await >= 1);
    let (_, _, calls) = w.deprecation(Mode::Report).await;
    assert_eq!(asked(&calls, "DescribeImageAttribute"), 0);
}

/// Two exposure sweeps overlap (the CLI's during the scheduled one): the one that began first
/// and writes last never deletes or replaces the entry the later one wrote.
#[tokio::test]
async fn a_slower_overlapping_sweep_never_replaces_a_later_reading() {
    let sdk = stack::sdk_config().await;
    let clients = Clients::new(&sdk);
    let table = stack::fresh_lineage_table(&sdk, "ledger-overlap").await;
    let ledger = LedgerTable::new(&clients, &table);
    let (account, region) = (AccountId::parse(ACCOUNT).unwrap(), Region::parse(REGION).unwrap());
    let image = ImageId::parse("ami-0aaaaaaaaaaaaaaa1").unwrap();
    let partner = vec![Grantee::Account(PARTNER.into())];
    let (first, second) = (Utc::now() - Duration::minutes(10), Utc::now() - Duration::minutes(5));
    use warden::exposure::ledger::LedgerWrite;

    // The second sweep read the image shared; the first, which read it before it was shared,
    // writes afterwards: refused.
    ledger
        .apply(
            &account,
            &region,
            second,
            true,
            &[LedgerWrite::Shared { image: image.clone(), grantees: partner.clone() }],
        )
        .await
        .unwrap();
    ledger
        .apply(&account, &region, first, true, &[LedgerWrite::NotShared { image: image.clone() }])
        .await
        .unwrap();
    let known = ledger.load(&account, &region).await.unwrap();
    assert_eq!(
        known.images.get(&image).map(|e| e.grantees.clone()),
        Some(partner.clone()),
        "{known:?}"
    );
    ledger
        .apply(
            &account,
            &region,
            first,
            true,
            &[LedgerWrite::Shared { image: image.clone(), grantees: vec![Grantee::Public] }],
        )
        .await
        .unwrap();
    let known = ledger.load(&account, &region).await.unwrap();
    assert_eq!(
        known.images.get(&image).map(|e| e.grantees.clone()),
        Some(partner.clone()),
        "{known:?}"
    );
    // A later sweep's reading replaces it.
    ledger
        .apply(
            &account,
            &region,
            Utc::now(),
            true,
            &[LedgerWrite::NotShared { image: image.clone() }],
        )
        .await
        .unwrap();
    assert!(!ledger.load(&account, &region).await.unwrap().images.contains_key(&image));
}

async fn share(sdk: &aws_config::SdkConfig, trail: &Trail, image: &str, with: Share) {
    scenario::modify_launch_permission(sdk, trail, "eu-south-2", image, &[with], &[])
        .await
        .unwrap();
}

/// One exposure sweep of `account` in `region` with a weekly full read, recorded in the ledger.
async fn partial_sweep(
    (own, clients): (&Clients, &Clients),
    table: &str,
    account: &AccountId,
    region: &Region,
    full_every_days: i64,
) -> warden::exposure::sweep::SweepReport {
    let settings = warden::exposure::Settings {
        exempt_tag_key: "ami-warden:exempt".into(),
        full_read_every: Duration::days(full_every_days),
        // EC2 gives creation times to the second; the images here are made seconds apart.
        listing_margin: Duration::seconds(1),
        ..Default::default()
    };
    // The ledger is in the central account's table; the images are the member's.
    let ledger = LedgerTable::new(own, table);
    let known = ledger.load(account, region).await.unwrap();
    let ec2 = Ec2Exposure::new(clients);
    let report =
        exposure_sweep(&ec2, &settings, region, Some(&known), &|_, _, _| {}).await.unwrap();
    record_sweep(&ledger, account, region, &known, &report.shares).await.unwrap();
    report
}

fn exposed(report: &warden::exposure::sweep::SweepReport) -> Vec<String> {
    report.exposed_images.iter().map(|i| i.image_id.to_string()).collect()
}

/// Between full reads, the daily sweep reads only the public images, the images an event
/// marked and the new ones; the rest come from the ledger. A share whose event was lost waits
/// for the next full read.
#[tokio::test]
async fn between_full_reads_the_sweep_reads_only_what_may_have_changed() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "partial").await;
    // An account of this run alone, reached through its role, so its estate starts empty.
    let member = format!("5{:05}000001", std::process::id() % 100_000);
    warden_testkit::accounts::create_member_role(&sdk, &member, "AmiWardenMember", ACCOUNT)
        .await
        .unwrap();
    let account = AccountId::parse(&member).unwrap();
    let own = Clients::new(&sdk);
    let clients = warden::aws::org::assume(&own, &account, "AmiWardenMember").await.unwrap();
    let msdk = stack::in_region(clients.sdk_config(), "eu-south-2");
    let region = Region::parse("eu-south-2").unwrap();
    let trail = Trail::new(&member, "image-admin");
    let mut images = Vec::new();
    for name in ["private", "partner", "public"] {
        images.push(scenario::register_image(&msdk, "eu-south-2", name).await.unwrap().0);
    }
    share(&msdk, &trail, &images[1], Share::Account(PARTNER.into())).await;
    share(&msdk, &trail, &images[2], Share::All).await;

    // The first sweep begins more than the listing margin after the images were made.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let first = partial_sweep((&own, &clients), &table, &account, &region, 7).await;
    assert!(first.full_read, "no ledger yet: every image is read");
    assert_eq!(first.permissions_read, 3);
    let mut expected = vec![images[1].clone(), images[2].clone()];
    expected.sort();
    assert_eq!(exposed(&first), expected, "sorted by id");

    let before = clients.calls().snapshot();
    let second = partial_sweep((&own, &clients), &table, &account, &region, 7).await;
    let calls = clients.calls().since(&before);
    let reads: u64 =
        calls.iter().filter(|((_, op), _)| op == "DescribeImageAttribute").map(|(_, n)| n).sum();
    assert!(!second.full_read);
    assert_eq!((second.permissions_read, reads), (1, 1), "only the public image is read");
    assert_eq!(exposed(&second), exposed(&first), "the partner share, from the ledger");

    // Shared while no event reached the guard: not seen until the next full read...
    share(&msdk, &trail, &images[0], Share::Account(PARTNER.into())).await;
    let lost = partial_sweep((&own, &clients), &table, &account, &region, 7).await;
    assert!(!exposed(&lost).contains(&images[0]));
    // ...but as soon as an event marks it, it is read and reported.
    let at = warden::ids::ImageRef::new(region.clone(), ImageId::parse(&images[0]).unwrap());
    // The event's time: CloudTrail's, a few seconds before the guard marks it.
    let event_time = Utc::now() - Duration::seconds(3);
    LedgerTable::new(&own, &table).mark_changed(&account, &at, event_time).await.unwrap();
    let marked = partial_sweep((&own, &clients), &table, &account, &region, 7).await;
    assert_eq!(marked.permissions_read, 2, "the marked image and the public one");
    assert!(exposed(&marked).contains(&images[0]));

    let new = scenario::register_image(&msdk, "eu-south-2", "new").await.unwrap().0;
    let after_new = partial_sweep((&own, &clients), &table, &account, &region, 7).await;
    assert_eq!(after_new.permissions_read, 2, "the new image and the public one");
    let full = partial_sweep((&own, &clients), &table, &account, &region, 0).await;
    assert!(full.full_read);
    assert_eq!(full.permissions_read, 4);
    assert!(!exposed(&full).contains(&new));
    assert_eq!(exposed(&full), exposed(&marked));
}

/// A snapshot sweep notes itself with its readings (or alone when it read none), and the note
/// is read back with them: the next run of a large region then knows it was swept.
#[tokio::test]
async fn a_snapshot_sweep_noted_with_its_readings_is_read_back() {
    let sdk = stack::sdk_config().await;
    let table = stack::fresh_lineage_table(&sdk, "snapshot-swept").await;
    let ledger = LedgerTable::new(&Clients::new(&sdk), &table);
    let (account, region) = (AccountId::parse(ACCOUNT).unwrap(), Region::parse(REGION).unwrap());
    let at = Utc::now() - Duration::hours(1);
    let snapshot = warden::ids::SnapshotId::parse("snap-0123456789abcdef0").unwrap();

    ledger.record_snapshot_shares(&account, &region, at, &[], false).await.unwrap();
    let nothing = ledger.snapshot_shares(&account, &region).await.unwrap();
    assert_eq!((nothing.swept_at, nothing.read.len()), (None, 0), "no note, no reading");

    let reads = [(snapshot.clone(), vec![Grantee::Account(PARTNER.into())])];
    ledger.record_snapshot_shares(&account, &region, at, &reads, true).await.unwrap();
    let noted = ledger.snapshot_shares(&account, &region).await.unwrap();
    let to_millis = |t: chrono::DateTime<Utc>| t.timestamp_millis();
    assert_eq!(noted.swept_at.map(to_millis), Some(to_millis(at)));
    assert_eq!(noted.shares_of(&snapshot, Utc::now()), Some(reads[0].1.clone()));
}
