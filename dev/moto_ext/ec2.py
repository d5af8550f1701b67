"""EC2 operations and filters moto lacks that the product's real adapters call.

- Image block public access (`GetImageBlockPublicAccessState`,
  `EnableImageBlockPublicAccess`, `DisableImageBlockPublicAccess`): moto has none of them. The
  state is kept per account and region; a new region starts `unblocked`, as accounts created
  before AWS changed the default do.
- The `block-device-mapping.snapshot-id` filter of DescribeImages: moto raises
  FilterNotImplementedError for it; here it matches the snapshot ids of the image's block device
  mappings, as AWS does.
- RegisterImage with block device mappings: moto ignores them and invents a new snapshot; here
  an image registered from existing snapshots is backed by those snapshots (so one snapshot can
  back several images, as on AWS).
- DeleteSnapshot refuses a snapshot that any image's block device mappings use
  (`InvalidSnapshot.InUse`), as AWS does; moto only checks the image that created it.
- CopyImage snapshots: described as AWS describes them ("Copied for DestinationAmi ami-… from
  SourceAmi ami-… for SourceSnapshot snap-…"), not with moto's own text, so the reaper's
  description fallback meets what it meets on AWS.
- EnableImageDeprecation / DisableImageDeprecation: moto answers HTTP 500. Here they set and
  clear the image's `DeprecationTime`, refusing a time in the past as AWS does.
- DescribeImages pagination: moto ignores `MaxResults` and never returns a `NextToken`. Here a
  listing with `MaxResults` is cut into pages (in image-id order) with a `NextToken`.
- DescribeImageReferences: moto lacks it. Here it reports, for each image asked about, the
  instances (not terminated) launched from it and the launch templates whose `$Default` or
  `$Latest` version names it — what AWS reports, and no more (not the other versions). More
  than 10 image ids in one request are refused, as AWS's API reference allows 10 at most (the
  error code AWS answers for this case is not verified here; `InvalidParameterValue` is used).
- DescribeSnapshots `RestorableByUserIds`: moto ignores it and lists every snapshot. Here
  `all` keeps the snapshots restorable by everyone (`group: all`) and an account id those
  shared with that account, as AWS does (the exposure sweep asks it for `all`).
- DeregisterImage with `DeleteAssociatedSnapshots=true`: moto ignores the flag. Here the
  image's snapshots are deleted with it, except those another image still uses, as on AWS,
  and the answer's `DeleteSnapshotResults` says so per snapshot (`success`, or `skipped` for
  one another image uses).
- ListImagesInRecycleBin and the rest of the Recycle Bin: see `recycle_bin.py`.
- RootDeviceType: moto gives every image an EBS root snapshot but calls it `standard`, which
  AWS never answers for an image; here it is `ebs`, as on AWS (the Recycle Bin keeps only
  EBS-backed images, so the deprecation enforcer retires only those).
- DisableImage / EnableImage: moto has neither. A disabled image has state `disabled` and is
  left out of DescribeImages unless `IncludeDisabled=true`, and disabling removes its launch
  permissions (EnableImage gives none back), as on AWS.
- `SourceImageId` / `SourceImageRegion` of DescribeImages and `GetImageAncestry`: moto (and the
  botocore model its serializer renders from) has neither. Here CopyImage records the source
  image and region, CreateImage the instance's launch image, and GetImageAncestry walks those
  links from the image towards its root, region by region, as AWS does: it fails with
  `InvalidAMIID.NotFound` when the image is unknown, and the chain stops at an ancestor that is
  gone (AWS cannot describe it either). RegisterImage has no source. The operation and the two
  fields are added to the serializer's copy of the EC2 model, with AWS's wire names.
- Deregistration protection (`EnableImageDeregistrationProtection`,
  `DisableImageDeregistrationProtection`, DescribeImages' `DeregistrationProtection`): moto has
  none of it. An image starts `disabled`; enabling gives `enabled-without-cooldown` or, with
  `WithCooldown`, `enabled-with-cooldown` (the values AWS's CLI reference and the Terraform
  provider show). Disabling an image enabled with cooldown leaves it protected for 24 hours, as
  AWS's EC2 User Guide says; what AWS answers meanwhile is not documented, so here it is
  `disabled-after <time>` (the time the cooldown ends), then `disabled`. DeregisterImage of an
  image whose protection is in force is refused with `OperationNotPermitted` (the error EC2
  documents for an operation that is not allowed, e.g. terminating an instance with termination
  protection; the code AWS answers for a protected image is not verified here).
- Block public access for snapshots (`GetSnapshotBlockPublicAccessState`,
  `EnableSnapshotBlockPublicAccess`, `DisableSnapshotBlockPublicAccess`): moto has none of them.
  The state is kept per account and region, `unblocked` at first (AWS's default), `ManagedBy`
  always `account` (declarative policies are not emulated). Enabling takes `block-all-sharing`
  or `block-new-sharing` and refuses anything else with `InvalidParameterValue`, as the API
  reference says `unblocked` is not valid. The state is only kept: ModifySnapshotAttribute is
  not refused under it (the error AWS answers is not documented), and DescribeSnapshots
  `RestorableByUserIds=all` still lists a snapshot whose permissions say public under
  `block-all-sharing` (whether AWS lists it to its owner is not verified).
- Allowed AMIs (`GetAllowedImagesSettings`, `EnableAllowedImagesSettings`,
  `DisableAllowedImagesSettings`, `ReplaceImageCriteriaInAllowedImagesSettings`): moto has none
  of them. Per account and region: the state (`disabled` at first; Enable takes `enabled` or
  `audit-mode`), the criteria (at most 10), `ManagedBy` always `account`. DescribeImages'
  `ImageAllowed` is computed from them (both renderers read `Ami.image_allowed`): absent while
  disabled; `true` for the account's own images, which Allowed AMIs never restricts; else
  whether any criterion matches, a criterion matching when every part it names does:
  `ImageProviders` (account ids; the aliases `amazon`, `aws-marketplace`, `aws-backup-vault`
  matched against the image's owner alias; `none` matches no other account's image),
  `ImageNames` (`*` and `?` wildcards, every other character literal),
  `MarketplaceProductCodes`, `CreationDateCondition` and `DeprecationTimeCondition` (in days,
  against the image's creation and deprecation times). While `enabled`, images not allowed are
  left out of DescribeImages, as the EC2 User Guide says they are not discoverable. Left out:
  `ImageWatermarks` and `ScanResultCondition` (refused with `InvalidParameterValue`, rather than
  silently ignored), RunInstances refusing an image not allowed, and declarative policies.
- DescribeInstanceImageMetadata: moto lacks it. Here each instance of the account and region
  (terminated ones only when asked by id) with its launch image's metadata (`ImageAllowed`
  included, from the caller's Allowed AMIs settings): the image is looked up in the caller's
  account, then in any account of the region (an image shared from a build account); of an
  image that is gone only its id is known. Filters `instance-id`, `image-allowed` and
  `instance-state-name` (others are refused), `MaxResults`/`NextToken` pages, and an unknown
  instance id fails with `InvalidInstanceID.NotFound`, as AWS documents.

Responses go through moto's own serializer (`ActionResult`), which renders them from
botocore's model of the operation, so the wire format is AWS's.

`install()` ends with `ec2_fast.install()`, which makes large listings (DescribeImages,
DescribeSnapshots, DescribeImageReferences, ...) cheaper without changing their answers.
"""
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidSnapshotInUse
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses import EC2Response

