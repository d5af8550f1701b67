//! From delivered JSON to a [`Parsed`] value: envelope, CloudTrail record, event kind.
//!
//! The order of the checks is the contract: not JSON → not CloudTrail → other service → failed
//! call (`errorCode`) → unknown event name → missing fields. Each is an `Ignored` reason; none
//! is an error and nothing here can panic on any input (a property test feeds it mutations of
//! every fixture).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{boolean, get, items, path, string, string_at, unwrap_wrapped};
use super::launch::{instances_launched, template_version_created, LAUNCH_EVENTS};
use super::{
    Actor, Event, EventKind, EventMeta, Grantee, GuardrailChange, IgnoreReason, ImageCriterion,
    ImageState, Parsed, PermissionChange, SnapshotDeletion, SnapshotReturnCode,
};
use crate::ids::{AccountId, ImageId, ImageRef, InstanceId, Region, SnapshotId};

const STATE_CHANGE: &str = "EC2 AMI State Change";

/// Parses raw bytes (what Lambda or a file hands over).
pub fn parse_event(raw: &[u8]) -> Parsed {
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) => parse_value(&v),
        Err(e) => ignored(IgnoreReason::NotJson(e.to_string()), None, None),
    }
}

/// Parses an already decoded JSON value.
pub fn parse_value(v: &Value) -> Parsed {
    if !v.is_object() {
        return ignored(IgnoreReason::NotJson("not a JSON object".into()), None, None);
    }
    let detail_type = string_at(v, "detail-type");
    if detail_type.as_deref() == Some(STATE_CHANGE) {
        return state_change(v);
    }
    let envelope = get(v, "detail").filter(|d| d.is_object());
    let record = match envelope {
        Some(detail) => detail,
        None if get(v, "eventName").is_some() => v,
        None => return ignored(IgnoreReason::NotCloudTrail, None, None),
    };
    let outer = if envelope.is_some() { Some(v) } else { None };
    match cloudtrail(record, outer) {
        Ok(event) => Parsed::Event(event),
        Err((reason, name)) => ignored(reason, string_at(record, "eventID"), name),
    }
}

fn ignored(reason: IgnoreReason, event_id: Option<String>, event_name: Option<String>) -> Parsed {
    Parsed::Ignored { reason, event_id, event_name }
}

type Failure = (IgnoreReason, Option<String>);

fn malformed(name: &str, what: String) -> Failure {
    (IgnoreReason::Malformed(format!("{name}: {what}")), Some(name.to_owned()))
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = v.and_then(string)?;
    DateTime::parse_from_rfc3339(&text).ok().map(|t| t.with_timezone(&Utc))
}

fn cloudtrail(record: &Value, envelope: Option<&Value>) -> Result<Event, Failure> {
    let Some(name) = string_at(record, "eventName") else {
        return Err((IgnoreReason::NotCloudTrail, None));
    };
    if let Some(source) = string_at(record, "eventSource") {
        if source != "ec2.amazonaws.com" {
            return Err((IgnoreReason::OtherService(source), Some(name)));
        }
    }
    if let Some(error_code) = string_at(record, "errorCode") {
        return Err((IgnoreReason::FailedCall { error_code }, Some(name)));
    }
    let known = [KNOWN, GUARDRAIL_EVENTS, LAUNCH_EVENTS];
    if !known.iter().any(|names| names.contains(&name.as_str())) {
        return Err((IgnoreReason::UnhandledEventName(name.clone()), Some(name)));
    }
    let from_envelope = |key: &str| envelope.and_then(|e| get(e, key));
    let event_id =
        string_at(record, "eventID").ok_or_else(|| malformed(&name, "eventID missing".into()))?;
    let region_text = get(record, "awsRegion").or_else(|| from_envelope("region")).and_then(string);
    let region = region_text
        .as_deref()
        .and_then(Region::parse)
        .ok_or_else(|| malformed(&name, format!("awsRegion {region_text:?} is not a region")))?;
    let event_time = time(get(record, "eventTime"))
        .or_else(|| time(from_envelope("time")))
        .ok_or_else(|| malformed(&name, "eventTime missing or not RFC 3339".into()))?;
    let account = [
        get(record, "recipientAccountId"),
        from_envelope("account"),
        path(record, &["userIdentity", "accountId"]),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| string(v).as_deref().and_then(AccountId::parse));
    let identity = get(record, "userIdentity");
    let actor = Actor {
        arn: identity.and_then(|i| string_at(i, "arn")),
        identity_type: identity.and_then(|i| string_at(i, "type")),
        issuer_arn: identity
            .and_then(|i| path(i, &["sessionContext", "sessionIssuer", "arn"]))
            .and_then(string),
        source_ip: string_at(record, "sourceIPAddress"),
        user_agent: string_at(record, "userAgent"),
        console: get(record, "sessionCredentialFromConsole").and_then(boolean).unwrap_or(false),
    };
    let null = Value::Null;
    let request =
        unwrap_wrapped(get(record, "requestParameters").unwrap_or(&null), &name, "Request");
    let response =
        unwrap_wrapped(get(record, "responseElements").unwrap_or(&null), &name, "Response");
    let kind = kind(&name, &region, identity, request, response)?;
    let meta = EventMeta { event_id, event_name: name, event_time, region, account, actor };
    Ok(Event { meta, kind })
}

