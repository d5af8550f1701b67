//! The exposure guard's handler: one CloudTrail event in, at most one alert out.
//!
//! For ModifyImageAttribute (launch permissions), ModifySnapshotAttribute (create-volume
//! permissions) and DisableImageBlockPublicAccess it re-reads the live state, asks the policy
//! ([`super::assess_change`]) what the event amounts to, carries out the remediation it decided
//! (only when `REMEDIATE_PUBLIC` is on), and publishes one notification that says what happened,
//! where, who did it, from where, and what AMI Warden did. A change to block public access for
//! snapshots or to Allowed AMIs (Enable/DisableSnapshotBlockPublicAccess,
//! Enable/DisableAllowedImagesSettings, ReplaceImageCriteriaInAllowedImagesSettings;
//! [`Guard::alert_guardrail`]) is re-read and alerted on the same way
//! ([`super::guardrails`]); account settings are never changed. Each `eventID` is handled once
//! ([`crate::idempotency`]); a failure to publish releases the claim and returns `Err`, so
//! Lambda retries.

use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use super::guardrails::{self, guardrail_notification};
use super::ledger::ShareLedger;
use super::{
    assess_change, describe_grantees, is_public, Access, ExposureEc2, Finding, Live, Remediation,
    Resource, Settings, Status,
};
use crate::event::{Event, EventKind, EventMeta, GuardrailChange, Parsed};
use crate::idempotency::{Claim, Idempotency};
use crate::ids::{AccountId, Region, SnapshotId};
use crate::lineage::StoreError;
use crate::notify::{self, Notification, Notifier, NotifyError, Severity};

/// The function name idempotency claims are scoped to.
pub const FUNCTION: &str = "exposure-guard";

/// What the guard did with one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GuardOutcome {
    /// A notification was published; `remediated` when the exposure's grants were removed.
    Alerted {
        severity: Severity,
        kind: String,
        summary: String,
        message_id: String,
        remediated: bool,
    },
    /// The event changed nothing that counts as exposure (e.g. an allow-listed share).
    Quiet { summary: String },
    /// This `eventID` was handled before.
    Duplicate { event_id: String },
    /// Not an event this function acts on, or bad input.
    Ignored { reason: String },
}

#[derive(Debug, Error)]
pub enum GuardError {
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event {event_id} is being handled by another delivery; retry later")]
    InProgress { event_id: String },
}

/// Everything the guard needs, borrowed from the function's long-lived state.
pub struct Guard<'a, E, N, I, L> {
    pub ec2: &'a E,
    pub notifier: &'a N,
    pub idempotency: &'a I,
    /// Where a change of an image's launch permissions is marked (see [`super::ledger`]).
    pub ledger: &'a L,
    pub settings: &'a Settings,
    /// The account this deployment acts in (from the function's ARN): only its resources are
    /// ever remediated.
    pub own_account: Option<AccountId>,
}

