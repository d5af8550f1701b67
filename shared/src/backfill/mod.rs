//! Lineage for the estate that existed before the recorder: what AWS still knows, as claims.
//!
//! The backfill gathers, per image, every statement any source makes about its parent: the
//! CloudTrail records of its creating call (replayed through the recorder itself), DescribeImages'
//! `SourceImageId`, `GetImageAncestry`, and the descriptions AWS writes on the snapshots of
//! copied and created images. This module is the pure part: reading snapshot descriptions, and
//! grouping an image's claims into the writes to make, most trusted first. The store is the
//! arbiter: the first parent written is the edge, an agreeing claim adds its source to it, a
//! disagreeing one is recorded as a conflict and reported ([`crate::lineage::StoreError::Conflict`]).

pub mod run;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{AccountId, ImageId, ImageRef, InstanceId, Region, SnapshotId};
use crate::lineage::{EdgeSource, NodeFacts, Origin, Parent};

/// An image as DescribeImages lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedImage {
    pub image: ImageRef,
    pub owner: Option<AccountId>,
    pub name: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// `available`, `disabled`, `pending`, …
    pub state: String,
    pub snapshots: Vec<SnapshotId>,
    /// `SourceImageId` + `SourceImageRegion`, when AWS returns them.
    pub source: Option<ImageRef>,
}

/// What a snapshot's description says about the image it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DescriptionLead {
    /// "Copied for DestinationAmi ami-X from SourceAmi ami-Y for SourceSnapshot snap-Z. …"
    /// (the source's region is not in the text).
    Copied { image: ImageId, source: ImageId },
    /// "Created by CreateImage(i-X) for ami-Y from vol-Z"
    Created { image: ImageId, instance: InstanceId },
}

impl DescriptionLead {
    pub fn image(&self) -> &ImageId {
        match self {
            Self::Copied { image, .. } | Self::Created { image, .. } => image,
        }
    }
}

/// Reads the description AWS writes on the snapshots of a copied or created image. Anything
/// else (a user's own description, a mangled one) is `None`: a lead, never a guess.
pub fn parse_description(text: &str) -> Option<DescriptionLead> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let after =
        |word: &str| words.iter().position(|w| *w == word).and_then(|i| words.get(i + 1)).copied();
    if let Some(rest) = text.strip_prefix("Copied for DestinationAmi ") {
        let image = ImageId::parse(rest.split_whitespace().next()?)?;
        let source = ImageId::parse(after("SourceAmi")?.trim_end_matches(['.', ',']))?;
        return Some(DescriptionLead::Copied { image, source });
    }
    if let Some(rest) = text.strip_prefix("Created by CreateImage(") {
        let (instance, rest) = rest.split_once(')')?;
        let image = rest.strip_prefix(" for ")?.split_whitespace().next()?;
        return Some(DescriptionLead::Created {
            image: ImageId::parse(image.trim_end_matches(['.', ',']))?,
            instance: InstanceId::parse(instance)?,
        });
    }
    None
}

/// One source's statement of an image's parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub parent: ImageRef,
    pub source: EdgeSource,
    /// The creating call, when the source tells it.
    pub origin: Option<Origin>,
}

/// How far a source is trusted when sources disagree: AWS's own record of the source image
/// first, then its ancestry chain, then a description (which anyone copying a snapshot can
/// set). CloudTrail records go through the recorder before any of these.
fn rank(source: EdgeSource) -> u8 {
    match source {
        EdgeSource::Event => 0,
        EdgeSource::Api => 1,
        EdgeSource::Ancestry => 2,
        EdgeSource::SnapshotDescription => 3,
    }
}

/// The writes for one image: one [`NodeFacts`] per parent named, the best-trusted parent
/// first (each with every source that names it), then the dissenting ones, which the store
/// records as conflicts. An image no source gives a parent gets one write without a parent.
/// The idempotency key of each write is derived from what it says, so the same facts are
/// written once however often the backfill runs.
pub fn node_writes(listed: &ListedImage, claims: &[Claim]) -> Vec<NodeFacts> {
    let mut by_parent: BTreeMap<&ImageRef, Vec<&Claim>> = BTreeMap::new();
    for claim in claims {
        by_parent.entry(&claim.parent).or_default().push(claim);
    }
    let mut groups: Vec<(&ImageRef, Vec<&Claim>)> = by_parent.into_iter().collect();
    groups.sort_by_key(|(parent, group)| {
        (group.iter().map(|c| rank(c.source)).min(), (*parent).clone())
    });
    let facts = |parent: Parent, sources: Vec<EdgeSource>, origin: Option<Origin>| {
        let names: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
        let target = match &parent {
            Parent::Image(p) => p.to_string(),
            _ => "none".to_owned(),
        };
        NodeFacts {
            image: listed.image.clone(),
            account: listed.owner.clone(),
            name: listed.name.clone(),
            created_at: listed.created_at,
            origin,
            parent,
            snapshots: listed.snapshots.clone(),
            event_id: format!("backfill:{}:{target}:{}", listed.image, names.join("+")),
            actor_arn: None,
            sources,
        }
    };
    if groups.is_empty() {
        return vec![facts(Parent::None, Vec::new(), None)];
    }
    groups
        .into_iter()
        .map(|(parent, group)| {
            let mut sources: Vec<EdgeSource> = group.iter().map(|c| c.source).collect();
            sources.sort();
            sources.dedup();
            let origin = group
                .iter()
                .find_map(|c| c.origin)
                .or_else(|| copy_if_cross_region(&listed.image, parent));
            facts(Parent::Image(parent.clone()), sources, origin)
        })
        .collect()
}