from moto_ext import ec2_fast

_block_public_access = {}  # (account, region) -> state

BLOCK_NEW_SHARING = "block-new-sharing"
UNBLOCKED = "unblocked"


def _state_key(response):
    return (response.current_account, response.region)


def get_image_block_public_access_state(self):
    state = _block_public_access.get(_state_key(self), UNBLOCKED)
    return ActionResult({"ImageBlockPublicAccessState": state})


def enable_image_block_public_access(self):
    state = self._get_param("ImageBlockPublicAccessState")
    if state != BLOCK_NEW_SHARING:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Value ({state}) for parameter ImageBlockPublicAccessState is invalid.",
        )
    self.error_on_dryrun()
    _block_public_access[_state_key(self)] = state
    return ActionResult({"ImageBlockPublicAccessState": state})


def disable_image_block_public_access(self):
    self.error_on_dryrun()
    _block_public_access[_state_key(self)] = UNBLOCKED
    return ActionResult({"ImageBlockPublicAccessState": UNBLOCKED})


_snapshot_block_public_access = {}  # (account, region) -> state

BLOCK_ALL_SHARING = "block-all-sharing"
SNAPSHOT_BLOCK_STATES = (BLOCK_ALL_SHARING, BLOCK_NEW_SHARING)


def get_snapshot_block_public_access_state(self):
    state = _snapshot_block_public_access.get(_state_key(self), UNBLOCKED)
    return ActionResult({"State": state, "ManagedBy": MANAGED_BY_ACCOUNT})


