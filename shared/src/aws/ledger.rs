//! [`ShareLedger`] in the lineage table: one partition per account and region,
//! `pk = SHARES#<account>#<region>`, holding an item per shared or changed image
//! (`sk = IMAGE#<ami>`, `grantees` as a list of strings, `changed_at` in epoch milliseconds)
//! and the last sweep (`sk = SWEEP`, `swept_at` in epoch milliseconds, and `full_at`, when the
//! last sweep that read every image's launch permissions started).
//!
//! A sweep's writes are conditional on `changed_at` being absent or older than the sweep's
//! start, so a change an event marked while the sweep ran is never overwritten (a refused write
//! leaves the image marked, which means "ask EC2"), and on `checked_at` being no newer than it,
//! so a slower, overlapping sweep never replaces or deletes a later sweep's entry. (A later
//! "not shared" deletes the entry, after which a slower sweep's "shared" can write it again:
//! the ledger then errs towards keeping the image.) Loading is one Query (paged).
//!
//! Snapshots: `pk = SNAPSHARES#<account>#<region>`, a reading per snapshot (`sk = READ#<snap>`,
//! `grantees`, `read_at`) written 25 a request, and an event's mark in an item of its own
//! (`sk = CHANGED#<snap>`, `changed_at`), which a reading therefore never overwrites.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::Clients;
use crate::exposure::ledger::{
    decode, encode, Entry, Ledger, LedgerWrite, ShareLedger, SnapshotShares, EVENT_TIME_PRECISION,
};
use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::StoreError;

const SWEEP_SK: &str = "SWEEP";
const READ_PREFIX: &str = "READ#";
const CHANGED_PREFIX: &str = "CHANGED#";
const IMAGE_PREFIX: &str = "IMAGE#";
/// The write is refused when an event marked the image at or after `:t`.
const OLDER_CHANGE: &str = "attribute_not_exists(changed_at) OR changed_at < :t";
/// A sweep that began at `:t` writes only over a change marked before `:c` (`:t` less
/// CloudTrail's precision of a second: an event marked in the second the sweep began may have
/// come after its reading), and never over the reading of a sweep that began after it (an
/// overlapping one).
const SWEEP_WRITE: &str =
    "(attribute_not_exists(changed_at) OR changed_at < :c) AND (attribute_not_exists(checked_at) OR checked_at <= :t)";

pub struct LedgerTable {
    client: Client,
    table: String,
}

/// The partitions of the ledger's image and snapshot readings (`<prefix><account>#<region>`);
/// the exposure guard's IAM grant names them.
pub const PARTITION_PREFIXES: [&str; 2] = ["SHARES#", "SNAPSHARES#"];

fn pk(account: &AccountId, region: &Region) -> AttributeValue {
    AttributeValue::S(format!("{}{account}#{region}", PARTITION_PREFIXES[0]))
}

fn snapshot_pk(account: &AccountId, region: &Region) -> AttributeValue {
    AttributeValue::S(format!("{}{account}#{region}", PARTITION_PREFIXES[1]))
}

/// Grantees as stored, or `None` when one cannot be read (then the reading is not trusted).
fn grantees_of(item: &HashMap<String, AttributeValue>) -> Option<Vec<crate::event::Grantee>> {
    let texts =
        item.get("grantees").and_then(|v| v.as_l().ok()).map(Vec::as_slice).unwrap_or_default();
    texts.iter().map(|t| t.as_s().ok().and_then(|t| decode(t))).collect()
}

fn grantees_value(grantees: &[crate::event::Grantee]) -> AttributeValue {
    AttributeValue::L(grantees.iter().map(|g| AttributeValue::S(encode(g))).collect())
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

fn time(value: Option<&AttributeValue>) -> Option<DateTime<Utc>> {
    value
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .and_then(DateTime::from_timestamp_millis)
}

impl LedgerTable {
    pub fn new(clients: &Clients, table: impl Into<String>) -> Self {
        Self { client: clients.dynamodb().clone(), table: table.into() }
    }

    fn error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Aws { table: self.table.clone(), operation, message: super::describe(&err) }
    }

    fn key(
        &self,
        account: &AccountId,
        region: &Region,
        sk: String,
    ) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), pk(account, region)),
            ("sk".to_owned(), AttributeValue::S(sk)),
        ])
    }

    /// One conditional write; a refusal (a newer change stands) is not an error.
    async fn write(
        &self,
        account: &AccountId,
        region: &Region,
        started_at: DateTime<Utc>,
        write: &LedgerWrite,
    ) -> Result<(), StoreError> {
        match write {
            LedgerWrite::Shared { image, grantees } => {
                let mut item = self.key(account, region, format!("{IMAGE_PREFIX}{image}"));
                item.insert("grantees".into(), grantees_value(grantees));
                item.insert("checked_at".into(), millis(started_at));
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(SWEEP_WRITE)
                    .expression_attribute_values(":t", millis(started_at))
                    .expression_attribute_values(":c", millis(started_at - EVENT_TIME_PRECISION))
                    .send()
                    .await;
                super::refused_is_ok(result, |e| self.error("PutItem", e))
            }
            LedgerWrite::NotShared { image } => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(self.key(account, region, format!("{IMAGE_PREFIX}{image}"))))
                    .condition_expression(SWEEP_WRITE)
                    .expression_attribute_values(":t", millis(started_at))
                    .expression_attribute_values(":c", millis(started_at - EVENT_TIME_PRECISION))
                    .send()
                    .await;
                super::refused_is_ok(result, |e| self.error("DeleteItem", e))
            }
            LedgerWrite::Unknown { image } => self.mark(account, region, image, started_at).await,
        }
    }

    /// Every item of a partition (one Query, all pages, consistent), with its sort key.
    async fn partition(
        &self,
        pk: AttributeValue,
    ) -> Result<Vec<(String, HashMap<String, AttributeValue>)>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", pk)
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()).cloned() {
                    items.push((sk, item));
                }
            }
        }
        Ok(items)
    }

    async fn mark(
        &self,
        account: &AccountId,
        region: &Region,
        image: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_changed(self.key(account, region, format!("{IMAGE_PREFIX}{image}")), at).await
    }

    /// `changed_at = at` on the item at `key`, unless it says `at` or later already.
    async fn set_changed(
        &self,
        key: HashMap<String, AttributeValue>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("SET changed_at = :t")
            .condition_expression(OLDER_CHANGE)
            .expression_attribute_values(":t", millis(at))
            .send()
            .await;
        // Refused: marked at the same time or later already.
        super::refused_is_ok(result, |e| self.error("UpdateItem", e))
    }
}

