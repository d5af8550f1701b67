//! Deprecation enforcement: every image gets a deadline; past the deadline plus the grace
//! period, images nothing uses are retired — keeping the newest of each family.
//!
//! Pure: [`plan`] takes the facts gathered about a region's images ([`ImageFacts`], the
//! [`InUseIndex`], the launch permissions of the images it asks about) and returns, for each
//! image, a [`Decision`] with its reason. Every doubt keeps the image: a failed lookup, an
//! unresolvable launch-template image parameter, a missing fact. [`run`] gathers the facts,
//! stamps missing deadlines, and (in `enforce` mode) deregisters.

pub mod early;
pub mod protect;
pub mod run;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::catalogue::CatalogueError;
use crate::config::{Config, Mode};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, Region, SnapshotId};
use crate::recycle_bin::RetentionRule;

/// The tag the enforcer puts on an image right before deregistering it: the Recycle Bin rule
/// the templates deploy keeps images that carry it, so a retired image can be restored.
pub const RETIRED_TAG_KEY: &str = "ami-warden:retired";
pub const RETIRED_TAG_VALUE: &str = "true";

/// The knobs of the policy (see the configuration table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub deprecate_after_days: u32,
    pub grace_days: u32,
    pub keep_latest: u32,
    pub warn_days: u32,
    pub in_use_days: u32,
    pub exempt_tag_key: String,
    /// The tag naming an image's family; without it, the name minus its trailing date/version.
    pub family_tag_key: String,
    /// `PROTECT_NEWEST`: in enforce mode, deregistration protection (with cooldown) on each
    /// family's newest `keep_latest` images, taken off when they leave that set
    /// ([`protect::protection_plan`]); report mode lists what it would do.
    pub protect_newest: bool,
    /// `RETIRE_SHARED_UNUSED`: an image shared with other accounts may go when a fresh usage
    /// report shows none of them uses it ([`usage`]); off, every shared image is kept.
    pub retire_shared_unused: bool,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            mode: config.mode,
            deprecate_after_days: config.deprecate_after_days,
            grace_days: config.grace_days,
            keep_latest: config.keep_latest,
            warn_days: config.warn_days,
            in_use_days: config.in_use_days,
            exempt_tag_key: config.exempt_tag_key.clone(),
            family_tag_key: config.family_tag_key.clone(),
            protect_newest: config.protect_newest,
            retire_shared_unused: config.retire_shared_unused,
        }
    }
}

/// An owned image, as DescribeImages lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    pub image_id: ImageId,
    pub name: Option<String>,
    pub owner: Option<AccountId>,
    pub created: Option<DateTime<Utc>>,
    pub deprecation: Option<DateTime<Utc>>,
    pub last_launched: Option<DateTime<Utc>>,
    /// `available`, `disabled`, `pending`, …
    pub state: String,
    pub tags: BTreeMap<String, String>,
    /// The snapshots of its block device mappings (recorded on its lineage node when it is
    /// retired, so the reaper knows what it needs while it is in the Recycle Bin).
    pub snapshots: Vec<SnapshotId>,
    /// `ebs` or `instance-store`: the Recycle Bin keeps only EBS-backed images.
    pub root_device_type: String,
    /// Whether EC2 refuses to deregister it (DescribeImages' `DeregistrationProtection`).
    pub deregistration_protection: DeregistrationProtection,
}

/// An image's deregistration protection, read from DescribeImages' `DeregistrationProtection`
/// string. A protected image is never retired: AMI Warden neither deregisters it nor turns its
/// protection off.
///
/// The values AWS documents:
/// - `disabled`: DescribeImages answers as published (`"DeregistrationProtection": "disabled"`),
///   and the `Return` of DisableImageDeregistrationProtection in the AWS CLI reference's example
///   (awscli `examples/ec2/disable-image-deregistration-protection.rst`).
/// - `enabled-without-cooldown`: the `Return` of EnableImageDeregistrationProtection in the AWS
///   CLI reference's example (`examples/ec2/enable-image-deregistration-protection.rst`);
///   `enabled-with-cooldown` and `enabled-without-cooldown` are the values documented for the
///   `deregistration_protection` attribute of `aws_ec2_image_deregistration_protection`
///   (Terraform AWS provider).
/// - The cooldown: "If `true`, enforces deregistration protection for 24 hours after
///   deregistration protection is disabled" (EnableImageDeregistrationProtection, `WithCooldown`,
///   EC2 API reference); "during this cooldown period, the AMI can't be deregistered" (EC2 User
///   Guide, "Protect an Amazon EC2 AMI from deregistration").
///
/// What DescribeImages answers during the cooldown is not in AWS's reference (the `Image` data
/// type says only "Indicates whether deregistration protection is enabled for the AMI"). A
/// `disabled-after <time>` form (any separator, an RFC 3339 time) is read as protected until
/// that time; anything else not listed above is [`Self::Unknown`] and protects the image: a
/// value this code does not know is never read as leave to deregister.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum DeregistrationProtection {
    /// `disabled`, or no value at all: an endpoint that does not report the field has no
    /// protection to report (and DeregisterImage still refuses a protected image there).
    Disabled,
    /// `enabled-without-cooldown` (or a bare `enabled`).
    Enabled,
    /// `enabled-with-cooldown`: once disabled, still in force for 24 hours.
    EnabledWithCooldown,
    /// Disabled, with the cooldown running until this time.
    DisabledAfter(DateTime<Utc>),
    /// A value this code does not know, as EC2 gave it: treated as protected.
    Unknown(String),
}

impl DeregistrationProtection {
    /// Reads DescribeImages' `DeregistrationProtection` (`None`: the field was absent).
    pub fn parse(raw: Option<&str>) -> Self {
        let Some(raw) = raw else { return Self::Disabled };
        match raw.trim() {
            "disabled" => Self::Disabled,
            "enabled" | "enabled-without-cooldown" => Self::Enabled,
            "enabled-with-cooldown" => Self::EnabledWithCooldown,
            value => value
                .strip_prefix("disabled-after")
                .map(|at| at.trim_start_matches([' ', '-', ':', '=', '\t']))
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map(|at| Self::DisabledAfter(at.with_timezone(&Utc)))
                .unwrap_or_else(|| Self::Unknown(raw.to_owned())),
        }
    }

