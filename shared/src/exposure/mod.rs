//! Public exposure: is an image or snapshot public or shared outside the allow-list, how bad is
//! it, and what (if anything) to revert.
//!
//! The policy here is pure: [`assess_change`] takes a permission change from CloudTrail and the
//! live state re-read from EC2 ([`Live`]), and returns a [`Finding`]: the severity, whether the
//! exposure is still live, and the [`Remediation`] decision. [`guard`] is the shell that
//! gathers the facts, carries out the decision and publishes the alert; [`sweep`] is the daily
//! full check. SDK access goes through the [`ExposureEc2`] trait. [`guardrails`] decides about
//! the account's block public access for snapshots and Allowed AMIs settings, [`allowed`] what
//! Allowed AMIs says of particular images and instances.

pub mod allowed;
pub mod findings;
pub mod guard;
pub mod guardrails;
pub mod ledger;
pub mod sweep;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::catalogue::CatalogueError;
use crate::config::Config;
use crate::event::{Grantee, PermissionChange};
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::notify::Severity;

/// Shares that are not exposure, and what to do about those that are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub allowed_accounts: BTreeSet<String>,
    pub allowed_orgs: BTreeSet<String>,
    pub allowed_ous: BTreeSet<String>,
    /// Remove `group: all` from images and snapshots (`REMEDIATE_PUBLIC`).
    pub remediate_public: bool,
    /// Also remove shares outside the allow-list (`REMEDIATE_SHARES`); only with
    /// `remediate_public`.
    pub remediate_shares: bool,
    pub exempt_tag_key: String,
    /// How often the daily sweep reads every image's launch permissions, events or not
    /// (`EXPOSURE_FULL_READ_DAYS`; in between it reads only what may have changed).
    pub full_read_every: chrono::Duration,
    /// How long before a sweep began an image must have been made for that sweep to have
    /// listed it for certain: EC2 rounds creation times down to the second, its listing is
    /// eventually consistent, and its clock is not ours. Younger images are read again.
    pub listing_margin: chrono::Duration,
}

/// [`Settings::listing_margin`] in the functions and the CLI: a minute, well past the second
/// of rounding and the seconds a new image takes to be listed. An image older than that which
/// a sweep still did not list (a share whose event was lost as well) waits for the next full
/// read; a public one is read every day anyway.
pub const LISTING_MARGIN: chrono::Duration = chrono::Duration::minutes(1);

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            allowed_accounts: config.allowed_account_ids.clone(),
            allowed_orgs: config.allowed_org_arns.clone(),
            allowed_ous: config.allowed_ou_arns.clone(),
            remediate_public: config.remediate_public,
            remediate_shares: config.remediate_shares,
            exempt_tag_key: config.exempt_tag_key.clone(),
            full_read_every: chrono::Duration::days(config.exposure_full_read_days.into()),
            listing_margin: LISTING_MARGIN,
        }
    }

    /// Whether granting to `grantee` exposes the resource: everyone, or anyone outside the
    /// allow-list. An unknown group is treated as exposure: nothing is assumed safe.
    pub fn is_exposure(&self, grantee: &Grantee) -> bool {
        match grantee {
            Grantee::Public | Grantee::Group(_) | Grantee::Unreadable(_) => true,
            Grantee::Account(a) => !self.allowed_accounts.contains(a),
            Grantee::Organization(o) => !self.allowed_orgs.contains(o),
            Grantee::OrganizationalUnit(u) => !self.allowed_ous.contains(u),
        }
    }

    pub fn exposures<'a>(&self, grantees: impl IntoIterator<Item = &'a Grantee>) -> Vec<Grantee> {
        let set: BTreeSet<Grantee> =
            grantees.into_iter().filter(|g| self.is_exposure(g)).cloned().collect();
        set.into_iter().collect()
    }
}

/// Whether a grantee makes the resource public (rather than shared).
pub fn is_public(grantee: &Grantee) -> bool {
    matches!(grantee, Grantee::Public)
        || matches!(grantee, Grantee::Group(g) if g.eq_ignore_ascii_case("all"))
}

