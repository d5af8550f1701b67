//! Allowed AMIs as it bears on particular images and instances: whether the region's setting
//! lets an image be discovered and launched, and which instances run images it no longer
//! allows. `lineage impact` and `lineage verify` say it for the images they list.
//!
//! [`allowance`] is the pure decision; [`gather`] asks EC2 (one GetAllowedImagesSettings, one
//! DescribeImages per 100 images, and optionally one paginated DescribeInstanceImageMetadata
//! per region) through the narrow [`AllowedImagesEc2`] trait. The account's own images are
//! never restricted by Allowed AMIs; EC2 reports them allowed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::guardrails::{AllowedImagesSettings, AllowedImagesState};
use crate::catalogue::CatalogueError;
use crate::ids::{ImageId, ImageRef, InstanceId, Region};

/// What EC2 says of one image it can describe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageAllowedFact {
    /// DescribeImages' `ImageAllowed`; absent while Allowed AMIs is disabled.
    pub allowed: Option<bool>,
}

/// An instance and the image it was launched from, as DescribeInstanceImageMetadata reports
/// them (even when the image is deregistered or no longer allowed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceImage {
    pub instance_id: InstanceId,
    /// `running`, `stopped`, …
    pub state: Option<String>,
    pub image_id: ImageId,
    pub image_allowed: Option<bool>,
}

/// The EC2 questions about Allowed AMIs. Implemented over the SDK by
/// [`crate::aws::exposure::Ec2Exposure`].
#[allow(async_fn_in_trait)]
pub trait AllowedImagesEc2 {
    /// GetAllowedImagesSettings: the region's state, criteria and who manages them.
    async fn allowed_images_settings(
        &self,
        region: &Region,
    ) -> Result<AllowedImagesSettings, CatalogueError>;
    /// `ImageAllowed` of each of `images` that EC2 describes (disabled and deprecated
    /// included); the others are absent from the answer.
    async fn images_allowed(
        &self,
        region: &Region,
        images: &[ImageId],
    ) -> Result<BTreeMap<ImageId, ImageAllowedFact>, CatalogueError>;
    /// Every instance of the region whose launch image EC2 reports as not allowed
    /// (DescribeInstanceImageMetadata, filter `image-allowed=false`).
    async fn instances_on_disallowed_images(
        &self,
        region: &Region,
    ) -> Result<Vec<InstanceImage>, CatalogueError>;
}

/// Whether an image may be discovered and launched in its region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "allowed", content = "detail", rename_all = "snake_case")]
pub enum Allowance {
    /// Allowed AMIs is on (enabled or audit mode) and allows it.
    Allowed,
    /// Allowed AMIs is enabled and does not allow it: it cannot be discovered or launched.
    NotAllowed,
    /// Allowed AMIs is in audit mode and would not allow it once enabled.
    WouldNotBeAllowed,
    /// Allowed AMIs is disabled in the region: nothing is restricted.
    NotRestricted,
    /// Not established, and why.
    Unknown(String),
}

impl Allowance {
    /// `allowed`, `NOT allowed`, … for tables and text.
    pub fn describe(&self) -> String {
        match self {
            Self::Allowed => "allowed".into(),
            Self::NotAllowed => "NOT allowed (Allowed AMIs enabled)".into(),
            Self::WouldNotBeAllowed => "would not be allowed (Allowed AMIs in audit mode)".into(),
            Self::NotRestricted => "not restricted (Allowed AMIs disabled)".into(),
            Self::Unknown(why) => format!("unknown ({why})"),
        }
    }

    /// Whether the image is, or once enabled would be, refused.
    pub fn refused(&self) -> bool {
        matches!(self, Self::NotAllowed | Self::WouldNotBeAllowed)
    }
}

/// The allowance of an image given its region's setting and what DescribeImages (or, for an
/// image it no longer shows, DescribeInstanceImageMetadata) said of it (`None`: not shown).
pub fn allowance(
    settings: &Result<AllowedImagesSettings, String>,
    image_allowed: Option<Option<bool>>,
) -> Allowance {
    let state = match settings {
        Ok(s) => &s.state,
        Err(e) => return Allowance::Unknown(format!("Allowed AMIs settings not read: {e}")),
    };
    match (state, image_allowed) {
        (AllowedImagesState::Disabled, _) => Allowance::NotRestricted,
        (AllowedImagesState::Other(s), _) => {
            Allowance::Unknown(format!("Allowed AMIs state {s} is not known to this version"))
        }
        (_, Some(Some(true))) => Allowance::Allowed,
        (AllowedImagesState::Enabled, Some(Some(false))) => Allowance::NotAllowed,
        (AllowedImagesState::AuditMode, Some(Some(false))) => Allowance::WouldNotBeAllowed,
        (_, Some(None)) => Allowance::Unknown("EC2 reported no ImageAllowed".into()),
        (AllowedImagesState::Enabled, None) => Allowance::Unknown(
            "EC2 does not show the image: deregistered, or not allowed and so not discoverable"
                .into(),
        ),
        (_, None) => Allowance::Unknown("EC2 does not show the image".into()),
    }
}

/// What [`gather`] learnt, by region and image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedFacts {
    pub settings: BTreeMap<Region, Result<AllowedImagesSettings, String>>,
    /// `ImageAllowed` of each image EC2 showed.
    pub images: BTreeMap<ImageRef, Option<bool>>,
    /// Instances on images not allowed, by region (asked only when wanted).
    pub instances: BTreeMap<Region, Result<Vec<InstanceImage>, String>>,
    /// Lookups that failed, with what they leave unknown.
    pub failures: Vec<String>,
}

