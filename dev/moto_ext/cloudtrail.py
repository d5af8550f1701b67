"""CloudTrail event history (`LookupEvents`), which moto lacks.

On AWS, CloudTrail keeps 90 days of management events per account and region, and
`LookupEvents` pages through them newest first, filtered by one lookup attribute and a time
window. moto records no events at all. Here the history is whatever CloudTrail records the
local scenario runner hands in (it builds the record each real call it makes on moto would have
produced): `POST /moto-ext/cloudtrail/records` with a JSON list of records. `LookupEvents`
then serves them as AWS does: the caller's account (`recipientAccountId`) and region
(`awsRegion`), the `EventName` / `EventId` / `ResourceName` / `Username` attributes,
`StartTime`/`EndTime`, newest first, `MaxResults` (at most 50) with a `NextToken`, and each
record as the `CloudTrailEvent` JSON string.
"""
import json
from datetime import datetime, timezone

from moto.cloudtrail.responses import CloudTrailResponse
from moto.core.responses import ActionResult
from moto.core.exceptions import ServiceException

_records = []  # every record handed in, in arrival order
_ids = set()

PATH = "/moto-ext/cloudtrail/records"


def _time(raw):
    if raw is None:
        return None
    if isinstance(raw, (int, float)):
        return datetime.fromtimestamp(raw, tz=timezone.utc)
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))


def add_records(records):
    """Adds records to the history (a record whose eventID is known is ignored)."""
    added = 0
    for record in records:
        event_id = record.get("eventID")
        if not event_id or event_id in _ids:
            continue
        _ids.add(event_id)
        _records.append(record)
        added += 1
    return added


def _matches(record, attribute):
    key, value = attribute.get("AttributeKey"), attribute.get("AttributeValue")
    if key == "EventName":
        return record.get("eventName") == value
    if key == "EventId":
        return record.get("eventID") == value
    if key == "Username":
        return (record.get("userIdentity") or {}).get("userName") == value
    if key == "ResourceName":
        return value in json.dumps(record.get("requestParameters")) + json.dumps(record.get("responseElements"))
    if key == "EventSource":
        return record.get("eventSource") == value
    raise ServiceException("InvalidLookupAttributesException", f"lookup attribute {key} is not supported here")


def lookup_events(self):
    attributes = self._get_param("LookupAttributes") or []
    if len(attributes) > 1:
        raise ServiceException("InvalidLookupAttributesException", "only one lookup attribute may be given")
    start, end = _time(self._get_param("StartTime")), _time(self._get_param("EndTime"))
    max_results = int(self._get_param("MaxResults") or 50)
    if not 1 <= max_results <= 50:
        raise ServiceException("InvalidMaxResultsException", "MaxResults must be between 1 and 50")
    found = []
    for record in _records:
        if record.get("recipientAccountId") != self.current_account or record.get("awsRegion") != self.region:
            continue
        at = _time(record.get("eventTime"))
        if (start and at < start) or (end and at > end):
            continue
        if attributes and not _matches(record, attributes[0]):
            continue
        found.append((at, record))
    found.sort(key=lambda pair: pair[0], reverse=True)
    offset = int(self._get_param("NextToken") or 0)
    page = found[offset : offset + max_results]
    result = {
        "Events": [
            {
                "EventId": r["eventID"],
                "EventName": r.get("eventName"),
                "ReadOnly": "false",
                "EventTime": at,
                "EventSource": r.get("eventSource"),
                "Username": (r.get("userIdentity") or {}).get("userName"),
                "CloudTrailEvent": json.dumps(r),
            }
            for at, r in page
        ]
    }
    if offset + max_results < len(found):
        result["NextToken"] = str(offset + max_results)
    return ActionResult(result)


def with_records_endpoint(app):
    """The WSGI app, plus the local-only endpoint that adds records to the history."""

    def handle(environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            records = json.loads(environ["wsgi.input"].read(length) or b"[]")
            body = json.dumps({"added": add_records(records)}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return handle


def install():
    CloudTrailResponse.lookup_events = lookup_events
