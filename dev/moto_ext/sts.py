"""AssumeRole of a role that does not exist, which moto allows.

moto's STS hands out credentials for any role ARN, existing or not (its docs say so). AWS
refuses: `AccessDenied`, "... is not authorized to perform: sts:AssumeRole on resource ...".
The product's organization mode must report and skip a member account whose role is missing,
so here AssumeRole succeeds only when the role exists in the target account's IAM (created with
a real CreateRole call on the local stack). The credentials returned act in that account, as
moto already does.
"""
from moto.core.exceptions import ServiceException
from moto.iam.models import iam_backends
from moto.sts.models import STSBackend


class AccessDenied(ServiceException):
    code = "AccessDenied"


_assume_role = STSBackend.assume_role


def assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id):
    parts = (role_arn or "").split(":")
    account = parts[4] if len(parts) > 5 else ""
    name = parts[5].split("/")[-1] if len(parts) > 5 else ""
    roles = iam_backends[account]["global"].roles.values() if account else []
    if not any(role.name == name for role in roles):
        raise AccessDenied(f"User: {self.account_id} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
    return _assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id)


def install():
    STSBackend.assume_role = assume_role
