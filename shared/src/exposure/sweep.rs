//! The daily exposure sweep: every owned image that is public or shared outside the
//! allow-list, every owned snapshot restorable by everyone (or whose permissions say so while
//! block public access for snapshots blocks it: "public but blocked"), and the region's
//! guardrails — image and snapshot block public access, Allowed AMIs — summed up in one report
//! and one notification.
//!
//! Used by the exposure-guard function's schedule and by `ami-warden exposure`. It only reads;
//! reverting is the event path's job, where the actor and the moment are known.

use std::collections::BTreeMap;

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;

use super::guardrails::{AllowedImagesSettings, SnapshotBlockPublicAccess, SnapshotBlockState};
use super::ledger::{images_to_read, Ledger, Reading, SharesSeen};
use super::{describe_grantees, is_public, ExposureEc2, OwnedImage, Settings};
use crate::catalogue::CatalogueError;
use crate::event::Grantee;
use crate::ids::{ImageId, ImageRef, Region, SnapshotId};
use crate::notify::{self, Notification, Severity};

/// How many permission lookups run at once.
pub const CONCURRENCY: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposedImage {
    pub image_id: ImageId,
    pub name: Option<String>,
    pub exposure: Vec<Grantee>,
}

/// Whether a snapshot whose permissions say public is public.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotExposure {
    /// Restorable by everyone.
    Public,
    /// Its permissions say public, but block public access for snapshots is
    /// `block-all-sharing`, which treats it as private: public again if the setting goes to
    /// `block-new-sharing` or off.
    PublicButBlocked,
}

