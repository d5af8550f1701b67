//! Launch provenance: is an image being launched (RunInstances, a new launch template version)
//! one the organization should run?
//!
//! Each launched image is looked up in the lineage: its node, its ancestors and the quarantines
//! on any of them. An image that descends from a quarantined one is CRITICAL. With approved
//! bases configured (`APPROVED_BASES`: image ids with or without a region, and owners: an alias
//! such as `amazon`, which GetImageAncestry reports for AWS-provided bases, or an account id),
//! an image that descends from none of them is a WARNING naming where its chain ends. An image
//! the lineage does not know is learnt on the spot (GetImageAncestry) before deciding.
//!
//! This module decides, over plain data; [`run`] reads the lineage (two DynamoDB requests on
//! the path where all is well, no EC2 request) and alerts.

pub mod run;

use serde::Serialize;

use crate::ids::{AccountId, ImageId, ImageRef, Region};
use crate::quarantine::Quarantine;

/// One approved base (`APPROVED_BASES`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Approved {
    /// `ami-…@region`.
    Image(ImageRef),
    /// `ami-…`: that id in whichever region the chain has it.
    ImageId(ImageId),
    /// An owner: an alias (`amazon`, `aws-marketplace`) or a 12-digit account id.
    Owner(String),
}

impl Approved {
    /// Reads one entry; `None` when it is none of the three forms.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Some((id, region)) = raw.split_once('@') {
            return Some(Self::Image(ImageRef::new(Region::parse(region)?, ImageId::parse(id)?)));
        }
        if raw.starts_with("ami-") {
            return ImageId::parse(raw).map(Self::ImageId);
        }
        let alias = !raw.is_empty()
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        alias.then(|| Self::Owner(raw.to_owned()))
    }

    fn matches(&self, link: &Known) -> bool {
        match self {
            Self::Image(image) => *image == link.image,
            Self::ImageId(id) => *id == link.image.image_id,
            Self::Owner(owner) => {
                link.owner_alias.as_deref() == Some(owner.as_str())
                    || link.account.as_ref().is_some_and(|a| a.as_str() == owner)
            }
        }
    }
}

/// What the lineage knows of one image of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Known {
    pub image: ImageRef,
    /// 0 for the launched image, 1 for its parent, …
    pub depth: u32,
    /// Whether the image has a node of its own (else it is known only as someone's parent).
    pub recorded: bool,
    pub account: Option<AccountId>,
    pub owner_alias: Option<String>,
    /// Why its parent is unknown, when it is.
    pub parent_note: Option<String>,
}

/// An image's lineage as the launch guard reads it: the image and its ancestors (nearest
/// first), and every quarantine recorded on any of them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lineage {
    pub chain: Vec<Known>,
    pub quarantines: Vec<Quarantine>,
}

impl Lineage {
    /// Whether the lineage knows the image at all (a node, or ancestors).
    pub fn known(&self) -> bool {
        self.chain.first().is_some_and(|k| k.recorded) || self.chain.len() > 1
    }
}

/// The verdict on one launched image.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It descends from (or is) a quarantined image: CRITICAL.
    Quarantined { quarantine: Quarantine, chain: Vec<ImageRef> },
    /// Approved bases are configured and it descends from none: WARNING.
    NotApproved { ends: String },
    /// It descends from an approved base.
    Approved { base: ImageRef },
    /// No approved bases are configured, and no quarantine applies.
    NoBasesConfigured,
    /// The lineage does not know it, even after asking AWS: with approved bases, a WARNING.
    Unknown { why: String },
}

/// Decides on one launched image from its lineage. Pure.
pub fn decide(lineage: &Lineage, approved: &[Approved]) -> Verdict {
    let active: Vec<&Quarantine> = lineage.quarantines.iter().filter(|q| q.active()).collect();
    for (i, link) in lineage.chain.iter().enumerate() {
        if let Some(q) = active.iter().find(|q| q.image == link.image) {
            let chain = lineage.chain[..=i].iter().map(|k| k.image.clone()).collect();
            return Verdict::Quarantined { quarantine: (*q).clone(), chain };
        }
    }
    if approved.is_empty() {
        return Verdict::NoBasesConfigured;
    }
    if !lineage.known() {
        return Verdict::Unknown { why: "not in the lineage, and AWS tells no ancestry".into() };
    }
    if let Some(base) = lineage.chain.iter().find(|k| approved.iter().any(|a| a.matches(k))) {
        return Verdict::Approved { base: base.image.clone() };
    }
    Verdict::NotApproved { ends: chain_end(lineage) }
}

