//! Provenance: does an image descend from one of the approved bases, and what is the evidence?
//!
//! Pure: [`verify`] walks the subject's recorded ancestry (from the ancestors query and the
//! ancestors' nodes) and returns the chain of edges — each with the CloudTrail event that
//! recorded it, when and by whom — up to the first approved base, or the chain it found and
//! where it breaks (an unknown parent, an ancestor never recorded, a root that is not approved).
//! Deregistered ancestors stay in the chain with their state: provenance survives deletion.
//! [`annotate_allowed`] adds what Allowed AMIs says of each image of the chain, from facts the
//! caller gathered ([`crate::exposure::allowed::gather`]); it never changes the verdict.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{LineageNode, NodeState, Relative};
use crate::exposure::allowed::{Allowance, AllowedFacts};
use crate::ids::{ImageId, ImageRef};

/// An approved base: an image in a given region, or an image id in whichever region the
/// subject's ancestry has it (an operator often knows the golden image's id, not its region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    At(ImageRef),
    AnyRegion(ImageId),
}

impl Base {
    pub fn matches(&self, image: &ImageRef) -> bool {
        match self {
            Base::At(base) => base == image,
            Base::AnyRegion(id) => &image.image_id == id,
        }
    }
}

impl From<ImageRef> for Base {
    fn from(image: ImageRef) -> Self {
        Base::At(image)
    }
}

