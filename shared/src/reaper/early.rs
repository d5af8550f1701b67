//! Which snapshots' shares the daily sweep reads before its image listing ends.
//!
//! A snapshot is a lead (perhaps orphaned) only once the whole image listing shows that its
//! description's image is gone. At 10,000 images that listing takes a dozen seconds, and on a
//! first run each lead's shares must then be read from EC2, a thousand at
//! DescribeSnapshotAttribute's 20 a second. Reading the likely leads' shares while the listing
//! goes on costs one wasted read for each wrong guess, never a check: the listing still decides
//! which snapshots are leads, and only the leads' readings are used and recorded.
//!
//! The guess on a large region's first run asks EC2 which named images exist, by id; a small
//! region (one listing page) and a region swept lately ask nothing more than before.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{image_in_description, SnapshotInfo};
use crate::exposure::ledger::{SnapshotShares, SNAPSHOT_MAX_AGE};
use crate::ids::{ImageId, SnapshotId};

/// The most image ids one request names: EC2 refuses 200 filter values or more
/// (`FilterLimitExceeded`).
pub const IDS_PER_REQUEST: usize = 190;

/// The most images a run asks EC2 about by id (50 requests): the guess must not take more of
/// DescribeImages' bucket (100) than the listing leaves.
pub const GUESS_IMAGES: usize = 50 * IDS_PER_REQUEST;

/// The requests about images in flight.
pub const GUESSES_AT_ONCE: usize = 8;

/// Below this many named images the listing is one page, about a second: a guess would gain
/// nothing and cost a request.
pub const GUESS_FROM: usize = 1_000;

/// A snapshot whose shares a lead would need: its description names an image outside the
/// Recycle Bin, and the ledger holds no reading of it that is still good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unread {
    pub snapshot: SnapshotId,
    pub image: ImageId,
    /// The ledger read it before (so it was a lead then): its reading is only too old.
    pub read_before: bool,
}

/// Whether the region's snapshots name [`GUESS_FROM`] images or more outside the Recycle Bin:
/// only then is anything read before the listing ends.
pub fn large(snapshots: &[SnapshotInfo], in_bin: &BTreeSet<ImageId>) -> bool {
    let named = snapshots.iter().filter_map(|s| image_in_description(&s.description));
    let images: BTreeSet<ImageId> = named.filter(|image| !in_bin.contains(image)).collect();
    images.len() >= GUESS_FROM
}

/// The snapshots whose shares are unknown, in the listing's order.
pub fn unread(
    snapshots: &[SnapshotInfo],
    in_bin: &BTreeSet<ImageId>,
    ledger: &SnapshotShares,
    now: DateTime<Utc>,
) -> Vec<Unread> {
    snapshots
        .iter()
        .filter_map(|s| {
            let image = image_in_description(&s.description)?;
            let unknown = ledger.shares_of(&s.snapshot_id, now).is_none();
            (unknown && !in_bin.contains(&image)).then(|| Unread {
                snapshot: s.snapshot_id.clone(),
                read_before: ledger.read.contains_key(&s.snapshot_id),
                image,
            })
        })
        .collect()
}

/// What to do before the listing ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Snapshots to read now.
    pub read: Vec<SnapshotId>,
    /// Images to ask EC2 about by id; the snapshots of those it does not find are read too.
    pub ask: Vec<ImageId>,
    /// The region is large enough for its sweep to be noted, so that the next runs know it
    /// was swept.
    pub note_sweep: bool,
}

/// In a large region (at least [`GUESS_FROM`] named images) that no sweep noted within the
/// readings' lifetime, EC2 is asked which of the named images exist. Otherwise the day's new
/// leads are few: only the leads whose readings aged are read early (an image id never comes
/// back, so they are leads still).
pub fn plan(unread: &[Unread], ledger: &SnapshotShares, now: DateTime<Utc>) -> Plan {
    let images: BTreeSet<&ImageId> = unread.iter().map(|u| &u.image).collect();
    let large = images.len() >= GUESS_FROM;
    let swept = ledger.swept_at.is_some_and(|at| now - at <= SNAPSHOT_MAX_AGE);
    if large && !swept {
        let ask = images.into_iter().take(GUESS_IMAGES).cloned().collect();
        return Plan { read: Vec::new(), ask, note_sweep: true };
    }
    let read = unread.iter().filter(|u| u.read_before).map(|u| u.snapshot.clone()).collect();
    Plan { read, ask: Vec::new(), note_sweep: large }
}

