//! The quarantine shell: gathers what EC2 says of the quarantined image and every descendant
//! the lineage knows, in whichever account holds it, decides each step ([`super::step`]) and,
//! in enforce mode, carries them out; release undoes them ([`super::restore`]).
//!
//! Every step is recorded ([`QuarantineStore::record_undo`]) before it is carried out, and a
//! record is never replaced: running a quarantine again (after a partial failure) acts again
//! where needed and keeps what the first run found, so release still knows what the image had.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{restore, step, Quarantine, Release, Restore, Step, Undo};
use crate::config::Mode;
use crate::deprecation::earliest_allowed;
use crate::deprecation::DeprecationEc2;
use crate::ids::{AccountId, ImageRef};
use crate::impact::OtherAccounts;
use crate::lineage::{LineageStore, StoreError};
use crate::notify::{Notification, Severity};

/// Where quarantines and what they did are kept (the lineage table, see
/// [`crate::aws::quarantine_store`]).
#[allow(async_fn_in_trait)]
pub trait QuarantineStore {
    /// Records `quarantine` on its image's node, unless an active one is recorded there
    /// already: returns the one in force.
    async fn record_quarantine(&self, quarantine: &Quarantine) -> Result<Quarantine, StoreError>;
    /// The quarantine recorded on `image`, active or released.
    async fn quarantine_of(&self, image: &ImageRef) -> Result<Option<Quarantine>, StoreError>;
    /// The quarantines recorded on any of `images` (one request for up to 100).
    async fn quarantines_of(&self, images: &[ImageRef]) -> Result<Vec<Quarantine>, StoreError>;
    /// Records what the quarantine of `of` does to `undo.image`. A record already there keeps
    /// what the image had before (the first one saw it before anything was done); what this
    /// step does besides (tagged, deprecated, disabled, and the launch permissions it had) is
    /// added to it. Returns whether the record is new.
    async fn record_undo(&self, of: &ImageRef, undo: &Undo) -> Result<bool, StoreError>;
    /// What the quarantine of `of` did to each of `images` that it touched.
    async fn undos(&self, of: &ImageRef, images: &[ImageRef]) -> Result<Vec<Undo>, StoreError>;
    /// Forgets what the quarantine of `of` did to `image` (it was undone).
    async fn forget_undo(&self, of: &ImageRef, image: &ImageRef) -> Result<(), StoreError>;
    /// Notes that a new image of the quarantine of `of` was seen and alerted on, without
    /// acting (report mode). Returns whether this is the first time.
    async fn record_seen(&self, of: &ImageRef, image: &ImageRef) -> Result<bool, StoreError>;
    /// Marks the quarantine of `of` released.
    async fn record_release(&self, of: &ImageRef, release: &Release) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not in the lineage table: record or backfill it first")]
    Unknown(ImageRef),
    #[error("{0} is not quarantined")]
    NotQuarantined(ImageRef),
    #[error("{} is already quarantined since {} ({}{}): release it first to declare another", .0.image, .0.at.format("%Y-%m-%d %H:%M"), .0.reason, if .0.disable { ", disabling" } else { "" })]
    AlreadyQuarantined(Box<Quarantine>),
}

/// What a quarantine run planned and did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuarantineReport {
    pub quarantine: Quarantine,
    pub mode: Mode,
    pub steps: Vec<Step>,
    /// The images acted on (enforce mode).
    pub done: Vec<ImageRef>,
    pub errors: Vec<String>,
}

/// What a release planned and did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReleaseReport {
    pub quarantine: Quarantine,
    pub mode: Mode,
    pub restores: Vec<Restore>,
    pub done: Vec<ImageRef>,
    pub errors: Vec<String>,
}

/// The quarantine shell over the lineage, its store and EC2 in each account.
pub struct Quarantiner<'a, S, E, O: OtherAccounts> {
    pub store: &'a S,
    /// EC2 in the own account.
    pub ec2: &'a E,
    /// EC2 in the other accounts the lineage names.
    pub others: &'a O,
    pub own_account: Option<AccountId>,
    pub mode: Mode,
    pub exempt_tag_key: &'a str,
}

/// EC2 in one account: the own one, or another through its role.
enum Reach<'a, E, F> {
    Own(&'a E),
    Other(F),
    Unreachable(String),
}

