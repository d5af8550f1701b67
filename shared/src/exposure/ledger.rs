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
//! Snapshots have a record of their own ([`SnapshotShares`]): no sweep reads every snapshot's
//! create-volume permissions, so the reaper's sweep records what it read of each, snapshot by
//! snapshot, and trusts a reading for [`SNAPSHOT_MAX_AGE`] unless an event changed the
//! snapshot's permissions since. The reaper asks EC2 once more before deleting.
//!
//! Pure: the adapter is [`crate::aws::ledger::LedgerTable`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::StoreError;

/// How old a sweep the deprecation sweep trusts: the exposure sweep runs daily, so two days
/// allow for one missed run.
pub const MAX_AGE: Duration = Duration::hours(48);

/// One account's and region's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// When the last complete exposure sweep started listing; `None` if none ever wrote.
    pub swept_at: Option<DateTime<Utc>>,
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

/// What one exposure sweep read: when it started listing, and every listed image's launch
/// permissions (`None`: the read failed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharesSeen {
    pub started_at: DateTime<Utc>,
    pub images: BTreeMap<ImageId, Option<Vec<Grantee>>>,
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
    for image in known.images.keys().filter(|i| !seen.images.contains_key(*i)) {
        writes.push(LedgerWrite::NotShared { image: image.clone() });
    }
    writes
}

/// Brings the ledger of `account` in `region` in line with what a sweep read (one Query, then
/// only the writes that change something); returns how many writes that took.
pub async fn record_sweep(
    ledger: &impl ShareLedger,
    account: &AccountId,
    region: &Region,
    seen: &SharesSeen,
) -> Result<usize, StoreError> {
    let known = ledger.load(account, region).await?;
    let writes = reconcile(&known, seen);
    ledger.apply(account, region, seen.started_at, &writes).await?;
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
}

impl SnapshotShares {
    /// The permissions of `snapshot` if a reading is at most [`SNAPSHOT_MAX_AGE`] old at `now`
    /// and no event changed them since it was taken; `None` means "ask EC2".
    pub fn shares_of(&self, snapshot: &SnapshotId, now: DateTime<Utc>) -> Option<Vec<Grantee>> {
        let (grantees, at) = self.read.get(snapshot)?;
        if now - *at > SNAPSHOT_MAX_AGE
            || self.changed.get(snapshot).is_some_and(|changed| changed >= at)
        {
            return None;
        }
        Some(grantees.clone())
    }
}

/// Where the ledger is kept (the lineage table).
#[allow(async_fn_in_trait)]
pub trait ShareLedger {
    async fn load(&self, account: &AccountId, region: &Region) -> Result<Ledger, StoreError>;
    /// Applies a sweep's writes, then records the sweep (`started_at`) as the ledger's.
    async fn apply(
        &self,
        account: &AccountId,
        region: &Region,
        started_at: DateTime<Utc>,
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
    /// Records readings of create-volume permissions taken at (or after) `at`.
    async fn record_snapshot_shares(
        &self,
        account: &AccountId,
        region: &Region,
        at: DateTime<Utc>,
        reads: &[(SnapshotId, Vec<Grantee>)],
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
            images: BTreeMap::from([(id(1), Some(vec![])), (id(2), None)]),
        };
        assert_eq!(
            reconcile(&known, &unshared),
            vec![LedgerWrite::NotShared { image: id(1) }],
            "2 is already marked"
        );
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
        };
        assert_eq!(shares.shares_of(&snap(1), at(0)), Some(vec![partner()]));
        assert_eq!(shares.shares_of(&snap(2), at(0)), None, "changed after the reading");
        assert_eq!(shares.shares_of(&snap(3), at(0)), Some(vec![]), "changed before the reading");
        assert_eq!(shares.shares_of(&snap(4), at(0)), None, "never read");
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
