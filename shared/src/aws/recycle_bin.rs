//! The Recycle Bin's retention rules over the `rbin` API, for the reaper (snapshots) and the
//! deprecation enforcer (images).

use aws_sdk_rbin::types::{ResourceTag, ResourceType, RuleStatus};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::ids::Region;
use crate::recycle_bin::RetentionRule;

/// Recycle Bin ListRules for `kind` (every page), then GetRule of each: the rules in effect
/// (`available`; a new account's first rule is `pending` for up to 30 minutes).
pub(super) async fn retention_rules(clients: &Clients, region: &Region, kind: ResourceType) -> Result<Vec<RetentionRule>, CatalogueError> {
    let rbin = clients.rbin(region);
    let tags = |list: &[ResourceTag]| -> Vec<(String, Option<String>)> {
        list.iter().map(|t| (t.resource_tag_key().to_owned(), t.resource_tag_value().map(str::to_owned))).collect()
    };
    let mut pages = rbin.list_rules().resource_type(kind).into_paginator().send();
    let mut rules = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failure("Recycle Bin ListRules", region, &e))?;
        for summary in page.rules() {
            let Some(id) = summary.identifier() else { continue };
            let rule = rbin.get_rule().identifier(id).send().await.map_err(|e| failure("Recycle Bin GetRule", region, &e))?;
            if rule.status() == Some(&RuleStatus::Available) {
                rules.push(RetentionRule { resource_tags: tags(rule.resource_tags()), exclude_resource_tags: tags(rule.exclude_resource_tags()) });
            }
        }
    }
    Ok(rules)
}