/// What the region's block public access for snapshots makes of a snapshot whose permissions
/// say public. An unknown setting blocks nothing.
pub fn snapshot_exposure(setting: Option<&SnapshotBlockPublicAccess>) -> SnapshotExposure {
    match setting.map(|s| &s.state) {
        Some(SnapshotBlockState::BlockAllSharing) => SnapshotExposure::PublicButBlocked,
        _ => SnapshotExposure::Public,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposedSnapshot {
    pub snapshot_id: SnapshotId,
    pub exposure: Vec<Grantee>,
    pub state: SnapshotExposure,
    /// Owned images whose block device mappings use it.
    pub backs: Vec<ImageId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub region: Region,
    pub images_checked: usize,
    /// Whose launch permissions were read: every image's (a full read) or only those that may
    /// have changed; the others' shares came from the share ledger.
    pub permissions_read: usize,
    pub full_read: bool,
    pub snapshots_checked: usize,
    pub exposed_images: Vec<ExposedImage>,
    pub exposed_snapshots: Vec<ExposedSnapshot>,
    /// `unblocked`, `block-new-sharing`, or `None` when it could not be read (see `errors`).
    pub block_public_access: Option<String>,
    /// Block public access for snapshots; `None` when it could not be read (see `errors`).
    pub snapshot_block_public_access: Option<SnapshotBlockPublicAccess>,
    /// The Allowed AMIs setting; `None` when it could not be read (see `errors`).
    pub allowed_images: Option<AllowedImagesSettings>,
    /// Lookups that failed: what they leave unknown.
    pub errors: Vec<String>,
    /// Every listed image's launch permissions, for the share ledger.
    #[serde(skip)]
    pub shares: SharesSeen,
}

impl SweepReport {
    /// "launch permissions of all read", or of how many, and why only those.
    pub fn permissions_read_phrase(&self) -> String {
        if self.full_read {
            "launch permissions of all read".into()
        } else {
            format!(
                "launch permissions of {} read, the ones that may have changed; the others' from the share ledger",
                self.permissions_read
            )
        }
    }

    /// Images and snapshots everyone can use now (not those public but blocked).
    pub fn public_count(&self) -> usize {
        self.exposed_images.iter().filter(|i| i.exposure.iter().any(is_public)).count()
            + self
                .exposed_snapshots
                .iter()
                .filter(|s| s.state == SnapshotExposure::Public)
                .filter(|s| s.exposure.iter().any(is_public))
                .count()
    }

    /// Snapshots whose permissions say public while `block-all-sharing` blocks them.
    pub fn blocked_count(&self) -> usize {
        self.exposed_snapshots
            .iter()
            .filter(|s| s.state == SnapshotExposure::PublicButBlocked)
            .count()
    }

    /// CRITICAL when anything is public; WARNING for shares outside the allow-list, snapshots
    /// public but blocked, failed lookups and image block public access off (AWS's default is
    /// on). Block public access for snapshots off, AWS's default, and the Allowed AMIs setting
    /// are reported without raising it.
    pub fn severity(&self) -> Severity {
        if self.public_count() > 0 {
            Severity::Critical
        } else if !self.exposed_images.is_empty()
            || !self.exposed_snapshots.is_empty()
            || !self.errors.is_empty()
            || self.block_public_access.as_deref() == Some("unblocked")
        {
            Severity::Warning
        } else {
            Severity::Info
        }
    }

    /// The region's guardrails in words, for summaries.
    pub fn guardrails_phrase(&self) -> String {
        format!(
            "image block public access: {}; snapshot block public access: {}; Allowed AMIs: {}",
            self.block_public_access.as_deref().unwrap_or("unknown"),
            self.snapshot_block_public_access.as_ref().map_or("unknown", |s| s.state.as_str()),
            self.allowed_images.as_ref().map_or("unknown".into(), AllowedImagesSettings::describe),
        )
    }
}

/// Sweeps one region, reading the launch permissions [`images_to_read`] names given the share
/// ledger `known` (`None`: read them all). Fails only when the image listing itself fails; any
/// other failed lookup is recorded in `errors` and the rest of the sweep goes on.
pub async fn sweep(
    ec2: &impl ExposureEc2,
    settings: &Settings,
    region: &Region,
    known: Option<&Ledger>,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<SweepReport, CatalogueError> {
    let started_at = Utc::now();
    let images = ec2.owned_images(region).await?;
    let reading = images_to_read(known, &images, settings, started_at);
    let to_read: Vec<OwnedImage> = match &reading {
        Reading::Full => images.clone(),
        Reading::Changes(ids) => {
            images.iter().filter(|i| ids.contains(&i.image_id)).cloned().collect()
        }
    };
    let mut errors = Vec::new();
    let (mut exposed_images, permissions) =
        check_images(ec2, settings, region, &to_read, progress, &mut errors).await;
    if let Some(known) = known.filter(|_| reading != Reading::Full) {
        exposed_images.extend(exposed_from_ledger(settings, &images, &permissions, known));
        exposed_images.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    }
    let candidates = match ec2.public_snapshot_candidates(region).await {
        Ok(c) => c,
        Err(e) => {
            errors.push(format!("public snapshot listing: {e}"));
            Vec::new()
        }
    };
    let snapshot_block_public_access = reported(
        "snapshot block public access state",
        ec2.snapshot_block_public_access(region).await,
        &mut errors,
    );
    let blocked = snapshot_exposure(snapshot_block_public_access.as_ref());
    let exposed_snapshots = check_snapshots(
        ec2,
        settings,
        region,
        &images,
        &candidates,
        blocked,
        progress,
        &mut errors,
    )
    .await;
    let block_public_access = block_public_access(ec2, region, &mut errors).await;
    let allowed_images =
        reported("Allowed AMIs settings", ec2.allowed_images_settings(region).await, &mut errors);
    errors.sort();
    let listed = images.iter().map(|i| i.image_id.clone()).collect();
    let full = reading == Reading::Full;
    Ok(SweepReport {
        region: region.clone(),
        images_checked: images.len(),
        permissions_read: to_read.len(),
        full_read: full,
        snapshots_checked: candidates.len(),
        exposed_images,
        exposed_snapshots,
        block_public_access,
        snapshot_block_public_access,
        allowed_images,
        errors,
        shares: SharesSeen { started_at, listed, images: permissions, full },
    })
}

/// A setting the sweep reports, or `None` with the failed lookup added to `errors`.
fn reported<T>(
    what: &str,
    result: Result<T, CatalogueError>,
    errors: &mut Vec<String>,
) -> Option<T> {
    result.map_err(|e| errors.push(format!("{what}: {e}"))).ok()
}

async fn block_public_access(
    ec2: &impl ExposureEc2,
    region: &Region,
    errors: &mut Vec<String>,
) -> Option<String> {
    match ec2.block_public_access_state(region).await {
        Ok(state) => Some(state),
        Err(e) => {
            errors.push(format!("image block public access state: {e}"));
            None
        }
    }
}

/// The exposures of the images not read this time, as the share ledger knows their shares.
fn exposed_from_ledger(
    settings: &Settings,
    images: &[OwnedImage],
    read: &BTreeMap<ImageId, Option<Vec<Grantee>>>,
    known: &Ledger,
) -> Vec<ExposedImage> {
    let unread = images.iter().filter(|i| !read.contains_key(&i.image_id));
    unread
        .filter_map(|image| {
            let entry = known.images.get(&image.image_id)?;
            exposed_image(settings, image, &entry.grantees)
        })
        .collect()
}

/// Every image's launch permissions, read [`CONCURRENCY`] at a time: the images exposed beyond
/// the allow-list (sorted by id), and each image's permissions for the share ledger (`None`
/// where the read failed; the failure is added to `errors`).
async fn check_images(
    ec2: &impl ExposureEc2,
    settings: &Settings,
    region: &Region,
    images: &[OwnedImage],
    progress: &(dyn Fn(&str, usize, usize) + Sync),
    errors: &mut Vec<String>,
) -> (Vec<ExposedImage>, BTreeMap<ImageId, Option<Vec<Grantee>>>) {
    let mut checks = stream::iter(images.iter().map(|image| async move {
        let at = ImageRef::new(region.clone(), image.image_id.clone());
        (image, ec2.launch_permissions(&at).await)
    }))
    .buffer_unordered(CONCURRENCY);
    let (mut exposed, mut seen, mut done) = (Vec::new(), BTreeMap::new(), 0usize);
    while let Some((image, permissions)) = checks.next().await {
        done += 1;
        progress("images", done, images.len());
        let grants = match &permissions {
            Ok(Some(grants)) => Some(grants.clone()),
            Ok(None) => Some(Vec::new()), // gone since it was listed
            Err(_) => None,
        };
        seen.insert(image.image_id.clone(), grants);
        match permissions {
            Ok(Some(grants)) => exposed.extend(exposed_image(settings, image, &grants)),
            Ok(None) => {}
            Err(e) => errors.push(format!("launch permissions of {}: {e}", image.image_id)),
        }
    }
    exposed.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    (exposed, seen)
}

/// What `image` is exposed to beyond the allow-list, if anything. The listing's `Public` flag
/// counts even when the permissions read does not show `all`: either is enough to alert on.
fn exposed_image(
    settings: &Settings,
    image: &OwnedImage,
    grants: &[Grantee],
) -> Option<ExposedImage> {
    let mut exposure = settings.exposures(grants);
    if image.public && !exposure.iter().any(is_public) {
        exposure.insert(0, Grantee::Public);
    }
    if exposure.is_empty() {
        return None;
    }
    Some(ExposedImage { image_id: image.image_id.clone(), name: image.name.clone(), exposure })
}

/// The candidates' create-volume permissions, read [`CONCURRENCY`] at a time: those confirmed
/// public (sorted by id), each with the owned images it backs and `state` (public, or public
/// but blocked). Failed reads go to `errors`.
#[allow(clippy::too_many_arguments)]
async fn check_snapshots(
    ec2: &impl ExposureEc2,
    settings: &Settings,
    region: &Region,
    images: &[OwnedImage],
    candidates: &[SnapshotId],
    state: SnapshotExposure,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
    errors: &mut Vec<String>,
) -> Vec<ExposedSnapshot> {
    let backs = backing(images);
    let mut checks = stream::iter(candidates.iter().map(|snapshot| async move {
        (snapshot, ec2.create_volume_permissions(region, snapshot).await)
    }))
    .buffer_unordered(CONCURRENCY);
    let (mut exposed, mut done) = (Vec::new(), 0usize);
    while let Some((snapshot, permissions)) = checks.next().await {
        done += 1;
        progress("snapshots", done, candidates.len());
        match permissions {
            // Confirmed per snapshot: the listing filter is only a pre-selection.
            Ok(Some(grants)) if grants.iter().any(is_public) => exposed.push(ExposedSnapshot {
                snapshot_id: snapshot.clone(),
                exposure: settings.exposures(&grants),
                state,
                backs: backs.get(snapshot).cloned().unwrap_or_default(),
            }),
            Ok(_) => {}
            Err(e) => errors.push(format!("create-volume permissions of {snapshot}: {e}")),
        }
    }
    exposed.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
    exposed
}

/// The images each snapshot backs, from the listed images' block device mappings.
fn backing(images: &[OwnedImage]) -> BTreeMap<&SnapshotId, Vec<ImageId>> {
    let mut backs: BTreeMap<&SnapshotId, Vec<ImageId>> = BTreeMap::new();
    for image in images {
        for snapshot in &image.snapshots {
            backs.entry(snapshot).or_default().push(image.image_id.clone());
        }
    }
    backs
}

/// The one summary notification of a sweep (over one or more regions).
pub fn sweep_notification(reports: &[SweepReport], account: Option<&str>) -> Notification {
    let severity = reports.iter().map(SweepReport::severity).max().unwrap_or(Severity::Info);
    let images: usize = reports.iter().map(|r| r.exposed_images.len()).sum();
    let snapshots: usize = reports.iter().map(|r| r.exposed_snapshots.len()).sum();
    let public: usize = reports.iter().map(SweepReport::public_count).sum();
    let blocked: usize = reports.iter().map(SweepReport::blocked_count).sum();
    let shared = images + snapshots - public - blocked;
    let errors: usize = reports.iter().map(|r| r.errors.len()).sum();
    let regions: Vec<&str> = reports.iter().map(|r| r.region.as_str()).collect();
    let subject = if images + snapshots == 0 {
        format!(
            "exposure sweep: nothing public or shared outside the allow-list ({})",
            regions.join(", ")
        )
    } else if blocked > 0 {
        format!(
            "exposure sweep: {public} public, {blocked} public but blocked, {shared} shared outside the allow-list"
        )
    } else {
        format!("exposure sweep: {public} public, {shared} shared outside the allow-list")
    };
    let mut text = String::new();
    for r in reports {
        text.push_str(&format!(
            "{}: {} images ({}) and {} snapshot candidates checked; {}.\n",
            r.region,
            r.images_checked,
            r.permissions_read_phrase(),
            r.snapshots_checked,
            r.guardrails_phrase()
        ));
        for i in &r.exposed_images {
            text.push_str(&format!(
                "  image {}{} exposed to {}\n",
                i.image_id,
                i.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                describe_grantees(&i.exposure)
            ));
        }
        for s in &r.exposed_snapshots {
            let backs: Vec<String> = s.backs.iter().map(ToString::to_string).collect();
            let how = match s.state {
                SnapshotExposure::Public => format!("exposed to {}", describe_grantees(&s.exposure)),
                SnapshotExposure::PublicButBlocked => format!(
                    "public but blocked (block-all-sharing treats it as private; public again under block-new-sharing or off), exposed to {}",
                    describe_grantees(&s.exposure)
                ),
            };
            text.push_str(&format!(
                "  snapshot {} {how}; backs {}\n",
                s.snapshot_id,
                if backs.is_empty() { "no registered image".into() } else { backs.join(", ") }
            ));
        }
        for e in &r.errors {
            text.push_str(&format!("  not checked: {e}\n"));
        }
    }
    let mut n = Notification::new(severity, "exposure-sweep", subject)
        .text(text)
        .field("Account", account.unwrap_or_default())
        .field("Regions", regions.join(", "))
        .field("Public", public.to_string())
        .field("Public but blocked", if blocked > 0 { blocked.to_string() } else { String::new() })
        .field("Shared outside allow-list", shared.to_string())
        .field("Lookups failed", errors.to_string());
    if let Some(r) = reports.first() {
        n = n.link(
            "EC2 images (owned by me)",
            format!(
            "https://{0}.console.aws.amazon.com/ec2/home?region={0}#Images:visibility=owned-by-me",
            r.region
        ),
        );
        n = n.link("EC2 settings", notify::console_settings_url(r.region.as_str()));
    }
    n.details(json!({ "reports": reports, "account": account }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::guardrails::AllowedImagesState;

    fn setting(state: &str) -> SnapshotBlockPublicAccess {
        SnapshotBlockPublicAccess {
            state: SnapshotBlockState::parse(state),
            managed_by: Some("account".into()),
        }
    }

    fn report(snapshot_setting: &str, exposed_snapshots: Vec<ExposedSnapshot>) -> SweepReport {
        SweepReport {
            region: Region::parse("eu-west-1").unwrap(),
            images_checked: 3,
            permissions_read: 3,
            full_read: true,
            snapshots_checked: exposed_snapshots.len(),
            exposed_images: Vec::new(),
            exposed_snapshots,
            block_public_access: Some("block-new-sharing".into()),
            snapshot_block_public_access: Some(setting(snapshot_setting)),
            allowed_images: Some(AllowedImagesSettings {
                state: AllowedImagesState::AuditMode,
                criteria: Vec::new(),
                managed_by: Some("account".into()),
            }),
            errors: Vec::new(),
            shares: SharesSeen::default(),
        }
    }

    fn public_snapshot(state: SnapshotExposure) -> ExposedSnapshot {
        ExposedSnapshot {
            snapshot_id: SnapshotId::parse("snap-0abc").unwrap(),
            exposure: vec![Grantee::Public],
            state,
            backs: vec![ImageId::parse("ami-0abc").unwrap()],
        }
    }

    #[test]
    fn only_block_all_sharing_blocks_a_snapshot_whose_permissions_say_public() {
        let blocked = setting("block-all-sharing");
        assert_eq!(snapshot_exposure(Some(&blocked)), SnapshotExposure::PublicButBlocked);
        for open in ["block-new-sharing", "unblocked", "some-new-mode"] {
            assert_eq!(snapshot_exposure(Some(&setting(open))), SnapshotExposure::Public, "{open}");
        }
        assert_eq!(snapshot_exposure(None), SnapshotExposure::Public, "unknown blocks nothing");
    }

    #[test]
    fn a_public_but_blocked_snapshot_is_a_warning_of_its_own_and_a_public_one_critical() {
        let blocked =
            report("block-all-sharing", vec![public_snapshot(SnapshotExposure::PublicButBlocked)]);
        assert_eq!((blocked.public_count(), blocked.blocked_count()), (0, 1));
        assert_eq!(blocked.severity(), Severity::Warning);
        let n = sweep_notification(std::slice::from_ref(&blocked), Some("111122223333"));
        assert_eq!(
            n.subject,
            "exposure sweep: 0 public, 1 public but blocked, 0 shared outside the allow-list"
        );
        assert!(
            n.text.contains("snapshot snap-0abc public but blocked (block-all-sharing treats it as private; public again under block-new-sharing or off)"),
            "{}",
            n.text
        );
        let open = report("block-new-sharing", vec![public_snapshot(SnapshotExposure::Public)]);
        assert_eq!((open.public_count(), open.blocked_count()), (1, 0));
        assert_eq!(open.severity(), Severity::Critical);
        let n = sweep_notification(&[open], None);
        assert_eq!(n.subject, "exposure sweep: 1 public, 0 shared outside the allow-list");
    }

    #[test]
    fn the_report_names_every_guardrail_of_the_region() {
        let r = report("unblocked", Vec::new());
        assert_eq!(
            r.guardrails_phrase(),
            "image block public access: block-new-sharing; snapshot block public access: unblocked; Allowed AMIs: audit-mode"
        );
        // Snapshots unblocked is AWS's default: reported, not raised.
        assert_eq!(r.severity(), Severity::Info);
        let text = sweep_notification(std::slice::from_ref(&r), None).text;
        assert!(text.contains("snapshot block public access: unblocked"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["snapshot_block_public_access"]["state"], "unblocked");
        assert_eq!(json["allowed_images"]["state"], "audit-mode");
        let unread = SweepReport {
            snapshot_block_public_access: None,
            allowed_images: None,
            errors: vec!["Allowed AMIs settings: denied".into()],
            ..r
        };
        assert!(unread
            .guardrails_phrase()
            .ends_with("snapshot block public access: unknown; Allowed AMIs: unknown"));
        assert_eq!(unread.severity(), Severity::Warning);
    }
}
