"""EC2 image usage reports, which moto lacks: CreateImageUsageReport,
DescribeImageUsageReports and DescribeImageUsageReportEntries (botocore's model has them, so
moto's serializer renders the answers).

A report is made at once, from what the other accounts hold when it is asked for: for each
account it covers (all accounts moto knows when `AccountId.N` is omitted, the image's owner
excepted, as AWS reports use "across other accounts"), the instances that are not terminated
and the launch template versions that name the image, in the image's region. Its state is
`available` from the start unless `POST /moto-ext/usage-reports/pending` asked otherwise (a
test of a report still being made); `POST /moto-ext/usage-reports/age` moves a report's
creation time back, to test the seven-day rule. Reports are kept per (owner account, region)
and never expire here (AWS deletes them after 30 days).
"""

import json
import secrets
from datetime import datetime, timedelta, timezone

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response

RESOURCE_TYPES = ("ec2:Instance", "ec2:LaunchTemplate")

# (owner account, region) -> report id -> report dict
REPORTS = {}
# Whether new reports start `pending`.
NEXT_STATE = {"state": "available"}


def _uses(account, region, image_id):
    """How many instances and launch template versions of `account` name `image_id`."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    instances = sum(
        1
        for reservation in backend.all_reservations()
        for i in reservation.instances
        if i.image_id == image_id and i.state != "terminated"
    )
    templates = sum(
        1
        for template in backend.launch_templates.values()
        for version in template.versions
        if version.data.get("ImageId") == image_id
    )
    return {"ec2:Instance": instances, "ec2:LaunchTemplate": templates}


def _accounts(owner, asked):
    from moto.ec2.models import ec2_backends

    if asked:
        return sorted(set(asked))
    return sorted(a for a in ec2_backends.keys() if a != owner and a.isdigit())


def create_image_usage_report(self):
    image_id = self._get_param("ImageId")
    requested = self._get_param("ResourceTypes", []) or []
    types = [t.get("ResourceType") for t in requested]
    tags = [
        {"Key": t["Key"], "Value": t.get("Value", "")}
        for spec in (self._get_param("TagSpecifications", []) or [])
        if spec.get("ResourceType") == "image-usage-report"
        for t in spec.get("Tags", [])
    ]
    asked = self._get_param("AccountIds", []) or []
    self.error_on_dryrun()
    self.ec2_backend.describe_images(ami_ids=[image_id])  # raises for unknown ids
    if not types or any(t not in RESOURCE_TYPES for t in types):
        raise EC2ClientError(
            "InvalidParameterValue", f"ResourceType must be one of {', '.join(RESOURCE_TYPES)}"
        )
    if len(asked) > 200:
        raise EC2ClientError("InvalidParameterValue", "At most 200 account ids")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report_id = "amiur-" + secrets.token_hex(9)[:17]
    entries = []
    for account in _accounts(self.current_account, asked):
        for kind, count in _uses(account, self.region, image_id).items():
            if kind in types and count:
                entries.append({"AccountId": account, "ResourceType": kind, "UsageCount": count})
    REPORTS.setdefault((self.current_account, self.region), {})[report_id] = {
        "ImageId": image_id,
        "ReportId": report_id,
        "ResourceTypes": [
            {
                "ResourceType": t.get("ResourceType"),
                "ResourceTypeOptions": [
                    {"OptionName": o.get("OptionName"), "OptionValues": o.get("OptionValues", [])}
                    for o in t.get("ResourceTypeOptions", []) or []
                ],
            }
            for t in requested
        ],
        "Tags": tags,
        "AccountIds": list(asked),
        "State": NEXT_STATE["state"],
        "CreationTime": now,
        "ExpirationTime": now + timedelta(days=30),
        "_entries": entries,
    }
    return ActionResult({"ReportId": report_id})


def _reports(self):
    return REPORTS.get((self.current_account, self.region), {})


def _public(report):
    return {k: v for k, v in report.items() if not k.startswith("_")}


def describe_image_usage_reports(self):
    image_ids = self._get_param("ImageIds", []) or []
    report_ids = self._get_param("ReportIds", []) or []
    self.error_on_dryrun()
    found = [
        _public(r)
        for r in _reports(self).values()
        if (not image_ids or r["ImageId"] in image_ids)
        and (not report_ids or r["ReportId"] in report_ids)
    ]
    found.sort(key=lambda r: r["CreationTime"])
    return ActionResult({"ImageUsageReports": found})


def describe_image_usage_report_entries(self):
    image_ids = self._get_param("ImageIds", []) or []
    report_ids = self._get_param("ReportIds", []) or []
    self.error_on_dryrun()
    entries = []
    for report in _reports(self).values():
        if image_ids and report["ImageId"] not in image_ids:
            continue
        if report_ids and report["ReportId"] not in report_ids:
            continue
        if report["State"] != "available":
            continue
        for e in report["_entries"]:
            entries.append(
                dict(
                    e,
                    ReportId=report["ReportId"],
                    ImageId=report["ImageId"],
                    ReportCreationTime=report["CreationTime"],
                )
            )
    return ActionResult({"ImageUsageReportEntries": entries})


def control(path, body):
    """The test-only controls: `pending` (new reports start pending, or not) and `age` (move a
    report's creation time back by `days`, or mark it `available`)."""
    request = json.loads(body or "{}")
    if path.endswith("/pending"):
        NEXT_STATE["state"] = "pending" if request.get("pending") else "available"
        return {"state": NEXT_STATE["state"]}
    for reports in REPORTS.values():
        report = reports.get(request.get("report_id"))
        if report is not None:
            report["CreationTime"] -= timedelta(days=int(request.get("days", 0)))
            if request.get("state"):
                report["State"] = request["state"]
            return {"report_id": report["ReportId"], "state": report["State"]}
    return {"error": "no such report"}


def install():
    EC2Response.create_image_usage_report = create_image_usage_report
    EC2Response.describe_image_usage_reports = describe_image_usage_reports
    EC2Response.describe_image_usage_report_entries = describe_image_usage_report_entries


PATH_PREFIX = "/moto-ext/usage-reports/"


def with_controls(app):
    """The WSGI app, plus the local-only endpoints of [`control`]."""

    def handle(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PATH_PREFIX) and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.dumps(control(path, environ["wsgi.input"].read(length))).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        return app(environ, start_response)

    return handle