impl<E: ExposureEc2, N: Notifier, I: Idempotency, L: ShareLedger> Guard<'_, E, N, I, L> {
    pub async fn handle(&self, parsed: &Parsed) -> Result<GuardOutcome, GuardError> {
        let event = match parsed {
            Parsed::Ignored { reason, .. } => {
                return Ok(GuardOutcome::Ignored { reason: reason.to_string() })
            }
            Parsed::Event(event) => event,
        };
        if !matches!(
            event.kind,
            EventKind::LaunchPermissionChanged { .. }
                | EventKind::CreateVolumePermissionChanged { .. }
                | EventKind::ImageBlockPublicAccessDisabled { .. }
                | EventKind::GuardrailChanged { .. }
        ) {
            return Ok(GuardOutcome::Ignored {
                reason: format!("{} is not an exposure event", event.meta.event_name),
            });
        }
        let event_id = &event.meta.event_id;
        match self.idempotency.claim(FUNCTION, event_id).await? {
            Claim::Done => return Ok(GuardOutcome::Duplicate { event_id: event_id.clone() }),
            Claim::InProgress => return Err(GuardError::InProgress { event_id: event_id.clone() }),
            Claim::Proceed => {}
        }
        let result = self.act(event).await;
        match &result {
            Ok(outcome) => {
                let summary = match outcome {
                    GuardOutcome::Alerted { summary, .. } | GuardOutcome::Quiet { summary } => {
                        summary.as_str()
                    }
                    _ => "",
                };
                self.idempotency.complete(FUNCTION, event_id, summary).await?;
            }
            Err(_) => {
                if let Err(e) = self.idempotency.release(FUNCTION, event_id).await {
                    tracing::warn!(event_id, error = %e, "could not release the claim; the retry waits for its lease");
                }
            }
        }
        result
    }

    async fn act(&self, event: &Event) -> Result<GuardOutcome, GuardError> {
        let (notification, action) = match &event.kind {
            EventKind::LaunchPermissionChanged { image, change } => {
                // First of all: the share ledger no longer speaks for this image.
                if let Some(account) = event.meta.account.as_ref().or(self.own_account.as_ref()) {
                    self.ledger.mark_changed(account, image, event.meta.event_time).await?;
                }
                let resource = Resource::Image { image: image.clone() };
                let live = live(self.ec2.image_access(image).await);
                let Some(finding) = assess_change(
                    resource,
                    change,
                    &live,
                    self.settings,
                    self.own_account.as_ref(),
                ) else {
                    return Ok(quiet(event));
                };
                let action = self.remediate(&finding).await;
                (finding_notification(&event.meta, &finding, &live, &action, &[]), Some(action))
            }
            EventKind::CreateVolumePermissionChanged { snapshot, change } => {
                let region = &event.meta.region;
                // The reaper's reading of this snapshot's permissions is out of date.
                if let Some(account) = event.meta.account.as_ref().or(self.own_account.as_ref()) {
                    self.ledger
                        .mark_snapshot_changed(account, region, snapshot, event.meta.event_time)
                        .await?;
                }
                let resource =
                    Resource::Snapshot { region: region.clone(), snapshot: snapshot.clone() };
                let live = live(self.ec2.snapshot_access(region, snapshot).await);
                let Some(finding) = assess_change(
                    resource,
                    change,
                    &live,
                    self.settings,
                    self.own_account.as_ref(),
                ) else {
                    return Ok(quiet(event));
                };
                let backs = match self.ec2.images_backed_by(region, snapshot).await {
                    Ok(images) if images.is_empty() => vec!["no registered image".to_owned()],
                    Ok(images) => images.iter().map(ToString::to_string).collect(),
                    Err(e) => vec![format!("unknown ({e})")],
                };
                let action = self.remediate(&finding).await;
                (finding_notification(&event.meta, &finding, &live, &action, &backs), Some(action))
            }
            EventKind::ImageBlockPublicAccessDisabled { .. } => {
                let state = self.ec2.block_public_access_state(&event.meta.region).await;
                let state = state.map_err(|e| e.to_string());
                (block_public_access_notification(&event.meta, state), None)
            }
            EventKind::GuardrailChanged { change } => {
                return self.alert_guardrail(&event.meta, change).await
            }
            _ => {
                return Ok(GuardOutcome::Ignored {
                    reason: format!("{} is not an exposure event", event.meta.event_name),
                })
            }
        };
        let message_id = self.notifier.publish(&notification).await?;
        Ok(GuardOutcome::Alerted {
            severity: notification.severity,
            kind: notification.kind.clone(),
            summary: notification.subject.clone(),
            message_id,
            remediated: matches!(action, Some(Action::Removed(_))),
        })
    }

    /// Alerts on a change to block public access for snapshots or to Allowed AMIs: re-reads the
    /// setting (and, for snapshots, which snapshots' permissions say public), decides
    /// ([`guardrails::assess`]) and publishes. Changes nothing, whatever the settings say.
    pub async fn alert_guardrail(
        &self,
        meta: &EventMeta,
        change: &GuardrailChange,
    ) -> Result<GuardOutcome, GuardError> {
        let region = &meta.region;
        let live = match change {
            GuardrailChange::SnapshotBlockPublicAccessEnabled { .. }
            | GuardrailChange::SnapshotBlockPublicAccessDisabled => guardrails::Live::Snapshots {
                setting: self
                    .ec2
                    .snapshot_block_public_access(region)
                    .await
                    .map_err(|e| e.to_string()),
                public: self.public_snapshots(region).await,
            },
            GuardrailChange::AllowedImagesEnabled { .. }
            | GuardrailChange::AllowedImagesDisabled
            | GuardrailChange::ImageCriteriaReplaced { .. } => guardrails::Live::AllowedImages(
                self.ec2.allowed_images_settings(region).await.map_err(|e| e.to_string()),
            ),
        };
        let finding = guardrails::assess(change, &live);
        tracing::info!(event_id = meta.event_id, %region, event_name = change.event_name(),
            severity = %finding.severity, kind = finding.kind, status = finding.status, "guardrail change");
        let notification = guardrail_notification(meta, change, &finding);
        let message_id = self.notifier.publish(&notification).await?;
        Ok(GuardOutcome::Alerted {
            severity: notification.severity,
            kind: notification.kind.clone(),
            summary: notification.subject.clone(),
            message_id,
            remediated: false,
        })
    }

    /// Owned snapshots whose create-volume permissions say `group: all`, confirmed one by one
    /// (the listing is only a pre-selection).
    async fn public_snapshots(&self, region: &Region) -> Result<Vec<SnapshotId>, String> {
        let candidates =
            self.ec2.public_snapshot_candidates(region).await.map_err(|e| e.to_string())?;
        let mut public = Vec::new();
        for snapshot in candidates {
            match self.ec2.create_volume_permissions(region, &snapshot).await {
                Ok(Some(grants)) if grants.iter().any(is_public) => public.push(snapshot),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(public)
    }

    async fn remediate(&self, finding: &Finding) -> Action {
        let Remediation::Remove(grantees) = &finding.remediation else {
            return Action::from_decision(&finding.remediation);
        };
        let result = match &finding.resource {
            Resource::Image { image } => self.ec2.remove_launch_permissions(image, grantees).await,
            Resource::Snapshot { region, snapshot } => {
                self.ec2.remove_create_volume_permissions(region, snapshot, grantees).await
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(resource = finding.resource.id(), removed = %describe_grantees(grantees), "exposure remediated");
                Action::Removed(describe_grantees(grantees))
            }
            Err(e) => {
                tracing::error!(resource = finding.resource.id(), error = %e, "remediation failed");
                Action::Failed(e.to_string())
            }
        }
    }
}

fn live(result: Result<Option<Access>, crate::catalogue::CatalogueError>) -> Live<Access> {
    match result {
        Ok(Some(access)) => Live::Found(access),
        Ok(None) => Live::Gone,
        Err(e) => Live::Unknown(e.to_string()),
    }
}

fn quiet(event: &Event) -> GuardOutcome {
    GuardOutcome::Quiet {
        summary: format!(
            "{} {}: no exposure (allow-listed or no change)",
            event.meta.event_name, event.meta.event_id
        ),
    }
}

/// What AMI Warden did about a finding, as the alert states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Removed(String),
    Failed(String),
    Nothing(String),
}

