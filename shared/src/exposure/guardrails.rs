//! Two of AWS's account-level guardrails, beside image block public access: block public access
//! for snapshots and Allowed AMIs. What each state means, what a change of one amounts to given
//! the state re-read from EC2, and the alert that says so.
//!
//! Pure: [`assess`] takes the [`GuardrailChange`] a CloudTrail event states and the [`Live`]
//! facts the guard re-read, and returns a [`GuardrailFinding`]; [`guardrail_notification`] turns
//! it into the alert. CloudTrail logs what was asked, never what the setting was before, so a
//! change that may have weakened a setting is treated as one. AMI Warden never changes these
//! settings: the decision is the same whatever `REMEDIATE_PUBLIC` or `MODE` say.

use serde::Serialize;
use serde_json::json;

use crate::event::{EventMeta, GuardrailChange, ImageCriterion};
use crate::ids::SnapshotId;
use crate::notify::{self, Notification, Severity};

/// A regional state of block public access for snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotBlockState {
    /// Every public share is blocked; snapshots whose permissions say public are treated as
    /// private.
    BlockAllSharing,
    /// New public shares are blocked; existing ones stay public.
    BlockNewSharing,
    Unblocked,
    /// A value this version does not know, verbatim.
    Other(String),
}

impl SnapshotBlockState {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "block-all-sharing" => Self::BlockAllSharing,
            "block-new-sharing" => Self::BlockNewSharing,
            "unblocked" => Self::Unblocked,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::BlockAllSharing => "block-all-sharing",
            Self::BlockNewSharing => "block-new-sharing",
            Self::Unblocked => "unblocked",
            Self::Other(raw) => raw,
        }
    }
}

impl Serialize for SnapshotBlockState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// GetSnapshotBlockPublicAccessState.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotBlockPublicAccess {
    pub state: SnapshotBlockState,
    /// `account`, or `declarative-policy` (the account cannot change it).
    pub managed_by: Option<String>,
}

/// The regional state of Allowed AMIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedImagesState {
    /// Only AMIs the criteria allow (and the account's own) can be discovered and launched.
    Enabled,
    /// Nothing is restricted; `ImageAllowed` says what `enabled` would allow.
    AuditMode,
    /// Nothing is restricted.
    Disabled,
    Other(String),
}

impl AllowedImagesState {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "enabled" => Self::Enabled,
            "audit-mode" => Self::AuditMode,
            "disabled" => Self::Disabled,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Enabled => "enabled",
            Self::AuditMode => "audit-mode",
            Self::Disabled => "disabled",
            Self::Other(raw) => raw,
        }
    }
}

impl Serialize for AllowedImagesState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// GetAllowedImagesSettings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowedImagesSettings {
    pub state: AllowedImagesState,
    pub criteria: Vec<ImageCriterion>,
    /// `account`, or `declarative-policy` (the account cannot change it).
    pub managed_by: Option<String>,
}

impl AllowedImagesSettings {
    /// `enabled (2 criteria: providers amazon; names golden-*)`, `disabled`, ….
    pub fn describe(&self) -> String {
        let managed = match self.managed_by.as_deref() {
            Some("declarative-policy") => ", set by a declarative policy",
            _ => "",
        };
        if self.criteria.is_empty() {
            return format!("{}{managed}", self.state.as_str());
        }
        format!(
            "{} ({} criteria: {}){managed}",
            self.state.as_str(),
            self.criteria.len(),
            describe_criteria(&self.criteria)
        )
    }
}

/// One criterion in words: `providers amazon, 111122223333 and names golden-*`.
pub fn describe_criterion(c: &ImageCriterion) -> String {
    let mut parts = Vec::new();
    let mut list = |label: &str, values: &[String]| {
        if !values.is_empty() {
            parts.push(format!("{label} {}", values.join(", ")));
        }
    };
    list("providers", &c.image_providers);
    list("names", &c.image_names);
    list("product codes", &c.marketplace_product_codes);
    list("also", &c.other);
    if let Some(days) = c.max_days_since_created {
        parts.push(format!("created within {days} days"));
    }
    if let Some(days) = c.max_days_since_deprecated {
        parts.push(format!("deprecated no more than {days} days"));
    }
    if parts.is_empty() {
        "any image".into()
    } else {
        parts.join(" and ")
    }
}