/// Every CloudTrail event name the product reads (and [`GUARDRAIL_EVENTS`], [`LAUNCH_EVENTS`]).
const KNOWN: &[&str] = &[
    "CreateImage",
    "CopyImage",
    "RegisterImage",
    "CreateRestoreImageTask",
    "DeregisterImage",
    "ModifyImageAttribute",
    "ModifySnapshotAttribute",
    "DisableImageBlockPublicAccess",
    "EnableImageDeprecation",
    "DisableImageDeprecation",
    "EnableImage",
    "DisableImage",
    "DeleteSnapshot",
];

/// What one known call says, read from its (unwrapped) request and response, and for a launch
/// the caller's `userIdentity`.
fn kind(
    name: &str,
    region: &Region,
    identity: Option<&Value>,
    request: &Value,
    response: &Value,
) -> Result<EventKind, Failure> {
    let call = Call { name, region, request, response };
    Ok(match name {
        "CreateImage" => call.image_created()?,
        "CopyImage" => call.image_copied()?,
        "RegisterImage" => call.image_registered()?,
        "CreateRestoreImageTask" => EventKind::ImageRestored {
            image: call.new_image()?,
            name: call.image_name(),
            bucket: string_at(request, "bucket"),
            object_key: string_at(request, "objectKey"),
        },
        "DeregisterImage" => EventKind::ImageDeregistered {
            image: call.requested_image()?,
            delete_associated_snapshots: get(request, "deleteAssociatedSnapshots")
                .and_then(boolean)
                .unwrap_or(false),
            snapshot_results: snapshot_results(response),
        },
        "ModifyImageAttribute" => call.launch_permission_changed()?,
        "ModifySnapshotAttribute" => call.create_volume_permission_changed()?,
        "DisableImageBlockPublicAccess" => EventKind::ImageBlockPublicAccessDisabled {
            state: string_at(response, "imageBlockPublicAccessState"),
        },
        "EnableImageDeprecation" => EventKind::DeprecationEnabled {
            image: call.requested_image()?,
            deprecate_at: time(get(request, "deprecateAt")),
        },
        "DisableImageDeprecation" => {
            EventKind::DeprecationDisabled { image: call.requested_image()? }
        }
        "EnableImage" => EventKind::ImageEnabled { image: call.requested_image()? },
        "DisableImage" => EventKind::ImageDisabled { image: call.requested_image()? },
        "DeleteSnapshot" => EventKind::SnapshotDeleted { snapshot: call.requested_snapshot()? },
        "RunInstances" => instances_launched(region, identity, request, response)
            .map_err(|what| malformed(name, what))?,
        "CreateLaunchTemplate" | "CreateLaunchTemplateVersion" => {
            template_version_created(name, request, response)
                .map_err(|what| malformed(name, what))?
        }
        other if GUARDRAIL_EVENTS.contains(&other) => {
            match guardrail_change(other, request, response) {
                Some(change) => EventKind::GuardrailChanged { change },
                None => return Err(malformed(other, "not a guardrail change".into())),
            }
        }
        other => {
            return Err((
                IgnoreReason::UnhandledEventName(other.to_owned()),
                Some(other.to_owned()),
            ))
        }
    })
}

/// One call's name, region, request and response: the ids in them, read with errors that say
/// where each was expected.
struct Call<'a> {
    name: &'a str,
    region: &'a Region,
    request: &'a Value,
    response: &'a Value,
}