def enable_snapshot_block_public_access(self):
    state = self._get_param("State")
    if state not in SNAPSHOT_BLOCK_STATES:
        raise EC2ClientError(
            "InvalidParameterValue", f"Value ({state}) for parameter State is invalid."
        )
    self.error_on_dryrun()
    _snapshot_block_public_access[_state_key(self)] = state
    return ActionResult({"State": state})


def disable_snapshot_block_public_access(self):
    self.error_on_dryrun()
    _snapshot_block_public_access[_state_key(self)] = UNBLOCKED
    return ActionResult({"State": UNBLOCKED})


# Allowed AMIs (see the module doc) --------------------------------------------------------

_allowed_images = {}  # (account, region) -> {"State": ..., "ImageCriteria": [criterion, ...]}

ALLOWED_ENABLED = "enabled"
ALLOWED_AUDIT = "audit-mode"
ALLOWED_DISABLED = "disabled"
MANAGED_BY_ACCOUNT = "account"
OWNER_ALIASES = ("amazon", "aws-marketplace", "aws-backup-vault")
CRITERIA_MAX = 10
# Criteria this emulator cannot evaluate: refused rather than silently ignored.
NOT_EMULATED = ("ImageWatermarks", "ScanResultCondition")


def _allowed_settings(account, region):
    return _allowed_images.get((account, region)) or {"State": ALLOWED_DISABLED, "ImageCriteria": []}


def get_allowed_images_settings(self):
    settings = _allowed_settings(self.current_account, self.region)
    return ActionResult({
        "State": settings["State"],
        "ImageCriteria": settings["ImageCriteria"],
        "ManagedBy": MANAGED_BY_ACCOUNT,
    })


def enable_allowed_images_settings(self):
    state = self._get_param("AllowedImagesSettingsState")
    if state not in (ALLOWED_ENABLED, ALLOWED_AUDIT):
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Value ({state}) for parameter AllowedImagesSettingsState is invalid.",
        )
    self.error_on_dryrun()
    settings = dict(_allowed_settings(self.current_account, self.region), State=state)
    _allowed_images[_state_key(self)] = settings
    return ActionResult({"AllowedImagesSettingsState": state})


def disable_allowed_images_settings(self):
    self.error_on_dryrun()
    settings = dict(_allowed_settings(self.current_account, self.region), State=ALLOWED_DISABLED)
    _allowed_images[_state_key(self)] = settings
    return ActionResult({"AllowedImagesSettingsState": ALLOWED_DISABLED})


def _criterion(raw):
    """One requested ImageCriterion, as GetAllowedImagesSettings answers it (the request's
    conditions carry the same member names)."""
    for name in NOT_EMULATED:
        if raw.get(name):
            raise EC2ClientError(
                "InvalidParameterValue", f"{name} is not emulated by the local stack."
            )
    criterion = {}
    for name in ("ImageProviders", "MarketplaceProductCodes", "ImageNames"):
        values = [str(v) for v in (raw.get(name) or [])]
        if values:
            criterion[name] = values
    providers = criterion.get("ImageProviders", [])
    if "none" in providers and len(providers) > 1:
        raise EC2ClientError(
            "InvalidParameterValue", "ImageProviders: none cannot be given with other values."
        )
    for condition, field in (
        ("CreationDateCondition", "MaximumDaysSinceCreated"),
        ("DeprecationTimeCondition", "MaximumDaysSinceDeprecated"),
    ):
        value = (raw.get(condition) or {}).get(field)
        if value is not None:
            criterion[condition] = {field: int(value)}
    return criterion


def replace_image_criteria_in_allowed_images_settings(self):
    raw = self._get_param("ImageCriteria", []) or []
    if len(raw) > CRITERIA_MAX:
        raise EC2ClientError(
            "InvalidParameterValue", f"At most {CRITERIA_MAX} image criteria are allowed."
        )
    criteria = [_criterion(c) for c in raw]
    self.error_on_dryrun()
    settings = dict(_allowed_settings(self.current_account, self.region), ImageCriteria=criteria)
    _allowed_images[_state_key(self)] = settings
    return ActionResult({"Return": True})


