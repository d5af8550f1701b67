//! Quarantine: an image declared vulnerable, and everything built from it, taken out of use.
//!
//! `ami-warden lineage quarantine IMAGE --reason TEXT` records the quarantine on the image's
//! lineage node (who, when, why) and plans, for the image and every descendant at any depth the
//! lineage knows (every region, every member account), what enforce mode does:
//!
//! - tag it [`TAG_KEY`] with the quarantined ancestor and the reason;
//! - deprecate it now ([`crate::deprecation::earliest_allowed`]: never a time in the past),
//!   unless it is deprecated already;
//! - with `--disable`, disable it (DisableImage).
//!
//! What each image had before (its deadline, whether the tag was there, whether it was
//! disabled) is recorded beside the step, so that `lineage release` undoes what quarantine did
//! and only that. An exempt image is reported and not touched; a deregistered or vanished one
//! is reported. A new image copied or created from a quarantined image or any of its
//! descendants is quarantined when its event arrives ([`follow`]).
//!
//! This module decides; [`run`] gathers facts and acts; the DynamoDB side is
//! [`crate::aws::quarantine_store`].

pub mod follow;
pub mod run;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::deprecation::{earliest_allowed, ImageFacts};
use crate::ids::{AccountId, ImageRef};

/// The tag on every image a quarantine acted on: `<quarantined image>: <reason>`.
pub const TAG_KEY: &str = "ami-warden:quarantined";

/// EC2 tag values are at most 256 characters.
const TAG_VALUE_MAX: usize = 256;

/// A quarantine as recorded on the quarantined image's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quarantine {
    pub image: ImageRef,
    pub reason: String,
    /// Who declared it (the caller's ARN).
    pub by: String,
    pub at: DateTime<Utc>,
    /// Whether the images are also disabled (`--disable`).
    pub disable: bool,
    /// Set once released.
    pub released: Option<Release>,
}

impl Quarantine {
    pub fn active(&self) -> bool {
        self.released.is_none()
    }

    /// The value of [`TAG_KEY`] on the images it acts on.
    pub fn tag_value(&self) -> String {
        let value = format!("{}: {}", self.image, self.reason);
        match value.char_indices().nth(TAG_VALUE_MAX) {
            Some((cut, _)) => value[..cut].to_owned(),
            None => value,
        }
    }
}

/// When and by whom a quarantine was released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// What a quarantine did to one image, recorded before it acts (so that a run that stops half
/// way can still be released) and read back by `release`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Undo {
    pub image: ImageRef,
    pub account: Option<AccountId>,
    /// The deadline it had before (`None`: none).
    pub previous_deprecation: Option<DateTime<Utc>>,
    /// Whether quarantine set the deadline (else it was deprecated already and left so).
    pub deprecated: bool,
    /// Whether quarantine added the tag (else it was there already: another quarantine's).
    pub tagged: bool,
    /// Whether quarantine disabled it.
    pub disabled: bool,
    /// The launch permissions it had when quarantine disabled it (DisableImage takes them
    /// away and EnableImage does not give them back: release grants them again).
    pub grants: Vec<crate::event::Grantee>,
}

/// One image's place in a quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Acted on (enforce) or to act on (report).
    Act { undo: Undo, deprecate_at: Option<DateTime<Utc>> },
    /// Reported, not touched.
    Skip { image: ImageRef, account: Option<AccountId>, why: String },
}

impl Step {
    pub fn image(&self) -> &ImageRef {
        match self {
            Self::Act { undo, .. } => &undo.image,
            Self::Skip { image, .. } => image,
        }
    }
}

