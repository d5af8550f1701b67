//! The snapshot reaper's policy: which EBS snapshots a deregistered image left behind may be
//! deleted, and why every other one is kept.
//!
//! Pure: [`decide`] takes the facts gathered about one snapshot ([`Candidate`]) and returns a
//! [`Verdict`] — delete, or keep with the reason. A snapshot is kept when any fact could not be
//! established, when it is not this account's, when it carries the exempt tag, when any image
//! (disabled and deprecated ones included) still uses it, when it is shared with other accounts,
//! when the image it was made for still exists, or when it is younger than `MIN_AGE_DAYS`. [`run`] gathers the facts, records each
//! decision, and (in `enforce` mode) tags and deletes.

pub mod early;
pub mod run;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalogue::CatalogueError;
use crate::config::{Config, Mode};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, Region, SnapshotId};
pub use crate::recycle_bin::RetentionRule;

/// The tag the reaper puts on a snapshot just before deleting it; the Recycle Bin rule keeps
/// snapshots with this tag for `RECYCLE_DAYS`, and the reaper's IAM policy only allows deleting
/// snapshots that carry it.
pub const REAPED_TAG_KEY: &str = "ami-warden:reaped";
pub const REAPED_TAG_VALUE: &str = "true";

/// What the reaper may do and how it prices storage.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub min_age_days: u32,
    pub exempt_tag_key: String,
    /// Dollars per GB-month of snapshot storage, for the savings estimate.
    pub price_per_gb_month: f64,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            mode: config.mode,
            min_age_days: config.min_age_days,
            exempt_tag_key: config.exempt_tag_key.clone(),
            price_per_gb_month: config.snapshot_price_per_gb_month,
        }
    }
}

/// A snapshot as EC2 describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: SnapshotId,
    pub owner: Option<AccountId>,
    /// The size of the volume it was taken from (billing is at most this).
    pub size_gib: u32,
    pub started: Option<DateTime<Utc>>,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

/// A fact that was or was not established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "value", rename_all = "snake_case")]
pub enum Lookup<T> {
    Known(T),
    Failed(String),
}

/// How a snapshot came to be considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// The lineage store recorded it as one of the deregistered image's snapshots.
    Lineage,
    /// Its description (written by AWS) names the deregistered image.
    Description,
    /// The daily sweep: its description names an image that no longer exists.
    Sweep,
    /// DeregisterImage's response named it (`deleteSnapshotResultSet`) as one of the image's
    /// snapshots it was asked to delete.
    Deregistration,
}

/// Everything the decision needs about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub region: Region,
    pub snapshot: SnapshotInfo,
    /// The image it was made for (from the lineage or its description).
    pub source_image: Option<ImageId>,
    pub found_by: FoundBy,
    /// Owned images (including disabled and deprecated) whose block device mappings use it.
    pub used_by: Lookup<Vec<ImageId>>,
    /// Whether the source image still exists (registered, in any state).
    pub source_exists: Lookup<bool>,
    /// Who else may create volumes from it (`createVolumePermission`): other accounts may
    /// depend on a shared snapshot, so it is never deleted.
    pub shared_with: Lookup<Vec<Grantee>>,
    /// Whether the lineage recorded this snapshot for `source_image` in this region. A
    /// description is only a lead (anyone can copy one onto another snapshot): a snapshot whose
    /// origin the lineage does not confirm is kept.
    pub origin_verified: bool,
}