impl Action {
    fn from_decision(decision: &Remediation) -> Self {
        match decision {
            Remediation::Off => {
                Self::Nothing("none: automatic remediation is off (REMEDIATE_PUBLIC=false)".into())
            }
            Remediation::NotNeeded => Self::Nothing("none needed".into()),
            Remediation::Skipped(why) => Self::Nothing(format!("none: {why}")),
            Remediation::Remove(_) => Self::Nothing("none".into()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Removed(what) => format!("removed the grant to {what}"),
            Self::Failed(err) => format!("removal FAILED, act by hand: {err}"),
            Self::Nothing(why) => why.clone(),
        }
    }
}

fn actor_line(meta: &EventMeta) -> (String, String) {
    let arn = meta.actor.arn.clone().unwrap_or_else(|| "an unknown principal".into());
    let who = arn.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&arn).to_owned();
    (arn, who)
}

/// The alert for a permission finding.
pub fn finding_notification(
    meta: &EventMeta,
    finding: &Finding,
    live: &Live<Access>,
    action: &Action,
    backs: &[String],
) -> Notification {
    let region = finding.resource.region().as_str();
    let id = finding.resource.id();
    let noun = noun(&finding.resource);
    let name = match live {
        Live::Found(Access { name: Some(n), .. }) => format!(" ({n})"),
        _ => String::new(),
    };
    let (arn, who) = actor_line(meta);
    let thing = format!("{noun} {id}{name}");
    let status = live_status(finding, noun);
    let undone =
        if matches!(finding.status, Status::AlreadyUndone) { " (already reverted)" } else { "" };
    let subject = format!("{thing} {} in {region}{undone}", what_happened(finding));
    let lead = format!("{who} {}", deed(finding, &thing));
    let text = finding_text(meta, finding, &lead, &status, action, backs);
    let n = Notification::new(finding.severity, finding.kind, subject)
        .text(text)
        .field(if noun == "image" { "Image" } else { "Snapshot" }, format!("{id}{name}"))
        .field("Region", region)
        .field("Account", meta.account.as_ref().map(|a| a.to_string()).unwrap_or_default())
        .field("Actor", arn)
        .field("Source IP", meta.actor.source_ip.clone().unwrap_or_default())
        .field("Event time", meta.event_time.to_rfc3339())
        .field(
            "Granted to",
            if finding.added.is_empty() {
                String::new()
            } else {
                describe_grantees(&finding.added)
            },
        )
        .field("Live state", status)
        .field("Action taken", action.describe())
        .field("Backs images", backs.join(", "));
    console_link(n, &finding.resource).details(json!({
        "event_id": meta.event_id,
        "event_name": meta.event_name,
        "event_time": meta.event_time,
        "region": region,
        "account": meta.account,
        "actor": meta.actor,
        "finding": finding,
        "action": action.describe(),
        "backs_images": backs,
    }))
}

fn noun(resource: &Resource) -> &'static str {
    match resource {
        Resource::Image { .. } => "image",
        Resource::Snapshot { .. } => "snapshot",
    }
}

