//! The smaller ports: the share ledger ([`FakeLedger`], which never knows a share for certain,
//! so EC2 is asked), idempotency claims ([`FakeClaims`]) and the notifier ([`FakeNotifier`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use warden::event::Grantee;
use warden::exposure::ledger::{Ledger, LedgerWrite, ShareLedger, SnapshotShares};
use warden::idempotency::{Claim, Idempotency};
use warden::ids::{AccountId, ImageRef, Region, SnapshotId};
use warden::lineage::StoreError;
use warden::notify::{Notification, Notifier, NotifyError};

/// A share ledger that has never been written: every share is asked of EC2.
#[derive(Default)]
pub struct FakeLedger;

impl ShareLedger for FakeLedger {
    async fn load(&self, _account: &AccountId, _region: &Region) -> Result<Ledger, StoreError> {
        Ok(Ledger::default())
    }

    async fn apply(
        &self,
        _account: &AccountId,
        _region: &Region,
        _started_at: DateTime<Utc>,
        _full: bool,
        _writes: &[LedgerWrite],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn mark_changed(
        &self,
        _account: &AccountId,
        _image: &ImageRef,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn snapshot_shares(
        &self,
        _account: &AccountId,
        _region: &Region,
    ) -> Result<SnapshotShares, StoreError> {
        Ok(SnapshotShares::default())
    }

    async fn record_snapshot_shares(
        &self,
        _account: &AccountId,
        _region: &Region,
        _at: DateTime<Utc>,
        _reads: &[(SnapshotId, Vec<Grantee>)],
        _swept: bool,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn mark_snapshot_changed(
        &self,
        _account: &AccountId,
        _region: &Region,
        _snapshot: &SnapshotId,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Idempotency claims in memory: the first claim of an event proceeds, a completed one is done.
#[derive(Default)]
pub struct FakeClaims {
    /// `(function, event id)` → completed.
    claims: Mutex<BTreeMap<(String, String), bool>>,
}

impl Idempotency for FakeClaims {
    async fn claim(&self, function: &str, event_id: &str) -> Result<Claim, StoreError> {
        let mut claims = self.claims.lock().expect("a fake's lock is never poisoned");
        let key = (function.to_owned(), event_id.to_owned());
        Ok(match claims.get(&key) {
            Some(true) => Claim::Done,
            Some(false) => Claim::InProgress,
            None => {
                claims.insert(key, false);
                Claim::Proceed
            }
        })
    }

    async fn complete(
        &self,
        function: &str,
        event_id: &str,
        _summary: &str,
    ) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().expect("a fake's lock is never poisoned");
        claims.insert((function.to_owned(), event_id.to_owned()), true);
        Ok(())
    }

    async fn release(&self, function: &str, event_id: &str) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().expect("a fake's lock is never poisoned");
        claims.remove(&(function.to_owned(), event_id.to_owned()));
        Ok(())
    }
}

/// Keeps what it is asked to publish.
#[derive(Default)]
pub struct FakeNotifier {
    sent: Mutex<Vec<Notification>>,
}

impl FakeNotifier {
    /// The notifications published, in order.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().expect("a fake's lock is never poisoned").clone()
    }
}

impl Notifier for FakeNotifier {
    async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
        let mut sent = self.sent.lock().expect("a fake's lock is never poisoned");
        sent.push(notification.clone());
        Ok(format!("message-{}", sent.len()))
    }
}