/// Why a snapshot is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Keep {
    LookupFailed(String),
    NotOwned(Option<String>),
    Exempt {
        tag: String,
        value: String,
    },
    UsedBy(Vec<ImageId>),
    SharedWith(Vec<Grantee>),
    OriginUnverified(Option<ImageId>),
    /// The image was registered from the snapshot, not made with it: AWS's description does
    /// not say it was created for that image, so it is someone's data the image only used.
    NotMadeFor(ImageId),
    SourceImageExists(ImageId),
    TooYoung {
        age_hours: i64,
        min_age_days: u32,
    },
    AgeUnknown,
    /// No Recycle Bin rule of the region keeps what the reaper tags: deleted, it would be gone.
    NotRecoverable(Region),
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LookupFailed(why) => write!(f, "kept on doubt: a lookup failed ({why})"),
            Self::NotOwned(Some(owner)) => write!(f, "owned by account {owner}, not this one"),
            Self::NotOwned(None) => f.write_str("its owner could not be established"),
            Self::Exempt { tag, value } => write!(f, "exempt: tagged {tag}={value}"),
            Self::UsedBy(images) => {
                let ids: Vec<&str> = images.iter().map(|i| i.as_str()).collect();
                write!(f, "backs image(s) {}", ids.join(", "))
            }
            Self::SharedWith(g) => write!(f, "shared with {}", crate::exposure::describe_grantees(g)),
            Self::OriginUnverified(Some(image)) => write!(
                f,
                "origin unverified: its description names {image}, but the lineage does not record it as {image}'s snapshot"
            ),
            Self::OriginUnverified(None) => f.write_str("origin unverified: no image is known to have made it"),
            Self::NotMadeFor(image) => write!(
                f,
                "not made for {image}: its description does not say AWS created it for {image} (registered from an existing snapshot)"
            ),
            Self::SourceImageExists(image) => write!(f, "its image {image} still exists (registered or in the Recycle Bin)"),
            Self::TooYoung { age_hours, min_age_days } => {
                write!(f, "too young: {age_hours} h old, MIN_AGE_DAYS={min_age_days}")
            }
            Self::AgeUnknown => f.write_str("its start time is unknown"),
            Self::NotRecoverable(region) => write!(
                f,
                "not deleted: no Recycle Bin rule in {region} would keep it once tagged {REAPED_TAG_KEY}={REAPED_TAG_VALUE}, so it would not be recoverable"
            ),
        }
    }
}

/// The decision about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "why", rename_all = "snake_case")]
pub enum Verdict {
    Delete,
    Keep(Keep),
}

impl Verdict {
    pub fn reason(&self) -> String {
        match self {
            Self::Delete => "orphaned: no image uses it and its image is gone".into(),
            Self::Keep(k) => k.to_string(),
        }
    }
}

/// Decides one snapshot. Every doubt keeps it.
pub fn decide(
    c: &Candidate,
    settings: &Settings,
    own_account: Option<&AccountId>,
    now: DateTime<Utc>,
) -> Verdict {
    // Another account's snapshot is never this deployment's to delete, whatever else is known.
    match (&c.snapshot.owner, own_account) {
        (Some(owner), Some(own)) if owner == own => {}
        (owner, Some(_)) => {
            return Verdict::Keep(Keep::NotOwned(owner.as_ref().map(|o| o.to_string())))
        }
        (_, None) => return Verdict::Keep(Keep::NotOwned(None)),
    }
    let used_by = match &c.used_by {
        Lookup::Known(images) => images,
        Lookup::Failed(why) => return Verdict::Keep(Keep::LookupFailed(why.clone())),
    };
    let source_exists = match &c.source_exists {
        Lookup::Known(exists) => *exists,
        Lookup::Failed(why) => return Verdict::Keep(Keep::LookupFailed(why.clone())),
    };
    let shared_with = match &c.shared_with {
        Lookup::Known(grantees) => grantees,
        Lookup::Failed(why) => return Verdict::Keep(Keep::LookupFailed(why.clone())),
    };
    if let Some(value) = c.snapshot.tags.get(&settings.exempt_tag_key) {
        return Verdict::Keep(Keep::Exempt {
            tag: settings.exempt_tag_key.clone(),
            value: value.clone(),
        });
    }
    if !used_by.is_empty() {
        return Verdict::Keep(Keep::UsedBy(used_by.clone()));
    }
    if !shared_with.is_empty() {
        return Verdict::Keep(Keep::SharedWith(shared_with.clone()));
    }
    // Only what AWS created for the image is left behind by it. A snapshot an image was
    // registered from existed before it (a backup, an import) and is not the image's to take.
    if let Some(source) = &c.source_image {
        if image_in_description(&c.snapshot.description).as_ref() != Some(source) {
            return Verdict::Keep(Keep::NotMadeFor(source.clone()));
        }
    }
    if !c.origin_verified {
        return Verdict::Keep(Keep::OriginUnverified(c.source_image.clone()));
    }
    if source_exists {
        if let Some(source) = &c.source_image {
            return Verdict::Keep(Keep::SourceImageExists(source.clone()));
        }
    }
    let Some(started) = c.snapshot.started else {
        return Verdict::Keep(Keep::AgeUnknown);
    };
    let age = now.signed_duration_since(started);
    if age < chrono::Duration::days(i64::from(settings.min_age_days)) {
        return Verdict::Keep(Keep::TooYoung {
            age_hours: age.num_hours(),
            min_age_days: settings.min_age_days,
        });
    }
    Verdict::Delete
}