def _name_matches(pattern, name):
    """AWS's `?` and `*` wildcards; every other character (`[`, `]` included) is literal."""
    import re

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name or "", flags=re.DOTALL) is not None


def _days_since(value):
    from datetime import datetime, timezone

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - value).total_seconds() / 86400


def _criterion_allows(criterion, ami):
    providers = criterion.get("ImageProviders")
    if providers is not None:
        owner, alias = ami.owner_id, getattr(ami, "owner_alias", None)
        if not any(p == owner or (p in OWNER_ALIASES and p == alias) for p in providers):
            return False
    codes = criterion.get("MarketplaceProductCodes")
    if codes is not None and not set(codes) & set(getattr(ami, "product_codes", None) or ()):
        return False
    names = criterion.get("ImageNames")
    if names is not None and not any(_name_matches(p, ami.name) for p in names):
        return False
    created = (criterion.get("CreationDateCondition") or {}).get("MaximumDaysSinceCreated")
    if created is not None and _days_since(ami.creation_date) > created:
        return False
    deprecated = (criterion.get("DeprecationTimeCondition") or {}).get("MaximumDaysSinceDeprecated")
    since = _days_since(getattr(ami, "deprecation_time", None))
    if deprecated is not None and since is not None and since > deprecated:
        return False
    return True


def image_allowed_for(ami, account, region):
    """`ImageAllowed` of `ami` as `account` sees it in `region`: `None` while Allowed AMIs is
    disabled; `True` for the account's own images; else whether any criterion allows it."""
    settings = _allowed_settings(account, region)
    if settings["State"] == ALLOWED_DISABLED:
        return None
    if ami.owner_id == account:
        return True
    return any(_criterion_allows(c, ami) for c in settings["ImageCriteria"])


def _ami_image_allowed(self):
    """DescribeImages' `ImageAllowed` (both renderers read this attribute)."""
    return image_allowed_for(self, self.ec2_backend.account_id, self.ec2_backend.region_name)


def _discoverable(images, account, region):
    """While Allowed AMIs is `enabled`, images it does not allow are not discoverable."""
    if _allowed_settings(account, region)["State"] != ALLOWED_ENABLED:
        return images
    return [i for i in images if image_allowed_for(i, account, region) is not False]


def _image_metadata(self, image_id):
    """ImageMetadata of an instance's image: looked up in the caller's account, then in any
    other account of the region (a shared image); only its id once it is gone."""
    from moto.ec2.models import ec2_backends

    ami = self.ec2_backend.amis.get(image_id)
    if ami is None:
        for account in list(ec2_backends.keys()):
            # dict.get: looking must not create a backend for every account and region.
            backend = dict.get(ec2_backends[account], self.region)
            if backend is not None and image_id in backend.amis:
                ami = backend.amis[image_id]
                break
    if ami is None:
        return {"ImageId": image_id}
    creation = ami.creation_date
    metadata = {
        "ImageId": ami.id,
        "Name": ami.name,
        "OwnerId": ami.owner_id,
        "State": ami.state,
        "CreationDate": creation if isinstance(creation, str) else creation.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "IsPublic": ami.is_public,
    }
    if getattr(ami, "owner_alias", None):
        metadata["ImageOwnerAlias"] = ami.owner_alias
    if getattr(ami, "deprecation_time", None):
        metadata["DeprecationTime"] = ami.deprecation_time
    allowed = image_allowed_for(ami, self.current_account, self.region)
    if allowed is not None:
        metadata["ImageAllowed"] = allowed
    return metadata