    /// Whether DeregisterImage would be refused at `now`.
    pub fn protects_at(&self, now: DateTime<Utc>) -> bool {
        match self {
            Self::Disabled => false,
            Self::DisabledAfter(until) => now < *until,
            Self::Enabled | Self::EnabledWithCooldown | Self::Unknown(_) => true,
        }
    }
}

impl std::fmt::Display for DeregistrationProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("deregistration protection disabled"),
            Self::Enabled => f.write_str("deregistration protection enabled"),
            Self::EnabledWithCooldown => {
                f.write_str("deregistration protection enabled (with cooldown)")
            }
            Self::DisabledAfter(until) => write!(
                f,
                "deregistration protection disabled, still in force until {} (cooldown)",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Self::Unknown(raw) => write!(
                f,
                "kept on doubt: deregistration protection in a state AMI Warden does not know ({raw:?})"
            ),
        }
    }
}

/// Where images are used, for one region. Built from instances (any state but terminated),
/// every version of every launch template, launch configurations, Auto Scaling groups and
/// DescribeImageReferences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InUseIndex {
    /// Image → the uses found, e.g. `instance i-… (stopped)`, `launch template lt-… v3`.
    pub uses: BTreeMap<ImageId, BTreeSet<String>>,
    /// Launch template versions whose image is an SSM parameter (`resolve:ssm:…`), which could
    /// name any image: while any exists, no image is retired.
    pub unresolved: Vec<String>,
    /// Lookups that failed: while any did, no image is retired.
    pub failures: Vec<String>,
    /// DescribeImageReferences answered, to every request, that it is not available here (a
    /// region or partition without it): its references are unknown, the other uses are not.
    pub references_unavailable: bool,
}

impl InUseIndex {
    /// Adds what `other` found (lookups made apart, at once).
    pub fn merge(&mut self, other: InUseIndex) {
        for (image, uses) in other.uses {
            self.uses.entry(image).or_default().extend(uses);
        }
        self.unresolved.extend(other.unresolved);
        self.failures.extend(other.failures);
        self.references_unavailable |= other.references_unavailable;
    }

    pub fn add(&mut self, image: &str, usage: impl Into<String>) {
        if let Some(id) = ImageId::parse(image) {
            self.uses.entry(id).or_default().insert(usage.into());
        } else if !image.trim().is_empty() {
            // `resolve:ssm:…`, or anything else that is not a plain image id: it could name any
            // image, so it is a doubt, not "unused".
            self.unresolved.push(format!("{} ({image})", usage.into()));
        }
    }
}

/// Why an image is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Keep {
    Exempt {
        tag: String,
        value: String,
    },
    NotOwned,
    LookupFailed(Vec<String>),
    Unresolved(Vec<String>),
    InUse(Vec<String>),
    LaunchedRecently(DateTime<Utc>),
    NewestOfFamily {
        family: String,
        rank: usize,
        keep_latest: u32,
    },
    NoCreationDate,
    NotPastGrace {
        deadline: DateTime<Utc>,
        retire_after: DateTime<Utc>,
    },
    SharedWith(Vec<Grantee>),
    /// `RETIRE_SHARED_UNUSED`: shared, and the usage report says accounts use it.
    SharedInUse {
        report: String,
        day: String,
        uses: Vec<String>,
    },
    /// `RETIRE_SHARED_UNUSED`: shared, and no finished usage report of the last
    /// [`usage::REPORT_MAX_AGE_DAYS`] days tells whether it is used (`why`).
    SharedUsageUnknown {
        grantees: Vec<Grantee>,
        why: String,
    },
    /// The launch permissions were not looked at (only asked for images that would go).
    SharesNotChecked,
    /// At the last check before deregistering, the image was not what the plan saw (gone, its
    /// state or deadline changed): the next sweep decides on the new facts.
    ChangedSincePlan(String),
    /// No Recycle Bin rule of the region keeps it once tagged [`RETIRED_TAG_KEY`]: deregistered,
    /// it could not be restored.
    NotRecoverable(Region),
    /// Instance-store-backed (or of unknown root device): the Recycle Bin keeps only
    /// EBS-backed images, so deregistered it could not be restored.
    NotEbsBacked(String),
    /// EC2 would refuse to deregister it ([`DeregistrationProtection::protects_at`]); AMI
    /// Warden never turns protection off.
    DeregistrationProtected(DeregistrationProtection),
    /// It carries [`RETIRED_TAG_KEY`] yet is registered: someone restored it from the Recycle
    /// Bin after the enforcer retired it, or a retirement failed half-way. Kept until someone
    /// takes the tag off.
    Restored,
    /// It carries the quarantine tag ([`crate::quarantine::TAG_KEY`], its value): quarantine
    /// deprecated it now, not to retire it; release puts it back.
    Quarantined(String),
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exempt { tag, value } => write!(f, "exempt: tagged {tag}={value}"),
            Self::NotOwned => f.write_str("not owned by this account"),
            Self::LookupFailed(why) => write!(f, "kept on doubt: in-use lookups failed ({})", why.join("; ")),
            Self::Unresolved(lts) => write!(f, "kept on doubt: launch templates name their image by SSM parameter ({})", lts.join(", ")),
            Self::InUse(uses) => write!(f, "in use by {}", uses.join(", ")),
            Self::LaunchedRecently(at) => write!(f, "launched recently ({})", at.format("%Y-%m-%d")),
            Self::NewestOfFamily { family, rank, keep_latest } => {
                write!(f, "newest {keep_latest} of family {family} (#{rank})")
            }
            Self::NoCreationDate => f.write_str("its creation date is unknown"),
            Self::NotPastGrace { deadline, retire_after } => write!(
                f,
                "not yet past deadline + grace (deadline {}, retire after {})",
                deadline.format("%Y-%m-%d"),
                retire_after.format("%Y-%m-%d")
            ),
            Self::SharedWith(g) => write!(f, "shared with {}", crate::exposure::describe_grantees(g)),
            Self::SharedInUse { report, day, uses } => {
                write!(f, "shared and used there (usage report {report} of {day}: {})", uses.join(", "))
            }
            Self::SharedUsageUnknown { grantees, why } => write!(
                f,
                "shared with {}; its use there is not known yet: {why}",
                crate::exposure::describe_grantees(grantees)
            ),
            Self::SharesNotChecked => f.write_str("launch permissions not checked"),
            Self::ChangedSincePlan(what) => write!(f, "changed since the plan: {what}"),
            Self::DeregistrationProtected(protection) => write!(f, "{protection}"),
            Self::Quarantined(why) => write!(f, "quarantined ({why}): kept until released"),
            Self::Restored => write!(
                f,
                "tagged {RETIRED_TAG_KEY} yet registered (restored from the Recycle Bin, or a retirement that failed half-way): kept until that tag is taken off"
            ),
            Self::NotEbsBacked(root) => write!(
                f,
                "not deregistered: its root device is {root}, and the Recycle Bin keeps only EBS-backed images, so it could not be restored"
            ),
            Self::NotRecoverable(region) => write!(
                f,
                "not deregistered: no Recycle Bin rule in {region} would keep it once tagged {RETIRED_TAG_KEY}={RETIRED_TAG_VALUE}, so it could not be restored"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "why", rename_all = "snake_case")]