/// Human form of a grantee: `everyone (group: all)`, `account 1234…`, …
pub fn describe_grantee(g: &Grantee) -> String {
    match g {
        Grantee::Public => "everyone (group: all)".into(),
        Grantee::Group(name) => format!("group {name}"),
        Grantee::Account(a) => format!("account {a}"),
        Grantee::Organization(o) => format!("organization {o}"),
        Grantee::OrganizationalUnit(u) => format!("OU {u}"),
        Grantee::Unreadable(raw) => format!("a grantee this version cannot read ({raw})"),
    }
}

pub fn describe_grantees(list: &[Grantee]) -> String {
    if list.is_empty() {
        return "nobody".into();
    }
    list.iter().map(describe_grantee).collect::<Vec<_>>().join(", ")
}

/// What the exposure is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    Image { image: ImageRef },
    Snapshot { region: Region, snapshot: SnapshotId },
}

impl Resource {
    pub fn region(&self) -> &Region {
        match self {
            Self::Image { image } => &image.region,
            Self::Snapshot { region, .. } => region,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Image { image } => image.image_id.as_str(),
            Self::Snapshot { snapshot, .. } => snapshot.as_str(),
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Self::Image { .. } => "image",
            Self::Snapshot { .. } => "snapshot",
        }
    }
}

/// Who may use an image or snapshot right now, as EC2 reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    pub owner: Option<AccountId>,
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Launch permissions (images) or create-volume permissions (snapshots).
    pub permissions: Vec<Grantee>,
}

/// The live state of something, re-read from EC2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "value", rename_all = "snake_case")]
pub enum Live<T> {
    Found(T),
    /// It no longer exists (deregistered, deleted).
    Gone,
    /// EC2 could not be asked; the reason.
    Unknown(String),
}

/// Whether the exposure an event reported is still in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Status {
    /// The live state still has it.
    Live,
    /// Already reverted when AMI Warden looked.
    AlreadyUndone,
    /// The resource no longer exists.
    Gone,
    /// The live state could not be read; the event is taken at its word.
    Unknown(String),
    /// The event removed exposure and none is left.
    Ended,
    /// The event removed some exposure but some is left.
    StillExposed,
}

/// What to do about a live exposure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "detail", rename_all = "snake_case")]
pub enum Remediation {
    /// Remediation is off (`REMEDIATE_PUBLIC=false`).
    Off,
    /// Nothing to remove (not live, or nothing remediable).
    NotNeeded,
    /// Left in place, and why (exempt tag, another account's resource, unknown owner).
    Skipped(String),
    /// Remove these grants.
    Remove(Vec<Grantee>),
}

/// What an event about permissions amounts to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// `image-public`, `image-shared`, `snapshot-public`, `snapshot-shared`,
    /// `exposure-resolved`, `exposure-reduced`.
    pub kind: &'static str,
    pub resource: Resource,
    /// Exposing grants the event added.
    pub added: Vec<Grantee>,
    /// Exposing grants the event removed.
    pub removed: Vec<Grantee>,
    /// Exposing grants in place now (empty when unknown).
    pub live_exposure: Vec<Grantee>,
    pub status: Status,
    pub remediation: Remediation,
}