impl Call<'_> {
    fn image_at(&self, v: &Value, key: &str, place: &str) -> Result<ImageRef, Failure> {
        let raw = string_at(v, key);
        raw.as_deref()
            .and_then(ImageId::parse)
            .map(|id| ImageRef::new(self.region.clone(), id))
            .ok_or_else(|| {
                malformed(self.name, format!("{place}.{key} {raw:?} is not an image id"))
            })
    }

    /// The image the call made (`responseElements.imageId`).
    fn new_image(&self) -> Result<ImageRef, Failure> {
        self.image_at(self.response, "imageId", "responseElements")
    }

    /// The image the call acts on (`requestParameters.imageId`).
    fn requested_image(&self) -> Result<ImageRef, Failure> {
        self.image_at(self.request, "imageId", "requestParameters")
    }

    fn requested_snapshot(&self) -> Result<SnapshotId, Failure> {
        let raw = string_at(self.request, "snapshotId");
        raw.as_deref().and_then(SnapshotId::parse).ok_or_else(|| {
            malformed(
                self.name,
                format!("requestParameters.snapshotId {raw:?} is not a snapshot id"),
            )
        })
    }

    fn image_name(&self) -> Option<String> {
        string_at(self.request, "name")
    }

    fn image_created(&self) -> Result<EventKind, Failure> {
        let raw = string_at(self.request, "instanceId");
        let instance_id = raw.as_deref().and_then(InstanceId::parse).ok_or_else(|| {
            malformed(
                self.name,
                format!("requestParameters.instanceId {raw:?} is not an instance id"),
            )
        })?;
        Ok(EventKind::ImageCreated {
            image: self.new_image()?,
            instance_id,
            name: self.image_name(),
        })
    }

    /// A copy's source is in `sourceRegion`, or in the destination region when none is given.
    fn image_copied(&self) -> Result<EventKind, Failure> {
        let source_region = match string_at(self.request, "sourceRegion") {
            None => self.region.clone(),
            Some(r) => Region::parse(&r).ok_or_else(|| {
                malformed(
                    self.name,
                    format!("requestParameters.sourceRegion {r:?} is not a region"),
                )
            })?,
        };
        let source = self.image_at(self.request, "sourceImageId", "requestParameters")?;
        Ok(EventKind::ImageCopied {
            image: self.new_image()?,
            source: ImageRef::new(source_region, source.image_id),
            name: self.image_name(),
        })
    }

    /// A registered image has no parent; its snapshots are its block device mappings' (each
    /// once, in order).
    fn image_registered(&self) -> Result<EventKind, Failure> {
        let mappings = get(self.request, "blockDeviceMapping")
            .or_else(|| get(self.request, "blockDeviceMappings"));
        let mut snapshots: Vec<SnapshotId> = Vec::new();
        for m in items(mappings) {
            if let Some(id) = path(m, &["ebs", "snapshotId"])
                .and_then(string)
                .as_deref()
                .and_then(SnapshotId::parse)
            {
                if !snapshots.contains(&id) {
                    snapshots.push(id);
                }
            }
        }
        Ok(EventKind::ImageRegistered {
            image: self.new_image()?,
            name: self.image_name(),
            snapshots,
        })
    }

    fn launch_permission_changed(&self) -> Result<EventKind, Failure> {
        let change = permission_change(self.request, "launchPermission", &["launchPermission"])
            .ok_or_else(|| unhandled_attribute(self.name, self.request))?;
        Ok(EventKind::LaunchPermissionChanged { image: self.requested_image()?, change })
    }

    fn create_volume_permission_changed(&self) -> Result<EventKind, Failure> {
        let change = permission_change(
            self.request,
            "createVolumePermission",
            &["createVolumePermission", "CREATE_VOLUME_PERMISSION"],
        )
        .ok_or_else(|| unhandled_attribute(self.name, self.request))?;
        Ok(EventKind::CreateVolumePermissionChanged {
            snapshot: self.requested_snapshot()?,
            change,
        })
    }
}

/// DeregisterImage's `deleteSnapshotResultSet` (an EC2 set: `{"items": [...]}` in CloudTrail's
/// JSON, the SDK's `DeleteSnapshotResults`). An item without a readable snapshot id or code
/// tells nothing and is left out.
fn snapshot_results(response: &Value) -> Vec<SnapshotDeletion> {
    let set =
        get(response, "deleteSnapshotResultSet").or_else(|| get(response, "DeleteSnapshotResults"));
    items(set)
        .into_iter()
        .filter_map(|item| {
            let snapshot = string_at(item, "snapshotId").and_then(|s| SnapshotId::parse(&s))?;
            let code = SnapshotReturnCode::parse(&string_at(item, "returnCode")?);
            Some(SnapshotDeletion { snapshot, code })
        })
        .collect()
}

fn unhandled_attribute(name: &str, request: &Value) -> Failure {
    let attribute = string_at(request, "attributeType")
        .or_else(|| string_at(request, "attribute"))
        .unwrap_or_else(|| "?".into());
    (IgnoreReason::UnhandledEventName(format!("{name}({attribute})")), Some(name.to_owned()))
}