pub enum Decision {
    Deregister,
    Keep(Keep),
}

impl Decision {
    pub fn reason(&self) -> String {
        match self {
            Self::Deregister => {
                "past deadline + grace, unused, not among the newest of its family".into()
            }
            Self::Keep(k) => k.to_string(),
        }
    }
}

/// One image's line in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub image_id: ImageId,
    pub name: Option<String>,
    pub family: String,
    pub state: String,
    pub age_days: Option<i64>,
    /// The deadline the image has, or gets now when it had none.
    pub deadline: Option<DateTime<Utc>>,
    /// A deadline to stamp (it had none, or someone removed it from a non-exempt image).
    pub stamp: Option<DateTime<Utc>>,
    pub decision: Decision,
}

/// The family of an image: the family tag when set, else the name without its trailing
/// date, version or build number (`web-2026-11-25` → `web`, `api-v1.4.2` → `api`).
pub fn family(image: &ImageFacts, family_tag_key: &str) -> String {
    if let Some(f) = image.tags.get(family_tag_key).filter(|f| !f.is_empty()) {
        return f.clone();
    }
    let name = image.name.as_deref().unwrap_or(image.image_id.as_str());
    strip_version(name)
}

/// Strips trailing version-like tokens: digit groups, dates, `v1.2.3`, joined by `-`, `_`,
/// `.`, ` ` or `:`.
pub fn strip_version(name: &str) -> String {
    let mut tokens: Vec<&str> = name.split(['-', '_', '.', ' ', ':']).collect();
    while tokens.len() > 1 {
        let last = tokens[tokens.len() - 1];
        let versionish = last.is_empty()
            || last.chars().all(|c| c.is_ascii_digit())
            || (last.len() > 1
                && last.starts_with(['v', 'V'])
                && last[1..].chars().all(|c| c.is_ascii_digit()))
            || (last.len() >= 8
                && last.chars().all(|c| c.is_ascii_digit() || c == 'T' || c == 'Z'));
        if !versionish {
            break;
        }
        tokens.pop();
    }
    let stripped = tokens.join("-");
    if stripped.is_empty() {
        name.to_owned()
    } else {
        stripped
    }
}

/// The earliest deprecation time AWS accepts at `now`: the next whole minute.
pub fn earliest_allowed(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::minutes(1)).unwrap_or(now) + Duration::minutes(1)
}

/// The deadline to stamp on an image that has none: creation + `deprecate_after_days`, never
/// before [`earliest_allowed`].
pub fn deadline_to_stamp(
    created: DateTime<Utc>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let target = created + Duration::days(i64::from(settings.deprecate_after_days));
    target.max(earliest_allowed(now))
}

/// Plans every image of a region. `shares` holds the launch permissions of the images asked
/// about; an image that would otherwise go and is not in it is kept as
/// [`Keep::SharesNotChecked`] (the shell asks and plans again).
pub fn plan(
    images: &[ImageFacts],
    in_use: &InUseIndex,
    shares: &BTreeMap<ImageId, Result<Vec<Grantee>, String>>,
    settings: &Settings,
    own_account: Option<&AccountId>,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let rank = family_ranks(images, settings);
    images
        .iter()
        .map(|image| {
            let family = family(image, &settings.family_tag_key);
            let exempt = image.tags.get(&settings.exempt_tag_key);
            // Deadlines are stamped, like anything else changed, only on the account's own images.
            let owned = image.owner.is_some() && image.owner.as_ref() == own_account;
            let stamp = match (image.deprecation, image.created, exempt, owned) {
                (None, Some(created), None, true) => {
                    Some(deadline_to_stamp(created, settings, now))
                }
                _ => None,
            };
            let deadline = image.deprecation.or(stamp);
            let decision = decide(
                image,
                &family,
                rank_of(&rank, &image.image_id),
                deadline,
                in_use,
                shares,
                settings,
                own_account,
                now,
            );
            Planned {
                image_id: image.image_id.clone(),
                name: image.name.clone(),
                family,
                state: image.state.clone(),
                age_days: image.created.map(|c| (now - c).num_days()),
                deadline,
                stamp,
                decision,
            }
        })
        .collect()
}

