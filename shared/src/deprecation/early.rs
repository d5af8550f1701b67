//! Which images of a listing still being read are certain to be retirement candidates, so
//! that the sweep can ask DescribeImageReferences about them while the rest of the listing
//! arrives.
//!
//! An owned region of 10,000 images is eleven DescribeImages pages, read one after another
//! (each page names the next). Asking the references only once the last page is in puts that
//! whole listing in front of the references' own bucket-bound stream. Everything the plan
//! decides about an image is known from its page and the region's uses, except its rank in its
//! family: an image among the newest `keep_latest` seen so far may yet be the newest of all.
//! Those are held back until newer ones push them out; the sweep works out the exact plan from
//! the whole listing at the end and asks about any candidate not asked yet, so holding back
//! costs time, never a check.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{family, newer_first, plan, Decision, ImageFacts, InUseIndex, Keep, Settings};
use crate::ids::{AccountId, ImageId};

/// The candidates of a listing read page by page.
pub struct EarlyCandidates<'a> {
    in_use: &'a InUseIndex,
    /// The settings with no image kept for its rank: a page's plan then names every image
    /// that is a candidate unless it is among its family's newest.
    rankless: Settings,
    keep_latest: usize,
    family_tag_key: String,
    own_account: Option<&'a AccountId>,
    now: DateTime<Utc>,
    /// Each family's newest launchable images seen so far, newest first, at most
    /// `keep_latest`.
    newest: BTreeMap<String, Vec<ImageFacts>>,
    /// Candidates among those newest: released when a newer image pushes them out.
    held: BTreeSet<ImageId>,
}