/// The image a snapshot was made for, from the description AWS writes:
/// `Created by CreateImage(i-…) for ami-… ` or `Copied for DestinationAmi ami-… from SourceAmi …`.
/// Anything else (a hand-made snapshot) names no image.
pub fn image_in_description(description: &str) -> Option<ImageId> {
    let after = |marker: &str| {
        description.find(marker).map(|at| {
            description[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
    };
    if description.starts_with("Copied for DestinationAmi ") {
        return after("DestinationAmi ").and_then(|id| ImageId::parse(&id));
    }
    if description.starts_with("Created by CreateImage(") {
        return after(" for ").and_then(|id| ImageId::parse(&id));
    }
    None
}

/// The snapshots of the images in the Recycle Bin, which DescribeImages does not list: a
/// binned image can be restored, and then needs its snapshots. ListImagesInRecycleBin names the
/// images but not their snapshots, so those come from the lineage. A binned image whose
/// snapshots the lineage does not record could use any snapshot: while one is in the bin,
/// every candidate is kept on doubt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinUsers {
    pub by_snapshot: BTreeMap<SnapshotId, Vec<ImageId>>,
    /// Binned images whose snapshots are not recorded.
    pub unknown: Vec<ImageId>,
}

impl BinUsers {
    /// From the binned images and what the lineage records of their snapshots (`None` or an
    /// empty list: not recorded; an EBS-backed image, the only kind the bin keeps, has one).
    pub fn new<'a>(
        bin: impl IntoIterator<Item = &'a ImageId>,
        snapshots_of: impl Fn(&ImageId) -> Option<Vec<SnapshotId>>,
    ) -> Self {
        let mut users = Self::default();
        for image in bin {
            match snapshots_of(image) {
                Some(snapshots) if !snapshots.is_empty() => {
                    for snapshot in snapshots {
                        users.by_snapshot.entry(snapshot).or_default().push(image.clone());
                    }
                }
                _ => users.unknown.push(image.clone()),
            }
        }
        users
    }

    /// The live users of `snapshot` and the binned images using it, except `source` (whose
    /// being in the bin is [`Keep::SourceImageExists`]). A failure when the bin holds an image
    /// of unknown snapshots other than `source`.
    pub fn add_to(
        &self,
        snapshot: &SnapshotId,
        source: Option<&ImageId>,
        live: Lookup<Vec<ImageId>>,
    ) -> Lookup<Vec<ImageId>> {
        let Lookup::Known(mut users) = live else { return live };
        let unknown: Vec<&str> =
            self.unknown.iter().filter(|i| Some(*i) != source).map(|i| i.as_str()).collect();
        if !unknown.is_empty() {
            return Lookup::Failed(format!(
                "image(s) {} in the Recycle Bin, whose snapshots are not recorded, may use it",
                unknown.join(", ")
            ));
        }
        for image in self.by_snapshot.get(snapshot).into_iter().flatten() {
            if Some(image) != source && !users.contains(image) {
                users.push(image.clone());
            }
        }
        Lookup::Known(users)
    }
}

/// What the sweep needs about all owned images of a region, from one listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageIndex {
    pub images: BTreeSet<ImageId>,
    pub users: BTreeMap<SnapshotId, Vec<ImageId>>,
}

