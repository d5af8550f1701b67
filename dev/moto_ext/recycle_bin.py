"""Recycle Bin, which moto lacks.

On AWS, a retention rule (service `rbin`, or `AWS::Rbin::Rule` in a template) makes EC2 keep
what is deleted instead of destroying it: a snapshot deleted, or an image deregistered, that the
rule selects goes to the Recycle Bin for the rule's retention period. While there it is not
described (DescribeSnapshots, DescribeImages) and can only be listed (ListSnapshotsInRecycleBin,
ListImagesInRecycleBin) or restored (RestoreSnapshotFromRecycleBin, RestoreImageFromRecycleBin). A tag-level rule selects
resources with at least one of its `ResourceTags`; a Region-level rule (no `ResourceTags`)
selects all of its type in the region except those with one of its `ExcludeResourceTags`. When
several rules match, the longest retention wins. Nothing stops the snapshots of an image in the
bin from being deleted, which is why AWS tells users to retain snapshots at least as long as
images.

Here a rule is added with the local-only `POST /moto-ext/recycle-bin/rules`, whose JSON body is
the rule's `AWS::Rbin::Rule` properties plus `Region` (and `AccountId`, moto's default account
if absent; `Status`, `available` unless given), so a test can add exactly the rule a template
declares. The Recycle Bin service's own ListRules (`POST /list-rules`) and GetRule
(`GET /rules/{id}`) answer from these rules, for the caller's account and region (REST-JSON, as
AWS's `rbin` endpoint). Differences from AWS, on purpose: a rule is active at once unless added
`pending` (AWS may take up to 30 minutes for an account's first rule);
lock configurations are not modelled; and DeregisterImage with `DeleteAssociatedSnapshots` deletes the snapshots as without a bin (what
AWS does for an image that goes to the bin with that flag is not verified here).
"""
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.amis import AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses import EC2Response

PATH = "/moto-ext/recycle-bin/rules"
RESOURCE_TYPES = ("EBS_SNAPSHOT", "EC2_IMAGE")

_rules = {}  # (account, region) -> [rule]
_binned = {}  # (account, region, resource type) -> {id: (resource, enter, exit)}


class RuleError(ValueError):
    pass


def add_rule(rule):
    """Adds a retention rule; returns its identifier."""
    kind = rule.get("ResourceType")
    if kind not in RESOURCE_TYPES:
        raise RuleError(f"ResourceType must be one of {RESOURCE_TYPES}, not {kind!r}")
    period = rule.get("RetentionPeriod") or {}
    days = period.get("RetentionPeriodValue")
    if period.get("RetentionPeriodUnit") != "DAYS" or not isinstance(days, int) or not 1 <= days <= 365:
        raise RuleError(f"RetentionPeriod must be 1 to 365 DAYS, not {period!r}")
    tags = rule.get("ResourceTags") or []
    excluded = rule.get("ExcludeResourceTags") or []
    if tags and excluded:
        raise RuleError("a rule has ResourceTags (tag-level) or ExcludeResourceTags (Region-level), not both")
    if "Region" not in rule:
        raise RuleError("Region is required")
    status = rule.get("Status", "available")
    if status not in ("available", "pending"):
        raise RuleError(f"Status must be available or pending, not {status!r}")
    identifier = uuid.uuid4().hex[:11]
    _rules.setdefault((rule.get("AccountId", DEFAULT_ACCOUNT_ID), rule["Region"]), []).append(
        {
            "Identifier": identifier,
            "ResourceType": kind,
            "Days": days,
            "Status": status,
            "Description": rule.get("Description", ""),
            "ResourceTags": [(t["ResourceTagKey"], t.get("ResourceTagValue", "")) for t in tags],
            "ExcludeResourceTags": [(t["ResourceTagKey"], t.get("ResourceTagValue", "")) for t in excluded],
            "RawResourceTags": tags,
            "RawExcludeResourceTags": excluded,
        }
    )
    return identifier


def _selects(rule, tags):
    if rule["ResourceTags"]:
        return any(tags.get(key) == value for key, value in rule["ResourceTags"])
    return not any(tags.get(key) == value for key, value in rule["ExcludeResourceTags"])


