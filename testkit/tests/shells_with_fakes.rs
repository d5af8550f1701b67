//! The enforcer's and the reaper's shells against in-memory fakes ([`warden_testkit::fakes`]):
//! the branches the local stack cannot provoke at will — the run's time running out before the
//! first action or between two, EC2 refusing an action, the answer to a refused deregistration
//! lost — and report mode. No local stack: each test runs in milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use warden::config::Mode;
use warden::deprecation::run::{Enforcer, SweepReport, BATCHES_AT_ONCE, LAST_CHECK_BATCH};
use warden::deprecation::{DeregistrationProtection, ImageFacts, Settings, RETIRED_TAG_KEY};
use warden::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use warden::reaper::early::GUESS_FROM;
use warden::reaper::run::{Action, Reaper, RunReport, ACTION_CONCURRENCY};
use warden::reaper::{SnapshotInfo, REAPED_TAG_KEY};
use warden_testkit::fakes::{
    AfterRefusal, FakeClaims, FakeImages, FakeLedger, FakeLineage, FakeNotifier, FakeSnapshots,
    ImageCall, SnapshotCall,
};

const OWN: &str = "123456789012";
const REGION: &str = "eu-west-1";
/// How long a run may go on in the tests where time runs out during the first action: ample
/// for planning in memory, short enough for a fast test.
const BUDGET: StdDuration = StdDuration::from_millis(300);

fn region() -> Region {
    Region::parse(REGION).unwrap()
}

fn image_id(n: u32) -> ImageId {
    ImageId::parse(&format!("ami-{n:017}")).unwrap()
}

fn snapshot_id(n: u32) -> SnapshotId {
    SnapshotId::parse(&format!("snap-{n:017}")).unwrap()
}

// ---- the deprecation enforcer ----

fn enforcer_settings(mode: Mode) -> Settings {
    Settings { keep_latest: 0, ..warden_testkit::settings::deprecation_settings(mode) }
}

/// An image of this account, 200 days old, whose deadline passed 100 days ago: due.
fn due_image(n: u32, now: DateTime<Utc>) -> ImageFacts {
    ImageFacts {
        image_id: image_id(n),
        name: Some(format!("web-{n}")),
        owner: AccountId::parse(OWN),
        created: Some(now - Duration::days(200)),
        deprecation: Some(now - Duration::days(100)),
        last_launched: None,
        state: "available".into(),
        tags: BTreeMap::new(),
        snapshots: vec![snapshot_id(n)],
        root_device_type: "ebs".into(),
        deregistration_protection: DeregistrationProtection::Disabled,
    }
}

/// A new image of this account without a deadline: one to stamp.
fn new_image(n: u32, now: DateTime<Utc>) -> ImageFacts {
    ImageFacts { created: Some(now), deprecation: None, ..due_image(n, now) }
}

struct EnforcerWorld {
    ec2: FakeImages,
    lineage: FakeLineage,
    settings: Settings,
    now: DateTime<Utc>,
}

impl EnforcerWorld {
    fn new(mode: Mode) -> Self {
        Self {
            ec2: FakeImages::new(),
            lineage: FakeLineage::new(),
            settings: enforcer_settings(mode),
            now: Utc::now(),
        }
    }

    async fn sweep(&self, stop_by: Option<Instant>) -> SweepReport {
        let enforcer = Enforcer {
            ec2: &self.ec2,
            lineage: &self.lineage,
            audit: &self.lineage,
            ledger: &FakeLedger,
            notifier: None::<&FakeNotifier>,
            settings: &self.settings,
            own_account: AccountId::parse(OWN),
            stop_by,
        };
        enforcer.sweep(&region(), self.now).await.expect("the sweep runs")
    }

    fn tagged_retired(&self, image: &ImageId) -> bool {
        self.ec2.tags(image).expect("registered").contains_key(RETIRED_TAG_KEY)
    }