/// A failed delete, with AWS's error code (e.g. `InvalidSnapshot.InUse`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DeleteError {
    pub code: String,
    pub message: String,
}

/// The EC2 questions and actions of the reaper. Implemented over the SDK by
/// [`crate::aws::snapshots::Ec2Snapshots`].
#[allow(async_fn_in_trait)]
pub trait SnapshotEc2 {
    /// One snapshot; `None` when it no longer exists.
    async fn snapshot(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<SnapshotInfo>, CatalogueError>;
    /// Owned snapshots whose description AWS wrote for `image` (CreateImage or CopyImage).
    async fn snapshots_described_for(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Vec<SnapshotInfo>, CatalogueError>;
    /// Owned images, including disabled and deprecated, whose block device mappings use it.
    async fn images_using(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError>;
    /// Who may create volumes from the snapshot besides its owner.
    async fn create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<Grantee>, CatalogueError>;
    /// The images of the region that are in the Recycle Bin (restorable: their snapshots are
    /// still theirs).
    async fn images_in_recycle_bin(
        &self,
        region: &Region,
    ) -> Result<BTreeSet<ImageId>, CatalogueError>;
    /// Removes the [`REAPED_TAG_KEY`] tag again (after a delete that failed).
    async fn unmark_reaped(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError>;
    /// Whether an image exists (in any state, disabled and deprecated included).
    async fn image_exists(&self, region: &Region, image: &ImageId) -> Result<bool, CatalogueError>;
    /// Every owned snapshot of the region.
    async fn owned_snapshots(&self, region: &Region) -> Result<Vec<SnapshotInfo>, CatalogueError>;
    /// Every owned image of the region and the snapshots each uses.
    async fn image_index(&self, region: &Region) -> Result<ImageIndex, CatalogueError>;
    /// Which of `images` are owned images of the region (in any state), asked by id. A guess
    /// made while [`Self::image_index`] is still listing; the listing decides.
    async fn owned_among(
        &self,
        region: &Region,
        images: &[ImageId],
    ) -> Result<BTreeSet<ImageId>, CatalogueError>;
    /// The snapshot retention rules of the region's Recycle Bin that are in effect.
    async fn snapshot_retention_rules(
        &self,
        region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError>;
    /// Tags the snapshot [`REAPED_TAG_KEY`] (the Recycle Bin rule's selector).
    async fn mark_reaped(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError>;
    async fn delete_snapshot(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), DeleteError>;
}

/// Whether a Recycle Bin rule of `rules` keeps a snapshot with `tags` once the reaper tags it.
pub fn recoverable(rules: &[RetentionRule], tags: &BTreeMap<String, String>) -> bool {
    crate::recycle_bin::recoverable(rules, tags, REAPED_TAG_KEY, REAPED_TAG_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "123456789012";

    fn settings() -> Settings {
        Settings {
            mode: Mode::Enforce,
            min_age_days: 1,
            exempt_tag_key: "ami-warden:exempt".into(),
            price_per_gb_month: 0.05,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn orphan() -> Candidate {
        Candidate {
            region: Region::parse("us-east-1").unwrap(),
            snapshot: SnapshotInfo {
                snapshot_id: SnapshotId::parse("snap-0aaa").unwrap(),
                owner: AccountId::parse(OWN),
                size_gib: 8,
                started: Some("2026-11-01T00:00:00Z".parse().unwrap()),
                description: "Created by CreateImage(i-0abc) for ami-0old from vol-0abc".into(),
                tags: BTreeMap::new(),
            },
            source_image: ImageId::parse("ami-0old"),
            found_by: FoundBy::Lineage,
            used_by: Lookup::Known(vec![]),
            source_exists: Lookup::Known(false),
            shared_with: Lookup::Known(vec![]),
            origin_verified: true,
        }
    }

    fn verdict(c: &Candidate) -> Verdict {
        decide(c, &settings(), AccountId::parse(OWN).as_ref(), now())
    }

    #[test]
    fn a_true_orphan_is_deleted() {
        assert_eq!(verdict(&orphan()), Verdict::Delete);
    }

    #[test]
    fn a_snapshot_another_image_uses_is_kept_and_says_which() {
        let c = Candidate {
            used_by: Lookup::Known(vec![ImageId::parse("ami-0other").unwrap()]),
            ..orphan()
        };
        assert_eq!(verdict(&c).reason(), "backs image(s) ami-0other");
    }

    #[test]
    fn any_failed_lookup_keeps_it() {
        let c = Candidate { used_by: Lookup::Failed("throttled".into()), ..orphan() };
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::LookupFailed(_))));
        let c = Candidate { source_exists: Lookup::Failed("timeout".into()), ..orphan() };
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::LookupFailed(_))));
        let c = Candidate { shared_with: Lookup::Failed("denied".into()), ..orphan() };
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::LookupFailed(_))));
    }