/// Whether a base given without a region names an id that the ancestry (the subject and its
/// ancestors) has in more than one region, and so matched only the nearest one: a sentence
/// saying so, to show beside the verdict.
pub fn ambiguity(approved: &[Base], ancestry: &[ImageRef]) -> Option<String> {
    let notes: Vec<String> = approved
        .iter()
        .filter_map(|base| {
            let Base::AnyRegion(id) = base else { return None };
            let regions: Vec<&str> = ancestry
                .iter()
                .filter(|image| &image.image_id == id)
                .map(|image| image.region.as_str())
                .collect();
            (regions.len() > 1).then(|| {
                format!(
                    "{id} is in the ancestry in {} regions ({}): the nearest to the subject counts; \
                     give --from {id}@REGION to choose",
                    regions.len(),
                    regions.join(", ")
                )
            })
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// One link of the chain: an image and how it came from its parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub image: ImageRef,
    pub name: Option<String>,
    pub state: NodeState,
    /// How the image was made (`CopyImage`, `CreateImage`, …); `None` when never recorded.
    pub origin: Option<String>,
    pub parent: Option<ImageRef>,
    /// The CloudTrail eventID that recorded the image (and so this edge).
    pub event_id: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    /// Where the edge came from: `event` (a CloudTrail event the recorder saw).
    pub source: &'static str,
    /// What Allowed AMIs says of the image; `None` until [`annotate_allowed`].
    pub allowed: Option<Allowance>,
    /// The active quarantine declared on this image, in words ([`quarantined`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The chain from the subject up to `base`, subject first.
    Descends { base: ImageRef, chain: Vec<Link> },
    /// The chain found, subject first, and why it stops.
    DoesNotDescend { chain: Vec<Link>, breaks: String },
}

fn link(image: &ImageRef, node: Option<&LineageNode>, relative: Option<&Relative>) -> Link {
    Link {
        image: image.clone(),
        name: node.and_then(|n| n.name.clone()).or_else(|| relative.and_then(|r| r.name.clone())),
        state: node.map(|n| n.state).or(relative.map(|r| r.state)).unwrap_or(NodeState::Unknown),
        origin: node.and_then(|n| n.origin).map(|o| o.as_str().to_owned()),
        parent: node
            .and_then(|n| n.parent.clone())
            .or_else(|| relative.and_then(|r| r.parent.clone())),
        event_id: node.and_then(|n| n.created_event_id.clone()),
        at: node.and_then(|n| n.created_at),
        actor: node.and_then(|n| n.created_by.clone()),
        source: "event",
        allowed: None,
        quarantined: None,
    }
}

impl Verdict {
    /// The chain, subject first.
    pub fn chain(&self) -> &[Link] {
        match self {
            Verdict::Descends { chain, .. } | Verdict::DoesNotDescend { chain, .. } => chain,
        }
    }
}

/// Puts on each link of the chain what Allowed AMIs says of its image (a deregistered one is
/// unknown: EC2 no longer describes it).
pub fn annotate_allowed(verdict: &mut Verdict, facts: &AllowedFacts) {
    let chain = match verdict {
        Verdict::Descends { chain, .. } | Verdict::DoesNotDescend { chain, .. } => chain,
    };
    for link in chain {
        link.allowed = Some(match (facts.allowance(&link.image), link.state) {
            (Allowance::Unknown(_), NodeState::Deregistered) => {
                Allowance::Unknown("deregistered".into())
            }
            (allowance, _) => allowance,
        });
    }
}

/// Marks the links of the chain under an active quarantine of `quarantines` (those of the
/// subject and all its ancestors), and says which, if any, the subject descends from: a
/// pipeline must not ship an image built from a quarantined one, whatever base it comes from.
pub fn quarantined(
    verdict: &mut Verdict,
    quarantines: &[crate::quarantine::Quarantine],
) -> Option<String> {
    let active: Vec<&crate::quarantine::Quarantine> =
        quarantines.iter().filter(|q| q.active()).collect();
    let chain = match verdict {
        Verdict::Descends { chain, .. } | Verdict::DoesNotDescend { chain, .. } => chain,
    };
    for link in chain.iter_mut() {
        if let Some(q) = active.iter().find(|q| q.image == link.image) {
            link.quarantined = Some(format!("since {}: {}", q.at.format("%Y-%m-%d"), q.reason));
        }
    }
    let subject = &chain.first()?.image;
    active.iter().min_by_key(|q| q.at).map(|q| {
        format!(
            "{subject} descends from quarantined {} (since {} by {}: {})",
            q.image,
            q.at.format("%Y-%m-%d"),
            q.by,
            q.reason
        )
    })
}

/// Verifies `subject` against the approved bases, given its ancestors (nearest first) and the
/// nodes of the subject and its ancestors.
pub fn verify(
    subject: &LineageNode,
    ancestors: &[Relative],
    nodes: &HashMap<ImageRef, LineageNode>,
    approved: &[Base],
) -> Verdict {
    let approves = |image: &ImageRef| approved.iter().any(|base| base.matches(image));
    let mut chain = vec![link(&subject.image, Some(subject), None)];
    if approves(&subject.image) {
        return Verdict::Descends { base: subject.image.clone(), chain };
    }
    let by_image: HashMap<&ImageRef, &Relative> = ancestors.iter().map(|r| (&r.image, r)).collect();
    let mut current = subject.clone();
    loop {
        let Some(parent) = current.parent.clone() else {
            let breaks = match (&current.parent_note, current.state) {
                (Some(note), _) => format!("the parent of {} is unknown: {note}", current.image),
                (None, NodeState::Unknown) => {
                    format!("{} was never recorded (made before the recorder was deployed? run a backfill)", current.image)
                }
                (None, _) => {
                    format!("{} has no parent (a root) and is not an approved base", current.image)
                }
            };
            return Verdict::DoesNotDescend { chain, breaks };
        };
        let node = nodes.get(&parent).cloned().unwrap_or_else(|| {
            let mut unknown = LineageNode::unknown(parent.clone());
            if let Some(r) = by_image.get(&parent) {
                unknown.parent = r.parent.clone();
                unknown.name = r.name.clone();
                unknown.state = r.state;
            }
            unknown
        });
        chain.push(link(&parent, nodes.get(&parent), by_image.get(&parent).copied()));
        if approves(&parent) {
            return Verdict::Descends { base: parent, chain };
        }
        if chain.len() > ancestors.len() + 2 {
            return Verdict::DoesNotDescend { chain, breaks: "the recorded ancestry loops".into() };
        }
        current = node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ImageId, Region};
    use crate::lineage::Origin;

    fn r(id: &str) -> ImageRef {
        ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse(id).unwrap())
    }

    fn node(id: &str, parent: Option<&str>, state: NodeState) -> LineageNode {
        let mut n = LineageNode::unknown(r(id));
        n.parent = parent.map(r);
        n.state = state;
        n.origin = Some(if parent.is_some() { Origin::CopyImage } else { Origin::RegisterImage });
        n.created_event_id = Some(format!("evt-{id}"));
        n.created_by = Some("arn:aws:sts::123456789012:assumed-role/pipeline/s".into());
        n
    }

    fn world() -> (LineageNode, Vec<Relative>, HashMap<ImageRef, LineageNode>) {
        // golden <- gen1 <- gen2 (deregistered) <- gen3
        let nodes: HashMap<ImageRef, LineageNode> = [
            node("ami-golden", None, NodeState::Available),
            node("ami-gen1", Some("ami-golden"), NodeState::Available),
            node("ami-gen2", Some("ami-gen1"), NodeState::Deregistered),
        ]
        .into_iter()
        .map(|n| (n.image.clone(), n))
        .collect();
        let subject = node("ami-gen3", Some("ami-gen2"), NodeState::Available);
        let ancestors = ["ami-gen2", "ami-gen1", "ami-golden"]
            .iter()
            .enumerate()
            .map(|(i, id)| Relative {
                image: r(id),
                depth: i as u32 + 1,
                parent: nodes[&r(id)].parent.clone(),
                state: nodes[&r(id)].state,
                name: None,
                account: None,
            })
            .collect();
        (subject, ancestors, nodes)
    }

    #[test]
    fn descends_through_a_deregistered_intermediate_with_evidence_for_each_edge() {
        let (subject, ancestors, nodes) = world();
        let Verdict::Descends { base, chain } =
            verify(&subject, &ancestors, &nodes, &[r("ami-golden").into()])
        else {
            panic!("should descend")
        };
        assert_eq!(base, r("ami-golden"));
        let ids: Vec<&str> = chain.iter().map(|l| l.image.image_id.as_str()).collect();
        assert_eq!(ids, ["ami-gen3", "ami-gen2", "ami-gen1", "ami-golden"]);
        assert_eq!(chain[1].state, NodeState::Deregistered);
        assert_eq!(chain[1].event_id.as_deref(), Some("evt-ami-gen2"));
        assert!(chain.iter().all(|l| l.actor.is_some()));
    }

    #[test]
    fn an_unapproved_root_or_a_gap_says_where_the_chain_breaks() {
        let (subject, ancestors, nodes) = world();
        let Verdict::DoesNotDescend { chain, breaks } =
            verify(&subject, &ancestors, &nodes, &[r("ami-other").into()])
        else {
            panic!("should not descend")
        };
        assert_eq!(chain.len(), 4);
        assert_eq!(
            breaks,
            "ami-golden@us-east-1 has no parent (a root) and is not an approved base"
        );

        let mut orphan = node("ami-x", None, NodeState::Available);
        orphan.parent_note = Some("instance i-0 no longer exists".into());
        let Verdict::DoesNotDescend { breaks, .. } =
            verify(&orphan, &[], &HashMap::new(), &[r("ami-golden").into()])
        else {
            panic!()
        };
        assert!(breaks.contains("unknown: instance i-0 no longer exists"), "{breaks}");

        // A parent known only by reference (never recorded itself).
        let child = node("ami-child", Some("ami-ghost"), NodeState::Available);
        let Verdict::DoesNotDescend { breaks, .. } =
            verify(&child, &[], &HashMap::new(), &[r("ami-golden").into()])
        else {
            panic!()
        };
        assert!(breaks.contains("never recorded"), "{breaks}");
    }

    #[test]
    fn any_of_several_approved_bases_will_do() {
        let (subject, ancestors, nodes) = world();
        let verdict = verify(
            &subject,
            &ancestors,
            &nodes,
            &[r("ami-elsewhere").into(), r("ami-gen1").into()],
        );
        assert!(matches!(verdict, Verdict::Descends { base, .. } if base == r("ami-gen1")));
    }

    #[test]
    fn a_base_named_by_id_alone_matches_it_in_whatever_region_the_chain_has_it() {
        let (subject, ancestors, nodes) = world();
        let id = ImageId::parse("ami-golden").unwrap();
        let elsewhere = ImageRef::new(Region::parse("us-west-2").unwrap(), id.clone());
        assert!(matches!(
            verify(&subject, &ancestors, &nodes, &[Base::AnyRegion(id)]),
            Verdict::Descends { base, .. } if base == r("ami-golden")
        ));
        assert!(
            matches!(
                verify(&subject, &ancestors, &nodes, &[elsewhere.into()]),
                Verdict::DoesNotDescend { .. }
            ),
            "a base given with another region is another image"
        );
    }

    #[test]
    fn allowed_amis_is_said_of_every_link_and_never_changes_the_verdict() {
        use crate::exposure::guardrails::{AllowedImagesSettings, AllowedImagesState};
        let (subject, ancestors, nodes) = world();
        let mut verdict = verify(&subject, &ancestors, &nodes, &[r("ami-golden").into()]);
        let mut facts = AllowedFacts::default();
        facts.settings.insert(
            r("ami-golden").region,
            Ok(AllowedImagesSettings {
                state: AllowedImagesState::Enabled,
                criteria: Vec::new(),
                managed_by: None,
            }),
        );
        facts.images.insert(r("ami-gen3"), Some(true));
        facts.images.insert(r("ami-golden"), Some(false));
        annotate_allowed(&mut verdict, &facts);
        assert!(matches!(verdict, Verdict::Descends { .. }));
        let said: Vec<Option<Allowance>> =
            verdict.chain().iter().map(|l| l.allowed.clone()).collect();
        assert_eq!(said[0], Some(Allowance::Allowed));
        assert_eq!(said[1], Some(Allowance::Unknown("deregistered".into())));
        assert!(matches!(said[2], Some(Allowance::Unknown(_))), "gen1 not shown: {said:?}");
        assert_eq!(said[3], Some(Allowance::NotAllowed));
    }

    #[test]
    fn an_id_in_two_regions_of_the_ancestry_is_called_ambiguous() {
        let id = ImageId::parse("ami-golden").unwrap();
        let west = ImageRef::new(Region::parse("us-west-2").unwrap(), id.clone());
        let once = [r("ami-gen1"), r("ami-golden")];
        assert_eq!(ambiguity(&[Base::AnyRegion(id.clone())], &once), None);
        assert_eq!(ambiguity(&[r("ami-golden").into()], &[r("ami-golden"), west.clone()]), None);
        let note = ambiguity(&[Base::AnyRegion(id)], &[r("ami-golden"), west]).unwrap();
        assert!(note.contains("2 regions (us-east-1, us-west-2)"), "{note}");
    }
}