def describe_instance_image_metadata(self):
    instance_ids = self._get_param("InstanceIds", []) or []
    filters = self._filters_from_querystring() or {}
    known = {"instance-id", "image-allowed", "instance-state-name"}
    unknown = sorted(set(filters) - known)
    if unknown:
        raise EC2ClientError(
            "InvalidParameterValue", f"The filter {unknown[0]} is not emulated by the local stack."
        )
    self.error_on_dryrun()
    instances = [
        i
        for reservation in self.ec2_backend.all_reservations()
        for i in reservation.instances
        if i.state != "terminated" or i.id in instance_ids
    ]
    if instance_ids:
        missing = sorted(set(instance_ids) - {i.id for i in instances})
        if missing:
            raise EC2ClientError(
                "InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist"
            )
        instances = [i for i in instances if i.id in instance_ids]
    rows = []
    for instance in sorted(instances, key=lambda i: i.id):
        image = _image_metadata(self, instance.image_id)
        wanted = {
            "instance-id": instance.id,
            "image-allowed": str(image.get("ImageAllowed")).lower() if "ImageAllowed" in image else None,
            "instance-state-name": instance.state,
        }
        if any(wanted[name] not in values for name, values in filters.items()):
            continue
        row = {
            "InstanceId": instance.id,
            "InstanceType": instance.instance_type,
            "LaunchTime": instance.launch_time,
            "AvailabilityZone": instance.placement,
            "State": {"Code": instance._state.code, "Name": instance._state.name},
            "OwnerId": self.current_account,
            "ImageMetadata": image,
        }
        tags = [{"Key": t["key"], "Value": t["value"]} for t in instance.get_tags()]
        if tags:
            row["Tags"] = tags
        rows.append(row)
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 1000)
    page = {"InstanceImageMetadata": rows[start : start + size]}
    if start + size < len(rows):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


_ami_filter = Ami.get_filter_value


def _ami_get_filter_value(self, filter_name, method_name=None):
    if filter_name == "block-device-mapping.snapshot-id":
        return [
            m["Ebs"]["SnapshotId"]
            for m in self.block_device_mappings
            if m.get("Ebs", {}).get("SnapshotId")
        ]
    return _ami_filter(self, filter_name, method_name)


_ami_block_device_mappings = Ami.block_device_mappings


def _ami_mappings(self):
    registered = getattr(self, "_warden_mappings", None)
    if registered is None:
        return _ami_block_device_mappings.fget(self)
    return registered


_register_image = EC2Response.register_image


def register_image(self):
    mappings = self._get_param("BlockDeviceMappings", []) or []
    result = _register_image(self)
    with_snapshots = [m for m in mappings if (m.get("Ebs") or {}).get("SnapshotId")]
    if with_snapshots:
        ami = self.ec2_backend.amis[result.result["ImageId"]]
        own = ami.ebs_snapshot
        ami._warden_mappings = [
            {
                "DeviceName": m.get("DeviceName", ami.root_device_name),
                "Ebs": {
                    "SnapshotId": m["Ebs"]["SnapshotId"],
                    "VolumeSize": int(m["Ebs"].get("VolumeSize") or 8),
                    "DeleteOnTermination": str(m["Ebs"].get("DeleteOnTermination", "true")).lower() == "true",
                    "VolumeType": m["Ebs"].get("VolumeType", "gp3"),
                },
            }
            for m in with_snapshots
        ]
        # The snapshot moto invented is not part of this image.
        self.ec2_backend.snapshots.pop(own.id, None)
    return result


_delete_snapshot = EBSBackend.delete_snapshot


def delete_snapshot(self, snapshot_id):
    for ami in self.amis.values():
        if any((m.get("Ebs") or {}).get("SnapshotId") == snapshot_id for m in ami.block_device_mappings):
            raise InvalidSnapshotInUse(snapshot_id, ami.id)
    return _delete_snapshot(self, snapshot_id)


_include_disabled = False
_describe_images_response = EC2Response.describe_images
_describe_images_backend = AmiBackend.describe_images


def describe_images(self):
    global _include_disabled
    _include_disabled = str(self._get_param("IncludeDisabled", "false")).lower() == "true"
    try:
        result = _describe_images_response(self)
    finally:
        _include_disabled = False
    if _allowed_settings(self.current_account, self.region)["State"] == ALLOWED_ENABLED:
        images = _discoverable(result.result["Images"], self.current_account, self.region)
        result = ActionResult({**result.result, "Images": images})
    return result


def _backend_describe_images(self, *args, **kwargs):
    images = _describe_images_backend(self, *args, **kwargs)
    if _include_disabled:
        return images
    return [i for i in images if i.state != "disabled"]


def disable_image(self):
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    ami = self.ec2_backend.amis[image_id]
    ami.state = "disabled"
    # As on AWS: disabling removes every launch permission, and EnableImage gives none back.
    ami.launch_permissions = []
    return ActionResult({"Return": True})


