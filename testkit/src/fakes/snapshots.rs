//! [`FakeSnapshots`]: the reaper's EC2 ([`SnapshotEc2`]) over a map of snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use warden::catalogue::CatalogueError;
use warden::event::Grantee;
use warden::ids::{ImageId, Region, SnapshotId};
use warden::reaper::{
    image_in_description, DeleteError, ImageIndex, RetentionRule, SnapshotEc2, SnapshotInfo,
    REAPED_TAG_KEY, REAPED_TAG_VALUE,
};

use super::refused;

/// A call the reaper made, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotCall {
    Snapshot(SnapshotId),
    DescribedFor(ImageId),
    ImagesUsing(SnapshotId),
    CreateVolumePermissions(SnapshotId),
    ImagesInRecycleBin,
    ImageExists(ImageId),
    OwnedSnapshots,
    ImageIndex,
    OwnedAmong(Vec<ImageId>),
    RetentionRules,
    MarkReaped(SnapshotId),
    Delete(SnapshotId),
    UnmarkReaped(SnapshotId),
}

#[derive(Default)]
struct State {
    snapshots: BTreeMap<SnapshotId, SnapshotInfo>,
    images: BTreeSet<ImageId>,
    users: BTreeMap<SnapshotId, Vec<ImageId>>,
    refusals: BTreeMap<SnapshotId, DeleteError>,
    refuse_untag: bool,
    slow_deletes: Option<Instant>,
    listing_waits_for_reads: Option<usize>,
    calls: Vec<SnapshotCall>,
}

/// An account's snapshots and images in one region. No snapshot is shared, nothing is in the
/// Recycle Bin, and a Recycle Bin rule keeps snapshots tagged [`REAPED_TAG_KEY`].
pub struct FakeSnapshots {
    state: Mutex<State>,
}

impl Default for FakeSnapshots {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSnapshots {
    pub fn new() -> Self {
        Self { state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a fake's lock is never poisoned")
    }

    /// Adds (or replaces) a snapshot.
    pub fn add(&self, snapshot: SnapshotInfo) {
        self.state().snapshots.insert(snapshot.snapshot_id.clone(), snapshot);
    }

    /// Registers `image`, using `snapshots`.
    pub fn add_image(&self, image: &ImageId, snapshots: &[SnapshotId]) {
        let mut state = self.state();
        state.images.insert(image.clone());
        for snapshot in snapshots {
            state.users.entry(snapshot.clone()).or_default().push(image.clone());
        }
    }

    /// DeleteSnapshot of `snapshot` fails with `code` (e.g. `InvalidSnapshot.InUse`).
    pub fn refuse_delete(&self, snapshot: &SnapshotId, code: &str) {
        let error = DeleteError { code: code.to_owned(), message: "refused (scripted)".into() };
        self.state().refusals.insert(snapshot.clone(), error);
    }

    /// Taking a tag off fails.
    pub fn refuse_untagging(&self) {
        self.state().refuse_untag = true;
    }

    /// Every DeleteSnapshot answers only at `until` (time runs out during those under way).
    pub fn slow_deletes(&self, until: Instant) {
        self.state().slow_deletes = Some(until);
    }

    /// The image listing answers only once `reads` snapshots' shares were read, and fails
    /// after two seconds without them: a sweep passes only if it reads while the listing is
    /// under way.
    pub fn listing_waits_for_reads(&self, reads: usize) {
        self.state().listing_waits_for_reads = Some(reads);
    }

    fn reads(&self) -> usize {
        let state = self.state();
        state.calls.iter().filter(|c| matches!(c, SnapshotCall::CreateVolumePermissions(_))).count()
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<SnapshotCall> {
        self.state().calls.clone()
    }

    /// The calls that change something: tags and deletions.
    pub fn actions(&self) -> Vec<SnapshotCall> {
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(
                    c,
                    SnapshotCall::MarkReaped(_)
                        | SnapshotCall::Delete(_)
                        | SnapshotCall::UnmarkReaped(_)
                )
            })
            .collect()
    }

    /// The tags of `snapshot`, while it exists.
    pub fn tags(&self, snapshot: &SnapshotId) -> Option<BTreeMap<String, String>> {
        self.state().snapshots.get(snapshot).map(|s| s.tags.clone())
    }