/// The step for one image of the quarantine, from what EC2 says of it now (`None`: not
/// visible, deregistered or never there). Pure.
pub fn step(
    quarantine: &Quarantine,
    image: &ImageRef,
    account: Option<&AccountId>,
    facts: Option<&ImageFacts>,
    exempt_tag_key: &str,
    now: DateTime<Utc>,
) -> Step {
    let skip = |why: String| Step::Skip { image: image.clone(), account: account.cloned(), why };
    let Some(facts) = facts else {
        return skip("not found in EC2 (deregistered?): nothing to do".into());
    };
    if let Some(value) = facts.tags.get(exempt_tag_key) {
        return skip(format!("exempt: tagged {exempt_tag_key}={value}; not touched"));
    }
    // Already deprecated: the earlier deadline stands (quarantine never moves one later).
    let deprecate_at = match facts.deprecation {
        Some(at) if at <= now => None,
        _ => Some(earliest_allowed(now)),
    };
    let undo = Undo {
        image: image.clone(),
        account: account.cloned(),
        previous_deprecation: facts.deprecation,
        deprecated: deprecate_at.is_some(),
        tagged: !facts.tags.contains_key(TAG_KEY),
        disabled: quarantine.disable && facts.state == "available",
        grants: Vec::new(),
    };
    Step::Act { undo, deprecate_at }
}

/// What release does to one image, from what quarantine did (`undo`) and the image's deadline
/// now. Pure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restore {
    pub image: ImageRef,
    pub untag: bool,
    /// Set the deadline back to this (a time still ahead).
    pub deprecate_at: Option<DateTime<Utc>>,
    /// Remove the deadline (it had none before).
    pub undeprecate: bool,
    pub enable: bool,
    /// The launch permissions to grant again once enabled.
    pub regrant: Vec<crate::event::Grantee>,
    /// What cannot be undone, in words.
    pub notes: Vec<String>,
}

pub fn restore(undo: &Undo, now: DateTime<Utc>) -> Restore {
    let mut notes = Vec::new();
    let (deprecate_at, undeprecate) = match (undo.deprecated, undo.previous_deprecation) {
        (false, _) => (None, false),
        (true, None) => (None, true),
        (true, Some(at)) if at > earliest_allowed(now) => (Some(at), false),
        (true, Some(at)) => {
            notes.push(format!(
                "its earlier deadline {} has passed: it stays deprecated",
                at.to_rfc3339()
            ));
            (None, false)
        }
    };
    Restore {
        image: undo.image.clone(),
        untag: undo.tagged,
        deprecate_at,
        undeprecate,
        enable: undo.disabled,
        regrant: if undo.disabled { undo.grants.clone() } else { Vec::new() },
        notes,
    }
}