impl ShareLedger for LedgerTable {
    async fn load(&self, account: &AccountId, region: &Region) -> Result<Ledger, StoreError> {
        let mut ledger = Ledger::default();
        for (sk, item) in self.partition(pk(account, region)).await? {
            if sk == SWEEP_SK {
                ledger.swept_at = time(item.get("swept_at"));
                ledger.full_at = time(item.get("full_at"));
                continue;
            }
            let Some(image) = sk.strip_prefix(IMAGE_PREFIX).and_then(ImageId::parse) else {
                continue;
            };
            let mut changed_at = time(item.get("changed_at"));
            let grantees = grantees_of(&item).unwrap_or_else(|| {
                // A grantee this version cannot read: treat the image as changed (ask EC2).
                changed_at = changed_at.or(Some(DateTime::<Utc>::MIN_UTC));
                Vec::new()
            });
            ledger.images.insert(image, Entry { grantees, changed_at });
        }
        Ok(ledger)
    }

    async fn apply(
        &self,
        account: &AccountId,
        region: &Region,
        started_at: DateTime<Utc>,
        full: bool,
        writes: &[LedgerWrite],
    ) -> Result<(), StoreError> {
        for write in writes {
            self.write(account, region, started_at, write).await?;
        }
        // Only a sweep whose every write landed becomes the ledger's sweep (and, when it read
        // every image, its last full read; a partial sweep keeps the full read's time).
        let update = if full { "SET swept_at = :t, full_at = :t" } else { "SET swept_at = :t" };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(account, region, SWEEP_SK.to_owned())))
            .update_expression(update)
            .condition_expression("attribute_not_exists(swept_at) OR swept_at < :t")
            .expression_attribute_values(":t", millis(started_at))
            .send()
            .await;
        // Refused: a later sweep is the ledger's already.
        super::refused_is_ok(result, |e| self.error("UpdateItem", e))
    }

    async fn mark_changed(
        &self,
        account: &AccountId,
        image: &ImageRef,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.mark(account, &image.region, &image.image_id, at).await
    }

    async fn snapshot_shares(
        &self,
        account: &AccountId,
        region: &Region,
    ) -> Result<SnapshotShares, StoreError> {
        let mut shares = SnapshotShares::default();
        for (sk, item) in self.partition(snapshot_pk(account, region)).await? {
            if let Some(snapshot) = sk.strip_prefix(READ_PREFIX).and_then(SnapshotId::parse) {
                // A reading that cannot be read whole is no reading.
                if let (Some(grantees), Some(at)) = (grantees_of(&item), time(item.get("read_at")))
                {
                    shares.read.insert(snapshot, (grantees, at));
                }
            } else if sk == SWEEP_SK {
                shares.swept_at = time(item.get("swept_at"));
            } else if let Some(snapshot) =
                sk.strip_prefix(CHANGED_PREFIX).and_then(SnapshotId::parse)
            {
                // A mark whose time cannot be read counts as a change now.
                shares.changed.insert(
                    snapshot,
                    time(item.get("changed_at")).unwrap_or(DateTime::<Utc>::MAX_UTC),
                );
            }
        }
        Ok(shares)
    }

    async fn record_snapshot_shares(
        &self,
        account: &AccountId,
        region: &Region,
        at: DateTime<Utc>,
        reads: &[(SnapshotId, Vec<crate::event::Grantee>)],
        swept: bool,
    ) -> Result<(), StoreError> {
        let mut items: Vec<_> = reads
            .iter()
            .map(|(snapshot, grantees)| {
                HashMap::from([
                    ("pk".to_owned(), snapshot_pk(account, region)),
                    ("sk".to_owned(), AttributeValue::S(format!("{READ_PREFIX}{snapshot}"))),
                    ("grantees".to_owned(), grantees_value(grantees)),
                    ("read_at".to_owned(), millis(at)),
                ])
            })
            .collect();
        if swept {
            items.push(HashMap::from([
                ("pk".to_owned(), snapshot_pk(account, region)),
                ("sk".to_owned(), AttributeValue::S(SWEEP_SK.to_owned())),
                ("swept_at".to_owned(), millis(at)),
            ]));
        }
        super::batch_put(&self.client, &self.table, items).await
    }

    async fn mark_snapshot_changed(
        &self,
        account: &AccountId,
        region: &Region,
        snapshot: &SnapshotId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = HashMap::from([
            ("pk".to_owned(), snapshot_pk(account, region)),
            ("sk".to_owned(), AttributeValue::S(format!("{CHANGED_PREFIX}{snapshot}"))),
        ]);
        self.set_changed(key, at).await
    }
}