    fn audited(&self) -> Vec<String> {
        self.lineage.actions().into_iter().map(|a| a.action).collect()
    }
}

#[tokio::test]
async fn enforcer_out_of_time_before_the_first_retirement_touches_nothing() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.add(due_image(2, w.now));
    w.ec2.add(new_image(3, w.now));

    let report = w.sweep(Some(Instant::now())).await;

    assert!(w.ec2.actions().is_empty(), "no tag, deregistration or deadline");
    assert_eq!(report.retirements_left, [image_id(1), image_id(2)]);
    assert_eq!(report.stamps_left, [image_id(3)]);
    assert!(report.deregistered.is_empty() && report.stamped.is_empty(), "{report:#?}");
    assert_eq!(report.to_deregister().count(), 2, "both stay due in the plan");
    assert!(w.ec2.registered(&image_id(1)) && w.ec2.registered(&image_id(2)));
}

#[tokio::test]
async fn enforcer_out_of_time_during_the_first_retirements_leaves_the_rest_untouched() {
    let w = EnforcerWorld::new(Mode::Enforce);
    // As many due as are retired at once, and two more.
    let in_flight = (LAST_CHECK_BATCH * BATCHES_AT_ONCE) as u32;
    for n in 1..=in_flight + 2 {
        w.ec2.add(due_image(n, w.now));
    }
    let stop_by = Instant::now() + BUDGET;
    w.ec2.slow_deregistrations(stop_by);

    let report = w.sweep(Some(stop_by)).await;

    let under_way: Vec<ImageId> = (1..=in_flight).map(image_id).collect();
    let rest = [image_id(in_flight + 1), image_id(in_flight + 2)];
    let mut deregistered = report.deregistered.clone();
    deregistered.sort();
    assert_eq!(deregistered, under_way, "those under way finish");
    assert_eq!(report.retirements_left, rest);
    for image in &rest {
        assert!(w.ec2.registered(image) && !w.tagged_retired(image), "{image} untouched");
        let touched = w.ec2.actions().iter().any(
            |a| matches!(a, ImageCall::MarkRetired(i) | ImageCall::Deregister(i) if i == image),
        );
        assert!(!touched, "{image} is neither tagged nor deregistered");
    }
}

#[tokio::test]
async fn a_deregistration_whose_answer_was_lost_but_happened_counts_as_done() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.refuse_deregistration(&image_id(1), AfterRefusal::Gone);

    let report = w.sweep(None).await;

    assert_eq!(report.deregistered, [image_id(1)], "{report:#?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!w.ec2.actions().contains(&ImageCall::UnmarkRetired(image_id(1))), "nothing to untag");
    assert_eq!(w.audited(), ["deregistered (restorable from the Recycle Bin)"]);
    let states = w.lineage.states();
    assert_eq!(states.len(), 1, "the deregistration is on the lineage node");
    assert_eq!(states[0].snapshots, [snapshot_id(1)]);
}

#[tokio::test]
async fn a_refused_deregistration_of_an_image_still_there_takes_the_tag_off_again() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.refuse_deregistration(&image_id(1), AfterRefusal::StillThere);

    let report = w.sweep(None).await;

    assert!(report.deregistered.is_empty(), "{report:#?}");
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].starts_with(&format!("deregistering {}: ", image_id(1))));
    assert!(report.errors[0].contains("refused"), "AWS's error: {:?}", report.errors);
    assert_eq!(
        w.ec2.actions(),
        [
            ImageCall::MarkRetired(image_id(1)),
            ImageCall::Deregister(image_id(1)),
            ImageCall::UnmarkRetired(image_id(1)),
        ]
    );
    assert!(!w.tagged_retired(&image_id(1)), "untagged again: no longer deregistrable");
    assert!(w.audited()[0].starts_with("failed: "), "{:?}", w.audited());
    assert!(w.lineage.states().is_empty(), "no deregistration on the lineage node");
}

