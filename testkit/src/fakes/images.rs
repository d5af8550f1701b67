//! [`FakeImages`]: the enforcer's EC2 ([`DeprecationEc2`]) over a map of images.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use warden::catalogue::CatalogueError;
use warden::deprecation::protect::{PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
use warden::deprecation::{
    DeprecationEc2, DeregistrationProtection, ImageFacts, InUseIndex, RETIRED_TAG_KEY,
    RETIRED_TAG_VALUE,
};
use warden::event::Grantee;
use warden::ids::{ImageId, Region};
use warden::recycle_bin::RetentionRule;

use super::refused;

/// A call the enforcer made, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageCall {
    Images,
    Image(ImageId),
    Usage,
    References(Vec<ImageId>),
    LaunchPermissions(ImageId),
    EnableDeprecation(ImageId),
    Deregister(ImageId),
    RetentionRules,
    MarkRetired(ImageId),
    UnmarkRetired(ImageId),
    EnableProtection(ImageId),
    DisableProtection(ImageId),
    MarkProtected(ImageId),
    UnmarkProtected(ImageId),
}

/// What a refused DeregisterImage turns out to have done, when the image is asked for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRefusal {
    /// It deregistered the image: only its answer was lost.
    Gone,
    /// It did nothing: the image is still there.
    StillThere,
    /// Asking fails too: DescribeImages of the image errs from then on.
    Unknown,
}

#[derive(Default)]
struct State {
    images: BTreeMap<ImageId, ImageFacts>,
    rules: Option<Result<Vec<RetentionRule>, String>>,
    refusals: BTreeMap<ImageId, AfterRefusal>,
    unanswerable: BTreeSet<ImageId>,
    untaggable: BTreeSet<ImageId>,
    refuse_untag: bool,
    refuse_protection: BTreeSet<ImageId>,
    slow_deregistrations: Option<Instant>,
    calls: Vec<ImageCall>,
}

/// An account's images in one region, each as DescribeImages would list it. Nothing is in use,
/// nothing is shared, and a Recycle Bin rule keeps images tagged [`RETIRED_TAG_KEY`], unless
/// the test says otherwise.
pub struct FakeImages {
    state: Mutex<State>,
}

impl Default for FakeImages {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeImages {
    pub fn new() -> Self {
        Self { state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("a fake's lock is never poisoned")
    }

    /// Adds (or replaces) an image.
    pub fn add(&self, image: ImageFacts) {
        self.state().images.insert(image.image_id.clone(), image);
    }

    /// The region's image retention rules in effect (by default: the rule the templates
    /// deploy); `Err` makes reading them fail.
    pub fn set_rules(&self, rules: Result<Vec<RetentionRule>, String>) {
        self.state().rules = Some(rules);
    }

    /// DeregisterImage of `image` fails; asked afterwards, EC2 answers as `after` says.
    pub fn refuse_deregistration(&self, image: &ImageId, after: AfterRefusal) {
        self.state().refusals.insert(image.clone(), after);
    }

    /// Tagging `image` fails.
    pub fn refuse_tagging(&self, image: &ImageId) {
        self.state().untaggable.insert(image.clone());
    }

    /// Taking a tag off fails.
    pub fn refuse_untagging(&self) {
        self.state().refuse_untag = true;
    }

    /// Enabling or disabling the deregistration protection of `image` fails.
    pub fn refuse_protection(&self, image: &ImageId) {
        self.state().refuse_protection.insert(image.clone());
    }

    /// Every DeregisterImage answers only at `until` (time runs out during those under way).
    pub fn slow_deregistrations(&self, until: Instant) {
        self.state().slow_deregistrations = Some(until);
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<ImageCall> {
        self.state().calls.clone()
    }

    /// The calls that change something: tags, deregistrations, deadlines.
    pub fn actions(&self) -> Vec<ImageCall> {
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(
                    c,
                    ImageCall::EnableDeprecation(_)
                        | ImageCall::Deregister(_)
                        | ImageCall::MarkRetired(_)
                        | ImageCall::UnmarkRetired(_)
                        | ImageCall::EnableProtection(_)
                        | ImageCall::DisableProtection(_)
                        | ImageCall::MarkProtected(_)
                        | ImageCall::UnmarkProtected(_)
                )
            })
            .collect()
    }

    /// Whether `image` is registered.
    pub fn registered(&self, image: &ImageId) -> bool {
        self.state().images.contains_key(image)
    }

    /// The deregistration protection of a registered `image`, as DescribeImages would read.
    pub fn protection(&self, image: &ImageId) -> Option<DeregistrationProtection> {
        self.state().images.get(image).map(|i| i.deregistration_protection.clone())
    }

    /// The tags of a registered `image`.
    pub fn tags(&self, image: &ImageId) -> Option<BTreeMap<String, String>> {
        self.state().images.get(image).map(|i| i.tags.clone())
    }

    fn record(&self, call: ImageCall) {
        self.state().calls.push(call);
    }
}

/// The rule the templates deploy: it keeps images tagged [`RETIRED_TAG_KEY`].
pub fn templates_rule() -> RetentionRule {
    RetentionRule {
        resource_tags: vec![(RETIRED_TAG_KEY.to_owned(), Some(RETIRED_TAG_VALUE.to_owned()))],
        exclude_resource_tags: Vec::new(),
    }
}

impl DeprecationEc2 for FakeImages {
    async fn images(&self, _region: &Region) -> Result<Vec<ImageFacts>, CatalogueError> {
        self.record(ImageCall::Images);
        Ok(self.state().images.values().cloned().collect())
    }