/// The snapshots whose image was asked about and not found.
pub fn gone(unread: &[Unread], asked: &[ImageId], found: &BTreeSet<ImageId>) -> Vec<SnapshotId> {
    let asked: BTreeSet<&ImageId> = asked.iter().collect();
    unread
        .iter()
        .filter(|u| asked.contains(&u.image) && !found.contains(&u.image))
        .map(|u| u.snapshot.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn snapshot(n: u32, description: &str) -> SnapshotInfo {
        SnapshotInfo {
            snapshot_id: SnapshotId::parse(&format!("snap-{n:017x}")).unwrap(),
            owner: None,
            size_gib: 8,
            started: None,
            description: description.to_owned(),
            tags: Default::default(),
        }
    }

    fn image(n: u32) -> ImageId {
        ImageId::parse(&format!("ami-{n:017x}")).unwrap()
    }

    fn made_for(n: u32) -> SnapshotInfo {
        snapshot(n, &format!("Created by CreateImage(i-0123456789abcdef0) for {}", image(n)))
    }

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_snapshots_named_for_an_image_outside_the_bin_and_unread_count() {
        let snapshots = [made_for(1), made_for(2), made_for(3), snapshot(4, "by hand")];
        let in_bin = BTreeSet::from([image(2)]);
        let mut ledger = SnapshotShares::default();
        ledger.read.insert(made_for(3).snapshot_id, (Vec::new(), now() - Duration::hours(1)));

        let unread = unread(&snapshots, &in_bin, &ledger, now());

        assert_eq!(
            unread,
            [Unread { snapshot: made_for(1).snapshot_id, image: image(1), read_before: false }]
        );
    }

    /// A large region: [`GUESS_FROM`] snapshots, each made for its own image.
    fn large() -> Vec<SnapshotInfo> {
        (1..=GUESS_FROM as u32).map(made_for).collect()
    }

    #[test]
    fn a_large_regions_first_run_asks_about_each_named_image_once_and_reads_those_gone() {
        let mut snapshots = large();
        snapshots.push(snapshot(0, &made_for(2).description));
        let ledger = SnapshotShares::default();
        let unread = unread(&snapshots, &BTreeSet::new(), &ledger, now());

        let plan = plan(&unread, &ledger, now());

        let images: Vec<ImageId> = (1..=GUESS_FROM as u32).map(image).collect();
        assert_eq!((plan.read.len(), &plan.ask, plan.note_sweep), (0, &images, true));
        let found: BTreeSet<ImageId> = images[2..].iter().cloned().collect();
        let gone = gone(&unread, &plan.ask, &found);
        let expected = [made_for(1), made_for(2), snapshot(0, "")].map(|s| s.snapshot_id);
        assert_eq!(gone, expected);
    }

    #[test]
    fn a_region_is_large_from_a_thousand_named_images_outside_the_bin() {
        let snapshots = large();
        assert!(super::large(&snapshots, &BTreeSet::new()));
        let in_bin = BTreeSet::from([image(1)]);
        assert!(!super::large(&snapshots, &in_bin), "one of them in the bin");
        assert!(!super::large(&snapshots[1..], &BTreeSet::new()));
    }

    #[test]
    fn a_small_region_asks_nothing_and_notes_nothing() {
        let snapshots = [made_for(1), made_for(2)];
        let ledger = SnapshotShares::default();
        let unread = unread(&snapshots, &BTreeSet::new(), &ledger, now());

        assert_eq!(plan(&unread, &ledger, now()), Plan::default());
    }

    #[test]
    fn a_large_region_swept_lately_reads_early_only_the_leads_whose_readings_aged() {
        let snapshots = large();
        let mut ledger =
            SnapshotShares { swept_at: Some(now() - Duration::days(1)), ..Default::default() };
        ledger.read.insert(made_for(1).snapshot_id, (Vec::new(), now() - Duration::days(30)));
        let unread = unread(&snapshots, &BTreeSet::new(), &ledger, now());

        let plan = plan(&unread, &ledger, now());

        let expected =
            Plan { read: vec![made_for(1).snapshot_id], ask: Vec::new(), note_sweep: true };
        assert_eq!(plan, expected);
    }

    #[test]
    fn a_sweep_noted_longer_ago_than_the_readings_last_is_a_first_run_again() {
        let snapshots = large();
        let ledger =
            SnapshotShares { swept_at: Some(now() - Duration::days(8)), ..Default::default() };
        let unread = unread(&snapshots, &BTreeSet::new(), &ledger, now());

        assert_eq!(plan(&unread, &ledger, now()).ask.len(), GUESS_FROM);
    }

    #[test]
    fn a_first_run_asks_about_at_most_the_guess_limit() {
        let snapshots: Vec<SnapshotInfo> = (1..=GUESS_IMAGES as u32 + 5).map(made_for).collect();
        let ledger = SnapshotShares::default();
        let unread = unread(&snapshots, &BTreeSet::new(), &ledger, now());

        let plan = plan(&unread, &ledger, now());

        assert_eq!(plan.ask.len(), GUESS_IMAGES);
        let gone = gone(&unread, &plan.ask, &BTreeSet::new());
        assert_eq!(gone.len(), GUESS_IMAGES, "the rest wait for the listing");
    }
}
