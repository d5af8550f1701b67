//! The share ledger: which owned images are shared, as the daily exposure sweep read them, and
//! which have had their launch permissions changed since.
//!
//! The exposure sweep asks DescribeImageAttribute of every owned image anyway. The deprecation
//! sweep must know the launch permissions of every image it would retire, and AWS answers that
//! only one image a request. So the exposure sweep writes down what it read ([`reconcile`]),
//! the exposure guard marks each image whose launch permissions an event changes, and the
//! deprecation sweep reads the ledger in one query ([`Ledger::shares_of`]).
//!
//! The ledger is trusted only where it cannot be stale through anything AMI Warden saw: the
//! sweep is at most [`MAX_AGE`] old, the image existed when it ran, and no event has changed
//! the image's permissions since. Anything else is asked of EC2. What it cannot see is a change
//! whose event has not arrived yet; so before deregistering an image on the ledger's word, the
//! enforcer asks EC2 once more.
//!
//! The ledger also lets the daily sweep read less ([`images_to_read`]). Between two full reads
//! (every image's launch permissions, at most [`Settings::full_read_every`] apart, weekly by
//! default), a sweep reads only what may have changed: the images an event marked, the images
//! made since the last sweep began, and the images the listing says are public (so a public
//! image is found within a day even if its event was lost). The other images' shares are the
//! ledger's, kept current by the events. A share whose event was lost is found by the next
//! full read; the enforcer asks EC2 before acting in any case.
//!
//! Snapshots have a record of their own ([`SnapshotShares`]): no sweep reads every snapshot's
//! create-volume permissions, so the reaper's sweep records what it read of each, snapshot by
//! snapshot, and trusts a reading for [`SNAPSHOT_MAX_AGE`] unless an event changed the
//! snapshot's permissions since. The reaper asks EC2 once more before deleting.
//!
//! Pure: the adapter is [`crate::aws::ledger::LedgerTable`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::{OwnedImage, Settings};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::StoreError;

/// How precise a CloudTrail `eventTime` is (to the second): an event marked at second `s`
/// may have happened at any time up to `s` plus this.
pub const EVENT_TIME_PRECISION: Duration = Duration::seconds(1);

/// How old a sweep the deprecation sweep trusts: the exposure sweep runs daily, so two days
/// allow for one missed run.
pub const MAX_AGE: Duration = Duration::hours(48);

/// One account's and region's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// When the last complete exposure sweep started listing; `None` if none ever wrote.
    pub swept_at: Option<DateTime<Utc>>,
    /// When the last sweep that read every image's launch permissions started.
    pub full_at: Option<DateTime<Utc>>,
    /// The images that are shared or were changed since they were read.
    pub images: BTreeMap<ImageId, Entry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The launch permissions the sweep read (sorted); empty when only a change is known.
    pub grantees: Vec<Grantee>,
    /// When an event changed them (CloudTrail `eventTime`), or a sweep failed to read them.
    pub changed_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// The launch permissions of `image` (created at `created`), if the ledger knows them for
    /// certain at `now`; `None` means "ask EC2".
    pub fn shares_of(
        &self,
        image: &ImageId,
        created: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Vec<Grantee>> {
        let swept = self.swept_at?;
        if now - swept > MAX_AGE {
            return None;
        }
        // An image made after the sweep began may not have been listed by it.
        if created.is_none_or(|c| c >= swept) {
            return None;
        }
        match self.images.get(image) {
            None => Some(Vec::new()),
            Some(entry) if entry.changed_at.is_some() => None,
            Some(entry) => Some(entry.grantees.clone()),
        }
    }
}

/// What one exposure sweep read: when it started listing, every image it listed, and the
/// launch permissions of those it read (`None`: the read failed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharesSeen {
    pub started_at: DateTime<Utc>,
    pub listed: BTreeSet<ImageId>,
    pub images: BTreeMap<ImageId, Option<Vec<Grantee>>>,
    /// Whether it read every listed image (a full read).
    pub full: bool,
}

