//! [`FakeLineage`]: the lineage table's ports — the lineage store ([`LineageStore`]) and the
//! audit trails of the enforcer ([`ActionAudit`]) and the reaper ([`AuditLog`]) — over maps.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use warden::deprecation::run::{ActionAudit, ActionRecord};
use warden::ids::{ImageId, ImageRef, SnapshotId};
use warden::lineage::{
    EnablementChange, LineageNode, LineageStore, NodeFacts, Relative, StateChange, StoreError,
    WriteOutcome,
};
use warden::quarantine::run::QuarantineStore;
use warden::quarantine::{Quarantine, Release, Undo};
use warden::reaper::run::{Action, AuditEntry, AuditLog};

/// An enforcer action the audit trail holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedAction {
    pub image: ImageId,
    /// `stamped`, `deregistered (…)`, or `failed: …`.
    pub action: String,
    pub mode: &'static str,
}

/// A reaper decision the audit trail holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedDecision {
    pub snapshot: SnapshotId,
    pub action: Action,
    pub mode: &'static str,
}

#[derive(Default)]
struct State {
    nodes: HashMap<ImageRef, LineageNode>,
    states: Vec<StateChange>,
    actions: Vec<RecordedAction>,
    decisions: Vec<RecordedDecision>,
    fates: Vec<(ImageRef, SnapshotId, String)>,
    quarantines: HashMap<ImageRef, Quarantine>,
    undos: HashMap<(ImageRef, ImageRef), Undo>,
    seen: std::collections::HashSet<(ImageRef, ImageRef)>,
}

/// Lineage nodes the test puts in, and everything written since.
#[derive(Default)]
pub struct FakeLineage {
    state: Mutex<State>,
}

impl FakeLineage {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a fake's lock is never poisoned")
    }

    /// Adds a node for `image`, recording `snapshots` as its own.
    pub fn add_node(&self, image: &ImageRef, snapshots: &[SnapshotId]) {
        let mut node = LineageNode::unknown(image.clone());
        node.snapshots = snapshots.to_vec();
        self.state().nodes.insert(image.clone(), node);
    }

    /// The state changes written (deregistrations), in order.
    pub fn states(&self) -> Vec<StateChange> {
        self.state().states.clone()
    }

    /// The enforcer's audit items, in order.
    pub fn actions(&self) -> Vec<RecordedAction> {
        self.state().actions.clone()
    }

    /// The reaper's audit items, in order.
    pub fn decisions(&self) -> Vec<RecordedDecision> {
        self.state().decisions.clone()
    }

    /// The snapshot fates noted on nodes, in order.
    pub fn fates(&self) -> Vec<(ImageRef, SnapshotId, String)> {
        self.state().fates.clone()
    }
}

impl LineageStore for FakeLineage {
    async fn record_node(&self, _facts: &NodeFacts) -> Result<WriteOutcome, StoreError> {
        Ok(WriteOutcome::Recorded)
    }

    async fn record_state(&self, change: &StateChange) -> Result<WriteOutcome, StoreError> {
        self.state().states.push(change.clone());
        Ok(WriteOutcome::Recorded)
    }

    async fn record_enablement(
        &self,
        _change: &EnablementChange,
    ) -> Result<WriteOutcome, StoreError> {
        Ok(WriteOutcome::Recorded)
    }

    async fn node(&self, image: &ImageRef) -> Result<Option<LineageNode>, StoreError> {
        Ok(self.state().nodes.get(image).cloned())
    }

    async fn nodes(
        &self,
        images: &[ImageRef],
    ) -> Result<HashMap<ImageRef, LineageNode>, StoreError> {
        let state = self.state();
        let found =
            images.iter().filter_map(|i| state.nodes.get(i).map(|n| (i.clone(), n.clone())));
        Ok(found.collect())
    }

    async fn descendants(&self, _image: &ImageRef) -> Result<Vec<Relative>, StoreError> {
        Ok(Vec::new())
    }

    async fn ancestors(&self, _image: &ImageRef) -> Result<Vec<Relative>, StoreError> {
        Ok(Vec::new())
    }
}

impl QuarantineStore for FakeLineage {
    async fn record_quarantine(&self, quarantine: &Quarantine) -> Result<Quarantine, StoreError> {
        let mut state = self.state();
        let kept = match state.quarantines.get(&quarantine.image) {
            Some(active) if active.active() => active.clone(),
            _ => quarantine.clone(),
        };
        state.quarantines.insert(quarantine.image.clone(), kept.clone());
        Ok(kept)
    }

    async fn quarantine_of(&self, image: &ImageRef) -> Result<Option<Quarantine>, StoreError> {
        Ok(self.state().quarantines.get(image).cloned())
    }

    async fn quarantines_of(&self, images: &[ImageRef]) -> Result<Vec<Quarantine>, StoreError> {
        let state = self.state();
        Ok(images.iter().filter_map(|i| state.quarantines.get(i).cloned()).collect())
    }

    async fn record_undo(&self, of: &ImageRef, undo: &Undo) -> Result<bool, StoreError> {
        let mut state = self.state();
        let slot = (of.clone(), undo.image.clone());
        if let Some(kept) = state.undos.get_mut(&slot) {
            kept.tagged |= undo.tagged;
            kept.deprecated |= undo.deprecated;
            kept.disabled |= undo.disabled;
            if kept.grants.is_empty() {
                kept.grants = undo.grants.clone();
            }
            return Ok(false);
        }
        state.undos.insert(slot, undo.clone());
        Ok(true)
    }

    async fn undos(&self, of: &ImageRef, images: &[ImageRef]) -> Result<Vec<Undo>, StoreError> {
        let state = self.state();
        let found = images.iter().filter_map(|i| state.undos.get(&(of.clone(), i.clone())));
        Ok(found.cloned().collect())
    }

    async fn forget_undo(&self, of: &ImageRef, image: &ImageRef) -> Result<(), StoreError> {
        self.state().undos.remove(&(of.clone(), image.clone()));
        Ok(())
    }

    async fn record_seen(&self, of: &ImageRef, image: &ImageRef) -> Result<bool, StoreError> {
        Ok(self.state().seen.insert((of.clone(), image.clone())))
    }

    async fn record_release(&self, of: &ImageRef, release: &Release) -> Result<(), StoreError> {
        if let Some(q) = self.state().quarantines.get_mut(of) {
            q.released = Some(release.clone());
        }
        Ok(())
    }
}

impl ActionAudit for FakeLineage {
    async fn record_action(&self, action: &ActionRecord<'_>) -> Result<(), StoreError> {
        let recorded = RecordedAction {
            image: action.image.clone(),
            action: action.action.clone(),
            mode: action.mode,
        };
        self.state().actions.push(recorded);
        Ok(())
    }
}

impl AuditLog for FakeLineage {
    async fn record_all(&self, entries: &[AuditEntry<'_>]) -> Result<(), StoreError> {
        let recorded = entries.iter().map(|e| RecordedDecision {
            snapshot: e.outcome.snapshot_id.clone(),
            action: e.outcome.action.clone(),
            mode: e.mode,
        });
        self.state().decisions.extend(recorded);
        Ok(())
    }

    async fn record_fate(
        &self,
        image: &ImageRef,
        snapshot: &SnapshotId,
        fate: &str,
        _map_exists: bool,
    ) -> Result<(), StoreError> {
        self.state().fates.push((image.clone(), snapshot.clone(), fate.to_owned()));
        Ok(())
    }
}
