//! [`Idempotency`] claims as items of the lineage table: `pk = EVT#<eventID>`,
//! `sk = FN#<function>`, with `status` (`pending` | `done`), `lease_until` (epoch seconds) and
//! `expires_at` (epoch seconds, for the table's TTL).
//!
//! A claim is one conditional PutItem: it succeeds when no claim exists or a pending claim's
//! lease has run out. Each attempt writes its own `owner` token, so an attempt whose PutItem
//! was applied but whose answer was lost (the SDK then retries and meets its own claim) knows
//! the claim is its own. The lineage recorder's own `EVT#<eventID>`/`EVENT` markers are separate
//! items in the same partition.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::Clients;
use crate::idempotency::{Claim, Idempotency};
use crate::lineage::StoreError;

/// How long a pending claim of an event blocks other deliveries: longer than an event's handling
/// takes, and short enough that Lambda's retries of a crashed handler's event can take it over.
pub const LEASE_SECONDS: i64 = 300;
/// How long claims are kept (the table's TTL removes them after).
pub const KEEP_SECONDS: i64 = 30 * 24 * 3600;

pub struct IdempotencyTable {
    client: Client,
    table: String,
}

/// The partition of an event's claims (`EVT#<eventID>`); the exposure guard's IAM grant names it.
pub const PARTITION_PREFIX: &str = "EVT#";

fn key(function: &str, event_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("{PARTITION_PREFIX}{event_id}"))),
        ("sk".to_owned(), AttributeValue::S(format!("FN#{function}"))),
    ])
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token no other claim attempt has: process, time and a counter.
fn owner_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}-{n}", std::process::id())
}

impl IdempotencyTable {
    pub fn new(clients: &Clients, table: impl Into<String>) -> Self {
        Self { client: clients.dynamodb().clone(), table: table.into() }
    }

    /// Claims `event_id` for `function` with a lease of `lease_seconds`: an event's claim
    /// uses [`LEASE_SECONDS`] (tuned to Lambda's retries of a failed event); a sweep unit's
    /// must outlast the longest invocation, or a retry could run the unit a second time.
    pub async fn claim_for(
        &self,
        function: &str,
        event_id: &str,
        lease_seconds: i64,
    ) -> Result<Claim, StoreError> {
        let now = now();
        let owner = owner_token();
        let mut item = key(function, event_id);
        item.insert("status".into(), AttributeValue::S("pending".into()));
        item.insert("owner".into(), AttributeValue::S(owner.clone()));
        item.insert("lease_until".into(), AttributeValue::N((now + lease_seconds).to_string()));
        item.insert("expires_at".into(), AttributeValue::N((now + KEEP_SECONDS).to_string()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :pending AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Proceed),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let existing = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key(function, event_id)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.error("GetItem", e))?;
                let field = |name: &str| {
                    existing
                        .item()
                        .and_then(|i| i.get(name))
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                };
                Ok(match field("status") {
                    Some("done") => Claim::Done,
                    // Our own claim: the PutItem was applied and its answer lost, then retried.
                    Some("pending") if field("owner") == Some(owner.as_str()) => Claim::Proceed,
                    // Released between our put and our read: let the retry try again.
                    _ => Claim::InProgress,
                })
            }
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    fn error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Aws { table: self.table.clone(), operation, message: super::describe(&err) }
    }
}

impl Idempotency for IdempotencyTable {
    async fn claim(&self, function: &str, event_id: &str) -> Result<Claim, StoreError> {
        self.claim_for(function, event_id, LEASE_SECONDS).await
    }

    async fn complete(
        &self,
        function: &str,
        event_id: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(function, event_id)))
            .update_expression(
                "SET #status = :done, summary = :summary, done_at = :now REMOVE lease_until",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", AttributeValue::S("done".into()))
            .expression_attribute_values(
                ":summary",
                AttributeValue::S(summary.chars().take(1000).collect()),
            )
            .expression_attribute_values(":now", AttributeValue::N(now().to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", e))
    }

    async fn release(&self, function: &str, event_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(function, event_id)))
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .send()
            .await;
        // Refused: no longer pending (completed, or claimed by another delivery).
        super::refused_is_ok(result, |e| self.error("DeleteItem", e))
    }
}
