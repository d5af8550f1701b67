//! At-most-once handling of a CloudTrail event per function: the claim a handler takes on an
//! `eventID` before it acts, so a redelivered event (new envelope id, same `eventID`) does not
//! alert or act twice.
//!
//! A claim is a lease: a handler that dies mid-way leaves a `pending` claim that another
//! delivery may take over once the lease has run out, so nothing is lost either. A handler that
//! fails cleanly releases its claim before returning the error that makes Lambda retry.
//! The DynamoDB adapter is [`crate::aws::idempotency::IdempotencyTable`].

use crate::lineage::StoreError;

/// What a claim attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This delivery owns the event now: act, then `complete` (or `release` on failure).
    Proceed,
    /// The event was handled before: do nothing.
    Done,
    /// Another delivery is handling it right now (its lease is still running): retry later.
    InProgress,
}

#[allow(async_fn_in_trait)]
pub trait Idempotency {
    /// Claims `event_id` for `function`.
    async fn claim(&self, function: &str, event_id: &str) -> Result<Claim, StoreError>;
    /// Marks the claimed event handled, with a one-line summary for the audit trail.
    async fn complete(
        &self,
        function: &str,
        event_id: &str,
        summary: &str,
    ) -> Result<(), StoreError>;
    /// Gives up a claim after a failure, so the retry can take it at once.
    async fn release(&self, function: &str, event_id: &str) -> Result<(), StoreError>;
}