/// Where the chain ends, in words: at a root, or at an image whose parent is unknown.
fn chain_end(lineage: &Lineage) -> String {
    let Some(last) = lineage.chain.last() else { return "nowhere".into() };
    let owner = match (&last.owner_alias, &last.account) {
        (Some(alias), _) => format!(", owner {alias}"),
        (None, Some(account)) => format!(", owner {account}"),
        (None, None) => String::new(),
    };
    match (&last.parent_note, last.recorded) {
        (Some(note), _) => format!("{}{owner}: its parent is unknown ({note})", last.image),
        (None, false) => format!("{}{owner}: never recorded itself", last.image),
        (None, true) => format!("{}{owner}: a root", last.image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn r(id: &str) -> ImageRef {
        ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse(id).unwrap())
    }

    fn known(id: &str, depth: u32) -> Known {
        Known {
            image: r(id),
            depth,
            recorded: true,
            account: AccountId::parse("111122223333"),
            owner_alias: None,
            parent_note: None,
        }
    }

    fn chain(ids: &[&str]) -> Lineage {
        let chain = ids.iter().enumerate().map(|(i, id)| known(id, i as u32)).collect();
        Lineage { chain, quarantines: Vec::new() }
    }

    fn quarantine(id: &str) -> Quarantine {
        Quarantine {
            image: r(id),
            reason: "CVE".into(),
            by: "sec".into(),
            at: Utc::now(),
            disable: false,
            released: None,
        }
    }

    #[test]
    fn approved_bases_read_images_ids_and_owners_and_refuse_the_rest() {
        assert_eq!(
            Approved::parse("ami-0123456789abcdef0@eu-west-1"),
            Some(Approved::Image(ImageRef::new(
                Region::parse("eu-west-1").unwrap(),
                ImageId::parse("ami-0123456789abcdef0").unwrap()
            )))
        );
        assert!(matches!(Approved::parse("ami-0123456789abcdef0"), Some(Approved::ImageId(_))));
        assert_eq!(Approved::parse(" amazon "), Some(Approved::Owner("amazon".into())));
        assert_eq!(Approved::parse("ami-zz@nowhere"), None);
        assert_eq!(Approved::parse("owner with spaces"), None);
    }

    #[test]
    fn a_quarantined_ancestor_is_critical_whatever_the_bases() {
        let mut lineage = chain(&["ami-04", "ami-03", "ami-02", "ami-01"]);
        lineage.quarantines = vec![quarantine("ami-02")];
        let Verdict::Quarantined { chain, .. } =
            decide(&lineage, &[Approved::ImageId(ImageId::parse("ami-01").unwrap())])
        else {
            panic!()
        };
        assert_eq!(chain, vec![r("ami-04"), r("ami-03"), r("ami-02")]);
        let mut released = quarantine("ami-02");
        released.released = Some(crate::quarantine::Release { by: "x".into(), at: Utc::now() });
        lineage.quarantines = vec![released];
        assert_eq!(decide(&lineage, &[]), Verdict::NoBasesConfigured);
    }

    #[test]
    fn a_chain_from_an_approved_base_or_owner_passes_and_another_names_its_end() {
        let mut lineage = chain(&["ami-03", "ami-02", "ami-01"]);
        let base = [Approved::ImageId(ImageId::parse("ami-01").unwrap())];
        assert_eq!(decide(&lineage, &base), Verdict::Approved { base: r("ami-01") });
        lineage.chain[2].owner_alias = Some("amazon".into());
        let amazon = [Approved::Owner("amazon".into())];
        assert_eq!(decide(&lineage, &amazon), Verdict::Approved { base: r("ami-01") });
        lineage.chain[2].parent_note = Some("instance i-1 no longer exists".into());
        let other = [Approved::Owner("999999999999".into())];
        let Verdict::NotApproved { ends } = decide(&lineage, &other) else { panic!() };
        assert_eq!(
            ends,
            "ami-01@us-east-1, owner amazon: its parent is unknown (instance i-1 no longer exists)"
        );
    }

    #[test]
    fn an_unknown_image_is_unknown_only_when_bases_are_asked_for() {
        let mut lineage = chain(&["ami-09"]);
        lineage.chain[0].recorded = false;
        assert_eq!(decide(&lineage, &[]), Verdict::NoBasesConfigured);
        let bases = [Approved::Owner("amazon".into())];
        assert!(matches!(decide(&lineage, &bases), Verdict::Unknown { .. }));
    }
}