def _retention_days(account, region, kind, tags):
    """The longest retention of the rules in effect that select a resource with `tags`, or None."""
    days = [
        r["Days"]
        for r in _rules.get((account, region), [])
        if r["ResourceType"] == kind and r["Status"] == "available" and _selects(r, tags)
    ]
    return max(days) if days else None


def _bin(backend, kind, resource_id, resource):
    days = _retention_days(backend.account_id, backend.region_name, kind, dict(backend.tags.get(resource_id) or {}))
    if days is None:
        return
    enter = datetime.now(timezone.utc)
    _binned.setdefault((backend.account_id, backend.region_name, kind), {})[resource_id] = (resource, enter, enter + timedelta(days=days))


def _in_bin(backend, kind):
    """What the bin of `backend`'s account and region holds, without what has expired."""
    held = _binned.setdefault((backend.account_id, backend.region_name, kind), {})
    now = datetime.now(timezone.utc)
    for resource_id in [i for i, (_, _, exit_time) in held.items() if exit_time <= now]:
        del held[resource_id]
    return held


_replaced = {}  # what install() wrapped, as it was then


def deregister_image(self, ami_id):
    ami = self.amis.get(ami_id)
    _replaced["deregister_image"](self, ami_id)
    if ami is not None:
        _bin(self, "EC2_IMAGE", ami_id, ami)


def delete_snapshot(self, snapshot_id):
    snapshot = _replaced["delete_snapshot"](self, snapshot_id)
    _bin(self, "EBS_SNAPSHOT", snapshot_id, snapshot)
    return snapshot


def _page(self, entries, key):
    """`entries` (sorted by id) cut by the request's MaxResults / NextToken, as `key`."""
    max_results = int(self._get_param("MaxResults") or 1000)
    offset = int(self._get_param("NextToken") or 0)
    result = {key: entries[offset : offset + max_results]}
    if offset + max_results < len(entries):
        result["NextToken"] = str(offset + max_results)
    return ActionResult(result)


def _listing(self, kind, ids_param, key, fields):
    """A Recycle Bin listing of `kind`: the held resources (those named by `ids_param` when
    given), each as `fields(resource)` plus its enter and exit times, in pages under `key`."""
    wanted = set(self._get_param(ids_param) or [])
    held = _in_bin(self.ec2_backend, kind)
    entries = [
        {**fields(resource), "RecycleBinEnterTime": enter, "RecycleBinExitTime": exit_time}
        for resource_id, (resource, enter, exit_time) in sorted(held.items())
        if not wanted or resource_id in wanted
    ]
    return _page(self, entries, key)


def list_images_in_recycle_bin(self):
    return _listing(self, "EC2_IMAGE", "ImageIds", "Images", lambda ami: {"ImageId": ami.id, "Name": ami.name, "Description": ami.description})


def list_snapshots_in_recycle_bin(self):
    return _listing(
        self, "EBS_SNAPSHOT", "SnapshotIds", "Snapshots", lambda s: {"SnapshotId": s.id, "Description": s.description, "VolumeId": s.volume.id}
    )


def restore_snapshot_from_recycle_bin(self):
    snapshot_id = self._get_param("SnapshotId")
    held = _in_bin(self.ec2_backend, "EBS_SNAPSHOT")
    if snapshot_id not in held:
        raise EC2ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist in the Recycle Bin.")
    snapshot, _, _ = held.pop(snapshot_id)
    self.ec2_backend.snapshots[snapshot_id] = snapshot
    return ActionResult(
        {
            "SnapshotId": snapshot_id,
            "Description": snapshot.description,
            "Encrypted": snapshot.encrypted,
            "OwnerId": snapshot.owner_id,
            "Progress": "100%",
            "StartTime": snapshot.start_time,
            "State": "recoverable",
            "VolumeId": snapshot.volume.id,
            "VolumeSize": snapshot.volume.size,
        }
    )


