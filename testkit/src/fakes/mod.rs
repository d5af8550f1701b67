//! In-memory stand-ins for the ports the deprecation enforcer and the snapshot reaper take
//! (EC2, the lineage table with its audit items, the share ledger, idempotency claims, the
//! notifier), for fast tests of the shells' branches without the local stack: time running out
//! between two actions, an action EC2 refuses, the answer to a failed call lost. Each fake
//! records the calls made to it, and can be told to fail some.
//!
//! Not a model of AWS: a fake answers with what the test put in it, and knows nothing of how
//! EC2 or DynamoDB behave. What depends on that is tested against the local stack, with the
//! real adapters.

mod images;
mod lineage;
mod snapshots;
mod stores;

pub use images::{templates_rule, AfterRefusal, FakeImages, ImageCall};
pub use lineage::{FakeLineage, RecordedAction, RecordedDecision};
pub use snapshots::{templates_snapshot_rule, FakeSnapshots, SnapshotCall};
pub use stores::{FakeClaims, FakeLedger, FakeNotifier};

/// The error a fake returns for a call it was told to fail.
fn refused(
    operation: &'static str,
    region: &warden::ids::Region,
) -> warden::catalogue::CatalogueError {
    warden::catalogue::CatalogueError {
        operation,
        region: region.clone(),
        message: "InternalError: refused (scripted)".into(),
    }
}