/// Several criteria in words, `; `-separated; `none` for an empty list.
pub fn describe_criteria(criteria: &[ImageCriterion]) -> String {
    if criteria.is_empty() {
        return "none (only the account's own images)".into();
    }
    criteria.iter().map(describe_criterion).collect::<Vec<_>>().join("; ")
}

/// What the guard re-read after a guardrail event. `Err` holds why a fact is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    Snapshots {
        setting: Result<SnapshotBlockPublicAccess, String>,
        /// Owned snapshots whose create-volume permissions say `group: all`.
        public: Result<Vec<SnapshotId>, String>,
    },
    AllowedImages(Result<AllowedImagesSettings, String>),
}

/// What a guardrail event amounts to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuardrailFinding {
    pub severity: Severity,
    /// `snapshot-block-public-access-disabled`, `snapshot-block-public-access-changed`,
    /// `allowed-amis-disabled`, `allowed-amis-changed`, `allowed-amis-criteria-replaced`.
    pub kind: &'static str,
    /// What was done, for the subject (`snapshot block public access disabled`).
    pub what: String,
    /// The live state in words.
    pub status: String,
}

/// Decides what `change` amounts to given what was re-read.
pub fn assess(change: &GuardrailChange, live: &Live) -> GuardrailFinding {
    match live {
        Live::Snapshots { setting, public } => assess_snapshots(change, setting, public),
        Live::AllowedImages(settings) => assess_allowed(change, settings),
    }
}

fn finding(severity: Severity, kind: &'static str, what: &str, status: String) -> GuardrailFinding {
    GuardrailFinding { severity, kind, what: what.to_owned(), status }
}

fn public_phrase(public: &Result<Vec<SnapshotId>, String>) -> String {
    match public {
        Ok(list) if list.is_empty() => "no snapshot's permissions say public".into(),
        Ok(list) => {
            let ids: Vec<&str> = list.iter().map(SnapshotId::as_str).collect();
            format!("{} snapshot(s) whose permissions say public: {}", list.len(), ids.join(", "))
        }
        Err(e) => format!("the public snapshots could not be listed ({e})"),
    }
}

fn assess_snapshots(
    change: &GuardrailChange,
    setting: &Result<SnapshotBlockPublicAccess, String>,
    public: &Result<Vec<SnapshotId>, String>,
) -> GuardrailFinding {
    use SnapshotBlockState as S;
    let (kind, what, asked) = match change {
        GuardrailChange::SnapshotBlockPublicAccessDisabled => (
            "snapshot-block-public-access-disabled",
            "snapshot block public access disabled".to_owned(),
            S::Unblocked,
        ),
        GuardrailChange::SnapshotBlockPublicAccessEnabled { state } => {
            let asked = state.as_deref().map(S::parse).unwrap_or(S::Other("?".into()));
            let what = format!("snapshot block public access set to {}", asked.as_str());
            ("snapshot-block-public-access-changed", what, asked)
        }
        other => return mismatched(other),
    };
    let exposed = matches!(public, Ok(list) if !list.is_empty());
    let snapshots = public_phrase(public);
    let (severity, status) = match setting {
        Ok(s) => match &s.state {
            S::Unblocked => (
                Severity::Critical,
                format!("off: snapshots in this region can be made public; {snapshots}"),
            ),
            S::BlockNewSharing if exposed => (
                Severity::Critical,
                format!("block-new-sharing, which leaves existing public shares public: {snapshots}"),
            ),
            S::BlockNewSharing if asked == S::BlockNewSharing => (
                Severity::Warning,
                format!(
                    "block-new-sharing: new public shares are blocked, existing ones are not (if it was block-all-sharing before, this weakened it); {snapshots}"
                ),
            ),
            S::BlockAllSharing if asked == S::BlockAllSharing => (
                Severity::Info,
                format!("block-all-sharing: every public share is blocked; {snapshots}, treated as private"),
            ),
            other => (
                Severity::Warning,
                format!("{} when AMI Warden checked, not what this call asked; {snapshots}", other.as_str()),
            ),
        },
        Err(e) => {
            let severity = match asked {
                S::BlockAllSharing => Severity::Info,
                S::BlockNewSharing => Severity::Warning,
                _ => Severity::Critical,
            };
            (severity, format!("could not be checked ({e}); take the call at its word; {snapshots}"))
        }
    };
    finding(severity, kind, &what, status)
}

