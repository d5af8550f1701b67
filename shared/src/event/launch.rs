//! RunInstances and launch template records: the images instances were launched from, and the
//! image a new launch template version will launch.
//!
//! The record shapes and their sources are in docs/cloudtrail-launch-events.md. Fields are read
//! with [`super::fields`], so flat, wrapped (`<Op>Request{PascalCase…}`) and collapsed list
//! shapes all work. What a record does not show stays `None`: the launch guard resolves a
//! template's image itself. Failed calls and dry runs never get here, because [`super::parse`]
//! ignores every record with an `errorCode` first. Nothing here decides whether a launch is
//! allowed.

use serde_json::Value;

use super::fields::{get, items, path, string, string_at};
use super::{EventKind, Launch, LaunchTemplateRef};
use crate::ids::{ImageId, ImageRef, InstanceId, Region};

/// The CloudTrail event names read here (the launch guard's events).
pub const LAUNCH_EVENTS: &[&str] =
    &["RunInstances", "CreateLaunchTemplate", "CreateLaunchTemplateVersion"];

/// Auto Scaling's service principal, as `userIdentity.invokedBy` names it.
const AUTO_SCALING: &str = "autoscaling.amazonaws.com";

/// The name of Auto Scaling's service-linked role; a custom one is `<this>_<suffix>`.
const AUTO_SCALING_ROLE: &str = "AWSServiceRoleForAutoScaling";

/// The tags EC2 puts on an instance launched from a launch template.
const TEMPLATE_ID_TAG: &str = "aws:ec2launchtemplate:id";
const TEMPLATE_VERSION_TAG: &str = "aws:ec2launchtemplate:version";

/// What a successful RunInstances record says was launched: one [`Launch`] per instance in
/// `responseElements.instancesSet`, or one launch without an instance id when the response
/// lists none. `Err` says what is missing when some launch names neither an image nor a
/// template.
pub(super) fn instances_launched(
    region: &Region,
    identity: Option<&Value>,
    request: &Value,
    response: &Value,
) -> Result<EventKind, String> {
    let image_in = |raw: Option<String>| {
        raw.as_deref().and_then(ImageId::parse).map(|id| ImageRef::new(region.clone(), id))
    };
    let requested_image = image_in(requested_image(request));
    let requested_template = template(get(request, "launchTemplate"));
    let listed = items(get(response, "instancesSet"));
    let launches: Vec<Launch> = if listed.is_empty() {
        vec![Launch {
            instance_id: None,
            image: requested_image,
            launch_template: requested_template,
        }]
    } else {
        listed
            .into_iter()
            .map(|item| Launch {
                instance_id: string_at(item, "instanceId").as_deref().and_then(InstanceId::parse),
                image: image_in(string_at(item, "imageId")).or_else(|| requested_image.clone()),
                launch_template: completed(requested_template.clone(), tagged_template(item)),
            })
            .collect()
    };
    if let Some(blind) = launches.iter().find(|l| l.image.is_none() && l.launch_template.is_none())
    {
        let which = blind.instance_id.as_ref().map_or("the launch".to_owned(), |i| i.to_string());
        return Err(format!(
            "no image id and no launch template for {which} (read: \
             requestParameters.instancesSet.items[].imageId, requestParameters.launchTemplate, \
             responseElements.instancesSet.items[].imageId and tagSet)"
        ));
    }
    Ok(EventKind::InstancesLaunched { launches, by_auto_scaling: by_auto_scaling(identity) })
}

/// The image the request names: `instancesSet.items[].imageId` (one item, for every instance),
/// else a top-level `imageId`. It may be a `resolve:ssm:` parameter, which is no image id.
fn requested_image(request: &Value) -> Option<String> {
    items(get(request, "instancesSet"))
        .into_iter()
        .find_map(|item| string_at(item, "imageId"))
        .or_else(|| string_at(request, "imageId"))
}

/// A `launchTemplate` specification (`launchTemplateId` or `launchTemplateName`, `version`).
fn template(spec: Option<&Value>) -> Option<LaunchTemplateRef> {
    let spec = spec?;
    let found = LaunchTemplateRef {
        id: string_at(spec, "launchTemplateId"),
        name: string_at(spec, "launchTemplateName"),
        version: string_at(spec, "version"),
    };
    (found.id.is_some() || found.name.is_some()).then_some(found)
}

/// The template an instance's `aws:ec2launchtemplate:*` tags name (the version EC2 used).
fn tagged_template(item: &Value) -> Option<LaunchTemplateRef> {
    let tags = items(get(item, "tagSet"));
    let tag = |key: &str| {
        tags.iter()
            .find(|t| string_at(t, "key").as_deref() == Some(key))
            .and_then(|t| string_at(t, "value"))
    };
    let id = tag(TEMPLATE_ID_TAG)?;
    Some(LaunchTemplateRef { id: Some(id), name: None, version: tag(TEMPLATE_VERSION_TAG) })
}

