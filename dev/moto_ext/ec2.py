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
  image's snapshots are deleted with it, except those another image still uses, as on AWS.
- ListImagesInRecycleBin and the rest of the Recycle Bin: see `recycle_bin.py`.
- RootDeviceType: moto gives every image an EBS root snapshot but calls it `standard`, which
  AWS never answers for an image; here it is `ebs`, as on AWS (the Recycle Bin keeps only
  EBS-backed images, so the deprecation enforcer retires only those).
- DisableImage / EnableImage: moto has neither. A disabled image has state `disabled` and is
  left out of DescribeImages unless `IncludeDisabled=true`, as on AWS.
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
        return _describe_images_response(self)
    finally:
        _include_disabled = False


def _backend_describe_images(self, *args, **kwargs):
    images = _describe_images_backend(self, *args, **kwargs)
    if _include_disabled:
        return images
    return [i for i in images if i.state != "disabled"]


def disable_image(self):
    image_id = self._get_param("ImageId")
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    self.ec2_backend.amis[image_id].state = "disabled"
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
        for snapshot_id in filter(None, snapshots):
            used = any(
                (m.get("Ebs") or {}).get("SnapshotId") == snapshot_id
                for other in self.ec2_backend.amis.values()
                for m in other.block_device_mappings
            )
            if not used:
                self.ec2_backend.snapshots.pop(snapshot_id, None)
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
    Ami.get_filter_value = _ami_get_filter_value
    ec2_fast.install()
