//! `PROTECT_NEWEST`: deregistration protection on each family's newest images.
//!
//! Pure: [`protection_plan`] takes the listed images and their family ranks (the ranks the
//! retirement plan uses, [`super::family_ranks`]) and says which images get protection (with
//! the 24-hour cooldown) and which lose the protection AMI Warden gave them. It decides
//! nothing about retirement: a protected image is kept by the plan like any other
//! ([`super::Keep::DeregistrationProtected`]).
//!
//! AMI Warden marks what it protects with the tag [`PROTECTED_TAG_KEY`] (set before it enables
//! the protection), and only ever disables protection on images carrying that tag: an image
//! someone else protected is never touched. Its IAM grant to disable protection is scoped to
//! that tag. An image that leaves its family's newest `KEEP_LATEST` has its protection
//! disabled; the cooldown keeps it protected for 24 hours more, so it is retired a day later
//! at the earliest.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{family, rank_of, DeregistrationProtection, ImageFacts, Settings};
use crate::ids::{AccountId, ImageId};

/// The tag AMI Warden puts on an image right before it enables its deregistration protection:
/// the record that the protection is AMI Warden's to take off.
pub const PROTECTED_TAG_KEY: &str = "ami-warden:protected";
pub const PROTECTED_TAG_VALUE: &str = "true";

/// What to do about one image's protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionChange {
    /// Among the newest of its family and not protected: tag it [`PROTECTED_TAG_KEY`], then
    /// enable protection with cooldown.
    Protect,
    /// Protected by AMI Warden (tagged, `enabled-with-cooldown`) and no longer among the
    /// newest: disable the protection (in force 24 hours more), then take the tag off.
    Unprotect,
    /// Tagged, yet its protection is already off (a tag left by an earlier run whose untagging
    /// failed, or someone else disabled it): take the tag off, so the tag never marks an image
    /// AMI Warden did not protect.
    Untag,
}

/// One image's protection step, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtectionStep {
    pub image_id: ImageId,
    pub name: Option<String>,
    pub family: String,
    /// Its rank among the family's launchable images (`None`: not launchable, so unranked).
    pub rank: Option<usize>,
    pub change: ProtectionChange,
}

impl ProtectionStep {
    /// Why, in words: `newest #1 of family web (KEEP_LATEST 3)`.
    pub fn reason(&self, keep_latest: u32) -> String {
        let rank = self.rank.map(|r| format!("#{r}")).unwrap_or_else(|| "not launchable".into());
        match self.change {
            ProtectionChange::Protect => {
                format!("newest of family {} ({rank} of KEEP_LATEST {keep_latest})", self.family)
            }
            ProtectionChange::Unprotect => format!(
                "no longer among the newest {keep_latest} of family {} ({rank}); protected 24 h more by the cooldown",
                self.family
            ),
            ProtectionChange::Untag => format!(
                "tagged {PROTECTED_TAG_KEY} but no longer protected; the tag is taken off"
            ),
        }
    }
}

/// Whether AMI Warden marked `image` as protected by it.
pub fn protected_by_warden(image: &ImageFacts) -> bool {
    image.tags.get(PROTECTED_TAG_KEY).is_some_and(|v| v == PROTECTED_TAG_VALUE)
}