def enable_image(self):
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    ami = self.ec2_backend.amis.get(image_id)
    if ami is None:
        self.ec2_backend.describe_images(ami_ids=[image_id])
    ami.state = "available"
    return ActionResult({"Return": True})


_copy_image = EC2Response.copy_image


def copy_image(self):
    source_id = self._get_param("SourceImageId")
    source_region = self._get_param("SourceRegion")
    result = _copy_image(self)
    ami = self.ec2_backend.amis.get(result.result["ImageId"])
    if ami is not None:
        from moto.ec2.models import ec2_backends

        source = ec2_backends[self.current_account][source_region].amis.get(source_id)
        source_snapshot = source.ebs_snapshot.id if source is not None else "snap-unknown"
        _record_copy_source(ami, source_id, source_region)
        ami.ebs_snapshot.description = (
            f"Copied for DestinationAmi {ami.id} from SourceAmi {source_id} "
            f"for SourceSnapshot {source_snapshot}. Task created on 1,764,000,000."
        )
    return result


def enable_image_deprecation(self):
    from datetime import datetime, timezone

    image_id = self._get_param("ImageId")
    raw = self._get_param("DeprecateAt")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at < datetime.now(timezone.utc):
        raise EC2ClientError("InvalidParameterValue", "The deprecation time cannot be in the past.")
    self.ec2_backend.amis[image_id].deprecation_time = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return ActionResult({"Return": True})


def disable_image_deprecation(self):
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])
    self.ec2_backend.amis[image_id].deprecation_time = None
    return ActionResult({"Return": True})


def _paged_describe_images(self):
    result = describe_images(self)
    max_results = self._get_param("MaxResults")
    if max_results is None or self._get_param("ImageIds"):
        return result
    images = sorted(result.result["Images"], key=lambda i: i.id)
    start = int(self._get_param("NextToken") or 0)
    size = int(max_results)
    page = {"Images": images[start : start + size]}
    if start + size < len(images):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


REFERENCE_IDS_MAX = 10


def check_reference_ids(image_ids):
    """DescribeImageReferences takes at most 10 image ids (also used by `ec2_fast`)."""
    if len(image_ids) > REFERENCE_IDS_MAX:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"The request names {len(image_ids)} image IDs; at most {REFERENCE_IDS_MAX} are allowed.",
        )


_describe_snapshots = EC2Response.describe_snapshots


def describe_snapshots(self):
    restorable_by = self._get_param("RestorableByUserIds", []) or []
    if not restorable_by:
        return _describe_snapshots(self)
    backend = self.ec2_backend

    def restorable(snapshot):
        groups = backend.get_create_volume_permission_groups(snapshot.id)
        users = backend.get_create_volume_permission_userids(snapshot.id)
        return any(("all" in groups) if who == "all" else (who in users) for who in restorable_by)

    listed = backend.describe_snapshots(snapshot_ids=self._get_param("SnapshotIds", []), filters=self._filters_from_querystring())
    snapshots = [s for s in listed if restorable(s)]
    return ActionResult({"Snapshots": snapshots})


def describe_image_references(self):
    image_ids = self._get_param("ImageIds", []) or []
    check_reference_ids(image_ids)
    backend = self.ec2_backend
    references = []
    for image_id in image_ids:
        for reservation in backend.all_reservations():
            for instance in reservation.instances:
                if instance.image_id == image_id and instance.state != "terminated":
                    references.append({
                        "ImageId": image_id,
                        "ResourceType": "ec2:Instance",
                        "Arn": f"arn:aws:ec2:{self.region}:{self.current_account}:instance/{instance.id}",
                    })
        for template in backend.launch_templates.values():
            named = {template.default_version().image_id, template.latest_version().image_id}
            if image_id in named:
                references.append({
                    "ImageId": image_id,
                    "ResourceType": "ec2:LaunchTemplate",
                    "Arn": f"arn:aws:ec2:{self.region}:{self.current_account}:launch-template/{template.id}",
                })
    return ActionResult({"ImageReferences": references})


PROTECTION_DISABLED = "disabled"
PROTECTION_ENABLED = "enabled-without-cooldown"
PROTECTION_WITH_COOLDOWN = "enabled-with-cooldown"
PROTECTION_COOLDOWN_HOURS = 24


