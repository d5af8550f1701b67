//! The closure arithmetic: which (ancestor, descendant) entries an edge implies.
//!
//! Recording `child → parent` links every ancestor of the parent (and the parent itself) to the
//! child and every descendant of the child. Because the child's descendants may already be
//! recorded (their events arrived first), the result is the same whatever the order of
//! arrival. Pure: no I/O, so it is tested exhaustively here.

use crate::ids::ImageRef;

/// One image and its distance from a reference image (0 = the image itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    pub image: ImageRef,
    pub depth: u32,
}

/// An (ancestor, descendant, depth) entry of the closure.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClosureEntry {
    pub ancestor: ImageRef,
    pub descendant: ImageRef,
    pub depth: u32,
}

/// The entries implied by the edge `child → parent`, given the parent's known ancestors and
/// the child's known descendants (each with its depth, excluding the image itself).
pub fn closure_entries(
    parent: &ImageRef,
    parent_ancestors: &[Link],
    child: &ImageRef,
    child_descendants: &[Link],
) -> Vec<ClosureEntry> {
    let uppers = std::iter::once(Link { image: parent.clone(), depth: 0 })
        .chain(parent_ancestors.iter().cloned());
    let lowers: Vec<Link> = std::iter::once(Link { image: child.clone(), depth: 0 })
        .chain(child_descendants.iter().cloned())
        .collect();
    let mut entries: Vec<ClosureEntry> = uppers
        .flat_map(|up| {
            lowers.iter().map(move |low| ClosureEntry {
                ancestor: up.image.clone(),
                descendant: low.image.clone(),
                depth: up.depth + 1 + low.depth,
            })
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use warden_testkit::shuffled;

    use super::*;
    use crate::ids::{ImageId, Region};

    fn img(n: u32) -> ImageRef {
        let region = if n % 2 == 0 { "us-east-1" } else { "eu-west-1" };
        ImageRef::new(
            Region::parse(region).unwrap(),
            ImageId::parse(&format!("ami-{n:04}")).unwrap(),
        )
    }

    /// A tiny in-memory closure store, applying edges exactly as the DynamoDB adapter does.
    #[derive(Default)]
    struct Memory {
        entries: BTreeSet<ClosureEntry>,
    }

    impl Memory {
        fn ancestors(&self, of: &ImageRef) -> Vec<Link> {
            self.entries
                .iter()
                .filter(|e| &e.descendant == of)
                .map(|e| Link { image: e.ancestor.clone(), depth: e.depth })
                .collect()
        }
        fn descendants(&self, of: &ImageRef) -> Vec<Link> {
            self.entries
                .iter()
                .filter(|e| &e.ancestor == of)
                .map(|e| Link { image: e.descendant.clone(), depth: e.depth })
                .collect()
        }
        fn add_edge(&mut self, child: &ImageRef, parent: &ImageRef) {
            let new =
                closure_entries(parent, &self.ancestors(parent), child, &self.descendants(child));
            self.entries.extend(new);
        }
    }

    /// The closure computed directly from parent pointers.
    fn expected(parents: &BTreeMap<ImageRef, ImageRef>) -> BTreeSet<ClosureEntry> {
        let mut out = BTreeSet::new();
        for child in parents.keys() {
            let (mut at, mut depth) = (child.clone(), 0);
            while let Some(p) = parents.get(&at) {
                depth += 1;
                out.insert(ClosureEntry { ancestor: p.clone(), descendant: child.clone(), depth });
                at = p.clone();
            }
        }
        out
    }

    #[test]
    fn edge_links_every_ancestor_to_every_descendant_with_depths() {
        let entries = closure_entries(
            &img(2),
            &[Link { image: img(1), depth: 1 }],
            &img(3),
            &[Link { image: img(4), depth: 1 }],
        );
        let got: Vec<(u32, u32, u32)> = entries
            .iter()
            .map(|e| {
                let n = |r: &ImageRef| r.image_id.as_str()[4..].parse::<u32>().unwrap();
                (n(&e.ancestor), n(&e.descendant), e.depth)
            })
            .collect();
        let mut want = vec![(2, 3, 1), (2, 4, 2), (1, 3, 2), (1, 4, 3)];
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
    }

    #[test]
    fn any_arrival_order_of_edges_yields_the_in_order_closure() {
        // A forest: deep chains and wide fans, 60 images.
        let mut parents = BTreeMap::new();
        for n in 2..=60u32 {
            let p = if n % 5 == 0 { n / 5 } else { n - 1 };
            parents.insert(img(n), img(p));
        }
        parents.remove(&img(30)); // a second root
        let want = expected(&parents);
        let edges: Vec<(ImageRef, ImageRef)> = parents.into_iter().collect();
        for seed in 0..200 {
            let mut memory = Memory::default();
            for (child, parent) in shuffled(&edges, seed) {
                memory.add_edge(&child, &parent);
            }
            assert_eq!(memory.entries, want, "seed {seed}");
        }
    }

    #[test]
    fn re_adding_an_edge_changes_nothing() {
        let mut memory = Memory::default();
        memory.add_edge(&img(2), &img(1));
        memory.add_edge(&img(3), &img(2));
        let before = memory.entries.clone();
        memory.add_edge(&img(3), &img(2));
        memory.add_edge(&img(2), &img(1));
        assert_eq!(memory.entries, before);
    }

    #[test]
    fn same_id_in_two_regions_is_two_images() {
        let a =
            ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse("ami-1").unwrap());
        let b =
            ImageRef::new(Region::parse("eu-west-1").unwrap(), ImageId::parse("ami-1").unwrap());
        let entries = closure_entries(&a, &[], &b, &[]);
        assert_eq!(entries.len(), 1);
        assert_ne!(entries[0].ancestor, entries[0].descendant);
    }
}