fn assess_allowed(
    change: &GuardrailChange,
    settings: &Result<AllowedImagesSettings, String>,
) -> GuardrailFinding {
    use AllowedImagesState as A;
    let state = settings.as_ref().map(|s| &s.state);
    let live = match settings {
        Ok(s) => s.describe(),
        Err(e) => format!("could not be checked ({e})"),
    };
    match change {
        GuardrailChange::AllowedImagesDisabled => {
            let (severity, status) = match state {
                Ok(A::Disabled) => (
                    Severity::Warning,
                    "disabled: any public or shared AMI can be discovered and launched".to_owned(),
                ),
                Ok(_) => (Severity::Info, format!("already back on: {live}")),
                Err(_) => (Severity::Warning, format!("{live}; take the call at its word")),
            };
            finding(severity, "allowed-amis-disabled", "Allowed AMIs disabled", status)
        }
        GuardrailChange::AllowedImagesEnabled { state: asked } => {
            let asked = asked.as_deref().map(A::parse).unwrap_or(A::Other("?".into()));
            let what = format!("Allowed AMIs set to {}", asked.as_str());
            let (severity, status) = match state {
                Ok(A::Enabled) if asked == A::Enabled => (Severity::Info, format!("enforced: {live}")),
                Ok(A::AuditMode) if asked == A::AuditMode => (
                    Severity::Warning,
                    format!(
                        "{live}: the criteria are not enforced (if it was enabled before, this weakened it)"
                    ),
                ),
                Ok(_) => (Severity::Warning, format!("{live} when AMI Warden checked, not what this call asked")),
                Err(_) if asked == A::Enabled => (Severity::Info, live),
                Err(_) => (Severity::Warning, format!("{live}; take the call at its word")),
            };
            finding(severity, "allowed-amis-changed", &what, status)
        }
        GuardrailChange::ImageCriteriaReplaced { criteria } => {
            let asked = match criteria {
                Some(c) => format!("asked for: {}", describe_criteria(c)),
                None => "the record does not show the criteria".into(),
            };
            let (severity, status) = match state {
                Ok(A::Enabled) => (Severity::Warning, format!("enforced now: {live}; {asked}")),
                Ok(_) => (Severity::Info, format!("not enforced: {live}; {asked}")),
                Err(_) => (Severity::Warning, format!("{live}; {asked}")),
            };
            finding(
                severity,
                "allowed-amis-criteria-replaced",
                "Allowed AMIs criteria replaced",
                status,
            )
        }
        other => mismatched(other),
    }
}

/// A change paired with the other guardrail's facts: a bug in the caller, reported, not hidden.
fn mismatched(change: &GuardrailChange) -> GuardrailFinding {
    finding(
        Severity::Warning,
        "guardrail-changed",
        &format!("{} seen", change.event_name()),
        "not checked: AMI Warden read the wrong setting for this call".into(),
    )
}

/// The command that undoes a weakening, for the alert; `None` when nothing needs undoing.
fn undo(finding: &GuardrailFinding, region: &str) -> Option<String> {
    if finding.severity < Severity::Warning {
        return None;
    }
    Some(match finding.kind {
        "snapshot-block-public-access-disabled" | "snapshot-block-public-access-changed" => format!(
            "`aws ec2 enable-snapshot-block-public-access --state block-all-sharing --region {region}`"
        ),
        "allowed-amis-disabled" | "allowed-amis-changed" => format!(
            "`aws ec2 enable-allowed-images-settings --allowed-images-settings-state enabled --region {region}`"
        ),
        _ => format!("review the criteria: `aws ec2 get-allowed-images-settings --region {region}`"),
    })
}