/// An image whose parent is in another region can only have been copied.
fn copy_if_cross_region(image: &ImageRef, parent: &ImageRef) -> Option<Origin> {
    (image.region != parent.region).then_some(Origin::CopyImage)
}

/// Where a copied image's source lives, when its description names only the id: the regions
/// whose images include that id. `None` unless exactly one does (never a guess).
pub fn locate(source: &ImageId, known: &BTreeMap<Region, Vec<ImageId>>) -> Option<Region> {
    let mut regions = known.iter().filter(|(_, ids)| ids.contains(source)).map(|(r, _)| r);
    match (regions.next(), regions.next()) {
        (Some(only), None) => Some(only.clone()),
        _ => None,
    }
}

/// A claim the backfill could not turn into an edge, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unresolved {
    pub image: ImageRef,
    pub source: EdgeSource,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(region: &str, id: &str) -> ImageRef {
        ImageRef::new(Region::parse(region).unwrap(), ImageId::parse(id).unwrap())
    }

    fn listed(image: ImageRef) -> ListedImage {
        ListedImage {
            image,
            owner: AccountId::parse("123456789012"),
            name: Some("app".into()),
            created_at: None,
            state: "available".into(),
            snapshots: vec![],
            source: None,
        }
    }

    #[test]
    fn reads_the_descriptions_aws_writes_and_nothing_else() {
        let copied = "Copied for DestinationAmi ami-0dst from SourceAmi ami-0src for SourceSnapshot snap-0abc. Task created on 1,764,000,000.";
        assert_eq!(
            parse_description(copied),
            Some(DescriptionLead::Copied {
                image: ImageId::parse("ami-0dst").unwrap(),
                source: ImageId::parse("ami-0src").unwrap()
            })
        );
        let created = "Created by CreateImage(i-0abc123) for ami-0new from vol-0123";
        assert_eq!(
            parse_description(created),
            Some(DescriptionLead::Created {
                image: ImageId::parse("ami-0new").unwrap(),
                instance: InstanceId::parse("i-0abc123").unwrap()
            })
        );
        assert_eq!(
            parse_description("Created by CreateImage(i-0abc) for ami-0new"),
            parse_description("Created by CreateImage(i-0abc) for ami-0new from vol-1")
        );
        for other in [
            "golden root volume",
            "Copied for DestinationAmi nonsense",
            "Created by CreateImage(x) for ami-1",
            "",
            "Copied for DestinationAmi ami-1 from SourceAmi",
        ] {
            assert_eq!(parse_description(other), None, "{other}");
        }
    }

    #[test]
    fn agreeing_sources_make_one_edge_and_a_dissenter_comes_last() {
        let child = img("eu-west-1", "ami-0child");
        let right = img("us-east-1", "ami-0right");
        let wrong = img("eu-west-1", "ami-0wrong");
        let claims = [
            Claim {
                parent: wrong.clone(),
                source: EdgeSource::SnapshotDescription,
                origin: Some(Origin::CopyImage),
            },
            Claim { parent: right.clone(), source: EdgeSource::Ancestry, origin: None },
            Claim { parent: right.clone(), source: EdgeSource::Api, origin: None },
        ];
        let writes = node_writes(&listed(child.clone()), &claims);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].parent, Parent::Image(right.clone()));
        assert_eq!(writes[0].sources, vec![EdgeSource::Api, EdgeSource::Ancestry]);
        assert_eq!(writes[0].origin, Some(Origin::CopyImage), "a cross-region parent means a copy");
        assert_eq!(writes[1].parent, Parent::Image(wrong));
        assert_eq!(writes[1].sources, vec![EdgeSource::SnapshotDescription]);
        assert_ne!(writes[0].event_id, writes[1].event_id);
        assert!(writes.iter().all(|w| !w.from_event()), "backfill facts never override an event's");
        // Same facts, same keys: a re-run writes nothing new.
        assert_eq!(node_writes(&listed(child.clone()), &claims)[0].event_id, writes[0].event_id);
        // No claim: one write, no parent, origin unknown.
        let alone = node_writes(&listed(child), &[]);
        assert_eq!(alone.len(), 1);
        assert_eq!((alone[0].parent.clone(), alone[0].origin), (Parent::None, None));
    }

    #[test]
    fn a_source_id_is_located_only_when_one_region_has_it() {
        let mut known = BTreeMap::new();
        known.insert(Region::parse("us-east-1").unwrap(), vec![ImageId::parse("ami-0a").unwrap()]);
        known.insert(
            Region::parse("eu-west-1").unwrap(),
            vec![ImageId::parse("ami-0b").unwrap(), ImageId::parse("ami-0a").unwrap()],
        );
        assert_eq!(locate(&ImageId::parse("ami-0b").unwrap(), &known), Region::parse("eu-west-1"));
        assert_eq!(
            locate(&ImageId::parse("ami-0a").unwrap(), &known),
            None,
            "two regions: ambiguous"
        );
        assert_eq!(locate(&ImageId::parse("ami-0c").unwrap(), &known), None);
    }
}