def _protection_value(self):
    """DescribeImages' `DeregistrationProtection` of an image (see the module doc)."""
    from datetime import datetime, timezone

    state = getattr(self, "_warden_protection", PROTECTION_DISABLED)
    until = getattr(self, "_warden_protection_until", None)
    if state == PROTECTION_DISABLED and until is not None:
        if datetime.now(timezone.utc) < until:
            return f"disabled-after {until.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"
    return state


def protected(ami):
    """Whether DeregisterImage is refused for `ami` now."""
    return _protection_value(ami) != PROTECTION_DISABLED


def enable_image_deregistration_protection(self):
    image_id = self._get_param("ImageId")
    cooldown = str(self._get_param("WithCooldown", "false")).lower() == "true"
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    ami = self.ec2_backend.amis[image_id]
    ami._warden_protection = PROTECTION_WITH_COOLDOWN if cooldown else PROTECTION_ENABLED
    ami._warden_protection_until = None
    return ActionResult({"Return": ami._warden_protection})


def disable_image_deregistration_protection(self):
    from datetime import datetime, timedelta, timezone

    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    ami = self.ec2_backend.amis[image_id]
    if getattr(ami, "_warden_protection", PROTECTION_DISABLED) == PROTECTION_WITH_COOLDOWN:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        ami._warden_protection_until = now + timedelta(hours=PROTECTION_COOLDOWN_HOURS)
    ami._warden_protection = PROTECTION_DISABLED
    return ActionResult({"Return": _protection_value(ami)})


_deregister_image = EC2Response.deregister_image


def deregister_image(self):
    image_id = self._get_param("ImageId")
    delete = str(self._get_param("DeleteAssociatedSnapshots", "false")).lower() == "true"
    ami = self.ec2_backend.amis.get(image_id)
    self.error_on_dryrun()
    if ami is not None and protected(ami):
        raise EC2ClientError(
            "OperationNotPermitted",
            f"The image {image_id} has deregistration protection enabled: disable it first.",
        )
    snapshots = [
        (m.get("Ebs") or {}).get("SnapshotId") for m in (ami.block_device_mappings if ami else [])
    ]
    result = _deregister_image(self)
    if delete:
        results = []
        for snapshot_id in filter(None, snapshots):
            used = any(
                (m.get("Ebs") or {}).get("SnapshotId") == snapshot_id
                for other in self.ec2_backend.amis.values()
                for m in other.block_device_mappings
            )
            if not used:
                self.ec2_backend.snapshots.pop(snapshot_id, None)
            code = "skipped" if used else "success"
            results.append({"SnapshotId": snapshot_id, "ReturnCode": code})
        result.result["DeleteSnapshotResults"] = results
    return result


_create_image = EC2Response.create_image


def create_image(self):
    instance_id = self._get_param("InstanceId")
    result = _create_image(self)
    ami = self.ec2_backend.amis.get(result.result["ImageId"])
    instance = self.ec2_backend.get_instance(instance_id)
    if ami is not None and instance is not None and getattr(instance, "image_id", None):
        ami.source_image_id = instance.image_id
        ami.source_image_region = self.region
    return result


def _record_copy_source(ami, source_id, source_region):
    ami.source_image_id = source_id
    ami.source_image_region = source_region


def get_image_ancestry(self):
    from moto.ec2.models import ec2_backends

    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    entries = []
    region, current = self.region, image_id
    seen = set()
    while current and (region, current) not in seen and len(entries) < 50:
        seen.add((region, current))
        ami = ec2_backends[self.current_account][region].amis.get(current)
        if ami is None:
            break
        source_id = getattr(ami, "source_image_id", None)
        source_region = getattr(ami, "source_image_region", None)
        entry = {"ImageId": ami.id, "CreationDate": ami.creation_date}
        if source_id:
            entry["SourceImageId"] = source_id
            entry["SourceImageRegion"] = source_region
        entries.append(entry)
        region, current = source_region, source_id
    return ActionResult({"ImageAncestryEntries": entries})