/// The protection steps for a region's images: none unless `settings.protect_newest`. Only the
/// account's own images (`own_account`; `None` changes nothing), never an exempt one. An image
/// among its family's newest `keep_latest` (by `ranks`) is protected when its protection is
/// off (or only cooling down); an image AMI Warden protected that is not is unprotected. A
/// protection value AMI Warden does not read, or protection someone else enabled, is left
/// alone.
pub fn protection_plan(
    images: &[ImageFacts],
    ranks: &BTreeMap<ImageId, usize>,
    settings: &Settings,
    own_account: Option<&AccountId>,
) -> Vec<ProtectionStep> {
    if !settings.protect_newest {
        return Vec::new();
    }
    let Some(own) = own_account else { return Vec::new() };
    let mut steps = Vec::new();
    for image in images {
        if image.owner.as_ref() != Some(own) || image.tags.contains_key(&settings.exempt_tag_key) {
            continue;
        }
        let rank = rank_of(ranks, &image.image_id);
        let newest = rank <= settings.keep_latest as usize;
        let ours = protected_by_warden(image);
        use DeregistrationProtection as P;
        let change = match (&image.deregistration_protection, newest, ours) {
            (P::Disabled | P::DisabledAfter(_), true, _) => ProtectionChange::Protect,
            (P::EnabledWithCooldown, false, true) => ProtectionChange::Unprotect,
            (P::Disabled | P::DisabledAfter(_), false, true) => ProtectionChange::Untag,
            // Enabled without cooldown is not how AMI Warden enables it: someone else's.
            _ => continue,
        };
        steps.push(ProtectionStep {
            image_id: image.image_id.clone(),
            name: image.name.clone(),
            family: family(image, &settings.family_tag_key),
            rank: (rank != usize::MAX).then_some(rank),
            change,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::deprecation::family_ranks;
    use chrono::{DateTime, Duration, Utc};

    const OWN: &str = "123456789012";

    fn settings() -> Settings {
        Settings {
            mode: Mode::Enforce,
            protect_newest: true,
            ..crate::deprecation::settings_for_tests()
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:30Z".parse().unwrap()
    }

    fn image(id: &str, name: &str, day: u32) -> ImageFacts {
        ImageFacts {
            image_id: ImageId::parse(id).unwrap(),
            name: Some(name.into()),
            owner: AccountId::parse(OWN),
            created: Some(format!("2026-11-{day:02}T00:00:00Z").parse().unwrap()),
            deprecation: None,
            last_launched: None,
            state: "available".into(),
            tags: BTreeMap::new(),
            snapshots: Vec::new(),
            root_device_type: "ebs".into(),
            deregistration_protection: DeregistrationProtection::Disabled,
        }
    }

    fn ours(mut image: ImageFacts, protection: DeregistrationProtection) -> ImageFacts {
        image.tags.insert(PROTECTED_TAG_KEY.into(), PROTECTED_TAG_VALUE.into());
        image.deregistration_protection = protection;
        image
    }

    fn steps(images: &[ImageFacts], s: &Settings) -> Vec<(String, ProtectionChange)> {
        let ranks = family_ranks(images, s);
        protection_plan(images, &ranks, s, AccountId::parse(OWN).as_ref())
            .into_iter()
            .map(|p| (p.image_id.to_string(), p.change))
            .collect()
    }

    fn family_of_four() -> Vec<ImageFacts> {
        (1..=4).map(|i| image(&format!("ami-0{i}"), &format!("web-{i}"), i)).collect()
    }

    #[test]
    fn nothing_is_planned_unless_protect_newest_is_set() {
        let off = Settings { protect_newest: false, ..settings() };
        assert!(steps(&family_of_four(), &off).is_empty());
        let ranks = family_ranks(&family_of_four(), &settings());
        assert!(protection_plan(&family_of_four(), &ranks, &settings(), None).is_empty());
    }

    #[test]
    fn the_newest_keep_latest_of_each_family_are_protected_when_unprotected() {
        let mut images = family_of_four();
        images.push(image("ami-09", "db-1", 3));
        let planned = steps(&images, &settings());
        assert_eq!(
            planned,
            [
                ("ami-03".to_owned(), ProtectionChange::Protect),
                ("ami-04".to_owned(), ProtectionChange::Protect),
                ("ami-09".to_owned(), ProtectionChange::Protect),
            ]
        );
    }

    #[test]
    fn an_image_already_protected_or_cooling_down_is_handled_as_ec2_reports_it() {
        use DeregistrationProtection as P;
        let mut images = family_of_four();
        images[3] = ours(images[3].clone(), P::EnabledWithCooldown);
        images[2].deregistration_protection = P::Enabled; // someone else's, newest: fine
        assert!(steps(&images, &settings()).is_empty());
        // Cooling down after someone disabled it, yet still among the newest: protected again.
        images[3].deregistration_protection = P::DisabledAfter(now() + Duration::hours(3));
        assert_eq!(steps(&images, &settings()), [("ami-04".to_owned(), ProtectionChange::Protect)]);
        // A value AMI Warden does not read: left alone.
        images[3].deregistration_protection = P::Unknown("paused".into());
        assert!(steps(&images, &settings()).is_empty());
    }

    #[test]
    fn protection_warden_gave_is_taken_off_only_when_the_image_leaves_the_newest() {
        use DeregistrationProtection as P;
        let mut images = family_of_four();
        images[1] = ours(images[1].clone(), P::EnabledWithCooldown); // rank 3 of keep 2
        images[2] = ours(images[2].clone(), P::EnabledWithCooldown); // rank 2: stays
        images[3] = ours(images[3].clone(), P::EnabledWithCooldown);
        assert_eq!(
            steps(&images, &settings()),
            [("ami-02".to_owned(), ProtectionChange::Unprotect)]
        );
        // A failed build does not rank: the image it would displace keeps its place.
        images[0].state = "failed".into();
        images[1].state = "disabled".into();
        assert_eq!(
            steps(&images, &settings()),
            [("ami-02".to_owned(), ProtectionChange::Unprotect)],
            "a disabled image is not launchable, so not among the newest"
        );
    }

    #[test]
    fn protection_someone_else_enabled_is_never_taken_off() {
        use DeregistrationProtection as P;
        let mut images = family_of_four();
        images[0].deregistration_protection = P::EnabledWithCooldown; // no tag: not ours
        images[1].deregistration_protection = P::Enabled;
        images[2] = ours(images[2].clone(), P::EnabledWithCooldown);
        images[3] = ours(images[3].clone(), P::EnabledWithCooldown);
        assert!(steps(&images, &settings()).is_empty());
        // Tagged ours, but enabled without cooldown: someone changed it since; left alone.
        images[0] = ours(images[0].clone(), P::Enabled);
        assert!(steps(&images, &settings()).is_empty());
        // Tagged, protection already off and not among the newest: the tag goes.
        images[0].deregistration_protection = P::DisabledAfter(now() + Duration::hours(20));
        images[1] = ours(images[1].clone(), P::Disabled);
        assert_eq!(
            steps(&images, &settings()),
            [
                ("ami-01".to_owned(), ProtectionChange::Untag),
                ("ami-02".to_owned(), ProtectionChange::Untag)
            ]
        );
    }

    #[test]
    fn exempt_and_foreign_images_are_never_touched() {
        let mut images = family_of_four();
        images[3].tags.insert("ami-warden:exempt".into(), "yes".into());
        images[2].owner = AccountId::parse("999999999999");
        assert!(steps(&images, &settings()).is_empty());
        let s = Settings { keep_latest: 0, ..settings() };
        assert!(steps(&family_of_four(), &s).is_empty(), "KEEP_LATEST=0 protects nothing");
    }

    #[test]
    fn reasons_name_the_family_and_rank() {
        let step = ProtectionStep {
            image_id: ImageId::parse("ami-01").unwrap(),
            name: None,
            family: "web".into(),
            rank: Some(4),
            change: ProtectionChange::Unprotect,
        };
        assert_eq!(
            step.reason(3),
            "no longer among the newest 3 of family web (#4); protected 24 h more by the cooldown"
        );
        let step = ProtectionStep { rank: Some(1), change: ProtectionChange::Protect, ..step };
        assert_eq!(step.reason(3), "newest of family web (#1 of KEEP_LATEST 3)");
    }
}