    fn record(&self, call: SnapshotCall) {
        self.state().calls.push(call);
    }
}

/// The rule the templates deploy: it keeps snapshots tagged [`REAPED_TAG_KEY`].
pub fn templates_snapshot_rule() -> RetentionRule {
    RetentionRule {
        resource_tags: vec![(REAPED_TAG_KEY.to_owned(), Some(REAPED_TAG_VALUE.to_owned()))],
        exclude_resource_tags: Vec::new(),
    }
}

impl SnapshotEc2 for FakeSnapshots {
    async fn snapshot(
        &self,
        _region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Option<SnapshotInfo>, CatalogueError> {
        self.record(SnapshotCall::Snapshot(snapshot.clone()));
        Ok(self.state().snapshots.get(snapshot).cloned())
    }

    async fn snapshots_described_for(
        &self,
        _region: &Region,
        image: &ImageId,
    ) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        self.record(SnapshotCall::DescribedFor(image.clone()));
        let state = self.state();
        let described = state.snapshots.values();
        Ok(described
            .filter(|s| image_in_description(&s.description).as_ref() == Some(image))
            .cloned()
            .collect())
    }

    async fn images_using(
        &self,
        _region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<ImageId>, CatalogueError> {
        self.record(SnapshotCall::ImagesUsing(snapshot.clone()));
        Ok(self.state().users.get(snapshot).cloned().unwrap_or_default())
    }

    async fn create_volume_permissions(
        &self,
        _region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<Vec<Grantee>, CatalogueError> {
        self.record(SnapshotCall::CreateVolumePermissions(snapshot.clone()));
        Ok(Vec::new())
    }

    async fn images_in_recycle_bin(
        &self,
        _region: &Region,
    ) -> Result<BTreeSet<ImageId>, CatalogueError> {
        self.record(SnapshotCall::ImagesInRecycleBin);
        Ok(BTreeSet::new())
    }

    async fn unmark_reaped(
        &self,
        region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError> {
        self.record(SnapshotCall::UnmarkReaped(snapshot.clone()));
        let mut state = self.state();
        if state.refuse_untag {
            return Err(refused("DeleteTags", region));
        }
        if let Some(info) = state.snapshots.get_mut(snapshot) {
            info.tags.remove(REAPED_TAG_KEY);
        }
        Ok(())
    }

    async fn image_exists(
        &self,
        _region: &Region,
        image: &ImageId,
    ) -> Result<bool, CatalogueError> {
        self.record(SnapshotCall::ImageExists(image.clone()));
        Ok(self.state().images.contains(image))
    }

    async fn owned_snapshots(&self, _region: &Region) -> Result<Vec<SnapshotInfo>, CatalogueError> {
        self.record(SnapshotCall::OwnedSnapshots);
        Ok(self.state().snapshots.values().cloned().collect())
    }

    async fn image_index(&self, region: &Region) -> Result<ImageIndex, CatalogueError> {
        self.record(SnapshotCall::ImageIndex);
        let wanted = self.state().listing_waits_for_reads;
        if let Some(reads) = wanted {
            let gave_up = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            while self.reads() < reads {
                if tokio::time::Instant::now() > gave_up {
                    return Err(refused("DescribeImages", region));
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let state = self.state();
        Ok(ImageIndex { images: state.images.clone(), users: state.users.clone() })
    }

    async fn owned_among(
        &self,
        _region: &Region,
        images: &[ImageId],
    ) -> Result<BTreeSet<ImageId>, CatalogueError> {
        self.record(SnapshotCall::OwnedAmong(images.to_vec()));
        let state = self.state();
        Ok(images.iter().filter(|i| state.images.contains(*i)).cloned().collect())
    }

    async fn snapshot_retention_rules(
        &self,
        _region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError> {
        self.record(SnapshotCall::RetentionRules);
        Ok(vec![templates_snapshot_rule()])
    }

    async fn mark_reaped(
        &self,
        _region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), CatalogueError> {
        self.record(SnapshotCall::MarkReaped(snapshot.clone()));
        if let Some(info) = self.state().snapshots.get_mut(snapshot) {
            info.tags.insert(REAPED_TAG_KEY.to_owned(), REAPED_TAG_VALUE.to_owned());
        }
        Ok(())
    }

    async fn delete_snapshot(
        &self,
        _region: &Region,
        snapshot: &SnapshotId,
    ) -> Result<(), DeleteError> {
        self.record(SnapshotCall::Delete(snapshot.clone()));
        let slow = self.state().slow_deletes;
        if let Some(until) = slow {
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
        let mut state = self.state();
        if let Some(error) = state.refusals.get(snapshot) {
            return Err(error.clone());
        }
        state.snapshots.remove(snapshot);
        Ok(())
    }
}