/// The request's template as given, with what it leaves out taken from the instance's tags.
fn completed(
    requested: Option<LaunchTemplateRef>,
    tagged: Option<LaunchTemplateRef>,
) -> Option<LaunchTemplateRef> {
    match (requested, tagged) {
        (Some(r), Some(t)) => Some(LaunchTemplateRef {
            id: r.id.or(t.id),
            name: r.name.or(t.name),
            version: r.version.or(t.version),
        }),
        (r, t) => r.or(t),
    }
}

/// Whether Auto Scaling made the call: `invokedBy` is its service principal, or the caller (or
/// the role behind the session) is its service-linked role.
fn by_auto_scaling(identity: Option<&Value>) -> bool {
    let Some(identity) = identity else { return false };
    let invoked =
        string_at(identity, "invokedBy").is_some_and(|by| by.eq_ignore_ascii_case(AUTO_SCALING));
    let role = [get(identity, "arn"), path(identity, &["sessionContext", "sessionIssuer", "arn"])]
        .into_iter()
        .flatten()
        .filter_map(string)
        .any(|arn| is_auto_scaling_role(&arn));
    invoked || role
}

/// Whether an ARN names Auto Scaling's service-linked role:
/// `arn:aws:iam::…:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling`
/// (or `…_<suffix>`), as `sessionIssuer.arn` gives it. Only that path is AWS's: a customer
/// may name a role of their own `AWSServiceRoleForAutoScaling_x`, and an assumed-role ARN
/// shows no path, so neither counts alone (`invokedBy` still does).
fn is_auto_scaling_role(arn: &str) -> bool {
    const SERVICE_PATH: &str = ":role/aws-service-role/autoscaling.amazonaws.com/";
    let role_name = arn.split_once(SERVICE_PATH).map(|(_, name)| name);
    role_name.is_some_and(|name| {
        name.strip_prefix(AUTO_SCALING_ROLE)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
    })
}

/// What a successful CreateLaunchTemplate or CreateLaunchTemplateVersion record says: the
/// template (response, else request), the new version's number and the image it names. `Err`
/// when the record names no template.
pub(super) fn template_version_created(
    name: &str,
    request: &Value,
    response: &Value,
) -> Result<EventKind, String> {
    // CreateLaunchTemplateVersion answers `launchTemplateVersion`, CreateLaunchTemplate
    // `launchTemplate`.
    let created =
        get(response, "launchTemplateVersion").or_else(|| get(response, "launchTemplate"));
    let answered = |key: &str| created.and_then(|c| string_at(c, key));
    let template_id =
        answered("launchTemplateId").or_else(|| string_at(request, "launchTemplateId"));
    let template_name =
        answered("launchTemplateName").or_else(|| string_at(request, "launchTemplateName"));
    if template_id.is_none() && template_name.is_none() {
        return Err("no launchTemplateId or launchTemplateName in requestParameters or \
                    responseElements"
            .into());
    }
    let number = |key: &str| answered(key).and_then(|n| n.parse::<i64>().ok());
    // A new template has one version, number 1.
    let version = number("versionNumber")
        .or_else(|| number("latestVersionNumber"))
        .or_else(|| (name == "CreateLaunchTemplate").then_some(1));
    let image = path(request, &["launchTemplateData", "imageId"]).and_then(string).or_else(|| {
        created.and_then(|c| path(c, &["launchTemplateData", "imageId"])).and_then(string)
    });
    Ok(EventKind::LaunchTemplateVersionCreated { template_id, template_name, version, image })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_service_linked_role_path_makes_auto_scaling() {
        // An assumed-role ARN shows no path: a customer's role could bear that name.
        assert!(!is_auto_scaling_role(
            "arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling"
        ));
        assert!(!is_auto_scaling_role(
            "arn:aws:iam::111122223333:role/AWSServiceRoleForAutoScaling_web"
        ));
        assert!(is_auto_scaling_role(
            "arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling_web"
        ));
        assert!(!is_auto_scaling_role(
            "arn:aws:sts::111122223333:assumed-role/deployer/AWSServiceRoleForAutoScaling"
        ));
        assert!(!is_auto_scaling_role(
            "arn:aws:iam::111122223333:role/AWSServiceRoleForAutoScalingButNotReally"
        ));
        assert!(!is_auto_scaling_role(
            "arn:aws:iam::111122223333:user/AWSServiceRoleForAutoScaling"
        ));
        assert!(!is_auto_scaling_role("not an arn"));
    }
}