    async fn image(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Option<ImageFacts>, CatalogueError> {
        self.record(ImageCall::Image(image.clone()));
        let state = self.state();
        if state.unanswerable.contains(image) {
            return Err(refused("DescribeImages", region));
        }
        Ok(state.images.get(image).cloned())
    }

    async fn usage(&self, _region: &Region) -> InUseIndex {
        self.record(ImageCall::Usage);
        InUseIndex::default()
    }

    async fn add_references(&self, _region: &Region, images: &[ImageId], _index: &mut InUseIndex) {
        self.record(ImageCall::References(images.to_vec()));
    }

    async fn launch_permissions(
        &self,
        _region: &Region,
        image: &ImageId,
    ) -> Result<Vec<Grantee>, CatalogueError> {
        self.record(ImageCall::LaunchPermissions(image.clone()));
        Ok(Vec::new())
    }

    async fn enable_deprecation(
        &self,
        _region: &Region,
        image: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        self.record(ImageCall::EnableDeprecation(image.clone()));
        // As EC2 answers: "The deprecation time cannot be in the past."
        if at <= chrono::Utc::now() {
            return Err(CatalogueError {
                operation: "EnableImageDeprecation",
                region: _region.clone(),
                message: format!("InvalidParameterValue: the deprecation time {at} is in the past"),
            });
        }
        if let Some(facts) = self.state().images.get_mut(image) {
            facts.deprecation = Some(at);
        }
        Ok(())
    }

    async fn deregister(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.record(ImageCall::Deregister(image.clone()));
        let slow = self.state().slow_deregistrations;
        if let Some(until) = slow {
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
        let mut state = self.state();
        let protected = state
            .images
            .get(image)
            .is_some_and(|i| i.deregistration_protection.protects_at(Utc::now()));
        if protected {
            return Err(refused("DeregisterImage", region));
        }
        match state.refusals.get(image).copied() {
            None => {
                state.images.remove(image);
                Ok(())
            }
            Some(after) => {
                match after {
                    AfterRefusal::Gone => {
                        state.images.remove(image);
                    }
                    AfterRefusal::StillThere => {}
                    AfterRefusal::Unknown => {
                        state.unanswerable.insert(image.clone());
                    }
                }
                Err(refused("DeregisterImage", region))
            }
        }
    }

    async fn image_retention_rules(
        &self,
        region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError> {
        self.record(ImageCall::RetentionRules);
        match self.state().rules.clone() {
            None => Ok(vec![templates_rule()]),
            Some(Ok(rules)) => Ok(rules),
            Some(Err(message)) => Err(CatalogueError {
                operation: "Recycle Bin ListRules",
                region: region.clone(),
                message,
            }),
        }
    }

    async fn mark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.record(ImageCall::MarkRetired(image.clone()));
        let mut state = self.state();
        if state.untaggable.contains(image) {
            return Err(refused("CreateTags", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.tags.insert(RETIRED_TAG_KEY.to_owned(), RETIRED_TAG_VALUE.to_owned());
        }
        Ok(())
    }

    async fn unmark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.record(ImageCall::UnmarkRetired(image.clone()));
        let mut state = self.state();
        if state.refuse_untag {
            return Err(refused("DeleteTags", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.tags.remove(RETIRED_TAG_KEY);
        }
        Ok(())
    }

    /// Enabled with cooldown, as the adapter asks; refused when the test says so.
    async fn enable_protection(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.record(ImageCall::EnableProtection(image.clone()));
        let mut state = self.state();
        if state.refuse_protection.contains(image) {
            return Err(refused("EnableImageDeregistrationProtection", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.deregistration_protection = DeregistrationProtection::EnabledWithCooldown;
        }
        Ok(())
    }

    /// Disabled: an image enabled with cooldown stays protected for 24 hours.
    async fn disable_protection(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.record(ImageCall::DisableProtection(image.clone()));
        let mut state = self.state();
        if state.refuse_protection.contains(image) {
            return Err(refused("DisableImageDeregistrationProtection", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.deregistration_protection = match facts.deregistration_protection {
                DeregistrationProtection::EnabledWithCooldown => {
                    DeregistrationProtection::DisabledAfter(
                        Utc::now() + chrono::Duration::hours(24),
                    )
                }
                _ => DeregistrationProtection::Disabled,
            };
        }
        Ok(())
    }

    async fn mark_protected(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.record(ImageCall::MarkProtected(image.clone()));
        let mut state = self.state();
        if state.untaggable.contains(image) {
            return Err(refused("CreateTags", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.tags.insert(PROTECTED_TAG_KEY.to_owned(), PROTECTED_TAG_VALUE.to_owned());
        }
        Ok(())
    }

    async fn unmark_protected(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.record(ImageCall::UnmarkProtected(image.clone()));
        let mut state = self.state();
        if state.refuse_untag {
            return Err(refused("DeleteTags", region));
        }
        if let Some(facts) = state.images.get_mut(image) {
            facts.tags.remove(PROTECTED_TAG_KEY);
        }
        Ok(())
    }
}