impl AllowedFacts {
    /// The allowance of `image`: what DescribeImages said, else what an instance's metadata
    /// said of it.
    pub fn allowance(&self, image: &ImageRef) -> Allowance {
        let Some(settings) = self.settings.get(&image.region) else {
            return Allowance::Unknown("its region was not asked".into());
        };
        let from_instances = || {
            let rows = self.instances.get(&image.region)?.as_ref().ok()?;
            rows.iter().find(|r| r.image_id == image.image_id).map(|r| r.image_allowed)
        };
        allowance(settings, self.images.get(image).copied().or_else(from_instances))
    }

    /// The instances running any of `images` that EC2 reports as not allowed.
    pub fn instances_on(&self, images: &BTreeSet<ImageRef>) -> Vec<(Region, InstanceImage)> {
        let mut out = Vec::new();
        for (region, rows) in &self.instances {
            for row in rows.iter().flatten() {
                if images.contains(&ImageRef::new(region.clone(), row.image_id.clone())) {
                    out.push((region.clone(), row.clone()));
                }
            }
        }
        out
    }
}

/// DescribeImages names at most this many ids a request here.
const IDS_PER_REQUEST: usize = 100;

/// Asks each region of `images` for its Allowed AMIs setting and the images' `ImageAllowed`;
/// with `instances`, also for the instances on images not allowed. Never fails: a failed
/// lookup is in `failures` and leaves its facts unknown.
pub async fn gather(
    ec2: &impl AllowedImagesEc2,
    images: &[ImageRef],
    instances: bool,
) -> AllowedFacts {
    let mut by_region: BTreeMap<&Region, Vec<ImageId>> = BTreeMap::new();
    for image in images {
        let ids = by_region.entry(&image.region).or_default();
        if !ids.contains(&image.image_id) {
            ids.push(image.image_id.clone());
        }
    }
    let mut facts = AllowedFacts::default();
    for (region, ids) in by_region {
        let settings = ec2.allowed_images_settings(region).await.map_err(|e| e.to_string());
        if let Err(e) = &settings {
            facts.failures.push(format!("{region}: Allowed AMIs settings: {e}"));
        }
        let restricting =
            !matches!(settings.as_ref().map(|s| &s.state), Ok(AllowedImagesState::Disabled));
        facts.settings.insert(region.clone(), settings);
        if !restricting {
            continue; // nothing is restricted: no image or instance need be asked about
        }
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            match ec2.images_allowed(region, chunk).await {
                Ok(found) => facts.images.extend(
                    found
                        .into_iter()
                        .map(|(id, fact)| (ImageRef::new(region.clone(), id), fact.allowed)),
                ),
                Err(e) => facts.failures.push(format!("{region}: ImageAllowed: {e}")),
            }
        }
        if instances {
            let rows = ec2.instances_on_disallowed_images(region).await.map_err(|e| e.to_string());
            if let Err(e) = &rows {
                facts.failures.push(format!("{region}: instances on images not allowed: {e}"));
            }
            facts.instances.insert(region.clone(), rows);
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(state: &str) -> Result<AllowedImagesSettings, String> {
        Ok(AllowedImagesSettings {
            state: AllowedImagesState::parse(state),
            criteria: Vec::new(),
            managed_by: None,
        })
    }

    #[test]
    fn an_image_is_refused_only_where_allowed_amis_is_on_and_says_false() {
        assert_eq!(allowance(&settings("enabled"), Some(Some(false))), Allowance::NotAllowed);
        assert_eq!(
            allowance(&settings("audit-mode"), Some(Some(false))),
            Allowance::WouldNotBeAllowed
        );
        assert_eq!(allowance(&settings("enabled"), Some(Some(true))), Allowance::Allowed);
        assert_eq!(allowance(&settings("audit-mode"), Some(Some(true))), Allowance::Allowed);
        assert_eq!(allowance(&settings("disabled"), Some(Some(false))), Allowance::NotRestricted);
        assert_eq!(allowance(&settings("disabled"), None), Allowance::NotRestricted);
        assert!(Allowance::NotAllowed.refused() && Allowance::WouldNotBeAllowed.refused());
        assert!(!Allowance::Allowed.refused() && !Allowance::NotRestricted.refused());
    }

    #[test]
    fn what_cannot_be_established_is_unknown_never_allowed() {
        assert!(matches!(
            allowance(&Err("AccessDenied".into()), Some(Some(true))),
            Allowance::Unknown(why) if why.contains("AccessDenied")
        ));
        assert!(matches!(
            allowance(&settings("enabled"), None),
            Allowance::Unknown(why) if why.contains("not discoverable")
        ));
        assert!(matches!(allowance(&settings("audit-mode"), Some(None)), Allowance::Unknown(_)));
        assert!(matches!(allowance(&settings("strict"), Some(Some(true))), Allowance::Unknown(_)));
    }

    #[test]
    fn an_image_describe_images_no_longer_shows_takes_its_instances_word() {
        let region = Region::parse("us-east-1").unwrap();
        let image = ImageRef::new(region.clone(), ImageId::parse("ami-0gone").unwrap());
        let mut facts = AllowedFacts::default();
        facts.settings.insert(region.clone(), settings("enabled"));
        assert!(matches!(facts.allowance(&image), Allowance::Unknown(_)));
        facts.instances.insert(
            region.clone(),
            Ok(vec![InstanceImage {
                instance_id: InstanceId::parse("i-0abc").unwrap(),
                state: Some("running".into()),
                image_id: image.image_id.clone(),
                image_allowed: Some(false),
            }]),
        );
        assert_eq!(facts.allowance(&image), Allowance::NotAllowed);
        let on = facts.instances_on(&[image.clone()].into());
        assert_eq!(on.len(), 1);
        assert!(facts.instances_on(&BTreeSet::new()).is_empty());
    }
}
