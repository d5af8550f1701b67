"""Step Functions: what moto's emulator lacks to run the sweeps' state machine on the local stack.

moto 5.2 parses and executes state machines when its `stepfunctions.execute_state_machine`
setting is on (turned on by `server.py`). Two gaps stop the sweeps' Distributed Map from running
as it does on AWS:

- Lambda tasks. The emulator calls Lambda's Invoke on this server, and moto runs functions only
  in Docker. A function registered through the local-only endpoint
  `POST /moto-ext/lambda-targets` (`{"<function name>": "http://127.0.0.1:<port>/invoke"}`)
  is invoked by posting its payload to that address: the testkit's local Lambda Runtime API,
  which hands it to the function's real binary and answers with what the binary answered (a
  function error as `x-function-error: Unhandled`). The forwarding happens outside the
  server's one-request-at-a-time lock, since the function calls this server while it runs.
- ResultWriter. moto writes a manifest that lists no result file. Here every child execution
  is recorded as AWS's ResultWriter records it (Input and Output as JSON strings, Error and
  Cause for a failure, the documented fields around them) and written to
  `<prefix>/<map run id>/SUCCEEDED_0.json` and `FAILED_0.json`, which the manifest lists.

- A second execution. StartExecution deep-copies the state machine, and with it the backend
  it points to and every earlier execution's threads and locks, so every StartExecution after
  the first failed ("cannot pickle '_thread.RLock' object"). Here the copy shares the backend
  and starts with no executions, as the execution's snapshot of the definition needs.

Not filled: the emulator tolerates every failed child (ToleratedFailurePercentage is not
enforced), and it sends no "Step Functions Execution Status Change" events.
"""
import copy
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.eval.program_state import ProgramError
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.models import StateMachine

TARGETS_PATH = "/moto-ext/lambda-targets"
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_targets = {}
_targets_lock = threading.Lock()
_replaced = {}


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _function_name(path_part):
    """`name`, `name:qualifier` or a function ARN, URL-encoded or not: the function's name."""
    name = urllib.parse.unquote(path_part)
    if name.startswith("arn:"):
        parts = name.split(":")
        return parts[6] if len(parts) > 6 else name
    return name.split(":")[0]


def _respond(start_response, status, body, headers=()):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start_response(status, list(headers) + [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _forward(environ, start_response, target):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload = environ["wsgi.input"].read(length) or b"{}"
    request = urllib.request.Request(target, data=payload, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=900) as answer:
            body, error = answer.read(), answer.headers.get("x-function-error")
    except (urllib.error.URLError, OSError) as e:
        return _respond(start_response, "502 Bad Gateway", {"Type": "Service", "message": f"local function at {target}: {e}"},
                        [("x-amzn-ErrorType", "ServiceException")])
    headers = [("X-Amz-Executed-Version", "$LATEST")]
    if error:
        headers.append(("X-Amz-Function-Error", error))
    return _respond(start_response, "200 OK", body, headers)


def with_lambda_targets(app):
    """The WSGI app, plus the registration endpoint and Invoke of registered functions."""

    def handle(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if path == TARGETS_PATH and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                targets = json.loads(environ["wsgi.input"].read(length) or b"{}")
                if not isinstance(targets, dict):
                    raise ValueError("expected an object of function name to URL")
            except ValueError as e:
                return _respond(start_response, "400 Bad Request", {"message": str(e)})
            with _targets_lock:
                _targets.update(targets)
            return _respond(start_response, "200 OK", {"registered": sorted(targets)})
        match = _INVOKE.match(path) if method == "POST" else None
        if match:
            with _targets_lock:
                target = _targets.get(_function_name(match.group(1)))
            if target:
                return _forward(environ, start_response, target)
        return app(environ, start_response)

    return handle


def _eval_input(self, env_frame):
    """Keeps each child's input after the ItemSelector: the `Input` ResultWriter records."""
    _replaced["eval_input"](self, env_frame)
    env_frame.ami_warden_child_input = env_frame.states.get_input()


def _eval_job(self, env, job):
    """Runs the child as moto does, then records its row as AWS's ResultWriter writes it."""
    record = self._map_run_record
    name, started = str(uuid.uuid4()), _now()
    _replaced["eval_job"](self, env, job)
    child_input = getattr(env, "ami_warden_child_input", job.job_input)
    row = {
        "ExecutionArn": record.map_run_arn.replace(":mapRun:", ":execution:", 1) + ":" + name,
        "Input": json.dumps(child_input),
        "InputDetails": {"Included": True},
        "Name": name,
        "RedriveCount": 0,
        "StartDate": started,
        "StopDate": _now(),
    }
    state = env.program_state()
    if job.job_output is not None and not isinstance(state, ProgramError):
        row.update(Status="SUCCEEDED", Output=json.dumps(job.job_output), OutputDetails={"Included": True})
    else:
        error = (state.error or {}) if isinstance(state, ProgramError) else {}
        row.update(Status="FAILED", Error=error.get("error", "States.Runtime"), Cause=error.get("cause", ""))
    rows = record.__dict__.setdefault("ami_warden_rows", [])
    rows.append(row)


def _put_results(env, resource_runtime_part, state_credentials):
    """ResultWriter's s3:putObject: the result files and the manifest that lists them."""
    parameters = env.stack.pop()
    env.stack.pop()  # the Map's outputs: each child's row already holds its own
    s3 = boto_client_for(service="s3", region=resource_runtime_part.region, state_credentials=state_credentials)
    record = env.map_run_record_pool_manager.get_all().pop()
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = prefix + record.map_run_arn.split(":")[-1]
    files = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    rows = record.__dict__.get("ami_warden_rows", [])
    for status in ("SUCCEEDED", "FAILED"):
        chosen = [r for r in rows if r["Status"] == status]
        if not chosen:
            continue
        key, body = f"{base}/{status}_0.json", json.dumps(chosen).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        files[status].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": files}
    key = f"{base}/manifest.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode())
    env.stack.append({"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}})


def _state_machine_copy(self, memo):
    """A deep copy of the state machine's own fields: its backend shared, its executions not."""
    clone = copy.copy(self)
    memo[id(self)] = clone
    for name, value in self.__dict__.items():
        if name not in ("backend", "executions"):
            setattr(clone, name, copy.deepcopy(value, memo))
    clone.executions = []
    return clone


def install():
    if _replaced:
        return
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    _replaced["eval_input"] = DistributedItemProcessorWorker._eval_input
    _replaced["eval_job"] = DistributedItemProcessorWorker._eval_job
    DistributedItemProcessorWorker._eval_input = _eval_input
    DistributedItemProcessorWorker._eval_job = _eval_job
    ResourceEvalS3._handle_put_object = staticmethod(_put_results)
    StateMachine.__deepcopy__ = _state_machine_copy