def restore_image_from_recycle_bin(self):
    image_id = self._get_param("ImageId")
    backend = self.ec2_backend
    held = _in_bin(backend, "EC2_IMAGE")
    if image_id not in held:
        raise EC2ClientError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist in the Recycle Bin.")
    ami, _, _ = held.pop(image_id)
    # Back under its id, with its tags (which moto kept) and attributes.
    backend.amis[image_id] = ami
    if image_id in backend.deleted_amis:
        backend.deleted_amis.remove(image_id)
    return ActionResult({"Return": True})


_RBIN_SCOPE = re.compile(r"Credential=([^/,]+)/[0-9]+/([a-z0-9-]+)/rbin/aws4_request")


def _summary(account, region, rule):
    return {
        "Identifier": rule["Identifier"],
        "Description": rule["Description"],
        "RetentionPeriod": {"RetentionPeriodValue": rule["Days"], "RetentionPeriodUnit": "DAYS"},
        "LockState": "unlocked",
        "RuleArn": f"arn:aws:rbin:{region}:{account}:rule/{rule['Identifier']}",
    }


def _rbin(environ, scope):
    """The Recycle Bin service's ListRules and GetRule: `(status, headers, body)`."""
    from moto.iam.models import get_account_id_from

    access_key, region = scope.groups()
    account = environ.get("HTTP_X_MOTO_ACCOUNT_ID") or get_account_id_from(access_key)
    rules = _rules.get((account, region), [])
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
    if path == "/list-rules" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        query = json.loads(environ["wsgi.input"].read(length) or b"{}")
        wanted = [(t["ResourceTagKey"], t.get("ResourceTagValue", "")) for t in query.get("ResourceTags") or []]
        listed = [
            _summary(account, region, r)
            for r in rules
            if r["ResourceType"] == query.get("ResourceType") and all(t in r["ResourceTags"] for t in wanted)
        ]
        return "200 OK", [], {"Rules": listed}
    found = re.fullmatch(r"/rules/([^/]+)", path)
    if found and method == "GET":
        for r in rules:
            if r["Identifier"] == found.group(1):
                answer = _summary(account, region, r)
                answer.update(
                    ResourceType=r["ResourceType"],
                    Status=r["Status"],
                    ResourceTags=r["RawResourceTags"],
                    ExcludeResourceTags=r["RawExcludeResourceTags"],
                )
                return "200 OK", [], answer
        return "404 Not Found", [("x-amzn-ErrorType", "ResourceNotFoundException")], {"Message": f"rule {found.group(1)} not found", "Reason": "RULE_NOT_FOUND"}
    return "400 Bad Request", [("x-amzn-ErrorType", "ValidationException")], {"Message": f"{method} {path} is not emulated here"}


def with_rules_endpoint(app):
    """The WSGI app, plus the local-only endpoint that adds retention rules, and the Recycle
    Bin service's rule reads."""

    def handle(environ, start_response):
        scope = _RBIN_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope:
            status, headers, body = _rbin(environ, scope)
            data = json.dumps(body).encode()
            start_response(status, headers + [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                body, status = {"Identifier": add_rule(json.loads(environ["wsgi.input"].read(length) or b"{}"))}, "200 OK"
            except (RuleError, KeyError, TypeError, ValueError) as e:
                body, status = {"message": str(e)}, "400 Bad Request"
            data = json.dumps(body).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        return app(environ, start_response)

    return handle


def install():
    """Called after `ec2.install()`: its DeleteSnapshot in-use check comes first."""
    if _replaced:
        return
    _replaced["deregister_image"] = AmiBackend.deregister_image
    _replaced["delete_snapshot"] = EBSBackend.delete_snapshot
    AmiBackend.deregister_image = deregister_image
    EBSBackend.delete_snapshot = delete_snapshot
    EC2Response.list_images_in_recycle_bin = list_images_in_recycle_bin
    EC2Response.list_snapshots_in_recycle_bin = list_snapshots_in_recycle_bin
    EC2Response.restore_snapshot_from_recycle_bin = restore_snapshot_from_recycle_bin
    EC2Response.restore_image_from_recycle_bin = restore_image_from_recycle_bin