/// The permission change of a Modify*Attribute request, or `None` when the request changes
/// another attribute. Reads `<attr>.add/remove.items[]`, and the flat form
/// (`userId`/`userGroup`/`organizationArn`/`organizationalUnitArn` lists with `operationType`).
fn permission_change(
    request: &Value,
    attribute: &str,
    attribute_types: &[&str],
) -> Option<PermissionChange> {
    let declared = string_at(request, "attributeType");
    let declared_ours = declared
        .as_deref()
        .is_some_and(|d| attribute_types.iter().any(|t| t.eq_ignore_ascii_case(d)));
    if let Some(permission) = get(request, attribute) {
        return Some(PermissionChange {
            add: grantees(items(get(permission, "add"))),
            remove: grantees(items(get(permission, "remove"))),
        });
    }
    let flat: Vec<Grantee> = [
        ("userId", "userId"),
        ("userGroup", "group"),
        ("organizationArn", "organizationArn"),
        ("organizationalUnitArn", "organizationalUnitArn"),
    ]
    .iter()
    .flat_map(|(list, member)| {
        items(get(request, list)).into_iter().filter_map(move |m| match m {
            Value::Object(_) => grantee(m),
            other => string(other).map(|s| grantee_from(member, s)),
        })
    })
    .collect();
    if flat.is_empty() && !declared_ours {
        return None;
    }
    let operation = string_at(request, "operationType").unwrap_or_default();
    Some(if operation.eq_ignore_ascii_case("remove") {
        PermissionChange { add: Vec::new(), remove: flat }
    } else {
        PermissionChange { add: flat, remove: Vec::new() }
    })
}

fn grantees(members: Vec<&Value>) -> Vec<Grantee> {
    members.into_iter().filter_map(grantee).collect()
}

fn grantee(member: &Value) -> Option<Grantee> {
    ["group", "userId", "organizationArn", "organizationalUnitArn"]
        .iter()
        .find_map(|key| string_at(member, key).map(|v| grantee_from(key, v)))
}

fn grantee_from(key: &str, value: String) -> Grantee {
    match key {
        "group" if value.eq_ignore_ascii_case("all") => Grantee::Public,
        "group" => Grantee::Group(value),
        "userId" => Grantee::Account(value),
        "organizationArn" => Grantee::Organization(value),
        _ => Grantee::OrganizationalUnit(value),
    }
}

/// The CloudTrail event names of the regional guardrails [`guardrail_change`] reads.
pub const GUARDRAIL_EVENTS: &[&str] = &[
    "EnableSnapshotBlockPublicAccess",
    "DisableSnapshotBlockPublicAccess",
    "EnableAllowedImagesSettings",
    "DisableAllowedImagesSettings",
    "ReplaceImageCriteriaInAllowedImagesSettings",
];

/// The guardrail change a successful call of one of [`GUARDRAIL_EVENTS`] describes, read from
/// its request and response (flat or wrapped, as [`unwrap_wrapped`] leaves them); `None` for
/// any other event name. What the record does not show stays `None`: the guard re-reads the
/// setting anyway.
pub fn guardrail_change(name: &str, request: &Value, response: &Value) -> Option<GuardrailChange> {
    let request = unwrap_wrapped(request, name, "Request");
    let response = unwrap_wrapped(response, name, "Response");
    let asked = |key: &str| string_at(request, key).or_else(|| string_at(response, key));
    Some(match name {
        "EnableSnapshotBlockPublicAccess" => {
            GuardrailChange::SnapshotBlockPublicAccessEnabled { state: asked("state") }
        }
        "DisableSnapshotBlockPublicAccess" => GuardrailChange::SnapshotBlockPublicAccessDisabled,
        "EnableAllowedImagesSettings" => {
            GuardrailChange::AllowedImagesEnabled { state: asked("allowedImagesSettingsState") }
        }
        "DisableAllowedImagesSettings" => GuardrailChange::AllowedImagesDisabled,
        "ReplaceImageCriteriaInAllowedImagesSettings" => {
            let list = ["imageCriterion", "imageCriteria", "imageCriterionSet"]
                .iter()
                .find_map(|key| get(request, key));
            GuardrailChange::ImageCriteriaReplaced {
                criteria: list.map(|l| items(Some(l)).into_iter().map(criterion).collect()),
            }
        }
        _ => return None,
    })
}

