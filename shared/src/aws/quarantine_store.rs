//! [`QuarantineStore`] in the lineage table, beside the nodes it is about:
//!
//! | `pk` | `sk` | item |
//! |---|---|---|
//! | `IMG#<region>#<ami>` | `QUARANTINE` | the quarantine declared on that image: reason, by, at, `disable`, and once released `released_by`, `released_at` |
//! | `IMG#<region>#<ami>` | `QUARANTINED_BY#<region>#<ami>` | what the quarantine of the named ancestor did to this image (its deadline before, whether it tagged, deprecated, disabled it) |
//!
//! So one Query of an image's partition returns its node, its ancestors, its own quarantine
//! and what quarantines did to it; the quarantines of its ancestors are one BatchGetItem (the
//! launch guard's two requests).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use super::lineage_table::{flag, image_at, image_pk, key, s, text, Item, LineageTable};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageRef};
use crate::lineage::StoreError;
use crate::quarantine::run::QuarantineStore;
use crate::quarantine::{Quarantine, Release, Undo};

/// The sort key of an image's own quarantine.
pub const QUARANTINE_SK: &str = "QUARANTINE";
/// The prefix of the sort keys recording what a quarantine did to an image.
pub const QUARANTINED_BY_PREFIX: &str = "QUARANTINED_BY#";
/// The prefix of the sort keys marking a new image of a quarantined lineage seen (report mode).
pub const QUARANTINE_SEEN_PREFIX: &str = "QUARANTINE_SEEN#";

/// A grantee as kept in the `grants` list: `kind:value`.
fn grant_text(g: &Grantee) -> String {
    match g {
        Grantee::Public => "public:".into(),
        Grantee::Group(v) => format!("group:{v}"),
        Grantee::Account(v) => format!("account:{v}"),
        Grantee::Organization(v) => format!("organization:{v}"),
        Grantee::OrganizationalUnit(v) => format!("ou:{v}"),
        Grantee::Unreadable(v) => format!("unreadable:{v}"),
    }
}

fn grant_of(text: &str) -> Option<Grantee> {
    let (kind, value) = text.split_once(':')?;
    let value = value.to_owned();
    Some(match kind {
        "public" => Grantee::Public,
        "group" => Grantee::Group(value),
        "account" => Grantee::Account(value),
        "organization" => Grantee::Organization(value),
        "ou" => Grantee::OrganizationalUnit(value),
        _ => Grantee::Unreadable(value),
    })
}

fn undo_sk(of: &ImageRef) -> String {
    format!("{QUARANTINED_BY_PREFIX}{}#{}", of.region, of.image_id)
}

fn time(t: DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn time_at(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text(item, name)?).ok().map(|t| t.with_timezone(&Utc))
}

/// A quarantine from its item; `None` when the item is not one.
pub fn quarantine_from(item: &Item) -> Option<Quarantine> {
    let released = match (text(item, "released_by"), time_at(item, "released_at")) {
        (Some(by), Some(at)) => Some(Release { by: by.to_owned(), at }),
        _ => None,
    };
    Some(Quarantine {
        image: image_at(item, "image_id", "region")?,
        reason: text(item, "reason")?.to_owned(),
        by: text(item, "by").unwrap_or("?").to_owned(),
        at: time_at(item, "at")?,
        disable: flag(item, "disable"),
        released,
    })
}

fn undo_from(item: &Item) -> Option<Undo> {
    Some(Undo {
        image: image_at(item, "image_id", "region")?,
        account: text(item, "account").and_then(AccountId::parse),
        previous_deprecation: time_at(item, "previous_deprecation"),
        deprecated: flag(item, "deprecated"),
        tagged: flag(item, "tagged"),
        disabled: flag(item, "disabled"),
        grants: item
            .get("grants")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|g| g.as_s().ok()).filter_map(|g| grant_of(g)).collect())
            .unwrap_or_default(),
    })
}

fn quarantine_item(q: &Quarantine) -> Item {
    let mut item = key(image_pk(&q.image), QUARANTINE_SK);
    item.insert("image_id".into(), s(q.image.image_id.as_str()));
    item.insert("region".into(), s(q.image.region.as_str()));
    item.insert("reason".into(), s(q.reason.as_str()));
    item.insert("by".into(), s(q.by.as_str()));
    item.insert("at".into(), time(q.at));
    item.insert("disable".into(), AttributeValue::Bool(q.disable));
    item
}

fn undo_item(of: &ImageRef, undo: &Undo) -> Item {
    let mut item = key(image_pk(&undo.image), &undo_sk(of));
    item.insert("image_id".into(), s(undo.image.image_id.as_str()));
    item.insert("region".into(), s(undo.image.region.as_str()));
    item.insert("of_image_id".into(), s(of.image_id.as_str()));
    item.insert("of_region".into(), s(of.region.as_str()));
    if let Some(account) = &undo.account {
        item.insert("account".into(), s(account.as_str()));
    }
    if let Some(at) = undo.previous_deprecation {
        item.insert("previous_deprecation".into(), time(at));
    }
    item.insert("deprecated".into(), AttributeValue::Bool(undo.deprecated));
    item.insert("tagged".into(), AttributeValue::Bool(undo.tagged));
    item.insert("disabled".into(), AttributeValue::Bool(undo.disabled));
    if !undo.grants.is_empty() {
        let grants = undo.grants.iter().map(|g| s(grant_text(g))).collect();
        item.insert("grants".into(), AttributeValue::L(grants));
    }
    item
}