/// Which images' launch permissions a sweep reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Every listed image: no ledger to trust, or its last full read is too old.
    Full,
    /// Only these; the others' shares are the ledger's.
    Changes(BTreeSet<ImageId>),
}

/// What a sweep at `now` must read, given the ledger (`None`: it could not be loaded).
pub fn images_to_read(
    known: Option<&Ledger>,
    images: &[OwnedImage],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Reading {
    let Some(known) = known else { return Reading::Full };
    let (Some(full_at), Some(swept_at)) = (known.full_at, known.swept_at) else {
        return Reading::Full;
    };
    // A sweep older than the deprecation sweep trusts means days went by unswept: read all.
    // The hour's slack keeps a daily schedule's small drift from skipping a full read's day.
    let due = now - full_at >= settings.full_read_every - Duration::hours(1);
    if due || now - swept_at > MAX_AGE {
        return Reading::Full;
    }
    let listed_for_sure = swept_at - settings.listing_margin;
    let must_read = |image: &OwnedImage| {
        image.public
            || image.created.is_none_or(|c| c >= listed_for_sure)
            || known.images.get(&image.image_id).is_some_and(|e| e.changed_at.is_some())
    };
    Reading::Changes(images.iter().filter(|i| must_read(i)).map(|i| i.image_id.clone()).collect())
}

/// One write that brings the ledger in line with a sweep. The adapter makes each conditional:
/// a change an event recorded after the sweep began is never overwritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerWrite {
    /// The image is shared with these grantees (sorted).
    Shared { image: ImageId, grantees: Vec<Grantee> },
    /// The image is not shared, or no longer exists.
    NotShared { image: ImageId },
    /// Its permissions could not be read: ask EC2 until a sweep reads them.
    Unknown { image: ImageId },
}

/// The writes that make `known` say what `seen` read; nothing for what it already says.
pub fn reconcile(known: &Ledger, seen: &SharesSeen) -> Vec<LedgerWrite> {
    let mut writes = Vec::new();
    for (image, read) in &seen.images {
        let entry = known.images.get(image);
        match read {
            Some(grantees) if !grantees.is_empty() => {
                let mut grantees = grantees.clone();
                grantees.sort();
                grantees.dedup();
                if entry.is_none_or(|e| e.changed_at.is_some() || e.grantees != grantees) {
                    writes.push(LedgerWrite::Shared { image: image.clone(), grantees });
                }
            }
            Some(_) => {
                if entry.is_some() {
                    writes.push(LedgerWrite::NotShared { image: image.clone() });
                }
            }
            None => {
                if entry.is_none_or(|e| e.changed_at.is_none()) {
                    writes.push(LedgerWrite::Unknown { image: image.clone() });
                }
            }
        }
    }
    // Entries of images the sweep no longer lists: deregistered.
    for image in known.images.keys().filter(|i| !seen.listed.contains(*i)) {
        writes.push(LedgerWrite::NotShared { image: image.clone() });
    }
    writes
}

/// Brings the ledger of `account` in `region` (`known`, as loaded before the sweep) in line with
/// what the sweep read: only the writes that change something; returns how many that took.
pub async fn record_sweep(
    ledger: &impl ShareLedger,
    account: &AccountId,
    region: &Region,
    known: &Ledger,
    seen: &SharesSeen,
) -> Result<usize, StoreError> {
    let writes = reconcile(known, seen);
    ledger.apply(account, region, seen.started_at, seen.full, &writes).await?;
    Ok(writes.len())
}

/// A grantee as the ledger stores it.
pub fn encode(grantee: &Grantee) -> String {
    match grantee {
        Grantee::Public => "public".into(),
        Grantee::Group(g) => format!("group:{g}"),
        Grantee::Account(a) => format!("account:{a}"),
        Grantee::Organization(o) => format!("organization:{o}"),
        Grantee::OrganizationalUnit(u) => format!("ou:{u}"),
        Grantee::Unreadable(raw) => format!("unreadable:{raw}"),
    }
}

