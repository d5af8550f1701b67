//! [`AuditLog`] in the lineage table: one item per snapshot decision,
//! `pk = SNAP#<region>#<snapshot>`, `sk = AUDIT#<time>#<trigger>`, written 25 a request; and
//! each snapshot's fate as an entry of the `snapshot_fate` map on its image's lineage node
//! (`IMG#…`/`NODE`), written only when that node exists. Deprecation actions (stamps, deregistrations) are items
//! `pk = DEPR#<region>#<image>`, `sk = AUDIT#<time>#<trigger>`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::Clients;
use crate::deprecation::run::{ActionAudit, ActionRecord};
use crate::ids::{ImageRef, SnapshotId};
use crate::lineage::StoreError;
use crate::reaper::run::{Action, AuditEntry, AuditLog};

pub struct AuditTable {
    client: Client,
    table: String,
}

impl AuditTable {
    pub fn new(clients: &Clients, table: impl Into<String>) -> Self {
        Self { client: clients.dynamodb().clone(), table: table.into() }
    }

    fn error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Aws { table: self.table.clone(), operation, message: super::describe(&err) }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn node_key(image: &ImageRef) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(format!("IMG#{}#{}", image.region, image.image_id))),
        ("sk".to_owned(), s("NODE")),
    ])
}

fn audit_item(entry: &AuditEntry<'_>) -> HashMap<String, AttributeValue> {
    let o = entry.outcome;
    let action = match &o.action {
        Action::Planned => "planned".to_owned(),
        Action::Deleted => "deleted".to_owned(),
        Action::Kept => "kept".to_owned(),
        Action::Failed(e) => format!("failed: {e}"),
        Action::DeletedByAws => "deleted_by_aws".to_owned(),
        Action::LeftForNextRun => "left_for_next_run".to_owned(),
    };
    let mut item = HashMap::from([
        ("pk".to_owned(), s(format!("SNAP#{}#{}", o.region, o.snapshot_id))),
        ("sk".to_owned(), s(format!("AUDIT#{}#{}", entry.at.to_rfc3339(), entry.trigger))),
        ("snapshot_id".to_owned(), s(o.snapshot_id.as_str())),
        ("region".to_owned(), s(o.region.as_str())),
        ("size_gib".to_owned(), AttributeValue::N(o.size_gib.to_string())),
        ("trigger".to_owned(), s(entry.trigger)),
        ("decision".to_owned(), s(o.decision)),
        ("reason".to_owned(), s(o.reason.clone())),
        ("action".to_owned(), s(action)),
        ("mode".to_owned(), s(entry.mode)),
        ("at".to_owned(), s(entry.at.to_rfc3339())),
    ]);
    if let Some(image) = &o.source_image {
        item.insert("source_image".to_owned(), s(image.as_str()));
    }
    item
}

/// The two ways of writing one fate; which comes first depends on whether the map exists.
#[derive(Clone, Copy)]
enum FateWrite {
    /// `SET snapshot_fate.#snapshot = :fate`, if the map exists.
    Entry,
    /// `SET snapshot_fate = {#snapshot: :fate}`, if the node exists and the map does not.
    Map,
}

impl AuditLog for AuditTable {
    /// BatchWriteItem, 25 items a request; unprocessed items are sent again with backoff.
    async fn record_all(&self, entries: &[AuditEntry<'_>]) -> Result<(), StoreError> {
        super::batch_put(&self.client, &self.table, entries.iter().map(audit_item).collect()).await
    }

    /// One UpdateItem when `map_exists` is right, two when it is not; nothing is written when
    /// the image has no node.
    async fn record_fate(
        &self,
        image: &ImageRef,
        snapshot: &SnapshotId,
        fate: &str,
        map_exists: bool,
    ) -> Result<(), StoreError> {
        let order = if map_exists {
            [FateWrite::Entry, FateWrite::Map, FateWrite::Entry]
        } else {
            [FateWrite::Map, FateWrite::Entry, FateWrite::Map]
        };
        for write in order {
            let request =
                self.client.update_item().table_name(&self.table).set_key(Some(node_key(image)));
            let request = match write {
                FateWrite::Entry => request
                    .update_expression("SET snapshot_fate.#snapshot = :fate")
                    .condition_expression("attribute_exists(snapshot_fate)")
                    .expression_attribute_names("#snapshot", snapshot.as_str())
                    .expression_attribute_values(":fate", s(fate)),
                FateWrite::Map => request
                    .update_expression("SET snapshot_fate = :fates")
                    .condition_expression(
                        "attribute_exists(pk) AND attribute_not_exists(snapshot_fate)",
                    )
                    .expression_attribute_values(
                        ":fates",
                        AttributeValue::M(HashMap::from([(snapshot.to_string(), s(fate))])),
                    ),
            };
            match request.send().await {
                Ok(_) => return Ok(()),
                // The map is missing (Entry), or already there or the node is (Map): try the other.
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => continue,
                Err(e) => return Err(self.error("UpdateItem", e)),
            }
        }
        // Neither the map nor the node exists: no lineage node for this image, nothing to annotate.
        Ok(())
    }
}

impl ActionAudit for AuditTable {
    async fn record_action(&self, a: &ActionRecord<'_>) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("DEPR#{}#{}", a.region, a.image))),
            ("sk".to_owned(), s(format!("AUDIT#{}#{}", a.at.to_rfc3339(), a.trigger))),
            ("image_id".to_owned(), s(a.image.as_str())),
            ("region".to_owned(), s(a.region.as_str())),
            ("action".to_owned(), s(a.action.clone())),
            ("reason".to_owned(), s(a.reason.clone())),
            ("trigger".to_owned(), s(a.trigger)),
            ("mode".to_owned(), s(a.mode)),
            ("at".to_owned(), s(a.at.to_rfc3339())),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutItem", e))
    }
}