/// The active quarantines among `found` that a new image made from `parent` inherits: those of
/// the parent itself or of any of its ancestors. Pure.
pub fn follow(found: &[Quarantine]) -> Option<&Quarantine> {
    found.iter().filter(|q| q.active()).min_by_key(|q| q.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ImageId, Region};

    fn now() -> DateTime<Utc> {
        "2026-12-07T10:00:30Z".parse().unwrap()
    }

    fn image(id: &str) -> ImageRef {
        ImageRef::new(Region::parse("us-east-1").unwrap(), ImageId::parse(id).unwrap())
    }

    fn quarantine(disable: bool) -> Quarantine {
        Quarantine {
            image: image("ami-0000000000000a001"),
            reason: "CVE-2026-0001 in openssl".into(),
            by: "arn:aws:iam::111122223333:user/sec".into(),
            at: now(),
            disable,
            released: None,
        }
    }

    fn facts(deprecation: Option<&str>, tags: &[(&str, &str)], state: &str) -> ImageFacts {
        ImageFacts {
            image_id: ImageId::parse("ami-0000000000000b001").unwrap(),
            name: None,
            owner: None,
            created: None,
            deprecation: deprecation.map(|d| d.parse().unwrap()),
            last_launched: None,
            state: state.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            snapshots: Vec::new(),
            root_device_type: "ebs".into(),
            deregistration_protection: crate::deprecation::DeregistrationProtection::Disabled,
        }
    }

    fn act(step: Step) -> (Undo, Option<DateTime<Utc>>) {
        match step {
            Step::Act { undo, deprecate_at } => (undo, deprecate_at),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_image_with_a_later_deadline_is_deprecated_now_and_its_deadline_remembered() {
        let f = facts(Some("2027-03-01T00:00:00Z"), &[], "available");
        let b = image("ami-0000000000000b001");
        let (undo, at) = act(step(&quarantine(true), &b, None, Some(&f), "exempt", now()));
        assert_eq!(
            at,
            Some("2026-12-07T10:01:00Z".parse().unwrap()),
            "the next minute, never the past"
        );
        assert_eq!(undo.previous_deprecation, f.deprecation);
        assert!(undo.deprecated && undo.tagged && undo.disabled);
    }

    #[test]
    fn an_image_deprecated_already_keeps_its_deadline_and_a_tagged_one_its_tag() {
        let f = facts(Some("2026-01-01T00:00:00Z"), &[(TAG_KEY, "another")], "disabled");
        let b = image("ami-0000000000000b001");
        let (undo, at) = act(step(&quarantine(true), &b, None, Some(&f), "exempt", now()));
        assert_eq!(at, None);
        assert!(!undo.deprecated && !undo.tagged && !undo.disabled, "{undo:?}");
    }

    #[test]
    fn exempt_and_vanished_images_are_reported_not_touched() {
        let b = image("ami-0000000000000b001");
        let f = facts(None, &[("ami-warden:exempt", "golden")], "available");
        let Step::Skip { why, .. } =
            step(&quarantine(false), &b, None, Some(&f), "ami-warden:exempt", now())
        else {
            panic!()
        };
        assert!(why.starts_with("exempt"), "{why}");
        assert!(matches!(step(&quarantine(false), &b, None, None, "x", now()), Step::Skip { .. }));
    }

    #[test]
    fn release_undoes_only_what_quarantine_did() {
        let b = image("ami-0000000000000b001");
        let undo = |previous: Option<&str>, deprecated, tagged, disabled| Undo {
            image: b.clone(),
            account: None,
            previous_deprecation: previous.map(|p| p.parse().unwrap()),
            deprecated,
            tagged,
            disabled,
            grants: Vec::new(),
        };
        let r = restore(&undo(Some("2027-03-01T00:00:00Z"), true, true, true), now());
        assert_eq!(r.deprecate_at, Some("2027-03-01T00:00:00Z".parse().unwrap()));
        assert!(r.untag && r.enable && !r.undeprecate && r.notes.is_empty());
        let r = restore(&undo(None, true, false, false), now());
        assert!(r.undeprecate && !r.untag && !r.enable);
        let r = restore(&undo(Some("2026-12-01T00:00:00Z"), true, true, false), now());
        assert!(r.deprecate_at.is_none() && !r.undeprecate);
        assert!(r.notes[0].contains("has passed"), "{:?}", r.notes);
        let r = restore(&undo(Some("2026-01-01T00:00:00Z"), false, false, false), now());
        assert!(r.deprecate_at.is_none() && !r.undeprecate && !r.untag && !r.enable);
    }

    #[test]
    fn the_tag_value_names_the_ancestor_and_stays_within_ec2s_limit() {
        let mut q = quarantine(false);
        assert_eq!(q.tag_value(), "ami-0000000000000a001@us-east-1: CVE-2026-0001 in openssl");
        q.reason = "é".repeat(400);
        assert_eq!(q.tag_value().chars().count(), 256);
    }

    #[test]
    fn a_new_image_inherits_the_oldest_active_quarantine_of_its_chain() {
        let mut released = quarantine(false);
        released.released = Some(Release { by: "x".into(), at: now() });
        assert_eq!(follow(&[released.clone()]), None);
        let active = quarantine(true);
        assert_eq!(follow(&[released, active.clone()]), Some(&active));
    }
}
