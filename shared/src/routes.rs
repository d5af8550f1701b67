//! Which function sees which event: the EventBridge rule patterns of `template.yaml`, as data.
//!
//! `ami-warden replay` uses this to deliver each event to every function whose rule would match
//! it, as EventBridge would. The patterns here are checked against the template's by a test, so
//! the two cannot drift apart.

use serde_json::Value;

/// The Lambda functions that receive events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    LineageRecorder,
    ExposureGuard,
    SnapshotReaper,
    DeprecationEnforcer,
    LaunchGuard,
}

impl Function {
    /// The function's name: its crate, binary and `functions/` folder.
    pub fn name(self) -> &'static str {
        match self {
            Self::LineageRecorder => "lineage-recorder",
            Self::ExposureGuard => "exposure-guard",
            Self::SnapshotReaper => "snapshot-reaper",
            Self::DeprecationEnforcer => "deprecation-enforcer",
            Self::LaunchGuard => "launch-guard",
        }
    }
}

/// One Lambda function and the events its rules select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub function: Function,
    /// CloudTrail event names its "AWS API Call via CloudTrail" rule lists (failed calls are
    /// filtered out by the rule).
    pub api_calls: &'static [&'static str],
    /// Whether it also receives the native "EC2 AMI State Change" event.
    pub ami_state_changes: bool,
}

pub const LINEAGE_RECORDER: Route = Route {
    function: Function::LineageRecorder,
    api_calls: &[
        "CreateImage",
        "CopyImage",
        "RegisterImage",
        "CreateRestoreImageTask",
        "DeregisterImage",
        "DisableImage",
        "EnableImage",
    ],
    ami_state_changes: true,
};

pub const EXPOSURE_GUARD: Route = Route {
    function: Function::ExposureGuard,
    api_calls: &[
        "ModifyImageAttribute",
        "ModifySnapshotAttribute",
        "DisableImageBlockPublicAccess",
        "EnableSnapshotBlockPublicAccess",
        "DisableSnapshotBlockPublicAccess",
        "EnableAllowedImagesSettings",
        "DisableAllowedImagesSettings",
        "ReplaceImageCriteriaInAllowedImagesSettings",
    ],
    ami_state_changes: false,
};

pub const SNAPSHOT_REAPER: Route = Route {
    function: Function::SnapshotReaper,
    api_calls: &["DeregisterImage"],
    ami_state_changes: false,
};

pub const DEPRECATION_ENFORCER: Route = Route {
    function: Function::DeprecationEnforcer,
    api_calls: &[
        "CreateImage",
        "CopyImage",
        "RegisterImage",
        "CreateRestoreImageTask",
        "DisableImageDeprecation",
    ],
    // An image that becomes available is looked at again for quarantine.
    ami_state_changes: true,
};

pub const LAUNCH_GUARD: Route = Route {
    function: Function::LaunchGuard,
    api_calls: crate::event::LAUNCH_EVENTS,
    ami_state_changes: false,
};

/// Every function with event rules.
pub const ROUTES: &[Route] =
    &[LINEAGE_RECORDER, EXPOSURE_GUARD, SNAPSHOT_REAPER, DEPRECATION_ENFORCER, LAUNCH_GUARD];

impl Route {
    /// Whether this function's rules match an EventBridge event (an envelope). A bare
    /// CloudTrail record, which EventBridge never delivers, is treated as if wrapped.
    pub fn matches(&self, event: &Value) -> bool {
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        let source = event.get("source").and_then(Value::as_str);
        let detail = event.get("detail").unwrap_or(event);
        if detail_type == Some("EC2 AMI State Change") {
            return self.ami_state_changes && source == Some("aws.ec2");
        }
        let wrapped_ok = matches!(
            (detail_type, source),
            (None, None) | (Some("AWS API Call via CloudTrail"), Some("aws.ec2"))
        );
        let from_ec2 =
            detail.get("eventSource").and_then(Value::as_str) == Some("ec2.amazonaws.com");
        let succeeded = detail.get("errorCode").is_none();
        let name = detail.get("eventName").and_then(Value::as_str).unwrap_or_default();
        wrapped_ok && from_ec2 && succeeded && self.api_calls.contains(&name)
    }
}
