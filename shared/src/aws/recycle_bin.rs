//! The Recycle Bin's retention rules over the `rbin` API, and the tag AMI Warden puts on what
//! it deletes (and takes off again after a failure), for the reaper (snapshots) and the
//! deprecation enforcer (images).

use aws_sdk_ec2::types::Tag;
use aws_sdk_rbin::types::{ResourceTag, ResourceType, RuleStatus};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::ids::Region;
use crate::recycle_bin::RetentionRule;

/// Recycle Bin ListRules for `kind` (every page), then GetRule of each: the rules in effect
/// (`available`; a new account's first rule is `pending` for up to 30 minutes).
pub(super) async fn retention_rules(
    clients: &Clients,
    region: &Region,
    kind: ResourceType,
) -> Result<Vec<RetentionRule>, CatalogueError> {
    let rbin = clients.rbin(region);
    let tags = |list: &[ResourceTag]| -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|t| (t.resource_tag_key().to_owned(), t.resource_tag_value().map(str::to_owned)))
            .collect()
    };
    let mut pages = rbin.list_rules().resource_type(kind).into_paginator().send();
    let mut rules = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failure("Recycle Bin ListRules", region, &e))?;
        for summary in page.rules() {
            let Some(id) = summary.identifier() else { continue };
            let rule = rbin
                .get_rule()
                .identifier(id)
                .send()
                .await
                .map_err(|e| failure("Recycle Bin GetRule", region, &e))?;
            if rule.status() == Some(&RuleStatus::Available) {
                rules.push(RetentionRule {
                    resource_tags: tags(rule.resource_tags()),
                    exclude_resource_tags: tags(rule.exclude_resource_tags()),
                });
            }
        }
    }
    Ok(rules)
}

/// Tags `resource` (an image or snapshot id) `key=value`, the selector of the rule that keeps it.
pub(super) async fn mark(
    clients: &Clients,
    region: &Region,
    resource: &str,
    key: &str,
    value: &str,
) -> Result<(), CatalogueError> {
    clients
        .ec2(region)
        .create_tags()
        .resources(resource)
        .tags(Tag::builder().key(key).value(value).build())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| failure("CreateTags", region, &e))
}

/// Takes the `key` tag off `resource` again (only that tag: the request names it).
pub(super) async fn unmark(
    clients: &Clients,
    region: &Region,
    resource: &str,
    key: &str,
) -> Result<(), CatalogueError> {
    clients
        .ec2(region)
        .delete_tags()
        .resources(resource)
        .tags(Tag::builder().key(key).build())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| failure("DeleteTags", region, &e))
}