/// Assesses a launch- or create-volume-permission change against the live state.
///
/// `own_account` is the account this deployment acts in: remediation never touches a resource
/// whose owner is anything else, or unknown. Returns `None` when nothing exposing changed
/// (allow-listed shares, or removals of allow-listed shares).
pub fn assess_change(
    resource: Resource,
    change: &PermissionChange,
    live: &Live<Access>,
    settings: &Settings,
    own_account: Option<&AccountId>,
) -> Option<Finding> {
    let added = settings.exposures(&change.add);
    let removed = settings.exposures(&change.remove);
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let live_exposure = match live {
        Live::Found(access) => settings.exposures(&access.permissions),
        _ => Vec::new(),
    };
    let noun = resource.noun();
    let (severity, kind, status) = if !added.is_empty() {
        let public = added.iter().any(is_public);
        let kind = match (noun, public) {
            ("image", true) => "image-public",
            ("image", false) => "image-shared",
            (_, true) => "snapshot-public",
            (_, false) => "snapshot-shared",
        };
        let full = if public { Severity::Critical } else { Severity::Warning };
        // An exposure that is already undone (or whose resource is gone) is reported as such,
        // one step down, so a CRITICAL always means "live now or not known to be over".
        let (severity, status) = match live {
            Live::Found(_) if added.iter().any(|g| live_exposure.contains(g)) => {
                (full, Status::Live)
            }
            Live::Found(_) => (lower(full), Status::AlreadyUndone),
            Live::Gone => (lower(full), Status::Gone),
            Live::Unknown(why) => (full, Status::Unknown(why.clone())),
        };
        (severity, kind, status)
    } else {
        match live {
            Live::Found(_) if live_exposure.is_empty() => {
                (Severity::Resolved, "exposure-resolved", Status::Ended)
            }
            Live::Gone => (Severity::Resolved, "exposure-resolved", Status::Gone),
            Live::Found(_) => (Severity::Info, "exposure-reduced", Status::StillExposed),
            Live::Unknown(why) => {
                (Severity::Info, "exposure-reduced", Status::Unknown(why.clone()))
            }
        }
    };
    let remediation = match (&status, live) {
        (Status::Live, Live::Found(access)) => {
            decide_remediation(access, &live_exposure, settings, own_account)
        }
        _ if !settings.remediate_public => Remediation::Off,
        _ => Remediation::NotNeeded,
    };
    Some(Finding { severity, kind, resource, added, removed, live_exposure, status, remediation })
}

fn lower(severity: Severity) -> Severity {
    match severity {
        Severity::Critical => Severity::Warning,
        _ => Severity::Info,
    }
}

/// Which live grants to remove, if any: `group: all` always (when remediation is on); shares
/// outside the allow-list only with `remediate_shares`. Never on another account's resource,
/// an unknown owner, or an exempt one.
pub fn decide_remediation(
    access: &Access,
    live_exposure: &[Grantee],
    settings: &Settings,
    own_account: Option<&AccountId>,
) -> Remediation {
    if !settings.remediate_public {
        return Remediation::Off;
    }
    let remove: Vec<Grantee> = live_exposure
        .iter()
        .filter(|g| is_public(g) || settings.remediate_shares)
        .cloned()
        .collect();
    if remove.is_empty() {
        return if live_exposure.is_empty() {
            Remediation::NotNeeded
        } else {
            Remediation::Skipped(
                "shares outside the allow-list are reported, not reverted (REMEDIATE_SHARES=false)"
                    .into(),
            )
        };
    }
    match (&access.owner, own_account) {
        (Some(owner), Some(own)) if owner == own => {}
        (Some(owner), Some(own)) => {
            return Remediation::Skipped(format!(
                "owned by account {owner}, not this deployment's account {own}"
            ))
        }
        _ => return Remediation::Skipped("the owner could not be established".into()),
    }
    if let Some(value) = access.tags.get(&settings.exempt_tag_key) {
        return Remediation::Skipped(format!("exempt: tagged {}={value}", settings.exempt_tag_key));
    }
    Remediation::Remove(remove)
}

/// An image as the sweep lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnedImage {
    pub image_id: ImageId,
    pub name: Option<String>,
    /// DescribeImages' `Public` flag.
    pub public: bool,
    /// Its creation date; `None` when EC2 gave none that parses.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub snapshots: Vec<SnapshotId>,
}

