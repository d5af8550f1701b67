//! [`AuditLog`] in the lineage table: one item per snapshot decision,
//! `pk = SNAP#<region>#<snapshot>`, `sk = AUDIT#<time>#<trigger>`; and each snapshot's fate as
//! an entry of the `snapshot_fate` map on its image's lineage node (`IMG#…`/`NODE`), written
//! only when that node exists. Deprecation actions (stamps, deregistrations) are items
//! `pk = DEPR#<region>#<image>`, `sk = AUDIT#<time>#<trigger>`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::Clients;
use crate::ids::{ImageRef, SnapshotId};
use crate::lineage::StoreError;
use crate::deprecation::run::{ActionAudit, ActionRecord};
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

impl AuditLog for AuditTable {
    async fn record(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let o = entry.outcome;
        let action = match &o.action {
            Action::Planned => "planned".to_owned(),
            Action::Deleted => "deleted".to_owned(),
            Action::Kept => "kept".to_owned(),
            Action::Failed(e) => format!("failed: {e}"),
            Action::DeletedByAws => "deleted_by_aws".to_owned(),
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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutItem", e))
    }

    async fn record_fate(&self, image: &ImageRef, snapshot: &SnapshotId, fate: &str) -> Result<(), StoreError> {
        let created = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(node_key(image)))
            .update_expression("SET snapshot_fate = if_not_exists(snapshot_fate, :empty)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
            .send()
            .await;
        match created {
            Ok(_) => {}
            // No lineage node for this image: nothing to annotate.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(()),
            Err(e) => return Err(self.error("UpdateItem", e)),
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(node_key(image)))
            .update_expression("SET snapshot_fate.#snapshot = :fate")
            .expression_attribute_names("#snapshot", snapshot.as_str())
            .expression_attribute_values(":fate", s(fate))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", e))
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