impl<'a> EarlyCandidates<'a> {
    pub fn new(
        in_use: &'a InUseIndex,
        settings: &Settings,
        own_account: Option<&'a AccountId>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            in_use,
            rankless: Settings { keep_latest: 0, ..settings.clone() },
            keep_latest: settings.keep_latest as usize,
            family_tag_key: settings.family_tag_key.clone(),
            own_account,
            now,
            newest: BTreeMap::new(),
            held: BTreeSet::new(),
        }
    }

    /// The images that are now certain to be candidates: those of `page` that no newer image
    /// of their family could keep, and those held before that `page`'s images outrank.
    pub fn page(&mut self, page: &[ImageFacts]) -> Vec<ImageId> {
        let no_shares = BTreeMap::new();
        let candidates: BTreeSet<ImageId> =
            plan(page, self.in_use, &no_shares, &self.rankless, self.own_account, self.now)
                .into_iter()
                .filter(|p| p.decision == Decision::Keep(Keep::SharesNotChecked))
                .map(|p| p.image_id)
                .collect();
        let mut released = Vec::new();
        for image in page.iter().filter(|i| i.state == "available") {
            for pushed_out in self.rank(image) {
                if self.held.remove(&pushed_out) {
                    released.push(pushed_out);
                }
            }
        }
        for id in candidates {
            if self.is_among_newest(&id) {
                self.held.insert(id);
            } else {
                released.push(id);
            }
        }
        released
    }

    /// Adds `image` to its family's newest; returns the images that leave them.
    fn rank(&mut self, image: &ImageFacts) -> Vec<ImageId> {
        let family = family(image, &self.family_tag_key);
        let newest = self.newest.entry(family).or_default();
        let at = newest.partition_point(|n| newer_first(n, image).is_lt());
        newest.insert(at, image.clone());
        newest
            .split_off(self.keep_latest.min(newest.len()))
            .into_iter()
            .map(|i| i.image_id)
            .collect()
    }

    fn is_among_newest(&self, id: &ImageId) -> bool {
        self.newest.values().any(|n| n.iter().any(|i| &i.image_id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deprecation::DeregistrationProtection;

    const OWN: &str = "123456789012";

    fn settings(keep_latest: u32) -> Settings {
        Settings { grace_days: 0, keep_latest, ..crate::deprecation::settings_for_tests() }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:30Z".parse().unwrap()
    }

    /// An image of family `web`, made `day` days into 2025, its deadline long past.
    fn image(n: u32, day: u32) -> ImageFacts {
        let created: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().unwrap();
        let created = created + chrono::Duration::days(day.into());
        ImageFacts {
            image_id: ImageId::parse(&format!("ami-{n:04x}")).unwrap(),
            name: Some(format!("web-{n}")),
            owner: AccountId::parse(OWN),
            created: Some(created),
            deprecation: Some(created + chrono::Duration::days(90)),
            last_launched: None,
            state: "available".into(),
            tags: BTreeMap::new(),
            snapshots: Vec::new(),
            root_device_type: "ebs".into(),
            deregistration_protection: DeregistrationProtection::Disabled,
        }
    }

    /// The exact candidates of the whole listing, as the sweep plans them.
    fn exact(images: &[ImageFacts], in_use: &InUseIndex, s: &Settings) -> BTreeSet<ImageId> {
        let own = AccountId::parse(OWN);
        plan(images, in_use, &BTreeMap::new(), s, own.as_ref(), now())
            .into_iter()
            .filter(|p| p.decision == Decision::Keep(Keep::SharesNotChecked))
            .map(|p| p.image_id)
            .collect()
    }

    /// What the pages release, in order, across the whole listing.
    fn released(pages: &[Vec<ImageFacts>], in_use: &InUseIndex, s: &Settings) -> Vec<ImageId> {
        let own = AccountId::parse(OWN);
        let mut early = EarlyCandidates::new(in_use, s, own.as_ref(), now());
        pages.iter().flat_map(|p| early.page(p)).collect()
    }

    #[test]
    fn pages_release_exactly_the_candidates_whatever_the_order_of_the_listing() {
        let s = settings(2);
        let in_use = InUseIndex::default();
        // Oldest first, newest first, and mixed: the newest two are never released.
        let orders: [Vec<u32>; 3] = [
            (0..12).collect(),
            (0..12).rev().collect(),
            vec![5, 11, 0, 7, 10, 1, 3, 9, 2, 8, 4, 6],
        ];
        for order in orders {
            let images: Vec<ImageFacts> = order.iter().map(|&n| image(n, n)).collect();
            let pages: Vec<Vec<ImageFacts>> = images.chunks(5).map(<[_]>::to_vec).collect();
            let got = released(&pages, &in_use, &s);
            let unique: BTreeSet<ImageId> = got.iter().cloned().collect();
            assert_eq!(unique.len(), got.len(), "an image released twice: {got:?}");
            assert_eq!(unique, exact(&images, &in_use, &s), "order {order:?}");
        }
    }

    #[test]
    fn an_image_in_use_or_not_launchable_is_decided_from_its_page() {
        let s = settings(1);
        let mut in_use = InUseIndex::default();
        in_use.add("ami-0001", "instance i-1 (running)");
        let mut failed = image(2, 2);
        failed.state = "failed".into();
        // ami-0003 is the newest: held (it is kept). The failed build takes no newest slot, and
        // is no candidate either (not launchable, decided like any other).
        let page = vec![image(1, 1), failed, image(3, 3), image(0, 0)];
        let got = released(std::slice::from_ref(&page), &in_use, &s);
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), exact(&page, &in_use, &s));
        assert!(!exact(&page, &in_use, &s).contains(&ImageId::parse("ami-0001").unwrap()));
    }

    #[test]
    fn without_newest_kept_every_candidate_is_released_at_once() {
        let s = settings(0);
        let images: Vec<ImageFacts> = (0..4).map(|n| image(n, n)).collect();
        let in_use = InUseIndex::default();
        let mut early = EarlyCandidates::new(&in_use, &s, None, now());
        // Not this account's (no own account known): nothing is a candidate.
        assert!(early.page(&images).is_empty());
        let own = AccountId::parse(OWN);
        let mut early = EarlyCandidates::new(&in_use, &s, own.as_ref(), now());
        assert_eq!(early.page(&images[..2]).len(), 2);
        assert_eq!(early.page(&images[2..]).len(), 2);
    }
}