/// Whether `err` is DynamoDB refusing a conditional write.
fn condition_failed<E>(err: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

impl LineageTable {
    /// Puts `item` unless one is there under its key; returns whether it was put.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table_name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.store_error("PutItem", e)),
        }
    }

    /// Adds to a record already there what a later step did that the first did not (a copy
    /// still pending at its event, disabled once available): only flags that become true, and
    /// the launch permissions if none are recorded. What the image had before stays the first
    /// record's.
    async fn add_to_undo(&self, of: &ImageRef, undo: &Undo) -> Result<(), StoreError> {
        let mut sets = Vec::new();
        let mut values = HashMap::new();
        for (name, on) in
            [("tagged", undo.tagged), ("deprecated", undo.deprecated), ("disabled", undo.disabled)]
        {
            if on {
                sets.push(format!("{name} = :t"));
                values.insert(":t".to_owned(), AttributeValue::Bool(true));
            }
        }
        if !undo.grants.is_empty() {
            sets.push("grants = if_not_exists(grants, :g)".to_owned());
            let grants = undo.grants.iter().map(|g| s(grant_text(g))).collect();
            values.insert(":g".to_owned(), AttributeValue::L(grants));
        }
        if sets.is_empty() {
            return Ok(());
        }
        self.client()
            .update_item()
            .table_name(self.table_name())
            .set_key(Some(key(image_pk(&undo.image), &undo_sk(of))))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("UpdateItem", e))
    }
}

impl QuarantineStore for LineageTable {
    async fn record_quarantine(&self, quarantine: &Quarantine) -> Result<Quarantine, StoreError> {
        let item = quarantine_item(quarantine);
        // What is returned is what is kept (its time to the second, as read back later).
        let kept = quarantine_from(&item).unwrap_or_else(|| quarantine.clone());
        let result = self
            .client()
            .put_item()
            .table_name(self.table_name())
            .set_item(Some(item))
            // A released quarantine may be declared again; an active one stands.
            .condition_expression("attribute_not_exists(pk) OR attribute_exists(released_at)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(kept),
            Err(e) if condition_failed(&e) => {
                self.quarantine_of(&quarantine.image).await?.ok_or_else(|| StoreError::Aws {
                    table: self.table_name().to_owned(),
                    operation: "PutItem",
                    message: "an active quarantine refused the write, yet none is there".into(),
                })
            }
            Err(e) => Err(self.store_error("PutItem", e)),
        }
    }

    async fn quarantine_of(&self, image: &ImageRef) -> Result<Option<Quarantine>, StoreError> {
        let found = self.batch_get(vec![key(image_pk(image), QUARANTINE_SK)]).await?;
        Ok(found.iter().find_map(quarantine_from))
    }

    async fn quarantines_of(&self, images: &[ImageRef]) -> Result<Vec<Quarantine>, StoreError> {
        let keys = images.iter().map(|i| key(image_pk(i), QUARANTINE_SK)).collect();
        Ok(self.batch_get(keys).await?.iter().filter_map(quarantine_from).collect())
    }

    async fn record_undo(&self, of: &ImageRef, undo: &Undo) -> Result<bool, StoreError> {
        if self.put_new(undo_item(of, undo)).await? {
            return Ok(true);
        }
        self.add_to_undo(of, undo).await?;
        Ok(false)
    }

    async fn undos(&self, of: &ImageRef, images: &[ImageRef]) -> Result<Vec<Undo>, StoreError> {
        let sk = undo_sk(of);
        let keys = images.iter().map(|i| key(image_pk(i), &sk)).collect();
        let mut undos: Vec<Undo> =
            self.batch_get(keys).await?.iter().filter_map(undo_from).collect();
        undos.sort_by(|a, b| a.image.cmp(&b.image));
        Ok(undos)
    }

    async fn forget_undo(&self, of: &ImageRef, image: &ImageRef) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(self.table_name())
            .set_key(Some(key(image_pk(image), &undo_sk(of))))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("DeleteItem", e))
    }

    async fn record_seen(&self, of: &ImageRef, image: &ImageRef) -> Result<bool, StoreError> {
        let sk = format!("{QUARANTINE_SEEN_PREFIX}{}#{}", of.region, of.image_id);
        self.put_new(key(image_pk(image), &sk)).await
    }

    async fn record_release(&self, of: &ImageRef, release: &Release) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":by".to_owned(), s(release.by.as_str())),
            (":at".to_owned(), time(release.at)),
        ]);
        self.client()
            .update_item()
            .table_name(self.table_name())
            .set_key(Some(key(image_pk(of), QUARANTINE_SK)))
            .update_expression("SET released_by = :by, released_at = :at")
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("UpdateItem", e))
    }
}