impl<S, E, O> Quarantiner<'_, S, E, O>
where
    S: LineageStore + QuarantineStore,
    E: DeprecationEc2,
    O: OtherAccounts,
{
    /// Records `quarantine` (or finds the one in force) and plans, then in enforce mode
    /// carries out, its steps on the image and every descendant.
    pub async fn quarantine(
        &self,
        quarantine: Quarantine,
        now: DateTime<Utc>,
    ) -> Result<QuarantineReport, QuarantineError> {
        let images = self.family(&quarantine.image).await?;
        let quarantine = self.declare(quarantine).await?;
        let reach = self.reach(&images).await;
        let mut report = QuarantineReport {
            quarantine,
            mode: self.mode,
            steps: Vec::new(),
            done: Vec::new(),
            errors: Vec::new(),
        };
        for (image, account) in &images {
            let step = match self.in_account(&reach, account.as_ref()) {
                Reach::Unreachable(why) => Step::Skip {
                    image: image.clone(),
                    account: account.clone(),
                    why: format!("account not reached: {why}"),
                },
                Reach::Own(ec2) => {
                    self.plan_one(ec2, &report.quarantine, image, account, now).await
                }
                Reach::Other(ec2) => {
                    self.plan_one(ec2, &report.quarantine, image, account, now).await
                }
            };
            if self.mode == Mode::Enforce {
                if let Step::Act { undo, deprecate_at } = &step {
                    let q = &report.quarantine;
                    let result = match self.in_account(&reach, account.as_ref()) {
                        Reach::Own(ec2) => act(self.store, ec2, q, undo, *deprecate_at).await,
                        Reach::Other(ec2) => act(self.store, ec2, q, undo, *deprecate_at).await,
                        Reach::Unreachable(why) => Err(why),
                    };
                    match result {
                        Ok(()) => report.done.push(image.clone()),
                        Err(e) => report.errors.push(format!("{image}: {e}")),
                    }
                }
            }
            report.steps.push(step);
        }
        Ok(report)
    }

    /// Undoes what the quarantine of `image` did (enforce mode), then marks it released;
    /// report mode lists what it would undo.
    pub async fn release(
        &self,
        image: &ImageRef,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ReleaseReport, QuarantineError> {
        let quarantine = match self.store.quarantine_of(image).await? {
            Some(q) if q.active() => q,
            _ => return Err(QuarantineError::NotQuarantined(image.clone())),
        };
        let images = self.family(image).await?;
        let refs: Vec<ImageRef> = images.iter().map(|(i, _)| i.clone()).collect();
        let undos = self.store.undos(image, &refs).await?;
        let reach = self.reach(&images).await;
        let mut report = ReleaseReport {
            quarantine,
            mode: self.mode,
            restores: Vec::new(),
            done: Vec::new(),
            errors: Vec::new(),
        };
        for undo in &undos {
            // Never a deadline that is past by the time the request arrives.
            let mut restore = restore(undo, now.max(Utc::now()) + chrono::Duration::seconds(30));
            if let Some(other) = self.still_quarantined(image, &undo.image).await? {
                restore.notes.push(format!("left as it is: still under the quarantine of {other}"));
                report.restores.push(restore);
                continue;
            }
            if self.mode == Mode::Enforce {
                let result = match self.in_account(&reach, undo.account.as_ref()) {
                    Reach::Own(ec2) => self.restore_one(ec2, image, &mut restore).await,
                    Reach::Other(ec2) => self.restore_one(ec2, image, &mut restore).await,
                    Reach::Unreachable(why) => Err(why),
                };
                match result {
                    Ok(()) => report.done.push(undo.image.clone()),
                    Err(e) => report.errors.push(format!("{}: {e}", undo.image)),
                }
            }
            report.restores.push(restore);
        }
        if self.mode == Mode::Enforce && report.errors.is_empty() {
            let release = Release { by: by.to_owned(), at: now };
            self.store.record_release(image, &release).await?;
            report.quarantine.released = Some(release);
        }
        Ok(report)
    }

    /// Records the quarantine (enforce mode) or finds the one recorded; report mode records
    /// nothing, so that a preview never starts what the enforcer follows. A quarantine in force
    /// with another reason or `--disable` is not replaced.
    async fn declare(&self, declared: Quarantine) -> Result<Quarantine, QuarantineError> {
        let recorded = match self.mode {
            Mode::Enforce => self.store.record_quarantine(&declared).await?,
            Mode::Report => match self.store.quarantine_of(&declared.image).await? {
                Some(active) if active.active() => active,
                _ => declared.clone(),
            },
        };
        if recorded.reason != declared.reason || recorded.disable != declared.disable {
            return Err(QuarantineError::AlreadyQuarantined(Box::new(recorded)));
        }
        Ok(recorded)
    }

    /// Another active quarantine (than that of `of`) `image` falls under, if any: its own or
    /// an ancestor's.
    async fn still_quarantined(
        &self,
        of: &ImageRef,
        image: &ImageRef,
    ) -> Result<Option<ImageRef>, QuarantineError> {
        let mut line: Vec<ImageRef> =
            self.store.ancestors(image).await?.into_iter().map(|r| r.image).collect();
        line.push(image.clone());
        let found = self.store.quarantines_of(&line).await?;
        Ok(found.into_iter().find(|q| q.active() && q.image != *of).map(|q| q.image))
    }

    /// The image and every descendant the lineage knows, each with its account.
    async fn family(
        &self,
        image: &ImageRef,
    ) -> Result<Vec<(ImageRef, Option<AccountId>)>, QuarantineError> {
        let node =
            self.store.node(image).await?.ok_or_else(|| QuarantineError::Unknown(image.clone()))?;
        let mut images = vec![(node.image, node.account)];
        let descendants = self.store.descendants(image).await?;
        images.extend(descendants.into_iter().map(|r| (r.image, r.account)));
        Ok(images)
    }

    /// EC2 in each other account `images` name, asked once each.
    async fn reach(
        &self,
        images: &[(ImageRef, Option<AccountId>)],
    ) -> BTreeMap<AccountId, Result<O::Ec2, String>> {
        let mut reach = BTreeMap::new();
        for account in images.iter().filter_map(|(_, a)| a.as_ref()) {
            if Some(account) == self.own_account.as_ref() || reach.contains_key(account) {
                continue;
            }
            reach.insert(account.clone(), self.others.ec2_in(account).await);
        }
        reach
    }

    fn in_account<'r>(
        &'r self,
        reach: &'r BTreeMap<AccountId, Result<O::Ec2, String>>,
        account: Option<&AccountId>,
    ) -> Reach<'r, E, &'r O::Ec2> {
        match account {
            None => Reach::Own(self.ec2),
            Some(a) if Some(a) == self.own_account.as_ref() => Reach::Own(self.ec2),
            Some(a) => match reach.get(a) {
                Some(Ok(ec2)) => Reach::Other(ec2),
                Some(Err(why)) => Reach::Unreachable(why.clone()),
                None => Reach::Unreachable("not asked".into()),
            },
        }
    }

    async fn plan_one(
        &self,
        ec2: &impl DeprecationEc2,
        quarantine: &Quarantine,
        image: &ImageRef,
        account: &Option<AccountId>,
        now: DateTime<Utc>,
    ) -> Step {
        match ec2.image(&image.region, &image.image_id).await {
            Ok(facts) => {
                step(quarantine, image, account.as_ref(), facts.as_ref(), self.exempt_tag_key, now)
            }
            Err(e) => Step::Skip {
                image: image.clone(),
                account: account.clone(),
                why: format!("not read: {e}"),
            },
        }
    }

    async fn restore_one(
        &self,
        ec2: &impl DeprecationEc2,
        of: &ImageRef,
        restore: &mut Restore,
    ) -> Result<(), String> {
        let (region, id) = (&restore.image.region, &restore.image.image_id);
        // Gone since (deregistered, retired): nothing to put back.
        if ec2.image(region, id).await.map_err(|e| e.to_string())?.is_none() {
            restore.notes.push("no longer in EC2: nothing to undo".into());
            return self.store.forget_undo(of, &restore.image).await.map_err(|e| e.to_string());
        }
        if restore.enable {
            ec2.enable_image(region, id).await.map_err(|e| e.to_string())?;
        }
        if !restore.regrant.is_empty() {
            ec2.add_launch_permissions(region, id, &restore.regrant)
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(at) = restore.deprecate_at {
            ec2.enable_deprecation(region, id, at).await.map_err(|e| e.to_string())?;
        }
        if restore.undeprecate {
            ec2.disable_deprecation(region, id).await.map_err(|e| e.to_string())?;
        }
        if restore.untag {
            ec2.unmark_quarantined(region, id).await.map_err(|e| e.to_string())?;
        }
        self.store.forget_undo(of, &restore.image).await.map_err(|e| e.to_string())
    }
}

/// Carries out one image's step, after recording what it does (with, when it disables, the
/// launch permissions it has, which DisableImage takes away). A record already there is kept:
/// it saw the image before anything was done.
pub async fn act(
    store: &impl QuarantineStore,
    ec2: &impl DeprecationEc2,
    quarantine: &Quarantine,
    undo: &Undo,
    deprecate_at: Option<DateTime<Utc>>,
) -> Result<(), String> {
    let (undo, _) = record(store, ec2, quarantine, undo).await?;
    carry_out(ec2, quarantine, &undo, deprecate_at).await
}

/// [`act`]'s first half: records the step (with the launch permissions the image has when the
/// step disables it). Returns what was recorded, and whether the record is new.
pub async fn record(
    store: &impl QuarantineStore,
    ec2: &impl DeprecationEc2,
    quarantine: &Quarantine,
    undo: &Undo,
) -> Result<(Undo, bool), String> {
    let mut undo = undo.clone();
    if undo.disabled {
        let (region, id) = (&undo.image.region, &undo.image.image_id);
        undo.grants = ec2.launch_permissions(region, id).await.map_err(|e| e.to_string())?;
    }
    let new = store.record_undo(&quarantine.image, &undo).await.map_err(|e| e.to_string())?;
    Ok((undo, new))
}

/// Tags, deprecates and (when the quarantine says so) disables one image, as `undo` and
/// `deprecate_at` say. Tagged first: an image the quarantine touched always says why.
pub async fn carry_out(
    ec2: &impl DeprecationEc2,
    quarantine: &Quarantine,
    undo: &Undo,
    deprecate_at: Option<DateTime<Utc>>,
) -> Result<(), String> {
    let (region, id) = (&undo.image.region, &undo.image.image_id);
    if undo.tagged {
        ec2.mark_quarantined(region, id, &quarantine.tag_value())
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(at) = deprecate_at {
        // The run may have taken a while since it planned `at`, and a request may wait for
        // its turn in EC2's bucket: never a time that is past when the request arrives.
        let at = at.max(earliest_allowed(Utc::now() + chrono::Duration::seconds(30)));
        ec2.enable_deprecation(region, id, at).await.map_err(|e| e.to_string())?;
    }
    if undo.disabled {
        ec2.disable_image(region, id).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One line per step, for the CLI and the notification.
pub fn step_line(step: &Step, mode: Mode) -> String {
    match step {
        Step::Act { undo, deprecate_at } => {
            let mut what = Vec::new();
            if undo.tagged {
                what.push("tag".to_owned());
            }
            if let Some(at) = deprecate_at {
                what.push(format!("deprecate at {}", at.format("%Y-%m-%d %H:%M")));
            }
            if undo.disabled {
                what.push("disable".to_owned());
            }
            if what.is_empty() {
                what.push("nothing left to do".to_owned());
            }
            let verb = if mode == Mode::Enforce { "" } else { "would " };
            format!("{}: {verb}{}", undo.image, what.join(", "))
        }
        Step::Skip { image, why, .. } => format!("{image}: {why}"),
    }
}

/// The one notification a quarantine sends: what was declared, and each image's step.
pub fn notification(report: &QuarantineReport) -> Notification {
    let q = &report.quarantine;
    let acted = report.steps.iter().filter(|s| matches!(s, Step::Act { .. })).count();
    let lines: Vec<String> = report.steps.iter().map(|s| step_line(s, report.mode)).collect();
    let severity = if report.errors.is_empty() { Severity::Warning } else { Severity::Critical };
    let subject = format!(
        "{} quarantined ({}): {acted} image(s) {}",
        q.image,
        q.reason,
        if report.mode == Mode::Enforce { "acted on" } else { "to act on (report mode)" }
    );
    let mut text = format!("Declared by {} at {}.\n\n", q.by, q.at.to_rfc3339());
    text.push_str(&lines.join("\n"));
    for e in &report.errors {
        text.push_str(&format!("\nerror: {e}"));
    }
    Notification::new(severity, "quarantine", subject)
        .text(text)
        .field("Image", q.image.to_string())
        .field("Reason", q.reason.clone())
        .field("Images", report.steps.len().to_string())
        .field("Errors", report.errors.len().to_string())
        .details(serde_json::to_value(report).unwrap_or_default())
}