/// Each launchable image's rank in its family, newest first (creation date, then name, then
/// id). Only images that can be launched count: failed, pending or disabled builds must not
/// take the newest-N slots of the family's last working image.
pub fn family_ranks(images: &[ImageFacts], settings: &Settings) -> BTreeMap<ImageId, usize> {
    let mut families: BTreeMap<String, Vec<&ImageFacts>> = BTreeMap::new();
    for image in images {
        families.entry(family(image, &settings.family_tag_key)).or_default().push(image);
    }
    let mut rank = BTreeMap::new();
    for members in families.values_mut() {
        members.retain(|m| m.state == "available");
        members.sort_by(|a, b| newer_first(a, b));
        for (i, m) in members.iter().enumerate() {
            rank.insert(m.image_id.clone(), i + 1);
        }
    }
    rank
}

/// The order of [`family_ranks`]: newest first by creation date, then name, then id.
pub(crate) fn newer_first(a: &ImageFacts, b: &ImageFacts) -> std::cmp::Ordering {
    (b.created, &b.name, &b.image_id).cmp(&(a.created, &a.name, &a.image_id))
}

/// An image's rank in [`family_ranks`]; one that is not launchable ranks last.
pub fn rank_of(ranks: &BTreeMap<ImageId, usize>, image: &ImageId) -> usize {
    ranks.get(image).copied().unwrap_or(usize::MAX)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    image: &ImageFacts,
    family: &str,
    rank: usize,
    deadline: Option<DateTime<Utc>>,
    in_use: &InUseIndex,
    shares: &BTreeMap<ImageId, Result<Vec<Grantee>, String>>,
    settings: &Settings,
    own_account: Option<&AccountId>,
    now: DateTime<Utc>,
) -> Decision {
    if let Some(value) = image.tags.get(&settings.exempt_tag_key) {
        return Decision::Keep(Keep::Exempt {
            tag: settings.exempt_tag_key.clone(),
            value: value.clone(),
        });
    }
    if image.tags.contains_key(RETIRED_TAG_KEY) {
        return Decision::Keep(Keep::Restored);
    }
    if let Some(why) = image.tags.get(crate::quarantine::TAG_KEY) {
        return Decision::Keep(Keep::Quarantined(why.clone()));
    }
    match (&image.owner, own_account) {
        (Some(owner), Some(own)) if owner == own => {}
        _ => return Decision::Keep(Keep::NotOwned),
    }
    // Before any lookup about it: a protected image is not asked about image by image.
    if image.deregistration_protection.protects_at(now) {
        return Decision::Keep(Keep::DeregistrationProtected(
            image.deregistration_protection.clone(),
        ));
    }
    if !in_use.failures.is_empty() {
        return Decision::Keep(Keep::LookupFailed(in_use.failures.clone()));
    }
    if let Some(uses) = in_use.uses.get(&image.image_id) {
        return Decision::Keep(Keep::InUse(uses.iter().cloned().collect()));
    }
    if let Some(at) = image.last_launched {
        if now - at < Duration::days(i64::from(settings.in_use_days)) {
            return Decision::Keep(Keep::LaunchedRecently(at));
        }
    }
    if rank <= settings.keep_latest as usize {
        return Decision::Keep(Keep::NewestOfFamily {
            family: family.to_owned(),
            rank,
            keep_latest: settings.keep_latest,
        });
    }
    let Some(deadline) = deadline else {
        return Decision::Keep(Keep::NoCreationDate);
    };
    let retire_after = deadline + Duration::days(i64::from(settings.grace_days));
    if now < retire_after {
        return Decision::Keep(Keep::NotPastGrace { deadline, retire_after });
    }
    if !in_use.unresolved.is_empty() {
        return Decision::Keep(Keep::Unresolved(in_use.unresolved.clone()));
    }
    match shares.get(&image.image_id) {
        None => Decision::Keep(Keep::SharesNotChecked),
        Some(Err(why)) => {
            Decision::Keep(Keep::LookupFailed(vec![format!("launch permissions: {why}")]))
        }
        Some(Ok(grantees)) if !grantees.is_empty() => {
            Decision::Keep(Keep::SharedWith(grantees.clone()))
        }
        Some(Ok(_)) => Decision::Deregister,
    }
}

/// Images whose deadline falls within `warn_days` from now (and is not past).
pub fn upcoming(planned: &[Planned], settings: &Settings, now: DateTime<Utc>) -> Vec<Planned> {
    let horizon = now + Duration::days(i64::from(settings.warn_days));
    planned
        .iter()
        .filter(|p| p.deadline.is_some_and(|d| d > now && d <= horizon))
        .cloned()
        .collect()
}

/// DescribeImageReferences takes at most 10 image ids a request (AWS's API reference:
/// "Array Members: Minimum number of 1 item. Maximum number of 10 items").
pub const REFERENCE_IDS: usize = 10;