/// The inverse of [`encode`]; `None` for anything else.
pub fn decode(text: &str) -> Option<Grantee> {
    let (kind, value) = text.split_once(':').unwrap_or((text, ""));
    Some(match (kind, value) {
        ("public", "") => Grantee::Public,
        ("group", g) if !g.is_empty() => Grantee::Group(g.to_owned()),
        ("account", a) if !a.is_empty() => Grantee::Account(a.to_owned()),
        ("organization", o) if !o.is_empty() => Grantee::Organization(o.to_owned()),
        ("ou", u) if !u.is_empty() => Grantee::OrganizationalUnit(u.to_owned()),
        ("unreadable", raw) => Grantee::Unreadable(raw.to_owned()),
        _ => return None,
    })
}

/// How long the reaper trusts a reading of a snapshot's create-volume permissions that no
/// event contradicts; after that it reads again.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::days(7);

/// What the reaper read of snapshots' create-volume permissions, and when; and when an event
/// last changed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotShares {
    pub read: BTreeMap<SnapshotId, (Vec<Grantee>, DateTime<Utc>)>,
    pub changed: BTreeMap<SnapshotId, DateTime<Utc>>,
    /// When a sweep last noted that it read the region's candidates (a large region's, see
    /// [`crate::reaper::early`]).
    pub swept_at: Option<DateTime<Utc>>,
}

impl SnapshotShares {
    /// The permissions of `snapshot` if a reading is at most [`SNAPSHOT_MAX_AGE`] old at `now`
    /// and no event changed them since it was taken; `None` means "ask EC2".
    pub fn shares_of(&self, snapshot: &SnapshotId, now: DateTime<Utc>) -> Option<Vec<Grantee>> {
        let (grantees, at) = self.read.get(snapshot)?;
        // CloudTrail gives an event's time to the second: a change in the second a reading was
        // taken may have come after it.
        let since = |changed: &DateTime<Utc>| *changed + EVENT_TIME_PRECISION > *at;
        if now - *at > SNAPSHOT_MAX_AGE || self.changed.get(snapshot).is_some_and(since) {
            return None;
        }
        Some(grantees.clone())
    }
}

