"""Security Hub findings as AWS keeps them, where moto 5.2.1 differs.

- BatchImportFindings of an existing finding (same `ProductArn` and `Id`) replaces it, except
  for `Note`, `UserDefinedFields`, `VerificationState` and `Workflow`, which AWS does not let
  BatchImportFindings change once a finding exists (they belong to the customer's
  investigation). moto merged the new finding into the old one, workflow included. A finding
  whose `RecordState` goes from ARCHIVED back to ACTIVE gets workflow status NEW again when it
  was NOTIFIED or RESOLVED, as AWS documents.
- GetFindings applies `Filters` (moto ignored them): string filters (EQUALS, PREFIX,
  NOT_EQUALS, PREFIX_NOT_EQUALS, CONTAINS, NOT_CONTAINS) on the keys listed in `KEYS`; keys
  are ANDed, positive values of one key ORed, negative ones ANDed. A filter key not modelled
  here is refused, so that a test never passes on a filter that was silently ignored.
- BatchUpdateFindings (`PATCH /findings/batchupdate`), which moto lacks: `Workflow.Status`,
  `Note`, `VerificationState`, `UserDefinedFields`, `Severity.Label` of up to 100 findings of
  the caller's account; unknown identifiers come back in `UnprocessedFindings`.
"""
import json
from datetime import datetime, timezone

from moto.securityhub import urls
from moto.securityhub.exceptions import InvalidInputException
from moto.securityhub.models import Finding, SecurityHubBackend
from moto.securityhub.responses import SecurityHubResponse
from moto.utilities.paginator import paginate

CUSTOMER_FIELDS = ("Note", "UserDefinedFields", "VerificationState", "Workflow")


def _resource_values(field):
    return lambda f: [r.get(field) for r in f.get("Resources", [])]


KEYS = {
    "Id": lambda f: [f.get("Id")],
    "ProductArn": lambda f: [f.get("ProductArn")],
    "GeneratorId": lambda f: [f.get("GeneratorId")],
    "AwsAccountId": lambda f: [f.get("AwsAccountId")],
    "Region": lambda f: [f.get("Region")],
    "RecordState": lambda f: [f.get("RecordState")],
    "WorkflowStatus": lambda f: [(f.get("Workflow") or {}).get("Status")],
    "SeverityLabel": lambda f: [(f.get("Severity") or {}).get("Label")],
    "Title": lambda f: [f.get("Title")],
    "Type": lambda f: f.get("Types", []),
    "ResourceId": _resource_values("Id"),
    "ResourceType": _resource_values("Type"),
}

POSITIVE = {
    "EQUALS": lambda v, x: v == x,
    "PREFIX": lambda v, x: v.startswith(x),
    "CONTAINS": lambda v, x: x in v,
}
NEGATIVE = {
    "NOT_EQUALS": lambda v, x: v != x,
    "PREFIX_NOT_EQUALS": lambda v, x: not v.startswith(x),
    "NOT_CONTAINS": lambda v, x: x not in v,
}


def matches(finding, filters):
    for key, conditions in (filters or {}).items():
        if key not in KEYS:
            raise InvalidInputException(op="GetFindings", msg=f"filter {key} is not modelled by the local stack")
        values = [v for v in KEYS[key](finding) if isinstance(v, str)]
        positive = [c for c in conditions if c.get("Comparison", "EQUALS") in POSITIVE]
        negative = [c for c in conditions if c.get("Comparison") in NEGATIVE]
        if positive and not any(
            POSITIVE[c.get("Comparison", "EQUALS")](v, c["Value"]) for c in positive for v in values
        ):
            return False
        for c in negative:
            if not all(NEGATIVE[c["Comparison"]](v, c["Value"]) for v in values):
                return False
    return True


@paginate(pagination_model=SecurityHubBackend.PAGINATION_MODEL)
def get_findings(self, filters=None, sort_criteria=None, max_results=None):
    return [f.as_dict() for f in self.findings if matches(f.data, filters)]


def batch_import_findings(self, findings):
    failed, succeeded = [], 0
    for data in findings:
        if not isinstance(data.get("Resources"), list) or not data["Resources"]:
            failed.append({"Id": data.get("Id", ""), "ErrorCode": "InvalidInput",
                           "ErrorMessage": "Finding must contain at least one resource"})
            continue
        key = (data.get("ProductArn"), data.get("Id"))
        existing = next((f for f in self.findings if (f.data.get("ProductArn"), f.id) == key), None)
        if existing is None:
            self.findings.append(Finding(data["Id"], dict(data)))
        else:
            new = dict(data)
            for field in CUSTOMER_FIELDS:
                if field in existing.data:
                    new[field] = existing.data[field]
                else:
                    new.pop(field, None)
            status = (new.get("Workflow") or {}).get("Status")
            if existing.data.get("RecordState") == "ARCHIVED" and new.get("RecordState") == "ACTIVE" \
                    and status in ("NOTIFIED", "RESOLVED"):
                new["Workflow"] = {**new["Workflow"], "Status": "NEW"}
            existing.data = new
        succeeded += 1
    return len(failed), succeeded, failed


def batch_update_findings(self, identifiers, updates):
    processed, unprocessed = [], []
    for ident in identifiers:
        finding = next(
            (f for f in self.findings
             if f.id == ident.get("Id") and f.data.get("ProductArn") == ident.get("ProductArn")),
            None,
        )
        if finding is None:
            unprocessed.append({"FindingIdentifier": ident, "ErrorCode": "FindingNotFound",
                                "ErrorMessage": "Finding Not Found"})
            continue
        for field, value in updates.items():
            if field == "Workflow":
                finding.data["Workflow"] = {**finding.data.get("Workflow", {}), **value}
            elif field == "Severity":
                finding.data["Severity"] = {**finding.data.get("Severity", {}), **value}
            elif field == "Note":
                finding.data["Note"] = {**value, "UpdatedAt": datetime.now(timezone.utc).isoformat()}
            else:
                finding.data[field] = value
        processed.append(ident)
    return processed, unprocessed


def batch_update_findings_response(self):
    params = json.loads(self.body) if self.body else {}
    identifiers = params.get("FindingIdentifiers", [])
    if not 1 <= len(identifiers) <= 100:
        raise InvalidInputException(op="BatchUpdateFindings", msg="FindingIdentifiers must hold 1 to 100 findings")
    updates = {k: params[k] for k in ("Workflow", "Note", "VerificationState", "UserDefinedFields", "Severity")
               if k in params}
    processed, unprocessed = self.securityhub_backend.batch_update_findings(identifiers, updates)
    return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})


def install():
    SecurityHubBackend.get_findings = get_findings
    SecurityHubBackend.batch_import_findings = batch_import_findings
    SecurityHubBackend.batch_update_findings = batch_update_findings
    SecurityHubResponse.batch_update_findings = batch_update_findings_response
    urls.url_paths["{0}/findings/batchupdate$"] = SecurityHubResponse.dispatch