/// The EC2 (and Auto Scaling) questions and actions of deprecation enforcement. Implemented
/// over the SDK by [`crate::aws::deprecation::Ec2Deprecation`].
#[allow(async_fn_in_trait)]
pub trait DeprecationEc2 {
    /// Every owned image of the region, disabled and deprecated included, all pages.
    async fn images(&self, region: &Region) -> Result<Vec<ImageFacts>, CatalogueError>;
    /// [`Self::images`], each page sent to `pages` as soon as it is read, so the sweep can ask
    /// about the first pages' candidates while the next are read. Here, all in one page.
    async fn images_in_pages(
        &self,
        region: &Region,
        pages: &tokio::sync::mpsc::UnboundedSender<Vec<ImageFacts>>,
    ) -> Result<(), CatalogueError> {
        // The receiver stops listening only when its sweep has given up on the listing.
        let _ = pages.send(self.images(region).await?);
        Ok(())
    }
    /// One image (e.g. just created); `None` when not visible.
    async fn image(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Option<ImageFacts>, CatalogueError>;
    /// The images of `ids` that are visible, by id (the last check's look at a batch). One
    /// request where the adapter can ask about many at once; here, one an image.
    async fn images_by_id(
        &self,
        region: &Region,
        ids: &[ImageId],
    ) -> Result<BTreeMap<ImageId, ImageFacts>, CatalogueError> {
        images_one_by_one(self, region, ids).await
    }
    /// Where images are used in the region: instances, every launch template version, launch
    /// configurations and Auto Scaling groups, each listed once. Lookup failures are recorded in
    /// the index, not returned: the policy keeps everything while any exists.
    async fn usage(&self, region: &Region) -> InUseIndex;
    /// Adds what DescribeImageReferences says of `images` (SSM parameters, Image Builder
    /// recipes, … besides instances and templates) to `index`. It is asked per image, so the
    /// sweep asks it only about the images that would otherwise go.
    async fn add_references(&self, region: &Region, images: &[ImageId], index: &mut InUseIndex);
    /// [`Self::usage`] with the references of `images`.
    async fn in_use(&self, region: &Region, images: &[ImageId]) -> InUseIndex {
        let mut index = self.usage(region).await;
        self.add_references(region, images, &mut index).await;
        index
    }
    async fn launch_permissions(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Vec<Grantee>, CatalogueError>;
    async fn enable_deprecation(
        &self,
        region: &Region,
        image: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError>;
    /// Deregisters, keeping the snapshots (the reaper decides about those).
    async fn deregister(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError>;
    /// The image retention rules of the region's Recycle Bin that are in effect.
    async fn image_retention_rules(
        &self,
        region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError>;
    /// Tags the image [`RETIRED_TAG_KEY`] (the Recycle Bin rule's selector).
    async fn mark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError>;
    /// Removes the [`RETIRED_TAG_KEY`] tag again (after a deregistration that failed).
    async fn unmark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError>;
    /// The image usage reports of `image` (DescribeImageUsageReports), every state.
    async fn usage_reports(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<Vec<usage::UsageReport>, CatalogueError> {
        Err(unsupported("DescribeImageUsageReports", region))
    }
    /// The entries of a finished report (DescribeImageUsageReportEntries), all pages.
    async fn usage_report_entries(
        &self,
        region: &Region,
        _image: &ImageId,
        _report: &str,
    ) -> Result<Vec<usage::UsageEntry>, CatalogueError> {
        Err(unsupported("DescribeImageUsageReportEntries", region))
    }
    /// CreateImageUsageReport over `accounts` (`None`: every account) and
    /// [`usage::RESOURCE_TYPES`]; returns the report's id.
    async fn start_usage_report(
        &self,
        region: &Region,
        _image: &ImageId,
        _accounts: Option<&[AccountId]>,
    ) -> Result<String, CatalogueError> {
        Err(unsupported("CreateImageUsageReport", region))
    }
    /// The image an instance was launched from (DescribeInstances); `None` when the instance
    /// is gone.
    async fn launch_image_of(
        &self,
        region: &Region,
        _instance: &crate::ids::InstanceId,
    ) -> Result<Option<ImageId>, CatalogueError> {
        Err(unsupported("DescribeInstances", region))
    }
    /// Tags the image [`crate::quarantine::TAG_KEY`] with `value`.
    async fn mark_quarantined(
        &self,
        region: &Region,
        _image: &ImageId,
        _value: &str,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("CreateTags", region))
    }
    /// Takes the [`crate::quarantine::TAG_KEY`] tag off (only that tag).
    async fn unmark_quarantined(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("DeleteTags", region))
    }
    /// DisableImageDeprecation (release: the image had no deadline before quarantine).
    async fn disable_deprecation(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("DisableImageDeprecation", region))
    }
    /// DisableImage (quarantine with `--disable`).
    async fn disable_image(&self, region: &Region, _image: &ImageId) -> Result<(), CatalogueError> {
        Err(unsupported("DisableImage", region))
    }
    /// Grants launch permissions again (release of an image quarantine disabled: DisableImage
    /// took its shares away, EnableImage does not give them back).
    async fn add_launch_permissions(
        &self,
        region: &Region,
        _image: &ImageId,
        _grantees: &[Grantee],
    ) -> Result<(), CatalogueError> {
        Err(unsupported("ModifyImageAttribute", region))
    }
    /// EnableImage (release of an image quarantine disabled).
    async fn enable_image(&self, region: &Region, _image: &ImageId) -> Result<(), CatalogueError> {
        Err(unsupported("EnableImage", region))
    }
    /// EnableImageDeregistrationProtection with `WithCooldown` (`PROTECT_NEWEST`). A port
    /// that cannot do it says so: the step fails and is reported.
    async fn enable_protection(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("EnableImageDeregistrationProtection", region))
    }
    /// DisableImageDeregistrationProtection (only on images tagged
    /// [`protect::PROTECTED_TAG_KEY`]; the cooldown keeps them protected 24 hours more).
    async fn disable_protection(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("DisableImageDeregistrationProtection", region))
    }
    /// Tags the image [`protect::PROTECTED_TAG_KEY`] (before its protection is enabled).
    async fn mark_protected(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("CreateTags", region))
    }
    /// Removes the [`protect::PROTECTED_TAG_KEY`] tag (once its protection is disabled).
    async fn unmark_protected(
        &self,
        region: &Region,
        _image: &ImageId,
    ) -> Result<(), CatalogueError> {
        Err(unsupported("DeleteTags", region))
    }
}

/// The error of a [`DeprecationEc2`] method a port does not implement.
fn unsupported(operation: &'static str, region: &Region) -> CatalogueError {
    CatalogueError {
        operation,
        region: region.clone(),
        message: "not supported by this EC2 port".into(),
    }
}

/// [`DeprecationEc2::images_by_id`] asked [`DeprecationEc2::image`] by image: the default, and
/// an adapter's way when its request for all of them at once is refused.
pub async fn images_one_by_one(
    ec2: &(impl DeprecationEc2 + ?Sized),
    region: &Region,
    ids: &[ImageId],
) -> Result<BTreeMap<ImageId, ImageFacts>, CatalogueError> {
    let mut found = BTreeMap::new();
    for id in ids {
        if let Some(facts) = ec2.image(region, id).await? {
            found.insert(id.clone(), facts);
        }
    }
    Ok(found)
}

