//! The Recycle Bin: what AMI Warden deletes or deregisters must stay recoverable, so it acts
//! only where a retention rule in effect keeps the resource, with the tag it adds first.
//!
//! Pure: [`RetentionRule::keeps`] judges a rule against a resource's tags. The rules are read
//! by the adapters (Recycle Bin ListRules and GetRule), per resource type and region.

use std::collections::BTreeMap;

/// A Recycle Bin retention rule in effect: its tags (`key`, `value`; a tag-level rule) or its
/// exclusion tags (a Region-level rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    pub resource_tags: Vec<(String, Option<String>)>,
    pub exclude_resource_tags: Vec<(String, Option<String>)>,
}

impl RetentionRule {
    /// Whether the rule keeps a deleted resource with `tags` (its own plus the one AMI Warden
    /// adds first). A tag-level rule keeps what has one of its tags; a Region-level rule
    /// everything but what has one of its exclusion tags. On doubt, no: a rule tag without a
    /// value is not taken to match, an exclusion tag without one is taken to exclude whatever
    /// has its key.
    pub fn keeps(&self, tags: &BTreeMap<String, String>) -> bool {
        let has = |(key, value): &(String, Option<String>)| {
            tags.get(key).is_some_and(|v| value.as_deref() == Some(v.as_str()))
        };
        let may_have = |(key, value): &(String, Option<String>)| {
            tags.get(key).is_some_and(|v| value.as_deref().is_none_or(|want| want == v))
        };
        if self.resource_tags.is_empty() {
            !self.exclude_resource_tags.iter().any(may_have)
        } else {
            self.resource_tags.iter().any(has)
        }
    }
}

/// `tags` with `key=value` added: a resource's tags as the Recycle Bin sees them once AMI
/// Warden has tagged it.
pub fn with_tag(
    tags: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> BTreeMap<String, String> {
    let mut tags = tags.clone();
    tags.insert(key.to_owned(), value.to_owned());
    tags
}

/// Whether any of `rules` keeps a resource with `tags` once tagged `key=value`.
pub fn recoverable(
    rules: &[RetentionRule],
    tags: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> bool {
    let tags = with_tag(tags, key, value);
    rules.iter().any(|rule| rule.keeps(&tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::REAPED_TAG_KEY;

    fn tags_when_reaped(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        with_tag(tags, REAPED_TAG_KEY, "true")
    }

    #[test]
    fn a_retention_rule_keeps_a_reaped_snapshot_when_it_selects_its_tags() {
        let tag = |k: &str, v: Option<&str>| (k.to_owned(), v.map(str::to_owned));
        let rule = |tags: Vec<(String, Option<String>)>,
                    excluded: Vec<(String, Option<String>)>| {
            RetentionRule { resource_tags: tags, exclude_resource_tags: excluded }
        };
        let plain = tags_when_reaped(&BTreeMap::new());
        let team_a = tags_when_reaped(&BTreeMap::from([("team".to_owned(), "a".to_owned())]));
        // The templates' rule, and one that also names other tags.
        assert!(rule(vec![tag(REAPED_TAG_KEY, Some("true"))], vec![]).keeps(&plain));
        assert!(rule(vec![tag("team", Some("b")), tag(REAPED_TAG_KEY, Some("true"))], vec![])
            .keeps(&plain));
        // A tag-level rule on another of the snapshot's tags keeps it too.
        assert!(rule(vec![tag("team", Some("a"))], vec![]).keeps(&team_a));
        // Other tags, another value, or no value: not known to keep it.
        assert!(!rule(vec![tag("team", Some("a"))], vec![]).keeps(&plain));
        assert!(!rule(vec![tag(REAPED_TAG_KEY, Some("false"))], vec![]).keeps(&plain));
        assert!(!rule(vec![tag(REAPED_TAG_KEY, None)], vec![]).keeps(&plain));
        // Region-level: everything, except what carries one of its exclusion tags — the
        // snapshot's own tags included, not only the reaper's.
        assert!(rule(vec![], vec![]).keeps(&plain));
        assert!(rule(vec![], vec![tag("team", Some("a"))]).keeps(&plain));
        assert!(!rule(vec![], vec![tag("team", Some("a"))]).keeps(&team_a));
        assert!(!rule(vec![], vec![tag("team", None)]).keeps(&team_a));
        assert!(!rule(vec![], vec![tag(REAPED_TAG_KEY, Some("true"))]).keeps(&plain));
        assert!(!rule(vec![], vec![tag(REAPED_TAG_KEY, None)]).keeps(&plain));
    }

    #[test]
    fn recoverable_asks_whether_any_rule_keeps_the_tagged_resource() {
        let tag_rule = RetentionRule {
            resource_tags: vec![("ami-warden:retired".into(), Some("true".into()))],
            exclude_resource_tags: vec![],
        };
        let region_rule = RetentionRule {
            resource_tags: vec![],
            exclude_resource_tags: vec![("keep-out".into(), Some("yes".into()))],
        };
        let plain = BTreeMap::new();
        let excluded = BTreeMap::from([("keep-out".to_owned(), "yes".to_owned())]);
        assert!(
            !recoverable(&[], &plain, "ami-warden:retired", "true"),
            "no rule, not recoverable"
        );
        assert!(recoverable(std::slice::from_ref(&tag_rule), &plain, "ami-warden:retired", "true"));
        assert!(
            !recoverable(std::slice::from_ref(&tag_rule), &plain, "ami-warden:reaped", "true"),
            "another tag"
        );
        assert!(!recoverable(
            std::slice::from_ref(&region_rule),
            &excluded,
            "ami-warden:retired",
            "true"
        ));
        assert!(
            recoverable(&[region_rule, tag_rule], &excluded, "ami-warden:retired", "true"),
            "one rule is enough"
        );
    }
}