/// Where the ledger is kept (the lineage table).
#[allow(async_fn_in_trait)]
pub trait ShareLedger {
    async fn load(&self, account: &AccountId, region: &Region) -> Result<Ledger, StoreError>;
    /// Applies a sweep's writes, then records the sweep (`started_at`) as the ledger's, and as
    /// its last full read when `full`.
    async fn apply(
        &self,
        account: &AccountId,
        region: &Region,
        started_at: DateTime<Utc>,
        full: bool,
        writes: &[LedgerWrite],
    ) -> Result<(), StoreError>;
    /// An event changed the image's launch permissions at `at`.
    async fn mark_changed(
        &self,
        account: &AccountId,
        image: &ImageRef,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn snapshot_shares(
        &self,
        account: &AccountId,
        region: &Region,
    ) -> Result<SnapshotShares, StoreError>;
    /// Records readings of create-volume permissions taken at (or after) `at`; with `swept`,
    /// also that a sweep of the region read its candidates' permissions then.
    async fn record_snapshot_shares(
        &self,
        account: &AccountId,
        region: &Region,
        at: DateTime<Utc>,
        reads: &[(SnapshotId, Vec<Grantee>)],
        swept: bool,
    ) -> Result<(), StoreError>;
    /// An event changed the snapshot's create-volume permissions at `at`.
    async fn mark_snapshot_changed(
        &self,
        account: &AccountId,
        region: &Region,
        snapshot: &SnapshotId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ImageId {
        ImageId::parse(&format!("ami-{n:017x}")).unwrap()
    }

    fn at(hours_ago: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc)
            - Duration::hours(hours_ago)
    }

    fn partner() -> Grantee {
        Grantee::Account("222233334444".into())
    }

    fn ledger() -> Ledger {
        Ledger {
            swept_at: Some(at(10)),
            full_at: Some(at(10)),
            images: BTreeMap::from([
                (id(1), Entry { grantees: vec![partner()], changed_at: None }),
                (id(2), Entry { grantees: vec![], changed_at: Some(at(5)) }),
            ]),
        }
    }

    #[test]
    fn the_ledger_answers_only_what_it_knows_for_certain() {
        let l = ledger();
        let now = at(0);
        assert_eq!(l.shares_of(&id(1), Some(at(100)), now), Some(vec![partner()]));
        assert_eq!(
            l.shares_of(&id(3), Some(at(100)), now),
            Some(vec![]),
            "listed by the sweep, not shared"
        );
        assert_eq!(l.shares_of(&id(2), Some(at(100)), now), None, "changed since the sweep");
        assert_eq!(l.shares_of(&id(3), Some(at(9)), now), None, "made after the sweep began");
        assert_eq!(l.shares_of(&id(3), None, now), None, "creation unknown");
        assert_eq!(
            l.shares_of(&id(1), Some(at(100)), at(10) + MAX_AGE + Duration::seconds(1)),
            None,
            "sweep too old"
        );
        assert_eq!(Ledger::default().shares_of(&id(1), Some(at(100)), now), None, "never swept");
    }

    #[test]
    fn reconciling_writes_only_what_changed() {
        let known = ledger();
        let seen = SharesSeen {
            started_at: at(1),
            listed: (1..=4).map(id).collect(),
            full: true,
            images: BTreeMap::from([
                (id(1), Some(vec![partner()])), // unchanged
                (id(2), Some(vec![Grantee::Public, partner(), Grantee::Public])), // changed, now read
                (id(3), Some(vec![])), // not shared, not in the ledger
                (id(4), None),         // read failed
            ]),
        };
        let mut known_gone = known.clone();
        known_gone.images.insert(id(5), Entry { grantees: vec![partner()], changed_at: None });
        assert_eq!(
            reconcile(&known_gone, &seen),
            vec![
                LedgerWrite::Shared { image: id(2), grantees: vec![Grantee::Public, partner()] },
                LedgerWrite::Unknown { image: id(4) },
                LedgerWrite::NotShared { image: id(5) },
            ]
        );
        let unshared = SharesSeen {
            started_at: at(1),
            listed: [id(1), id(2)].into(),
            full: true,
            images: BTreeMap::from([(id(1), Some(vec![])), (id(2), None)]),
        };
        assert_eq!(
            reconcile(&known, &unshared),
            vec![LedgerWrite::NotShared { image: id(1) }],
            "2 is already marked"
        );
    }

    #[test]
    fn a_partial_sweep_leaves_the_unread_entries_alone_and_drops_the_deregistered() {
        let mut known = ledger();
        known.images.insert(id(5), Entry { grantees: vec![partner()], changed_at: None });
        let seen = SharesSeen {
            started_at: at(1),
            // 1 and 3 listed but not read; 5 no longer listed; 2 (marked) read: not shared.
            listed: [id(1), id(2), id(3)].into(),
            images: BTreeMap::from([(id(2), Some(vec![]))]),
            full: false,
        };
        assert_eq!(
            reconcile(&known, &seen),
            vec![LedgerWrite::NotShared { image: id(2) }, LedgerWrite::NotShared { image: id(5) }]
        );
    }

    fn owned(n: u32, created_hours_ago: Option<i64>, public: bool) -> OwnedImage {
        OwnedImage {
            image_id: id(n),
            name: None,
            public,
            created: created_hours_ago.map(at),
            snapshots: vec![],
        }
    }

    fn settings(days: i64) -> Settings {
        Settings {
            allowed_accounts: Default::default(),
            allowed_orgs: Default::default(),
            allowed_ous: Default::default(),
            remediate_public: false,
            remediate_shares: false,
            exempt_tag_key: "ami-warden:exempt".into(),
            full_read_every: Duration::days(days),
            listing_margin: Duration::minutes(5),
        }
    }

    #[test]
    fn between_full_reads_only_what_may_have_changed_is_read() {
        let images = [
            owned(1, Some(100), false), // shared, unchanged: the ledger's
            owned(2, Some(100), false), // marked by an event since
            owned(3, Some(100), false), // not shared, unchanged
            owned(4, Some(3), false),   // made after the last sweep began
            owned(6, None, false),      // creation unknown
            owned(7, Some(100), true),  // public by the listing, its event lost
            // Made 3 minutes before the last sweep began: perhaps not listed by it yet.
            OwnedImage { created: Some(at(10) - Duration::minutes(3)), ..owned(8, None, false) },
        ];
        let known = ledger();
        assert_eq!(
            images_to_read(Some(&known), &images, &settings(7), at(0)),
            Reading::Changes([id(2), id(4), id(6), id(7), id(8)].into())
        );
    }

    #[test]
    fn everything_is_read_when_a_full_read_is_due_or_the_ledger_cannot_be_trusted() {
        let images = [owned(1, Some(100), false)];
        let known = ledger();
        let full =
            |l: Option<&Ledger>, days: i64, now| images_to_read(l, &images, &settings(days), now);
        assert_eq!(full(None, 7, at(0)), Reading::Full, "no ledger");
        assert_eq!(full(Some(&Ledger::default()), 7, at(0)), Reading::Full, "never swept");
        let never_full = Ledger { full_at: None, ..known.clone() };
        assert_eq!(full(Some(&never_full), 7, at(0)), Reading::Full, "never read in full");
        // Seven days after the full read, give or take a daily schedule's drift.
        let week_later = at(10) + Duration::days(7) - Duration::minutes(5);
        assert_eq!(full(Some(&known), 7, week_later), Reading::Full, "a full read is due");
        assert_eq!(
            full(Some(&known), 1, at(10) + Duration::hours(23) + Duration::minutes(30)),
            Reading::Full
        );
        assert_eq!(full(Some(&known), 0, at(9)), Reading::Full, "0 days: always in full");
        let stale = Ledger { swept_at: Some(at(10) - MAX_AGE), ..known.clone() };
        assert_eq!(full(Some(&stale), 7, at(9)), Reading::Full, "days unswept");
        assert!(matches!(full(Some(&known), 7, at(0)), Reading::Changes(_)));
    }

    #[test]
    fn a_snapshot_reading_is_trusted_for_a_week_unless_an_event_changed_it_since() {
        let snap = |n: u32| SnapshotId::parse(&format!("snap-{n:017x}")).unwrap();
        let shares = SnapshotShares {
            read: BTreeMap::from([
                (snap(1), (vec![partner()], at(30))),
                (snap(2), (vec![], at(30))),
                (snap(3), (vec![], at(30))),
            ]),
            changed: BTreeMap::from([(snap(2), at(20)), (snap(3), at(40))]),
            swept_at: None,
        };
        assert_eq!(shares.shares_of(&snap(1), at(0)), Some(vec![partner()]));
        assert_eq!(shares.shares_of(&snap(2), at(0)), None, "changed after the reading");
        assert_eq!(shares.shares_of(&snap(3), at(0)), Some(vec![]), "changed before the reading");
        assert_eq!(shares.shares_of(&snap(4), at(0)), None, "never read");
        let same_second = SnapshotShares {
            read: BTreeMap::from([(snap(5), (vec![], at(30) + Duration::milliseconds(400)))]),
            changed: BTreeMap::from([(snap(5), at(30))]),
            swept_at: None,
        };
        assert_eq!(
            same_second.shares_of(&snap(5), at(0)),
            None,
            "changed in the second the reading was taken: perhaps after it"
        );
        assert_eq!(
            shares.shares_of(&snap(1), at(30) + SNAPSHOT_MAX_AGE + Duration::seconds(1)),
            None,
            "too old"
        );
    }

    #[test]
    fn grantees_round_trip_and_nothing_else_decodes() {
        let all = [
            Grantee::Public,
            Grantee::Group("other".into()),
            partner(),
            Grantee::Organization("arn:aws:organizations::111122223333:organization/o-abc".into()),
            Grantee::OrganizationalUnit("arn:aws:organizations::111122223333:ou/o-abc/ou-x".into()),
            Grantee::Unreadable("LaunchPermission { group: None, user_id: None }".into()),
        ];
        for g in &all {
            assert_eq!(decode(&encode(g)).as_ref(), Some(g));
        }
        for bad in ["", "account:", "publicx", "user:1", "public:x"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
