//! [`ShareLedger`] in the lineage table: one partition per account and region,
//! `pk = SHARES#<account>#<region>`, holding an item per shared or changed image
//! (`sk = IMAGE#<ami>`, `grantees` as a list of strings, `changed_at` in epoch milliseconds)
//! and the last sweep (`sk = SWEEP`, `swept_at` in epoch milliseconds).
//!
//! A sweep's writes are conditional on `changed_at` being absent or older than the sweep's
//! start, so a change an event marked while the sweep ran is never overwritten; a refused write
//! leaves the image marked, which means "ask EC2". Loading is one Query (paged).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::Clients;
use crate::exposure::ledger::{decode, encode, Entry, Ledger, LedgerWrite, ShareLedger};
use crate::ids::{AccountId, ImageId, ImageRef, Region};
use crate::lineage::StoreError;

const SWEEP_SK: &str = "SWEEP";
const IMAGE_PREFIX: &str = "IMAGE#";
/// The write is refused when an event marked the image at or after `:t`.
const OLDER_CHANGE: &str = "attribute_not_exists(changed_at) OR changed_at < :t";

pub struct LedgerTable {
    client: Client,
    table: String,
}

fn pk(account: &AccountId, region: &Region) -> AttributeValue {
    AttributeValue::S(format!("SHARES#{account}#{region}"))
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

fn time(value: Option<&AttributeValue>) -> Option<DateTime<Utc>> {
    value.and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).and_then(DateTime::from_timestamp_millis)
}

impl LedgerTable {
    pub fn new(clients: &Clients, table: impl Into<String>) -> Self {
        Self { client: clients.dynamodb().clone(), table: table.into() }
    }

    fn error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Aws { table: self.table.clone(), operation, message: super::describe(&err) }
    }

    fn key(&self, account: &AccountId, region: &Region, sk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), pk(account, region)), ("sk".to_owned(), AttributeValue::S(sk))])
    }

    /// One conditional write; a refusal (a newer change stands) is not an error.
    async fn write(&self, account: &AccountId, region: &Region, started_at: DateTime<Utc>, write: &LedgerWrite) -> Result<(), StoreError> {
        let result = match write {
            LedgerWrite::Shared { image, grantees } => {
                let mut item = self.key(account, region, format!("{IMAGE_PREFIX}{image}"));
                item.insert("grantees".into(), AttributeValue::L(grantees.iter().map(|g| AttributeValue::S(encode(g))).collect()));
                item.insert("checked_at".into(), millis(started_at));
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(OLDER_CHANGE)
                    .expression_attribute_values(":t", millis(started_at))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.code() == Some("ConditionalCheckFailedException"), self.error("PutItem", e)))
            }
            LedgerWrite::NotShared { image } => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(self.key(account, region, format!("{IMAGE_PREFIX}{image}"))))
                .condition_expression(OLDER_CHANGE)
                .expression_attribute_values(":t", millis(started_at))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (e.code() == Some("ConditionalCheckFailedException"), self.error("DeleteItem", e))),
            LedgerWrite::Unknown { image } => {
                return self.mark(account, region, image, started_at).await;
            }
        };
        match result {
            Ok(()) | Err((true, _)) => Ok(()),
            Err((false, e)) => Err(e),
        }
    }

    async fn mark(&self, account: &AccountId, region: &Region, image: &ImageId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(account, region, format!("{IMAGE_PREFIX}{image}"))))
            .update_expression("SET changed_at = :t")
            .condition_expression(OLDER_CHANGE)
            .expression_attribute_values(":t", millis(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Marked at the same time or later already.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }
}

impl ShareLedger for LedgerTable {
    async fn load(&self, account: &AccountId, region: &Region) -> Result<Ledger, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", pk(account, region))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut ledger = Ledger { swept_at: None, images: BTreeMap::new() };
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("Query", e))?;
            for item in page.items() {
                let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) else { continue };
                if sk == SWEEP_SK {
                    ledger.swept_at = time(item.get("swept_at"));
                    continue;
                }
                let Some(image) = sk.strip_prefix(IMAGE_PREFIX).and_then(ImageId::parse) else { continue };
                let texts = item.get("grantees").and_then(|v| v.as_l().ok()).map(Vec::as_slice).unwrap_or_default();
                let mut grantees = Vec::new();
                let mut unreadable = false;
                for text in texts {
                    match text.as_s().ok().and_then(|t| decode(t)) {
                        Some(g) => grantees.push(g),
                        None => unreadable = true,
                    }
                }
                let mut changed_at = time(item.get("changed_at"));
                if unreadable {
                    // A grantee this version cannot read: treat the image as changed (ask EC2).
                    changed_at = changed_at.or(Some(DateTime::<Utc>::MIN_UTC));
                }
                ledger.images.insert(image, Entry { grantees, changed_at });
            }
        }
        Ok(ledger)
    }

    async fn apply(&self, account: &AccountId, region: &Region, started_at: DateTime<Utc>, writes: &[LedgerWrite]) -> Result<(), StoreError> {
        for write in writes {
            self.write(account, region, started_at, write).await?;
        }
        // Only a sweep whose every write landed becomes the ledger's sweep.
        let mut item = self.key(account, region, SWEEP_SK.to_owned());
        item.insert("swept_at".into(), millis(started_at));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(swept_at) OR swept_at < :t")
            .expression_attribute_values(":t", millis(started_at))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| if e.code() == Some("ConditionalCheckFailedException") { Ok(()) } else { Err(self.error("PutItem", e)) })
    }

    async fn mark_changed(&self, account: &AccountId, image: &ImageRef, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.mark(account, &image.region, &image.image_id, at).await
    }
}