/// What became of the resource, for the subject ("made public", "shared with …").
fn what_happened(finding: &Finding) -> String {
    match finding.kind {
        "image-public" | "snapshot-public" => "made public".to_owned(),
        "image-shared" | "snapshot-shared" => {
            format!("shared with {}", describe_grantees(&finding.added))
        }
        "exposure-resolved" => "is no longer exposed".to_owned(),
        _ => format!("is still exposed to {}", describe_grantees(&finding.live_exposure)),
    }
}

/// What the actor did to `thing`, for the text ("made image ami-… public").
fn deed(finding: &Finding, thing: &str) -> String {
    match finding.kind {
        "image-public" | "snapshot-public" => format!("made {thing} public"),
        "image-shared" | "snapshot-shared" => {
            format!("shared {thing} with {}", describe_grantees(&finding.added))
        }
        _ => format!("removed the grant to {} from {thing}", describe_grantees(&finding.removed)),
    }
}

/// The live state when AMI Warden checked, in words.
fn live_status(finding: &Finding, noun: &str) -> String {
    match &finding.status {
        Status::Live => format!("still exposed to {}", describe_grantees(&finding.live_exposure)),
        Status::AlreadyUndone => "already reverted when AMI Warden checked; not exposed now".into(),
        Status::Gone => format!("the {noun} no longer exists"),
        Status::Unknown(why) => format!("could not be checked ({why}); treat the exposure as live"),
        Status::Ended => "no exposure left".into(),
        Status::StillExposed => {
            format!("still exposed to {}", describe_grantees(&finding.live_exposure))
        }
    }
}

/// The alert's text: who did what, where and when; the live state; what AMI Warden did; then
/// what else the same call removed and which images the snapshot backs, when there are any.
fn finding_text(
    meta: &EventMeta,
    finding: &Finding,
    lead: &str,
    status: &str,
    action: &Action,
    backs: &[String],
) -> String {
    let mut text = format!(
        "{lead} in {region}, account {account}, at {time}.\nLive state: {status}.\nAction taken: {action}.",
        region = finding.resource.region().as_str(),
        account = meta.account.as_ref().map(|a| a.as_str()).unwrap_or("unknown"),
        time = meta.event_time.to_rfc3339(),
        action = action.describe(),
    );
    if !finding.removed.is_empty() && !finding.added.is_empty() {
        text.push_str(&format!(
            "\nThe same call removed the grant to {}.",
            describe_grantees(&finding.removed)
        ));
    }
    if !backs.is_empty() {
        text.push_str(&format!("\nThis snapshot backs: {}.", backs.join(", ")));
    }
    text
}

fn console_link(n: Notification, resource: &Resource) -> Notification {
    let region = resource.region().as_str();
    let url = match resource {
        Resource::Image { image } => notify::console_image_url(region, image.image_id.as_str()),
        Resource::Snapshot { snapshot, .. } => {
            notify::console_snapshot_url(region, snapshot.as_str())
        }
    };
    n.link("Open in the EC2 console", url)
}

/// The alert for DisableImageBlockPublicAccess, given the re-read state.
pub fn block_public_access_notification(
    meta: &EventMeta,
    state: Result<String, String>,
) -> Notification {
    let region = meta.region.as_str();
    let account = meta.account.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let (arn, who) = actor_line(meta);
    let (severity, status) = match &state {
        Ok(s) if s == "unblocked" => {
            (Severity::Critical, "off: images in this region can be made public".to_owned())
        }
        Ok(s) => (Severity::Warning, format!("already back on ({s}) when AMI Warden checked")),
        Err(e) => (Severity::Critical, format!("could not be checked ({e}); treat it as off")),
    };
    let subject = format!("image block public access disabled in {region}, account {account}");
    let text = format!(
        "{who} turned off image block public access for account {account} in {region} at {time}.\nLive state: {status}.\nAction taken: none (AMI Warden does not change account settings); turn it back on with `aws ec2 enable-image-block-public-access --image-block-public-access-state block-new-sharing --region {region}`.",
        time = meta.event_time.to_rfc3339(),
    );
    Notification::new(severity, "block-public-access-disabled", subject)
        .text(text)
        .field("Region", region)
        .field("Account", account)
        .field("Actor", arn)
        .field("Source IP", meta.actor.source_ip.clone().unwrap_or_default())
        .field("Event time", meta.event_time.to_rfc3339())
        .field("Live state", status)
        .field("Action taken", "none")
        .link("Open EC2 settings", notify::console_settings_url(region))
        .details(json!({
            "event_id": meta.event_id,
            "event_name": meta.event_name,
            "region": region,
            "account": meta.account,
            "actor": meta.actor,
            "state": state.as_ref().ok(),
        }))
}