#[tokio::test]
async fn a_refused_deregistration_whose_tag_cannot_come_off_says_so() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.refuse_deregistration(&image_id(1), AfterRefusal::StillThere);
    w.ec2.refuse_untagging();

    let report = w.sweep(None).await;

    assert!(
        report.errors[0].contains(&format!("the {RETIRED_TAG_KEY} tag could not be removed")),
        "{:?}",
        report.errors
    );
}

#[tokio::test]
async fn a_refused_deregistration_whose_outcome_is_unknown_leaves_the_tag() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.refuse_deregistration(&image_id(1), AfterRefusal::Unknown);

    let report = w.sweep(None).await;

    assert!(report.deregistered.is_empty(), "{report:#?}");
    assert!(
        report.errors[0].contains("whether it is still registered is unknown"),
        "{:?}",
        report.errors
    );
    assert!(!w.ec2.actions().contains(&ImageCall::UnmarkRetired(image_id(1))), "not untagged");
    assert!(w.tagged_retired(&image_id(1)), "the tag stays: the image is kept as restored");
}

#[tokio::test]
async fn an_image_that_cannot_be_tagged_is_not_deregistered() {
    let w = EnforcerWorld::new(Mode::Enforce);
    w.ec2.add(due_image(1, w.now));
    w.ec2.refuse_tagging(&image_id(1));

    let report = w.sweep(None).await;

    assert_eq!(w.ec2.actions(), [ImageCall::MarkRetired(image_id(1))], "no deregistration");
    assert!(report.errors[0].starts_with(&format!("tagging {} before deregistering", image_id(1))));
    assert!(w.audited()[0].starts_with("failed: tagging before deregistering"));
}

/// The stamp-in-the-past fix (b77bf6b): a run that planned its deadlines a while ago (its
/// `now` minutes behind the clock, as a request waiting for EC2's bucket would be) still asks
/// for a time ahead when each request is sent; EC2 refuses one in the past.
#[tokio::test]
async fn a_deadline_planned_minutes_ago_is_asked_for_ahead_of_the_clock_not_in_the_past() {
    let mut w = EnforcerWorld::new(Mode::Enforce);
    w.now = Utc::now() - Duration::minutes(10);
    w.settings.deprecate_after_days = 0;
    w.ec2.add(new_image(1, w.now));
    let report = w.sweep(None).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let (image, at) = report.stamped.first().cloned().expect("stamped");
    assert_eq!(image, image_id(1));
    assert!(at > Utc::now(), "asked for {at}: ahead of the clock when sent");
}

#[tokio::test]
async fn enforcer_report_mode_acts_on_nothing() {
    let w = EnforcerWorld::new(Mode::Report);
    w.ec2.add(due_image(1, w.now));
    w.ec2.add(new_image(2, w.now));

    let report = w.sweep(None).await;

    assert!(w.ec2.actions().is_empty(), "no tag, deregistration or deadline");
    assert_eq!(report.mode, Mode::Report);
    assert_eq!(report.to_deregister().count(), 1, "planned");
    assert!(report.deregistered.is_empty());
    assert_eq!(report.stamped.len(), 1, "a deadline to set, listed");
    assert!(w.lineage.actions().is_empty() && w.lineage.states().is_empty());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["mode"], "report", "serialized as before");
}

// ---- the snapshot reaper ----

fn reaper_settings(mode: Mode) -> warden::reaper::Settings {
    warden::reaper::Settings {
        mode,
        min_age_days: 1,
        exempt_tag_key: "ami-warden:exempt".into(),
        price_per_gb_month: 0.05,
    }
}

struct ReaperWorld {
    ec2: FakeSnapshots,
    lineage: FakeLineage,
    claims: FakeClaims,
    settings: warden::reaper::Settings,
}