/// One logged Allowed AMIs criterion, whichever of the key spellings (query `ImageProvider.N`,
/// API `ImageProviders`, response `imageProviderSet`) the record uses.
fn criterion(v: &Value) -> ImageCriterion {
    let list = |keys: &[&str]| texts(keys.iter().find_map(|key| get(v, key)));
    let days = |condition: &str, field: &str| {
        path(v, &[condition, field]).and_then(string).and_then(|n| n.parse::<i64>().ok())
    };
    let read = [
        "imageProvider",
        "imageProviders",
        "imageProviderSet",
        "imageName",
        "imageNames",
        "imageNameSet",
        "marketplaceProductCode",
        "marketplaceProductCodes",
        "marketplaceProductCodeSet",
        "creationDateCondition",
        "deprecationTimeCondition",
        "tag",
    ];
    let other = v
        .as_object()
        .map(|o| {
            o.keys().filter(|k| !read.iter().any(|r| r.eq_ignore_ascii_case(k))).cloned().collect()
        })
        .unwrap_or_default();
    ImageCriterion {
        image_providers: list(&["imageProvider", "imageProviders", "imageProviderSet"]),
        image_names: list(&["imageName", "imageNames", "imageNameSet"]),
        marketplace_product_codes: list(&[
            "marketplaceProductCode",
            "marketplaceProductCodes",
            "marketplaceProductCodeSet",
        ]),
        max_days_since_created: days("creationDateCondition", "maximumDaysSinceCreated"),
        max_days_since_deprecated: days("deprecationTimeCondition", "maximumDaysSinceDeprecated"),
        other,
    }
}

/// The strings of a logged list: bare strings, `{"content": …}` members, or single-key
/// objects (`{"imageProvider": "amazon"}`).
fn texts(v: Option<&Value>) -> Vec<String> {
    items(v)
        .into_iter()
        .filter_map(|m| string(m).or_else(|| m.as_object()?.values().find_map(string)))
        .collect()
}