    #[test]
    fn exempt_young_foreign_and_ageless_snapshots_are_kept() {
        let mut c = orphan();
        c.snapshot.tags.insert("ami-warden:exempt".into(), "legal hold".into());
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::Exempt { .. })));
        let mut c = orphan();
        c.snapshot.started = Some("2026-11-25T06:00:00Z".parse().unwrap());
        assert_eq!(verdict(&c), Verdict::Keep(Keep::TooYoung { age_hours: 6, min_age_days: 1 }));
        let mut c = orphan();
        c.snapshot.owner = AccountId::parse("999999999999");
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::NotOwned(Some(_)))));
        let mut c = orphan();
        c.snapshot.owner = None;
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::NotOwned(None))));
        let mut c = orphan();
        c.snapshot.started = None;
        assert_eq!(verdict(&c), Verdict::Keep(Keep::AgeUnknown));
        assert!(matches!(
            decide(&orphan(), &settings(), None, now()),
            Verdict::Keep(Keep::NotOwned(None))
        ));
    }

    #[test]
    fn another_accounts_snapshot_is_not_owned_before_anything_else() {
        // Its users and shares are not asked (they would fail, and fail the event for nothing).
        let mut c = Candidate {
            used_by: Lookup::Failed("not asked".into()),
            shared_with: Lookup::Failed("not asked".into()),
            ..orphan()
        };
        c.snapshot.owner = AccountId::parse("999999999999");
        assert_eq!(verdict(&c), Verdict::Keep(Keep::NotOwned(Some("999999999999".into()))));
    }

    #[test]
    fn a_snapshot_shared_with_another_account_is_kept() {
        let c = Candidate {
            shared_with: Lookup::Known(vec![Grantee::Account("222233334444".into())]),
            ..orphan()
        };
        assert_eq!(verdict(&c).reason(), "shared with account 222233334444");
    }

    #[test]
    fn a_snapshot_found_only_by_its_description_is_kept() {
        let c = Candidate { origin_verified: false, found_by: FoundBy::Description, ..orphan() };
        assert!(
            verdict(&c).reason().starts_with("origin unverified: its description names ami-0old"),
            "{}",
            verdict(&c).reason()
        );
    }

    #[test]
    fn a_snapshot_whose_image_still_exists_is_kept() {
        let c = Candidate { source_exists: Lookup::Known(true), ..orphan() };
        assert_eq!(
            verdict(&c).reason(),
            "its image ami-0old still exists (registered or in the Recycle Bin)"
        );
    }

    #[test]
    fn a_snapshot_the_image_was_registered_from_is_not_the_images_to_take() {
        let mut c = orphan();
        c.snapshot.description = "nightly database backup".into();
        assert_eq!(
            verdict(&c),
            Verdict::Keep(Keep::NotMadeFor(ImageId::parse("ami-0old").unwrap())),
            "{}",
            verdict(&c).reason()
        );
        // Made for another image, and registered from by this one: that image's orphan, not this one's.
        let mut c = orphan();
        c.snapshot.description =
            "Created by CreateImage(i-0abc) for ami-0first from vol-0abc".into();
        assert!(matches!(verdict(&c), Verdict::Keep(Keep::NotMadeFor(_))));
    }

    #[test]
    fn images_in_the_recycle_bin_keep_the_snapshots_they_use() {
        let snap = |s: &str| SnapshotId::parse(s).unwrap();
        let ami = |s: &str| ImageId::parse(s).unwrap();
        let bin = [ami("ami-0binned"), ami("ami-0old")];
        let recorded = |image: &ImageId| match image.as_str() {
            "ami-0binned" => Some(vec![snap("snap-0aaa")]),
            "ami-0old" => Some(vec![snap("snap-0aaa"), snap("snap-0bbb")]),
            _ => None,
        };
        let users = BinUsers::new(&bin, recorded);
        let source = ami("ami-0old");
        let c = Candidate {
            used_by: users.add_to(&snap("snap-0aaa"), Some(&source), Lookup::Known(vec![])),
            ..orphan()
        };
        assert_eq!(verdict(&c).reason(), "backs image(s) ami-0binned");
        // The source in the bin is its own reason, not a user.
        assert_eq!(
            users.add_to(&snap("snap-0bbb"), Some(&source), Lookup::Known(vec![])),
            Lookup::Known(vec![])
        );
        // A binned image whose snapshots nobody recorded could use any snapshot.
        let users = BinUsers::new(&[ami("ami-0unknown"), ami("ami-0binned")], recorded);
        let c = Candidate {
            used_by: users.add_to(&snap("snap-0ccc"), Some(&source), Lookup::Known(vec![])),
            ..orphan()
        };
        assert!(
            matches!(verdict(&c), Verdict::Keep(Keep::LookupFailed(ref why)) if why.contains("ami-0unknown")),
            "{}",
            verdict(&c).reason()
        );
        // Unless that image is the source itself.
        let users = BinUsers::new(&[ami("ami-0old")], |_| None);
        assert_eq!(
            users.add_to(&snap("snap-0aaa"), Some(&source), Lookup::Known(vec![])),
            Lookup::Known(vec![])
        );
        // A failed live lookup stays failed.
        assert!(matches!(
            users.add_to(&snap("snap-0aaa"), None, Lookup::Failed("x".into())),
            Lookup::Failed(_)
        ));
    }

    #[test]
    fn descriptions_name_the_image_aws_made_the_snapshot_for() {
        let id = |s: &str| image_in_description(s).map(|i| i.to_string());
        assert_eq!(
            id("Created by CreateImage(i-0123456789abcdef0) for ami-0abc123 from vol-0def"),
            Some("ami-0abc123".into())
        );
        assert_eq!(
            id("Copied for DestinationAmi ami-0dst from SourceAmi ami-0src for SourceSnapshot snap-0s. Task created on 1,700,000,000."),
            Some("ami-0dst".into())
        );
        assert_eq!(
            id("nightly backup for ami-0abc"),
            None,
            "hand-written descriptions name nothing"
        );
        assert_eq!(id(""), None);
        assert_eq!(id("Created by CreateImage(i-0123) for "), None);
    }
}