/// The alert for a guardrail event.
pub fn guardrail_notification(
    meta: &EventMeta,
    change: &GuardrailChange,
    finding: &GuardrailFinding,
) -> Notification {
    let region = meta.region.as_str();
    let account = meta.account.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
    let arn = meta.actor.arn.clone().unwrap_or_else(|| "an unknown principal".into());
    let who = arn.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&arn).to_owned();
    let subject = format!("{} in {region}, account {account}", finding.what);
    let action = match undo(finding, region) {
        Some(command) => {
            format!("none (AMI Warden does not change account settings); to undo: {command}")
        }
        None => "none needed".to_owned(),
    };
    let text = format!(
        "{who} called {} for account {account} in {region} at {time}.\nLive state: {status}.\nAction taken: {action}.",
        change.event_name(),
        time = meta.event_time.to_rfc3339(),
        status = finding.status,
    );
    Notification::new(finding.severity, finding.kind, subject)
        .text(text)
        .field("Region", region)
        .field("Account", account)
        .field("Actor", arn)
        .field("Source IP", meta.actor.source_ip.clone().unwrap_or_default())
        .field("Event time", meta.event_time.to_rfc3339())
        .field("Live state", finding.status.clone())
        .field("Action taken", "none")
        .link("Open EC2 settings", notify::console_settings_url(region))
        .details(json!({
            "event_id": meta.event_id,
            "event_name": meta.event_name,
            "region": region,
            "account": meta.account,
            "actor": meta.actor,
            "change": change,
            "finding": finding,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str) -> SnapshotId {
        SnapshotId::parse(id).unwrap()
    }

    fn snapshots(state: &str, public: Vec<SnapshotId>) -> Live {
        Live::Snapshots {
            setting: Ok(SnapshotBlockPublicAccess {
                state: SnapshotBlockState::parse(state),
                managed_by: Some("account".into()),
            }),
            public: Ok(public),
        }
    }

    fn allowed(state: &str, criteria: Vec<ImageCriterion>) -> Live {
        Live::AllowedImages(Ok(AllowedImagesSettings {
            state: AllowedImagesState::parse(state),
            criteria,
            managed_by: Some("account".into()),
        }))
    }

    fn enable_snapshots(state: &str) -> GuardrailChange {
        GuardrailChange::SnapshotBlockPublicAccessEnabled { state: Some(state.into()) }
    }

    fn severity_kind(change: &GuardrailChange, live: &Live) -> (Severity, &'static str) {
        let f = assess(change, live);
        (f.severity, f.kind)
    }

    #[test]
    fn disabling_snapshot_block_public_access_is_critical_while_it_stays_off() {
        let off = GuardrailChange::SnapshotBlockPublicAccessDisabled;
        assert_eq!(
            severity_kind(&off, &snapshots("unblocked", vec![])),
            (Severity::Critical, "snapshot-block-public-access-disabled")
        );
        let f = assess(&off, &snapshots("unblocked", vec![snap("snap-0a")]));
        assert!(f.status.contains("snap-0a"), "{f:?}");
        // Back on when checked: a weakening still, one step down.
        assert_eq!(
            assess(&off, &snapshots("block-all-sharing", vec![])).severity,
            Severity::Warning
        );
        let unknown = Live::Snapshots { setting: Err("throttled".into()), public: Ok(vec![]) };
        assert_eq!(assess(&off, &unknown).severity, Severity::Critical);
    }

    #[test]
    fn block_new_sharing_is_at_least_a_warning_and_critical_when_snapshots_are_public_again() {
        let new = enable_snapshots("block-new-sharing");
        assert_eq!(
            severity_kind(&new, &snapshots("block-new-sharing", vec![])),
            (Severity::Warning, "snapshot-block-public-access-changed")
        );
        let f = assess(&new, &snapshots("block-new-sharing", vec![snap("snap-0b")]));
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.status.contains("1 snapshot(s) whose permissions say public: snap-0b"), "{f:?}");
        let unknown = Live::Snapshots { setting: Err("throttled".into()), public: Ok(vec![]) };
        assert_eq!(assess(&new, &unknown).severity, Severity::Warning);
    }

    #[test]
    fn block_all_sharing_is_info_and_names_what_it_now_blocks() {
        let all = enable_snapshots("block-all-sharing");
        let f = assess(&all, &snapshots("block-all-sharing", vec![snap("snap-0c")]));
        assert_eq!((f.severity, f.kind), (Severity::Info, "snapshot-block-public-access-changed"));
        assert!(f.status.contains("snap-0c") && f.status.contains("treated as private"), "{f:?}");
        // Asked for block-all-sharing but weaker when checked: someone changed it since.
        assert_eq!(
            assess(&all, &snapshots("block-new-sharing", vec![])).severity,
            Severity::Warning
        );
        assert_eq!(assess(&all, &snapshots("unblocked", vec![])).severity, Severity::Critical);
    }

    #[test]
    fn disabling_allowed_amis_is_a_warning_unless_already_back_on() {
        let off = GuardrailChange::AllowedImagesDisabled;
        assert_eq!(
            severity_kind(&off, &allowed("disabled", vec![])),
            (Severity::Warning, "allowed-amis-disabled")
        );
        assert_eq!(assess(&off, &allowed("enabled", vec![])).severity, Severity::Info);
        assert_eq!(
            assess(&off, &Live::AllowedImages(Err("denied".into()))).severity,
            Severity::Warning
        );
    }

    #[test]
    fn audit_mode_is_a_warning_and_enabled_is_info() {
        let audit = GuardrailChange::AllowedImagesEnabled { state: Some("audit-mode".into()) };
        assert_eq!(
            severity_kind(&audit, &allowed("audit-mode", vec![])),
            (Severity::Warning, "allowed-amis-changed")
        );
        let on = GuardrailChange::AllowedImagesEnabled { state: Some("enabled".into()) };
        assert_eq!(assess(&on, &allowed("enabled", vec![])).severity, Severity::Info);
        assert_eq!(assess(&on, &allowed("disabled", vec![])).severity, Severity::Warning);
    }

    #[test]
    fn replaced_criteria_are_a_warning_where_enforced_and_say_what_was_asked() {
        let amazon =
            ImageCriterion { image_providers: vec!["amazon".into()], ..ImageCriterion::default() };
        let replaced =
            GuardrailChange::ImageCriteriaReplaced { criteria: Some(vec![amazon.clone()]) };
        let f = assess(&replaced, &allowed("enabled", vec![amazon.clone()]));
        assert_eq!((f.severity, f.kind), (Severity::Warning, "allowed-amis-criteria-replaced"));
        assert!(f.status.contains("asked for: providers amazon"), "{f:?}");
        assert_eq!(
            assess(&replaced, &allowed("audit-mode", vec![amazon])).severity,
            Severity::Info
        );
        let unlogged = GuardrailChange::ImageCriteriaReplaced { criteria: None };
        let f = assess(&unlogged, &allowed("disabled", vec![]));
        assert!(f.status.contains("does not show the criteria"), "{f:?}");
    }

    #[test]
    fn criteria_read_as_words() {
        let c = ImageCriterion {
            image_providers: vec!["amazon".into(), "111122223333".into()],
            image_names: vec!["golden-*".into()],
            max_days_since_created: Some(300),
            ..ImageCriterion::default()
        };
        assert_eq!(
            describe_criterion(&c),
            "providers amazon, 111122223333 and names golden-* and created within 300 days"
        );
        let s = AllowedImagesSettings {
            state: AllowedImagesState::Enabled,
            criteria: vec![c],
            managed_by: Some("declarative-policy".into()),
        };
        assert!(
            s.describe().starts_with("enabled (1 criteria: providers amazon"),
            "{}",
            s.describe()
        );
        assert!(s.describe().ends_with("set by a declarative policy"));
    }

    #[test]
    fn the_alert_says_who_what_and_how_to_undo_a_weakening_but_changes_nothing() {
        use crate::event::Actor;
        use crate::ids::{AccountId, Region};
        let meta = EventMeta {
            event_id: "e-1".into(),
            event_name: "DisableSnapshotBlockPublicAccess".into(),
            event_time: chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            region: Region::parse("eu-west-1").unwrap(),
            account: AccountId::parse("111122223333"),
            actor: Actor {
                arn: Some("arn:aws:sts::111122223333:assumed-role/admin/ana".into()),
                ..Actor::default()
            },
        };
        let change = GuardrailChange::SnapshotBlockPublicAccessDisabled;
        let f = assess(&change, &snapshots("unblocked", vec![]));
        let n = guardrail_notification(&meta, &change, &f);
        assert_eq!(
            n.subject,
            "snapshot block public access disabled in eu-west-1, account 111122223333"
        );
        assert!(n.text.starts_with("ana called DisableSnapshotBlockPublicAccess"), "{}", n.text);
        assert!(
            n.text.contains("enable-snapshot-block-public-access --state block-all-sharing"),
            "{}",
            n.text
        );
        let on = enable_snapshots("block-all-sharing");
        let f = assess(&on, &snapshots("block-all-sharing", vec![]));
        assert!(guardrail_notification(&meta, &on, &f).text.contains("Action taken: none needed."));
    }
}