impl ReaperWorld {
    /// `count` snapshots, each left behind by its own deregistered image that the lineage
    /// recorded: all of them orphans.
    fn with_orphans(mode: Mode, count: u32) -> Self {
        let w = Self {
            ec2: FakeSnapshots::new(),
            lineage: FakeLineage::new(),
            claims: FakeClaims::default(),
            settings: reaper_settings(mode),
        };
        for n in 1..=count {
            w.add_snapshot_of(n);
            w.lineage.add_node(&ImageRef::new(region(), image_id(n)), &[snapshot_id(n)]);
        }
        w
    }

    /// Snapshot `n`, made by CreateImage for image `n` a month ago.
    fn add_snapshot_of(&self, n: u32) {
        self.ec2.add(SnapshotInfo {
            snapshot_id: snapshot_id(n),
            owner: AccountId::parse(OWN),
            size_gib: 8,
            started: Some(Utc::now() - Duration::days(30)),
            description: format!("Created by CreateImage(i-0123456789abcdef0) for {}", image_id(n)),
            tags: BTreeMap::new(),
        });
    }

    async fn sweep(&self, stop_by: Option<Instant>) -> RunReport {
        let reaper = Reaper {
            ec2: &self.ec2,
            lineage: &self.lineage,
            audit: &self.lineage,
            ledger: &FakeLedger,
            idempotency: &self.claims,
            notifier: None::<&FakeNotifier>,
            settings: &self.settings,
            own_account: AccountId::parse(OWN),
            stop_by,
        };
        reaper.sweep(&region(), Utc::now(), &|_, _| {}).await.expect("the sweep runs")
    }

    fn actions_of(report: &RunReport) -> Vec<(SnapshotId, Action)> {
        report.outcomes.iter().map(|o| (o.snapshot_id.clone(), o.action.clone())).collect()
    }
}