_MODEL_ADDITIONS = {
    "GetImageAncestryRequest": {
        "type": "structure",
        "required": ["ImageId"],
        "members": {"ImageId": {"shape": "ImageId"}, "DryRun": {"shape": "Boolean"}},
    },
    "ImageAncestryEntry": {
        "type": "structure",
        "members": {
            "CreationDate": {"shape": "String", "locationName": "creationDate"},
            "ImageId": {"shape": "ImageId", "locationName": "imageId"},
            "ImageOwnerAlias": {"shape": "String", "locationName": "imageOwnerAlias"},
            "SourceImageId": {"shape": "ImageId", "locationName": "sourceImageId"},
            "SourceImageRegion": {"shape": "String", "locationName": "sourceImageRegion"},
        },
    },
    "ImageAncestryEntryList": {
        "type": "list",
        "member": {"shape": "ImageAncestryEntry", "locationName": "item"},
    },
    "GetImageAncestryResult": {
        "type": "structure",
        "members": {
            "ImageAncestryEntries": {
                "shape": "ImageAncestryEntryList",
                "locationName": "imageAncestryEntrySet",
            }
        },
    },
}


def _extend_model():
    """Adds GetImageAncestry and Image.SourceImageId/SourceImageRegion to moto's EC2 model."""
    from moto.core.utils import get_service_model

    model = get_service_model("ec2")
    description = model._service_description
    shapes = description["shapes"]
    for name, shape in _MODEL_ADDITIONS.items():
        shapes.setdefault(name, shape)
    image = shapes["Image"]["members"]
    image.setdefault("SourceImageId", {"shape": "String", "locationName": "sourceImageId"})
    image.setdefault("SourceImageRegion", {"shape": "String", "locationName": "sourceImageRegion"})
    description["operations"].setdefault(
        "GetImageAncestry",
        {
            "name": "GetImageAncestry",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "GetImageAncestryRequest"},
            "output": {"shape": "GetImageAncestryResult"},
        },
    )


def _ebs_backed(init):
    """moto gives every image an EBS root snapshot but calls its root device type `standard`,
    which AWS never answers for an image: it is `ebs`, as on AWS for an image with an EBS root."""

    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.root_device_type == "standard":
            self.root_device_type = "ebs"

    wrapped.ebs_backed = True
    return wrapped


def install():
    _extend_model()
    if not getattr(Ami.__init__, "ebs_backed", False):
        Ami.__init__ = _ebs_backed(Ami.__init__)
    Ami.source_image_id = None
    Ami.source_image_region = None
    EC2Response.create_image = create_image
    EC2Response.get_image_ancestry = get_image_ancestry
    EC2Response.deregister_image = deregister_image
    Ami.deregistration_protection = property(_protection_value)
    EC2Response.enable_image_deregistration_protection = enable_image_deregistration_protection
    EC2Response.disable_image_deregistration_protection = disable_image_deregistration_protection
    EC2Response.enable_image_deprecation = enable_image_deprecation
    EC2Response.disable_image_deprecation = disable_image_deprecation
    EC2Response.describe_image_references = describe_image_references
    EC2Response.describe_snapshots = describe_snapshots
    EC2Response.copy_image = copy_image
    EC2Response.register_image = register_image
    EC2Response.describe_images = _paged_describe_images
    EC2Response.disable_image = disable_image
    EC2Response.enable_image = enable_image
    AmiBackend.describe_images = _backend_describe_images
    Ami.block_device_mappings = property(_ami_mappings)
    EBSBackend.delete_snapshot = delete_snapshot
    EC2Response.get_image_block_public_access_state = get_image_block_public_access_state
    EC2Response.enable_image_block_public_access = enable_image_block_public_access
    EC2Response.disable_image_block_public_access = disable_image_block_public_access
    EC2Response.get_snapshot_block_public_access_state = get_snapshot_block_public_access_state
    EC2Response.enable_snapshot_block_public_access = enable_snapshot_block_public_access
    EC2Response.disable_snapshot_block_public_access = disable_snapshot_block_public_access
    EC2Response.get_allowed_images_settings = get_allowed_images_settings
    EC2Response.enable_allowed_images_settings = enable_allowed_images_settings
    EC2Response.disable_allowed_images_settings = disable_allowed_images_settings
    EC2Response.replace_image_criteria_in_allowed_images_settings = (
        replace_image_criteria_in_allowed_images_settings
    )
    EC2Response.describe_instance_image_metadata = describe_instance_image_metadata
    Ami.image_allowed = property(_ami_image_allowed)
    Ami.get_filter_value = _ami_get_filter_value
    ec2_fast.install()
