"""EC2 operations and filters moto lacks that the product's real adapters call.

- Image block public access (`GetImageBlockPublicAccessState`,
  `EnableImageBlockPublicAccess`, `DisableImageBlockPublicAccess`): moto has none of them. The
  state is kept per account and region; a new region starts `unblocked`, as accounts created
  before AWS changed the default do.
- The `block-device-mapping.snapshot-id` filter of DescribeImages: moto raises
  FilterNotImplementedError for it; here it matches the snapshot ids of the image's block device
  mappings, as AWS does.

Responses go through moto's own serializer (`ActionResult`), which renders them from
botocore's model of the operation, so the wire format is AWS's.
"""
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.amis import Ami
from moto.ec2.responses import EC2Response

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


def install():
    EC2Response.get_image_block_public_access_state = get_image_block_public_access_state
    EC2Response.enable_image_block_public_access = enable_image_block_public_access
    EC2Response.disable_image_block_public_access = disable_image_block_public_access
    Ami.get_filter_value = _ami_get_filter_value