#[tokio::test]
async fn a_large_regions_first_sweep_reads_the_likely_orphans_shares_while_the_images_are_listed() {
    let orphans = GUESS_FROM as u32;
    let w = ReaperWorld::with_orphans(Mode::Report, orphans);
    // The image of one more snapshot exists: its shares are not needed.
    let live = orphans + 1;
    w.add_snapshot_of(live);
    w.ec2.add_image(&image_id(live), &[snapshot_id(live)]);
    w.ec2.listing_waits_for_reads(100);

    let report = w.sweep(None).await;

    assert_eq!(report.outcomes.len(), orphans as usize, "{:?}", report.errors);
    let calls = w.ec2.calls();
    let asked: BTreeSet<ImageId> = calls
        .iter()
        .filter_map(|c| match c {
            SnapshotCall::OwnedAmong(images) => Some(images.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(asked, (1..=live).map(image_id).collect(), "each named image asked about");
    let mut reads: Vec<SnapshotId> = calls
        .iter()
        .filter_map(|c| match c {
            SnapshotCall::CreateVolumePermissions(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    reads.sort();
    let each_orphan_once: Vec<SnapshotId> = (1..=orphans).map(snapshot_id).collect();
    assert_eq!(reads, each_orphan_once, "none after the listing, none of the live image's");
}

#[tokio::test]
async fn reaper_out_of_time_before_the_first_deletion_touches_nothing() {
    let w = ReaperWorld::with_orphans(Mode::Enforce, 2);

    let report = w.sweep(Some(Instant::now())).await;

    assert!(w.ec2.actions().is_empty(), "no tag, no deletion");
    assert_eq!(
        ReaperWorld::actions_of(&report),
        [(snapshot_id(1), Action::LeftForNextRun), (snapshot_id(2), Action::LeftForNextRun)]
    );
}

#[tokio::test]
async fn reaper_out_of_time_during_the_first_deletions_leaves_the_rest_untouched() {
    // As many as are carried out at once, and two more.
    let in_flight = ACTION_CONCURRENCY as u32;
    let w = ReaperWorld::with_orphans(Mode::Enforce, in_flight + 2);
    let stop_by = Instant::now() + BUDGET;
    w.ec2.slow_deletes(stop_by);

    let report = w.sweep(Some(stop_by)).await;

    let actions = ReaperWorld::actions_of(&report);
    let deleted: Vec<_> = (1..=in_flight).map(|n| (snapshot_id(n), Action::Deleted)).collect();
    assert_eq!(actions[..in_flight as usize], deleted[..], "those under way finish");
    let rest = [in_flight + 1, in_flight + 2].map(snapshot_id);
    for (snapshot, action) in &actions[in_flight as usize..] {
        assert!(rest.contains(snapshot) && *action == Action::LeftForNextRun, "{actions:?}");
    }
    for snapshot in &rest {
        let touched = w.ec2.actions().iter().any(
            |a| matches!(a, SnapshotCall::MarkReaped(s) | SnapshotCall::Delete(s) if s == snapshot),
        );
        assert!(!touched, "{snapshot} is neither tagged nor deleted");
        assert_eq!(w.ec2.tags(snapshot), Some(BTreeMap::new()), "there, and untagged");
    }
}

#[tokio::test]
async fn a_refused_deletion_takes_the_reaped_tag_off_again() {
    let w = ReaperWorld::with_orphans(Mode::Enforce, 1);
    w.ec2.refuse_delete(&snapshot_id(1), "InvalidSnapshot.InUse");

    let report = w.sweep(None).await;

    let action = &report.outcomes[0].action;
    assert!(
        matches!(action, Action::Failed(e) if e.starts_with("InvalidSnapshot.InUse")),
        "{action:?}"
    );
    assert_eq!(
        w.ec2.actions(),
        [
            SnapshotCall::MarkReaped(snapshot_id(1)),
            SnapshotCall::Delete(snapshot_id(1)),
            SnapshotCall::UnmarkReaped(snapshot_id(1)),
        ]
    );
    let tags = w.ec2.tags(&snapshot_id(1)).expect("still there");
    assert!(!tags.contains_key(REAPED_TAG_KEY), "untagged again: {tags:?}");
    assert!(report.errors.iter().any(|e| e.starts_with(&format!("deleting {}", snapshot_id(1)))));
}

#[tokio::test]
async fn a_refused_deletion_whose_tag_cannot_come_off_says_so() {
    let w = ReaperWorld::with_orphans(Mode::Enforce, 1);
    w.ec2.refuse_delete(&snapshot_id(1), "InvalidSnapshot.InUse");
    w.ec2.refuse_untagging();

    let report = w.sweep(None).await;

    assert!(
        matches!(&report.outcomes[0].action, Action::Failed(e)
            if e.contains(&format!("the {REAPED_TAG_KEY} tag could not be removed"))),
        "{:?}",
        report.outcomes[0].action
    );
}

#[tokio::test]
async fn reaper_report_mode_acts_on_nothing() {
    let w = ReaperWorld::with_orphans(Mode::Report, 2);

    let report = w.sweep(None).await;

    assert!(w.ec2.actions().is_empty(), "no tag, no deletion");
    assert_eq!(
        ReaperWorld::actions_of(&report),
        [(snapshot_id(1), Action::Planned), (snapshot_id(2), Action::Planned)]
    );
    assert!(w.lineage.fates().is_empty(), "a plan is not a fate");
    assert!(w.lineage.decisions().iter().all(|d| d.mode == "report"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["mode"], "report", "serialized as before");
}

#[tokio::test]
async fn reaper_enforce_mode_deletes_orphans_and_says_so_in_its_report() {
    let w = ReaperWorld::with_orphans(Mode::Enforce, 1);

    let report = w.sweep(None).await;

    assert_eq!(ReaperWorld::actions_of(&report), [(snapshot_id(1), Action::Deleted)]);
    assert_eq!(w.ec2.tags(&snapshot_id(1)), None, "deleted");
    assert_eq!(serde_json::to_value(&report).unwrap()["mode"], "enforce");
    let text = warden::reaper::run::report_notification(&report).text;
    assert!(text.starts_with("Run sweep:") && text.contains(" in enforce mode."), "{text}");
}