/// Whether a Recycle Bin rule of `rules` keeps an image with `tags` once the enforcer tags it.
pub fn recoverable(rules: &[RetentionRule], tags: &BTreeMap<String, String>) -> bool {
    crate::recycle_bin::recoverable(rules, tags, RETIRED_TAG_KEY, RETIRED_TAG_VALUE)
}

/// Why `image`, retired in `region`, could not be restored from the Recycle Bin under `rules`;
/// `None` when it could: it is EBS-backed and a rule keeps it once tagged.
pub fn unrestorable(image: &ImageFacts, region: &Region, rules: &[RetentionRule]) -> Option<Keep> {
    if image.root_device_type != "ebs" {
        let root = if image.root_device_type.is_empty() {
            "unknown".to_owned()
        } else {
            image.root_device_type.clone()
        };
        return Some(Keep::NotEbsBacked(root));
    }
    (!recoverable(rules, &image.tags)).then(|| Keep::NotRecoverable(region.clone()))
}

/// The policy's settings the unit tests of this module and its submodules start from: report
/// mode, 90 days, 14 of grace and of warning, the newest 2 of a family kept.
#[cfg(test)]
pub(crate) fn settings_for_tests() -> Settings {
    Settings {
        mode: Mode::Report,
        deprecate_after_days: 90,
        grace_days: 14,
        keep_latest: 2,
        warn_days: 14,
        in_use_days: 30,
        exempt_tag_key: "ami-warden:exempt".into(),
        family_tag_key: "ami-warden:family".into(),
        protect_newest: false,
        retire_shared_unused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "123456789012";

    fn settings() -> Settings {
        settings_for_tests()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:30Z".parse().unwrap()
    }

    fn image(id: &str, name: &str, created: &str) -> ImageFacts {
        ImageFacts {
            image_id: ImageId::parse(id).unwrap(),
            name: Some(name.into()),
            owner: AccountId::parse(OWN),
            created: Some(created.parse().unwrap()),
            deprecation: None,
            last_launched: None,
            state: "available".into(),
            tags: BTreeMap::new(),
            snapshots: Vec::new(),
            root_device_type: "ebs".into(),
            deregistration_protection: DeregistrationProtection::Disabled,
        }
    }

    fn plan_all(images: &[ImageFacts], in_use: &InUseIndex) -> Vec<Planned> {
        let shares = images.iter().map(|i| (i.image_id.clone(), Ok(vec![]))).collect();
        plan(images, in_use, &shares, &settings(), AccountId::parse(OWN).as_ref(), now())
    }

    #[test]
    fn families_strip_trailing_dates_and_versions() {
        assert_eq!(strip_version("web-2026-11-25"), "web");
        assert_eq!(strip_version("api-v1.4.2"), "api");
        assert_eq!(strip_version("base_al2023_20261125T0930Z"), "base-al2023");
        assert_eq!(strip_version("golden"), "golden");
        assert_eq!(strip_version("2026-11-25"), "2026");
        let mut tagged = image("ami-01", "web-2026-11-25", "2026-01-01T00:00:00Z");
        tagged.tags.insert("ami-warden:family".into(), "frontend".into());
        assert_eq!(family(&tagged, "ami-warden:family"), "frontend");
    }

    #[test]
    fn a_missing_deadline_is_creation_plus_n_days_never_in_the_past() {
        let s = settings();
        let fresh: DateTime<Utc> = "2026-11-20T00:00:00Z".parse().unwrap();
        assert_eq!(deadline_to_stamp(fresh, &s, now()), fresh + Duration::days(90));
        let old: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            deadline_to_stamp(old, &s, now()),
            "2026-11-25T12:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn an_old_image_first_stamped_today_is_warned_not_retired() {
        let p = plan_all(
            &[
                image("ami-01", "solo-1", "2025-01-01T00:00:00Z"),
                image("ami-02", "solo-2", "2025-01-02T00:00:00Z"),
                image("ami-03", "solo-3", "2025-01-03T00:00:00Z"),
            ],
            &InUseIndex::default(),
        );
        let oldest = p.iter().find(|p| p.image_id.as_str() == "ami-01").unwrap();
        assert!(oldest.stamp.is_some());
        assert!(matches!(oldest.decision, Decision::Keep(Keep::NotPastGrace { .. })), "{oldest:?}");
    }

    #[test]
    fn keeps_the_newest_of_a_family_and_retires_the_rest_past_grace() {
        let mut images: Vec<ImageFacts> = (1..=5)
            .map(|i| {
                let mut im = image(
                    &format!("ami-0{i}"),
                    &format!("app-2025-0{i}-01"),
                    &format!("2025-0{i}-01T00:00:00Z"),
                );
                im.deprecation = Some("2025-08-01T00:00:00Z".parse().unwrap());
                im
            })
            .collect();
        images.push(image("ami-99", "other-1", "2026-11-24T00:00:00Z"));
        let p = plan_all(&images, &InUseIndex::default());
        let by_id =
            |id: &str| p.iter().find(|p| p.image_id.as_str() == id).unwrap().decision.clone();
        assert_eq!(
            by_id("ami-05"),
            Decision::Keep(Keep::NewestOfFamily { family: "app".into(), rank: 1, keep_latest: 2 })
        );
        assert!(matches!(by_id("ami-04"), Decision::Keep(Keep::NewestOfFamily { rank: 2, .. })));
        for id in ["ami-01", "ami-02", "ami-03"] {
            assert_eq!(by_id(id), Decision::Deregister, "{id}");
        }
    }

    fn retirable() -> ImageFacts {
        let mut im = image("ami-0old", "old-1", "2025-01-01T00:00:00Z");
        im.deprecation = Some("2025-04-01T00:00:00Z".parse().unwrap());
        im
    }

    fn with_siblings(target: ImageFacts) -> Vec<ImageFacts> {
        // Two newer images of the same family, so keep-latest does not protect the target.
        vec![
            target,
            image("ami-0n1", "old-2", "2026-11-01T00:00:00Z"),
            image("ami-0n2", "old-3", "2026-11-02T00:00:00Z"),
        ]
    }

    fn decision_of(images: &[ImageFacts], in_use: &InUseIndex) -> Decision {
        plan_all(images, in_use)
            .into_iter()
            .find(|p| p.image_id.as_str() == "ami-0old")
            .unwrap()
            .decision
    }

    #[test]
    fn any_use_or_doubt_keeps_an_image() {
        let images = with_siblings(retirable());
        assert_eq!(decision_of(&images, &InUseIndex::default()), Decision::Deregister);

        let mut used = InUseIndex::default();
        used.add("ami-0old", "launch template lt-1 v3");
        assert_eq!(decision_of(&images, &used).reason(), "in use by launch template lt-1 v3");

        let failed = InUseIndex {
            failures: vec!["DescribeLaunchTemplates: throttled".into()],
            ..Default::default()
        };
        assert!(matches!(decision_of(&images, &failed), Decision::Keep(Keep::LookupFailed(_))));

        let mut ssm = InUseIndex::default();
        ssm.add("resolve:ssm:/golden/latest", "launch template lt-2 v1");
        assert!(matches!(decision_of(&images, &ssm), Decision::Keep(Keep::Unresolved(_))));

        let mut launched = retirable();
        launched.last_launched = Some("2026-11-20T00:00:00Z".parse().unwrap());
        assert!(matches!(
            decision_of(&with_siblings(launched), &InUseIndex::default()),
            Decision::Keep(Keep::LaunchedRecently(_))
        ));

        let mut exempt = retirable();
        exempt.tags.insert("ami-warden:exempt".into(), "forever".into());
        assert!(matches!(
            decision_of(&with_siblings(exempt), &InUseIndex::default()),
            Decision::Keep(Keep::Exempt { .. })
        ));

        let mut foreign = retirable();
        foreign.owner = AccountId::parse("999999999999");
        assert_eq!(
            decision_of(&with_siblings(foreign), &InUseIndex::default()),
            Decision::Keep(Keep::NotOwned)
        );

        // Registered, yet tagged as retired: someone restored it from the Recycle Bin.
        let mut restored = retirable();
        restored.tags.insert(RETIRED_TAG_KEY.into(), RETIRED_TAG_VALUE.into());
        assert_eq!(
            decision_of(&with_siblings(restored), &InUseIndex::default()),
            Decision::Keep(Keep::Restored)
        );

        // Quarantined: deprecated now to take it out of use, never retired for that.
        let mut quarantined = retirable();
        quarantined.tags.insert(crate::quarantine::TAG_KEY.into(), "ami-1@us-east-1: CVE".into());
        assert_eq!(
            decision_of(&with_siblings(quarantined), &InUseIndex::default()),
            Decision::Keep(Keep::Quarantined("ami-1@us-east-1: CVE".into()))
        );
    }

    #[test]
    fn deregistration_protection_is_read_as_ec2_reports_it_and_unknown_values_protect() {
        use DeregistrationProtection as P;
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(P::parse(Some("disabled")), P::Disabled);
        assert_eq!(P::parse(None), P::Disabled, "an endpoint that does not report it");
        assert_eq!(P::parse(Some("enabled-without-cooldown")), P::Enabled);
        assert_eq!(P::parse(Some("enabled")), P::Enabled);
        assert_eq!(P::parse(Some("enabled-with-cooldown")), P::EnabledWithCooldown);
        for cooling in [
            "disabled-after 2026-11-26T12:00:30Z",
            "disabled-after-2026-11-26T12:00:30.000Z",
            "disabled-after:2026-11-26T13:00:30+01:00",
        ] {
            assert_eq!(
                P::parse(Some(cooling)),
                P::DisabledAfter(at("2026-11-26T12:00:30Z")),
                "{cooling}"
            );
        }
        for odd in ["Enabled", "", "disabled-after tomorrow", "disabled-after", "paused"] {
            let read = P::parse(Some(odd));
            assert_eq!(read, P::Unknown(odd.into()));
            assert!(read.protects_at(now()), "{odd:?} is never leave to deregister");
        }
        assert!(!P::Disabled.protects_at(now()));
        assert!(P::Enabled.protects_at(now()) && P::EnabledWithCooldown.protects_at(now()));
        let until = now() + Duration::hours(24);
        assert!(P::DisabledAfter(until).protects_at(now()));
        assert!(!P::DisabledAfter(until).protects_at(until), "the cooldown is over");
    }

    #[test]
    fn a_protected_image_is_kept_in_report_and_enforce_mode_alike() {
        use DeregistrationProtection as P;
        let own = AccountId::parse(OWN);
        let in_force = [
            P::Enabled,
            P::EnabledWithCooldown,
            P::DisabledAfter(now() + Duration::hours(3)),
            P::Unknown("paused-for-audit".into()),
        ];
        for mode in [Mode::Report, Mode::Enforce] {
            let settings = Settings { mode, ..settings() };
            for protection in &in_force {
                let mut protected = retirable();
                protected.deregistration_protection = protection.clone();
                let images = with_siblings(protected);
                // Kept before any lookup about it: its launch permissions are not asked for.
                for shares in [
                    BTreeMap::new(),
                    images.iter().map(|i| (i.image_id.clone(), Ok(vec![]))).collect(),
                ] {
                    let p = plan(
                        &images,
                        &InUseIndex::default(),
                        &shares,
                        &settings,
                        own.as_ref(),
                        now(),
                    );
                    assert_eq!(
                        p[0].decision,
                        Decision::Keep(Keep::DeregistrationProtected(protection.clone())),
                        "{mode:?} {protection:?}"
                    );
                }
            }
        }
        let mut protected = retirable();
        protected.deregistration_protection = P::EnabledWithCooldown;
        assert_eq!(
            decision_of(&with_siblings(protected), &InUseIndex::default()).reason(),
            "deregistration protection enabled (with cooldown)"
        );
        let mut unknown = retirable();
        unknown.deregistration_protection = P::Unknown("paused-for-audit".into());
        let reason = decision_of(&with_siblings(unknown), &InUseIndex::default()).reason();
        assert!(
            reason.starts_with("kept on doubt: deregistration protection")
                && reason.contains("paused-for-audit"),
            "{reason}"
        );
    }

    #[test]
    fn a_cooldown_that_is_over_no_longer_protects() {
        let mut cooled = retirable();
        cooled.deregistration_protection =
            DeregistrationProtection::DisabledAfter(now() - Duration::minutes(1));
        assert_eq!(
            decision_of(&with_siblings(cooled), &InUseIndex::default()),
            Decision::Deregister
        );
        let mut disabled = retirable();
        disabled.deregistration_protection = DeregistrationProtection::Disabled;
        assert_eq!(
            decision_of(&with_siblings(disabled), &InUseIndex::default()),
            Decision::Deregister
        );
    }

    #[test]
    fn a_retired_image_must_be_restorable_under_a_rule_in_effect() {
        let tag_rule = RetentionRule {
            resource_tags: vec![(RETIRED_TAG_KEY.into(), Some(RETIRED_TAG_VALUE.into()))],
            exclude_resource_tags: vec![],
        };
        let snapshots_rule = RetentionRule {
            resource_tags: vec![("ami-warden:reaped".into(), Some("true".into()))],
            exclude_resource_tags: vec![],
        };
        let all_but_keep_out = RetentionRule {
            resource_tags: vec![],
            exclude_resource_tags: vec![("keep-out".into(), None)],
        };
        let plain = BTreeMap::new();
        let kept_out = BTreeMap::from([("keep-out".to_owned(), "x".to_owned())]);
        assert!(!recoverable(&[], &plain));
        assert!(recoverable(std::slice::from_ref(&tag_rule), &plain));
        assert!(!recoverable(&[snapshots_rule], &plain), "another tag's rule");
        assert!(recoverable(std::slice::from_ref(&all_but_keep_out), &plain));
        assert!(
            !recoverable(std::slice::from_ref(&all_but_keep_out), &kept_out),
            "excluded by its own tags"
        );

        let region = Region::parse("us-east-1").unwrap();
        let rules = [tag_rule];
        assert_eq!(unrestorable(&retirable(), &region, &rules), None);
        assert_eq!(
            unrestorable(&retirable(), &region, &[]),
            Some(Keep::NotRecoverable(region.clone()))
        );
        let mut instance_store = retirable();
        instance_store.root_device_type = "instance-store".into();
        assert_eq!(
            unrestorable(&instance_store, &region, &rules),
            Some(Keep::NotEbsBacked("instance-store".into()))
        );
        instance_store.root_device_type = String::new();
        assert_eq!(
            unrestorable(&instance_store, &region, &rules),
            Some(Keep::NotEbsBacked("unknown".into()))
        );
    }

    #[test]
    fn failed_or_disabled_builds_do_not_take_the_newest_slots() {
        let mut images = with_siblings(retirable());
        for i in images.iter_mut().skip(1) {
            i.state = "failed".into();
        }
        // The two newer family members failed: the old working image is the family's newest.
        assert!(matches!(
            decision_of(&images, &InUseIndex::default()),
            Decision::Keep(Keep::NewestOfFamily { rank: 1, .. })
        ));
    }

    #[test]
    fn deadlines_are_stamped_only_on_the_accounts_own_images() {
        let mine = image("ami-0mine", "web-1", "2026-01-01T00:00:00Z");
        let theirs = ImageFacts {
            image_id: ImageId::parse("ami-0theirs").unwrap(),
            owner: AccountId::parse("222233334444"),
            ..mine.clone()
        };
        let images = [mine, theirs];
        let shares = images.iter().map(|i| (i.image_id.clone(), Ok(vec![]))).collect();
        let stamped = |own: Option<AccountId>| -> Vec<String> {
            let p =
                plan(&images, &InUseIndex::default(), &shares, &settings(), own.as_ref(), now());
            p.iter().filter(|p| p.stamp.is_some()).map(|p| p.image_id.to_string()).collect()
        };
        assert_eq!(stamped(AccountId::parse(OWN)), ["ami-0mine"]);
        // No account given (the CLI without --account): nothing is changed, stamps included.
        assert!(stamped(None).is_empty());
    }

    #[test]
    fn shared_or_unchecked_images_are_kept() {
        let images = with_siblings(retirable());
        let own = AccountId::parse(OWN);
        let mut shares: BTreeMap<ImageId, Result<Vec<Grantee>, String>> = BTreeMap::new();
        let p = plan(&images, &InUseIndex::default(), &shares, &settings(), own.as_ref(), now());
        assert_eq!(p[0].decision, Decision::Keep(Keep::SharesNotChecked));
        shares.insert(
            ImageId::parse("ami-0old").unwrap(),
            Ok(vec![Grantee::Account("222233334444".into())]),
        );
        let p = plan(&images, &InUseIndex::default(), &shares, &settings(), own.as_ref(), now());
        assert_eq!(p[0].decision.reason(), "shared with account 222233334444");
        shares.insert(ImageId::parse("ami-0old").unwrap(), Err("throttled".into()));
        let p = plan(&images, &InUseIndex::default(), &shares, &settings(), own.as_ref(), now());
        assert!(matches!(p[0].decision, Decision::Keep(Keep::LookupFailed(_))));
    }

    #[test]
    fn upcoming_deadlines_are_those_within_warn_days() {
        let mut soon = image("ami-0soon", "soon-1", "2026-09-01T00:00:00Z");
        soon.deprecation = Some("2026-12-01T00:00:00Z".parse().unwrap());
        let mut later = image("ami-0late", "late-1", "2026-11-01T00:00:00Z");
        later.deprecation = Some("2027-02-01T00:00:00Z".parse().unwrap());
        let p = plan_all(&[soon, later], &InUseIndex::default());
        let warned: Vec<String> =
            upcoming(&p, &settings(), now()).iter().map(|p| p.image_id.to_string()).collect();
        assert_eq!(warned, vec!["ami-0soon"]);
    }
}