/// The EC2 questions and actions of exposure checking (Allowed AMIs' questions included).
/// Implemented over the SDK by [`crate::aws::exposure::Ec2Exposure`].
#[allow(async_fn_in_trait)]
pub trait ExposureEc2: allowed::AllowedImagesEc2 {
    /// Owner, name, tags and launch permissions of an image; `None` when it does not exist.
    async fn image_access(&self, image: &ImageRef) -> Result<Option<Access>, CatalogueError>;
    /// Owner, tags and create-volume permissions of a snapshot; `None` when it does not exist.
    async fn snapshot_access(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<Access>, CatalogueError>;
    /// Owned images (including disabled and deprecated) whose block device mappings use the
    /// snapshot.
    async fn images_backed_by(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError>;
    /// The image block public access state of the region (`unblocked`, `block-new-sharing`).
    async fn block_public_access_state(&self, region: &Region) -> Result<String, CatalogueError>;
    /// The region's block public access for snapshots (GetSnapshotBlockPublicAccessState).
    async fn snapshot_block_public_access(
        &self,
        region: &Region,
    ) -> Result<guardrails::SnapshotBlockPublicAccess, CatalogueError>;
    async fn remove_launch_permissions(
        &self,
        image: &ImageRef,
        grantees: &[Grantee],
    ) -> Result<(), CatalogueError>;
    async fn remove_create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
        grantees: &[Grantee],
    ) -> Result<(), CatalogueError>;
    /// Every image this account owns in the region, including disabled and deprecated ones.
    async fn owned_images(&self, region: &Region) -> Result<Vec<OwnedImage>, CatalogueError>;
    /// An image's launch permissions; `None` when it does not exist.
    async fn launch_permissions(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Vec<Grantee>>, CatalogueError>;
    /// A snapshot's create-volume permissions; `None` when it does not exist.
    async fn create_volume_permissions(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<Vec<Grantee>>, CatalogueError>;
    /// Owned snapshots EC2 lists as restorable by everyone (to be confirmed per snapshot).
    async fn public_snapshot_candidates(
        &self,
        region: &Region,
    ) -> Result<Vec<SnapshotId>, CatalogueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "111111111111";

    fn settings() -> Settings {
        Settings {
            allowed_accounts: ["222222222222".to_owned()].into(),
            allowed_orgs: ["arn:aws:organizations::111111111111:organization/o-good".to_owned()]
                .into(),
            allowed_ous: BTreeSet::new(),
            remediate_public: true,
            remediate_shares: false,
            exempt_tag_key: "ami-warden:exempt".into(),
            full_read_every: chrono::Duration::days(7),
            listing_margin: LISTING_MARGIN,
        }
    }

    fn image() -> Resource {
        Resource::Image {
            image: ImageRef::new(
                Region::parse("eu-west-1").unwrap(),
                ImageId::parse("ami-0abc").unwrap(),
            ),
        }
    }

    fn access(permissions: Vec<Grantee>) -> Live<Access> {
        Live::Found(Access { owner: AccountId::parse(OWN), permissions, ..Access::default() })
    }

    fn add(grantees: Vec<Grantee>) -> PermissionChange {
        PermissionChange { add: grantees, remove: vec![] }
    }

    fn own() -> AccountId {
        AccountId::parse(OWN).unwrap()
    }

    #[test]
    fn making_an_image_public_is_critical_and_reverted_when_remediation_is_on() {
        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &access(vec![Grantee::Public]),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!(
            (f.severity, f.kind, &f.status),
            (Severity::Critical, "image-public", &Status::Live)
        );
        assert_eq!(f.remediation, Remediation::Remove(vec![Grantee::Public]));
    }

    #[test]
    fn remediation_off_by_default_only_alerts() {
        let s = Settings { remediate_public: false, ..settings() };
        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &access(vec![Grantee::Public]),
            &s,
            Some(&own()),
        )
        .unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.remediation, Remediation::Off);
    }

    #[test]
    fn allow_listed_shares_raise_nothing() {
        let change = add(vec![
            Grantee::Account("222222222222".into()),
            Grantee::Organization("arn:aws:organizations::111111111111:organization/o-good".into()),
        ]);
        assert_eq!(
            assess_change(image(), &change, &access(vec![]), &settings(), Some(&own())),
            None
        );
        let removal = PermissionChange { add: vec![], remove: change.add.clone() };
        assert_eq!(
            assess_change(image(), &removal, &access(vec![]), &settings(), Some(&own())),
            None
        );
    }

    #[test]
    fn a_share_outside_the_allow_list_is_a_warning_and_kept_unless_shares_are_remediated() {
        let stranger = Grantee::Account("999999999999".into());
        let f = assess_change(
            image(),
            &add(vec![stranger.clone()]),
            &access(vec![stranger.clone()]),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!((f.severity, f.kind), (Severity::Warning, "image-shared"));
        assert!(
            matches!(f.remediation, Remediation::Skipped(ref why) if why.contains("REMEDIATE_SHARES=false")),
            "{f:?}"
        );
        let s = Settings { remediate_shares: true, ..settings() };
        let f = assess_change(
            image(),
            &add(vec![stranger.clone()]),
            &access(vec![stranger.clone()]),
            &s,
            Some(&own()),
        )
        .unwrap();
        assert_eq!(f.remediation, Remediation::Remove(vec![stranger]));
    }

    #[test]
    fn an_exposure_already_undone_is_reported_as_such_one_step_down() {
        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &access(vec![]),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!((f.severity, &f.status), (Severity::Warning, &Status::AlreadyUndone));
        assert_eq!(f.remediation, Remediation::NotNeeded);
        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &Live::Gone,
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!(f.status, Status::Gone);
    }

    #[test]
    fn unknown_live_state_keeps_the_severity_and_changes_nothing() {
        let live = Live::Unknown("throttled".into());
        let f =
            assess_change(image(), &add(vec![Grantee::Public]), &live, &settings(), Some(&own()))
                .unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.status, Status::Unknown("throttled".into()));
        assert_eq!(f.remediation, Remediation::NotNeeded);
    }

    #[test]
    fn never_remediates_another_accounts_or_an_exempt_or_ownerless_image() {
        let theirs = Live::Found(Access {
            owner: AccountId::parse("333333333333"),
            permissions: vec![Grantee::Public],
            ..Access::default()
        });
        let f =
            assess_change(image(), &add(vec![Grantee::Public]), &theirs, &settings(), Some(&own()))
                .unwrap();
        assert!(
            matches!(f.remediation, Remediation::Skipped(ref why) if why.contains("333333333333")),
            "{f:?}"
        );

        let mut exempt = Access {
            owner: AccountId::parse(OWN),
            permissions: vec![Grantee::Public],
            ..Access::default()
        };
        exempt.tags.insert("ami-warden:exempt".into(), "marketplace".into());
        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &Live::Found(exempt),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert!(
            matches!(f.remediation, Remediation::Skipped(ref why) if why.contains("exempt")),
            "{f:?}"
        );

        let f = assess_change(
            image(),
            &add(vec![Grantee::Public]),
            &access(vec![Grantee::Public]),
            &settings(),
            None,
        )
        .unwrap();
        assert!(matches!(f.remediation, Remediation::Skipped(_)), "{f:?}");
    }

    #[test]
    fn removing_the_last_exposure_resolves_it_and_a_partial_removal_does_not() {
        let removal = PermissionChange { add: vec![], remove: vec![Grantee::Public] };
        let f =
            assess_change(image(), &removal, &access(vec![]), &settings(), Some(&own())).unwrap();
        assert_eq!(
            (f.severity, f.kind, &f.status),
            (Severity::Resolved, "exposure-resolved", &Status::Ended)
        );
        let stranger = Grantee::Account("999999999999".into());
        let f = assess_change(
            image(),
            &removal,
            &access(vec![stranger.clone()]),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!((f.severity, &f.status), (Severity::Info, &Status::StillExposed));
        assert_eq!(f.live_exposure, vec![stranger]);
    }

    #[test]
    fn snapshots_made_public_are_critical_too() {
        let snap = Resource::Snapshot {
            region: Region::parse("us-east-1").unwrap(),
            snapshot: SnapshotId::parse("snap-0abc").unwrap(),
        };
        let f = assess_change(
            snap,
            &add(vec![Grantee::Public]),
            &access(vec![Grantee::Public]),
            &settings(),
            Some(&own()),
        )
        .unwrap();
        assert_eq!((f.severity, f.kind), (Severity::Critical, "snapshot-public"));
    }

    #[test]
    fn an_unknown_group_counts_as_exposure() {
        assert!(settings().is_exposure(&Grantee::Group("everyone-ish".into())));
        assert!(!settings().is_exposure(&Grantee::Account("222222222222".into())));
    }
}