fn state_change(v: &Value) -> Parsed {
    let fail = |what: String| {
        ignored(
            IgnoreReason::Malformed(format!("{STATE_CHANGE}: {what}")),
            string_at(v, "id"),
            Some(STATE_CHANGE.into()),
        )
    };
    if string_at(v, "source").is_some_and(|s| s != "aws.ec2") {
        return ignored(
            IgnoreReason::OtherService(string_at(v, "source").unwrap_or_default()),
            None,
            Some(STATE_CHANGE.into()),
        );
    }
    let Some(detail) = get(v, "detail") else { return fail("detail missing".into()) };
    let Some(region) = string_at(v, "region").as_deref().and_then(Region::parse) else {
        return fail("region missing".into());
    };
    let raw_image = string_at(detail, "ImageId");
    let Some(image_id) = raw_image.as_deref().and_then(ImageId::parse) else {
        return fail(format!("detail.ImageId {raw_image:?} is not an image id"));
    };
    let raw_state = string_at(detail, "State").unwrap_or_default().to_ascii_lowercase();
    let state = match raw_state.as_str() {
        "available" => ImageState::Available,
        "failed" => ImageState::Failed,
        "deregistered" => ImageState::Deregistered,
        "pending" => ImageState::Pending,
        "disabled" => ImageState::Disabled,
        other => return fail(format!("detail.State {other:?} is not an image state")),
    };
    let Some(event_time) = time(get(v, "time")) else {
        return fail("time missing or not RFC 3339".into());
    };
    let meta = EventMeta {
        event_id: format!("ami-state:{region}:{image_id}:{raw_state}"),
        event_name: STATE_CHANGE.into(),
        event_time,
        account: string_at(v, "account").as_deref().and_then(AccountId::parse),
        region: region.clone(),
        actor: Actor::default(),
    };
    let kind = EventKind::ImageStateChanged {
        image: ImageRef::new(region, image_id),
        state,
        error_message: string_at(detail, "ErrorMessage"),
    };
    Parsed::Event(Event { meta, kind })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Launch, LaunchTemplateRef};

    fn envelope(name: &str, request: Value, response: Value) -> Value {
        json!({
            "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
            "account": "111122223333", "time": "2026-11-20T10:00:00Z", "region": "eu-west-1", "resources": [],
            "detail": {
                "eventVersion": "1.11", "eventTime": "2026-11-20T10:00:00Z", "eventSource": "ec2.amazonaws.com",
                "eventName": name, "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/ana", "accountId": "111122223333"},
                "requestParameters": request, "responseElements": response,
                "eventID": "11111111-2222-3333-4444-555555555555", "recipientAccountId": "111122223333"
            }
        })
    }

    fn kind_of(p: Parsed) -> EventKind {
        match p {
            Parsed::Event(e) => e.kind,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn reason_of(p: Parsed) -> IgnoreReason {
        match p {
            Parsed::Ignored { reason, .. } => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn copy_image_records_destination_region_and_source() {
        let e = envelope(
            "CopyImage",
            json!({"sourceRegion": "us-east-1", "sourceImageId": "ami-0aaa"}),
            json!({"imageId": "ami-0bbb"}),
        );
        let EventKind::ImageCopied { image, source, .. } = kind_of(parse_value(&e)) else {
            panic!()
        };
        assert_eq!((image.region.as_str(), image.image_id.as_str()), ("eu-west-1", "ami-0bbb"));
        assert_eq!((source.region.as_str(), source.image_id.as_str()), ("us-east-1", "ami-0aaa"));
    }

    #[test]
    fn failed_calls_are_ignored_even_with_a_response() {
        let mut e = envelope(
            "CopyImage",
            json!({"sourceImageId": "ami-0aaa"}),
            json!({"imageId": "ami-0bbb"}),
        );
        e["detail"]["errorCode"] = json!("Client.UnauthorizedOperation");
        assert_eq!(
            reason_of(parse_value(&e)),
            IgnoreReason::FailedCall { error_code: "Client.UnauthorizedOperation".into() }
        );
    }

    #[test]
    fn copy_without_response_is_malformed_not_a_panic() {
        let e = envelope("CopyImage", json!({"sourceImageId": "ami-0aaa"}), Value::Null);
        assert!(
            matches!(reason_of(parse_value(&e)), IgnoreReason::Malformed(m) if m.contains("responseElements.imageId"))
        );
    }

    #[test]
    fn launch_permission_items_become_grantees_whatever_the_list_shape() {
        let e = envelope(
            "ModifyImageAttribute",
            json!({"imageId": "ami-0aaa", "attributeType": "launchPermission",
                   "launchPermission": {"add": {"items": {"group": "all"}}, "remove": {"items": [{"userId": "444455556666"}]}}}),
            json!({"_return": true}),
        );
        let EventKind::LaunchPermissionChanged { change, .. } = kind_of(parse_value(&e)) else {
            panic!()
        };
        assert_eq!(change.add, vec![Grantee::Public]);
        assert_eq!(change.remove, vec![Grantee::Account("444455556666".into())]);
    }

    #[test]
    fn a_description_containing_all_is_not_a_public_share() {
        let e = envelope(
            "ModifyImageAttribute",
            json!({"imageId": "ami-0aaa", "attributeType": "description", "description": {"value": "group all launchPermission"}}),
            json!({"_return": true}),
        );
        assert!(
            matches!(reason_of(parse_value(&e)), IgnoreReason::UnhandledEventName(n) if n == "ModifyImageAttribute(description)")
        );
    }

    #[test]
    fn wrapped_deprecation_requests_parse() {
        let e = envelope(
            "EnableImageDeprecation",
            json!({"EnableImageDeprecationRequest": {"ImageId": "ami-0aaa", "DeprecateAt": "2027-02-01T00:00:00Z"}}),
            json!({"EnableImageDeprecationResponse": {"return": true, "xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/"}}),
        );
        let EventKind::DeprecationEnabled { image, deprecate_at } = kind_of(parse_value(&e)) else {
            panic!()
        };
        assert_eq!(image.image_id.as_str(), "ami-0aaa");
        assert_eq!(deprecate_at.map(|t| t.to_rfc3339()), Some("2027-02-01T00:00:00+00:00".into()));
    }

    #[test]
    fn bare_records_parse_like_envelopes() {
        let e = envelope(
            "DeregisterImage",
            json!({"imageId": "ami-0aaa", "deleteAssociatedSnapshots": "true"}),
            json!({"_return": true}),
        );
        let EventKind::ImageDeregistered { delete_associated_snapshots, .. } =
            kind_of(parse_value(&e["detail"]))
        else {
            panic!()
        };
        assert!(delete_associated_snapshots);
    }

    #[test]
    fn deregistration_records_what_became_of_each_snapshot() {
        let e = envelope(
            "DeregisterImage",
            json!({"imageId": "ami-0aaa", "deleteAssociatedSnapshots": true}),
            json!({"_return": true, "deleteSnapshotResultSet": {"items": [
                {"snapshotId": "snap-0a", "returnCode": "success"},
                {"snapshotId": "snap-0b", "returnCode": "skipped"},
                {"snapshotId": "snap-0c", "returnCode": "a-new-code"},
                {"returnCode": "success"}
            ]}}),
        );
        let EventKind::ImageDeregistered { snapshot_results, .. } = kind_of(parse_value(&e)) else {
            panic!()
        };
        let codes: Vec<(&str, &str)> =
            snapshot_results.iter().map(|r| (r.snapshot.as_str(), r.code.as_str())).collect();
        assert_eq!(
            codes,
            [("snap-0a", "success"), ("snap-0b", "skipped"), ("snap-0c", "a-new-code")]
        );
        assert_eq!(snapshot_results[1].code, SnapshotReturnCode::Skipped);
    }

    #[test]
    fn garbage_is_ignored_with_a_reason() {
        assert!(matches!(reason_of(parse_event(b"{nope")), IgnoreReason::NotJson(_)));
        assert!(matches!(reason_of(parse_event(b"[1,2]")), IgnoreReason::NotJson(_)));
        assert_eq!(reason_of(parse_value(&json!({"Records": []}))), IgnoreReason::NotCloudTrail);
        let mut s3 = envelope("PutObject", json!({}), json!({}));
        s3["detail"]["eventSource"] = json!("s3.amazonaws.com");
        assert_eq!(
            reason_of(parse_value(&s3)),
            IgnoreReason::OtherService("s3.amazonaws.com".into())
        );
        let tags = envelope("CreateTags", json!({}), json!({}));
        assert_eq!(
            reason_of(parse_value(&tags)),
            IgnoreReason::UnhandledEventName("CreateTags".into())
        );
    }

    fn launches_of(p: Parsed) -> (Vec<Launch>, bool) {
        match kind_of(p) {
            EventKind::InstancesLaunched { launches, by_auto_scaling } => {
                (launches, by_auto_scaling)
            }
            other => panic!("expected a launch, got {other:?}"),
        }
    }

    fn template_ref(id: &str, version: &str) -> Option<LaunchTemplateRef> {
        Some(LaunchTemplateRef { id: Some(id.into()), name: None, version: Some(version.into()) })
    }

    #[test]
    fn a_dry_run_launch_is_a_failed_call() {
        let mut e = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"imageId": "ami-0aaa", "minCount": 1, "maxCount": 1}]}}),
            Value::Null,
        );
        e["detail"]["errorCode"] = json!("Client.DryRunOperation");
        e["detail"]["errorMessage"] =
            json!("Request would have succeeded, but DryRun flag is set.");
        assert_eq!(
            reason_of(parse_value(&e)),
            IgnoreReason::FailedCall { error_code: "Client.DryRunOperation".into() }
        );
    }

    #[test]
    fn a_template_launch_the_record_does_not_answer_names_the_template_not_an_image() {
        let e = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]},
                   "launchTemplate": {"launchTemplateId": "lt-0aaa", "version": "$Latest"}}),
            Value::Null,
        );
        let (launches, by_auto_scaling) = launches_of(parse_value(&e));
        assert!(!by_auto_scaling);
        assert_eq!(launches.len(), 1);
        assert_eq!(launches[0].instance_id, None);
        assert_eq!(launches[0].image, None);
        assert_eq!(launches[0].launch_template, template_ref("lt-0aaa", "$Latest"));
    }

    #[test]
    fn the_requested_image_stands_in_for_an_item_that_does_not_name_one() {
        let e = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": {"imageId": "ami-0aaa", "minCount": 2, "maxCount": 2}}}),
            json!({"instancesSet": {"items": [
                {"instanceId": "i-0a", "imageId": "ami-0bbb"},
                {"instanceId": "i-0b"}
            ]}}),
        );
        let (launches, _) = launches_of(parse_value(&e));
        let images: Vec<(&str, &str, &str)> = launches
            .iter()
            .map(|l| {
                let image = l.image.as_ref().unwrap();
                (
                    l.instance_id.as_ref().unwrap().as_str(),
                    image.image_id.as_str(),
                    image.region.as_str(),
                )
            })
            .collect();
        assert_eq!(images, [("i-0a", "ami-0bbb", "eu-west-1"), ("i-0b", "ami-0aaa", "eu-west-1")]);
    }

    #[test]
    fn a_launch_naming_no_image_and_no_template_is_malformed() {
        let bare = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]}}),
            Value::Null,
        );
        assert!(
            matches!(reason_of(parse_value(&bare)), IgnoreReason::Malformed(m) if m.starts_with("RunInstances: no image id and no launch template for the launch"))
        );
        // An SSM parameter is no image id: without the response's answer nothing names the image.
        let ssm = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"imageId": "resolve:ssm:/golden/latest"}]}}),
            json!({"instancesSet": {"items": [{"instanceId": "i-0a"}]}}),
        );
        assert!(
            matches!(reason_of(parse_value(&ssm)), IgnoreReason::Malformed(m) if m.contains("for i-0a"))
        );
        let answered = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"imageId": "resolve:ssm:/golden/latest"}]}}),
            json!({"instancesSet": {"items": [{"instanceId": "i-0a", "imageId": "ami-0ccc"}]}}),
        );
        let (launches, _) = launches_of(parse_value(&answered));
        assert_eq!(launches[0].image.as_ref().map(|i| i.image_id.as_str()), Some("ami-0ccc"));
    }

    #[test]
    fn an_instance_tagged_with_its_template_names_it_even_when_the_request_does_not() {
        let e = envelope(
            "RunInstances",
            json!({"instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]}}),
            json!({"instancesSet": {"items": [{"instanceId": "i-0a", "imageId": "ami-0aaa",
                "tagSet": {"items": [{"key": "Name", "value": "x"},
                                     {"key": "aws:ec2launchtemplate:version", "value": "7"},
                                     {"key": "aws:ec2launchtemplate:id", "value": "lt-0bbb"}]}}]}}),
        );
        let (launches, _) = launches_of(parse_value(&e));
        assert_eq!(launches[0].launch_template, template_ref("lt-0bbb", "7"));
    }

    #[test]
    fn auto_scaling_is_told_by_invoked_by_or_by_its_service_linked_role() {
        let launch = |identity: Value| {
            let mut e = envelope(
                "RunInstances",
                json!({"instancesSet": {"items": [{"imageId": "ami-0aaa"}]}}),
                Value::Null,
            );
            e["detail"]["userIdentity"] = identity;
            launches_of(parse_value(&e)).1
        };
        assert!(launch(json!({"type": "AWSService", "invokedBy": "autoscaling.amazonaws.com"})));
        assert!(!launch(json!({"type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling"})));
        assert!(launch(
            json!({"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/x/y",
            "sessionContext": {"sessionIssuer": {"arn":
            "arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling_custom"}}})
        ));
        assert!(!launch(json!({"type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/deployer/AWSServiceRoleForAutoScaling",
            "invokedBy": "ec2.amazonaws.com"})));
        assert!(!launch(Value::Null));
    }

    #[test]
    fn a_new_template_version_reads_flat_or_wrapped_and_keeps_the_image_as_given() {
        let flat = envelope(
            "CreateLaunchTemplateVersion",
            json!({"launchTemplateName": "web", "sourceVersion": "2",
                   "launchTemplateData": {"imageId": "resolve:ssm:/golden/latest:3"}}),
            json!({"launchTemplateVersion": {"launchTemplateId": "lt-0aaa", "versionNumber": "3"}}),
        );
        assert_eq!(
            kind_of(parse_value(&flat)),
            EventKind::LaunchTemplateVersionCreated {
                template_id: Some("lt-0aaa".into()),
                template_name: Some("web".into()),
                version: Some(3),
                image: Some("resolve:ssm:/golden/latest:3".into()),
            }
        );
        // A version based on another may inherit its image: the record does not show one.
        let inherited = envelope(
            "CreateLaunchTemplateVersion",
            json!({"CreateLaunchTemplateVersionRequest": {"LaunchTemplateId": "lt-0aaa",
                   "SourceVersion": "3", "LaunchTemplateData": {"InstanceType": "t3.large"}}}),
            Value::Null,
        );
        assert_eq!(
            kind_of(parse_value(&inherited)),
            EventKind::LaunchTemplateVersionCreated {
                template_id: Some("lt-0aaa".into()),
                template_name: None,
                version: None,
                image: None,
            }
        );
        // A new template's only version is 1, whether or not the response says so.
        let created = envelope(
            "CreateLaunchTemplate",
            json!({"CreateLaunchTemplateRequest": {"LaunchTemplateName": "web",
                   "LaunchTemplateData": {"ImageId": "ami-0aaa"}}}),
            Value::Null,
        );
        let EventKind::LaunchTemplateVersionCreated { version, image, .. } =
            kind_of(parse_value(&created))
        else {
            panic!()
        };
        assert_eq!((version, image.as_deref()), (Some(1), Some("ami-0aaa")));
        let nameless = envelope(
            "CreateLaunchTemplateVersion",
            json!({"CreateLaunchTemplateVersionRequest": {"LaunchTemplateData": {"ImageId": "ami-0aaa"}}}),
            Value::Null,
        );
        assert!(
            matches!(reason_of(parse_value(&nameless)), IgnoreReason::Malformed(m) if m.contains("no launchTemplateId or launchTemplateName"))
        );
    }

    #[test]
    fn state_change_ids_are_natural_keys() {
        let e = json!({"version": "0", "id": "x", "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
                       "account": "111122223333", "time": "2026-11-20T10:00:00Z", "region": "us-east-1",
                       "resources": [], "detail": {"ImageId": "ami-0aaa", "State": "AVAILABLE", "ErrorMessage": ""}});
        let Parsed::Event(ev) = parse_value(&e) else { panic!() };
        assert_eq!(ev.meta.event_id, "ami-state:us-east-1:ami-0aaa:available");
        let mut again = e.clone();
        again["id"] = json!("y");
        let Parsed::Event(ev2) = parse_value(&again) else { panic!() };
        assert_eq!(ev.meta.event_id, ev2.meta.event_id);
    }
}
