//! `PROTECT_NEWEST` through the enforcer's shell, against the in-memory fakes: enforce mode
//! marks and protects each family's newest images and takes off only the protection it gave;
//! report mode lists the same steps and changes nothing; a refused step is reported, and the
//! mark never stays on an image AMI Warden did not protect. No local stack.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use warden::config::Mode;
use warden::deprecation::protect::{ProtectionChange, PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
use warden::deprecation::run::{Enforcer, SweepReport};
use warden::deprecation::{DeregistrationProtection, ImageFacts, Settings};
use warden::ids::{AccountId, ImageId, Region};
use warden_testkit::fakes::{FakeImages, FakeLedger, FakeLineage, FakeNotifier, ImageCall};

const OWN: &str = "123456789012";

fn region() -> Region {
    Region::parse("eu-west-1").unwrap()
}

fn id(n: u32) -> ImageId {
    ImageId::parse(&format!("ami-{n:017}")).unwrap()
}

fn settings(mode: Mode, protect_newest: bool) -> Settings {
    Settings { protect_newest, ..warden_testkit::settings::deprecation_settings(mode) }
}

/// Image `n` of family `web`, `n` days old (a higher `n` is older), with a deadline far away.
fn web(n: u32, now: DateTime<Utc>) -> ImageFacts {
    ImageFacts {
        image_id: id(n),
        name: Some(format!("web-{n}")),
        owner: AccountId::parse(OWN),
        created: Some(now - Duration::days(i64::from(n))),
        deprecation: Some(now + Duration::days(300)),
        last_launched: None,
        state: "available".into(),
        tags: BTreeMap::new(),
        snapshots: Vec::new(),
        root_device_type: "ebs".into(),
        deregistration_protection: DeregistrationProtection::Disabled,
    }
}

/// Protected by AMI Warden on an earlier sweep.
fn protected_earlier(mut image: ImageFacts) -> ImageFacts {
    image.tags.insert(PROTECTED_TAG_KEY.into(), PROTECTED_TAG_VALUE.into());
    image.deregistration_protection = DeregistrationProtection::EnabledWithCooldown;
    image
}

async fn sweep(
    ec2: &FakeImages,
    lineage: &FakeLineage,
    notifier: &FakeNotifier,
    settings: &Settings,
    now: DateTime<Utc>,
) -> SweepReport {
    let enforcer = Enforcer {
        ec2,
        lineage,
        audit: lineage,
        ledger: &FakeLedger,
        notifier: Some(notifier),
        settings,
        own_account: AccountId::parse(OWN),
        stop_by: None,
    };
    enforcer.sweep(&region(), now).await.expect("the sweep runs")
}

fn tagged(ec2: &FakeImages, image: &ImageId) -> bool {
    ec2.tags(image).expect("registered").contains_key(PROTECTED_TAG_KEY)
}

#[tokio::test]
async fn enforce_mode_protects_the_newest_and_unprotects_only_what_it_protected() {
    let now = Utc::now();
    let (ec2, lineage, notifier) = (FakeImages::new(), FakeLineage::new(), FakeNotifier::default());
    ec2.add(web(1, now)); // newest: to protect
    ec2.add(protected_earlier(web(2, now))); // newest, protected already: nothing
    ec2.add(protected_earlier(web(3, now))); // left the newest two: unprotected
    let mut theirs = web(4, now);
    theirs.deregistration_protection = DeregistrationProtection::EnabledWithCooldown;
    ec2.add(theirs); // someone else's protection: never touched

    let report = sweep(&ec2, &lineage, &notifier, &settings(Mode::Enforce, true), now).await;

    let planned: Vec<(ImageId, ProtectionChange)> =
        report.protection.iter().map(|s| (s.image_id.clone(), s.change)).collect();
    assert_eq!(planned, [(id(1), ProtectionChange::Protect), (id(3), ProtectionChange::Unprotect)]);
    assert_eq!(report.protection_done, [id(1), id(3)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        ec2.actions(),
        [
            ImageCall::MarkProtected(id(1)),
            ImageCall::EnableProtection(id(1)),
            ImageCall::DisableProtection(id(3)),
            ImageCall::UnmarkProtected(id(3)),
        ],
        "tagged before enabled; disabled before untagged; image 4 never touched"
    );
    assert_eq!(ec2.protection(&id(1)), Some(DeregistrationProtection::EnabledWithCooldown));
    assert!(tagged(&ec2, &id(1)) && !tagged(&ec2, &id(3)));
    assert!(
        matches!(ec2.protection(&id(3)), Some(DeregistrationProtection::DisabledAfter(_))),
        "still protected 24 h by the cooldown"
    );
    assert_eq!(ec2.protection(&id(4)), Some(DeregistrationProtection::EnabledWithCooldown));
    let audited: Vec<String> = lineage.actions().into_iter().map(|a| a.action).collect();
    assert!(audited.iter().any(|a| a.starts_with("protected")), "{audited:?}");
    assert!(audited.iter().any(|a| a.starts_with("unprotected")), "{audited:?}");
    let sent = notifier.sent();
    let note = sent.iter().find(|n| n.kind == "deprecation-protection").expect("notified");
    assert!(note.subject.contains("protected 1, unprotected 1"), "{}", note.subject);
    assert!(note.text.contains("protected: ") && note.text.contains("unprotected: "));

    // The next sweep finds nothing to do.
    let again = sweep(&ec2, &lineage, &notifier, &settings(Mode::Enforce, true), now).await;
    assert!(again.protection.is_empty(), "{:?}", again.protection);
}

#[tokio::test]
async fn report_mode_lists_the_steps_and_changes_nothing() {
    let now = Utc::now();
    let (ec2, lineage, notifier) = (FakeImages::new(), FakeLineage::new(), FakeNotifier::default());
    ec2.add(web(1, now));
    ec2.add(protected_earlier(web(3, now)));
    ec2.add(web(2, now));

    let report = sweep(&ec2, &lineage, &notifier, &settings(Mode::Report, true), now).await;

    assert_eq!(report.protection.len(), 3, "{:?}", report.protection);
    assert!(report.protection_done.is_empty());
    assert!(ec2.actions().is_empty(), "{:?}", ec2.actions());
    let sent = notifier.sent();
    let note = sent.iter().find(|n| n.kind == "deprecation-protection").expect("notified");
    assert!(note.subject.contains("would protect 2, unprotect 1"), "{}", note.subject);
    assert!(note.text.contains("would unprotect: "), "{}", note.text);
}

#[tokio::test]
async fn without_protect_newest_nothing_is_planned_or_done() {
    let now = Utc::now();
    let (ec2, lineage, notifier) = (FakeImages::new(), FakeLineage::new(), FakeNotifier::default());
    ec2.add(web(1, now));
    ec2.add(protected_earlier(web(3, now)));

    let report = sweep(&ec2, &lineage, &notifier, &settings(Mode::Enforce, false), now).await;

    assert!(report.protection.is_empty());
    assert!(ec2.actions().is_empty());
    assert!(notifier.sent().iter().all(|n| n.kind != "deprecation-protection"));
}

#[tokio::test]
async fn a_refused_protection_is_reported_and_the_mark_taken_off_again() {
    let now = Utc::now();
    let (ec2, lineage, notifier) = (FakeImages::new(), FakeLineage::new(), FakeNotifier::default());
    ec2.add(web(1, now));
    ec2.add(protected_earlier(web(3, now)));
    ec2.add(web(2, now));
    ec2.refuse_protection(&id(1));
    ec2.refuse_protection(&id(3));

    let report = sweep(&ec2, &lineage, &notifier, &settings(Mode::Enforce, true), now).await;

    assert_eq!(report.protection_done, [id(2)]);
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(report
        .errors
        .iter()
        .any(|e| e.contains(&id(1).to_string()) && e.contains("not protected")));
    assert!(report
        .errors
        .iter()
        .any(|e| e.contains(&id(3).to_string()) && e.contains("still protected")));
    assert!(!tagged(&ec2, &id(1)), "no mark on an image AMI Warden did not protect");
    assert!(tagged(&ec2, &id(3)), "still its protection, still marked: the next sweep retries");
    let sent = notifier.sent();
    let note = sent.iter().find(|n| n.kind == "deprecation-protection").expect("notified");
    assert!(note.text.contains("failed: "), "{}", note.text);
}
