"""Step Functions: what moto's emulator lacks to run the sweeps' state machine on the local stack.

moto 5.2 parses and executes state machines when its `stepfunctions.execute_state_machine`
setting is on (turned on by `server.py`). These gaps stop the sweeps' Distributed Maps from
running, failing and being redriven as they are on AWS:

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
- The tolerated failure threshold. moto tolerates every failed child. Here a Map Run is past
  its threshold, as on AWS, when the failed share of its items exceeds
  ToleratedFailurePercentage (or their number ToleratedFailureCount), each applied only when
  the definition declares it, none declared tolerating no failure. From then on it starts no
  more children: each left is a PENDING row (its Input, no output), as AWS's counts have
  children "that haven't started". Once those under way are done, the ResultWriter writes the
  results (a PENDING file too), then the Map state fails with
  `States.ExceedToleratedFailureThreshold` (cause "The specified tolerated failure threshold
  was exceeded"), and without a Catch so does the execution. A redrive counts its own
  attempt's failures only.
- RedriveExecution, which moto does not have. A FAILED, ABORTED or TIMED_OUT execution runs
  again under the same ARN with the same input, RUNNING until it ends, from the top-level state
  it stopped in, with the input that state had; the states before it are not run again, and
  DescribeExecution counts the redrive (`redriveCount`, `redriveDate`). A Distributed Map
  there redrives its Map Run: same Map Run ARN, its children that succeeded are not run again,
  the others are (same child execution ARN, `RedriveCount` 1 in their rows). Its manifest, at
  the same key, lists the SUCCEEDED files of every attempt and this attempt's FAILED files
  only, as AWS's does; the redrive's files are numbered by the attempt (`SUCCEEDED_1.json`,
  …), a naming AWS does not document.

Not filled: the children under way when a Map Run passes its threshold run to their end (AWS
stops them: ABORTED); a redriven Map Run reads its items from the ItemReader again
(AWS reuses the first attempt's); its history records MapRunStarted again where AWS records
MapRunRedriven; RedriveExecution checks only the status (not the 14 days, the 1,000 redrives
of a Map Run, the history's size); and no "Step Functions Execution Status Change" event is
sent to EventBridge.
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
from moto.core.exceptions import AWSError
from moto.core.responses import ActionResult
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.flow.start_at import StartAt
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
    DistributedIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
from moto.stepfunctions.parser.asl.component.state.exec.state_map.tolerated_failure import (
    ToleratedFailureCountDecl,
    ToleratedFailurePercentageDecl,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramRunning
from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.responses import StepFunctionResponse

TARGETS_PATH = "/moto-ext/lambda-targets"
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_targets = {}
_targets_lock = threading.Lock()
_replaced = {}
# The cause AWS gives a Map Run that failed past its threshold (as LocalStack, which records
# AWS's answers, has it; AWS's guide names only the error).
TOLERANCE_EXCEEDED = "The specified tolerated failure threshold was exceeded"


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
    """Runs the child as moto does, then records its row as AWS's ResultWriter writes it. In a
    redriven Map Run a child that succeeded before is not run again (its earlier output stands),
    and one that did not keeps its execution ARN and counts the redrive, as AWS's
    RedriveExecution of a Standard child does."""
    record = self._map_run_record
    earlier = record.ami_warden_rows.get(job.job_index)
    if earlier is not None and earlier["Status"] == "SUCCEEDED":
        job.job_output = json.loads(earlier["Output"])
        return
    if _exceeds_tolerance(*record.ami_warden_tolerance):
        _not_started(self, env, job, record)
        return
    started_before = earlier is not None and earlier["Status"] != "PENDING"
    name = earlier["Name"] if started_before else str(uuid.uuid4())
    started = earlier["StartDate"] if started_before else _now()
    _replaced["eval_job"](self, env, job)
    child_input = getattr(env, "ami_warden_child_input", job.job_input)
    row = {
        "ExecutionArn": record.map_run_arn.replace(":mapRun:", ":execution:", 1) + ":" + name,
        "Input": json.dumps(child_input),
        "InputDetails": {"Included": True},
        "Name": name,
        "RedriveCount": earlier["RedriveCount"] + 1 if started_before else 0,
        "StartDate": started,
        "StopDate": _now(),
    }
    state = env.program_state()
    if job.job_output is not None and not isinstance(state, ProgramError):
        row.update(Status="SUCCEEDED", Output=json.dumps(job.job_output), OutputDetails={"Included": True})
    else:
        error = (state.error or {}) if isinstance(state, ProgramError) else {}
        row.update(Status="FAILED", Error=error.get("error", "States.Runtime"), Cause=error.get("cause", ""))
    record.ami_warden_rows[job.job_index] = row
    record.ami_warden_attempt.append(job.job_index)


def _not_started(worker, env, job, record):
    """A child the Map Run does not start, being past its threshold: a PENDING row with the
    Input it would have had (after the ItemSelector), and no output."""
    env.states.context_object.context_object_data["Map"] = MapData(
        Item=ItemData(Index=job.job_index, Value=job.job_input)
    )
    env.states.reset(input_value=job.job_input)
    worker._eval_input(env_frame=env)
    child_input = getattr(env, "ami_warden_child_input", job.job_input)
    row = {"Input": json.dumps(child_input), "InputDetails": {"Included": True}, "Status": "PENDING"}
    record.ami_warden_rows[job.job_index] = row
    record.ami_warden_attempt.append(job.job_index)
    job.job_output = None


def _map_props(self, state_props):
    """Links a Map's iteration to its state, whose thresholds and ResultWriter a failing Map
    Run needs, and notes which thresholds the definition declares: AWS applies only those."""
    _replaced["map_props"](self, state_props)
    self.iteration_component.ami_warden_map = self
    self.ami_warden_declares = (
        state_props.get(ToleratedFailureCountDecl) is not None,
        state_props.get(ToleratedFailurePercentageDecl) is not None,
    )


def _map_run(self, env, eval_input):
    """Runs a Distributed Map's Map Run as moto does, a redrive's as AWS redrives it, then fails
    it as AWS does when its failed children exceed the tolerated threshold: its ResultWriter
    writes the results first (AWS writes a failed Map Run's results too: that is what its
    FAILED and PENDING files are for), then the Map state fails with
    States.ExceedToleratedFailureThreshold."""
    record, pool = eval_input.map_run_record, env.map_run_record_pool_manager
    earlier = _redriven_run(pool, eval_input.state_name)
    if earlier is not None:
        _take_over(pool, record, earlier)
    else:
        record.ami_warden_rows, record.ami_warden_redrives, record.ami_warden_files = {}, 0, []
    record.ami_warden_state, record.ami_warden_attempt = eval_input.state_name, []
    items = len(env.stack[-1])  # what the ItemReader read, which moto's Map Run takes off the stack
    state = self.ami_warden_map
    record.ami_warden_tolerance = (state, record, items)
    _replaced["map_run"](self, env, eval_input)
    if not _exceeds_tolerance(state, record, items):
        return
    if state.result_writer:
        state.result_writer.eval(env)
        env.stack.pop()
    error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
    details = MapRunFailedEventDetails(error=error.error_name, cause=TOLERANCE_EXCEEDED)
    raise FailureEventException(
        FailureEvent(env=env, error_name=error, event_type=HistoryEventType.MapRunFailed,
                     event_details=EventDetails(mapRunFailedEventDetails=details))
    )


def _redriven_run(pool, state_name):
    """The Map Run a redrive resumes: the last one of `state_name` when the redriven execution
    stopped in that Map state. None otherwise, or when it had started none (AWS then starts the
    Map Run for the first time)."""
    if getattr(pool, "ami_warden_redriving", None) != state_name:
        return None
    pool.ami_warden_redriving = None
    runs = [r for r in pool.get_all() if getattr(r, "ami_warden_state", None) == state_name]
    return runs[-1] if runs else None


def _take_over(pool, record, earlier):
    """Makes the Map Run a redriven Map state just started the redrive of its earlier one: AWS
    redrives the Map Run itself, so it keeps its ARN and what each child did so far."""
    # The pool keys its records by ARN, and the ResultWriter writes for the one added last: the
    # record, under the earlier ARN, replaces the earlier one and is added again.
    del pool._pool[record.map_run_arn], pool._pool[earlier.map_run_arn]
    record.map_run_arn, record.map_state_machine_arn = earlier.map_run_arn, earlier.map_state_machine_arn
    record.start_date = earlier.start_date
    record.ami_warden_rows, record.ami_warden_files = earlier.ami_warden_rows, earlier.ami_warden_files
    record.ami_warden_redrives = earlier.ami_warden_redrives + 1
    pool.add(record)


def _exceeds_tolerance(state, record, items):
    """Whether the Map Run fails, as AWS decides once its children are done: the failed share of
    all its items above ToleratedFailurePercentage, or their number above ToleratedFailureCount,
    each only when declared; a Map that declares neither tolerates no failure (percentage 0)."""
    # This attempt's: a redrive's children that failed before run again.
    rows = [record.ami_warden_rows[i] for i in list(record.ami_warden_attempt)]
    failed = sum(1 for row in rows if row["Status"] == "FAILED")
    count_declared, percentage_declared = state.ami_warden_declares
    if count_declared and failed > record.tolerated_failure_count:
        return True
    applies = percentage_declared or not count_declared
    return applies and failed * 100 > record.tolerated_failure_percentage * items


def _put_results(env, resource_runtime_part, state_credentials):
    """ResultWriter's s3:putObject: this attempt's result files, and the manifest that lists them.
    After a redrive AWS's manifest (same key: the Map Run keeps its ARN) lists the SUCCEEDED
    files of every attempt but the FAILED and PENDING files of this one only. AWS does not
    document how a redrive names its files; here each attempt's are kept, numbered by it."""
    parameters = env.stack.pop()
    env.stack.pop()  # the Map's outputs: each child's row already holds its own
    s3 = boto_client_for(service="s3", region=resource_runtime_part.region, state_credentials=state_credentials)
    record = env.map_run_record_pool_manager.get_all().pop()
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = prefix + record.map_run_arn.split(":")[-1]
    files = {"FAILED": [], "PENDING": [], "SUCCEEDED": list(record.ami_warden_files)}
    attempt = [record.ami_warden_rows[i] for i in sorted(record.ami_warden_attempt)]
    for status in ("SUCCEEDED", "FAILED", "PENDING"):
        chosen = [r for r in attempt if r["Status"] == status]
        if not chosen:
            continue
        key, body = f"{base}/{status}_{record.ami_warden_redrives}.json", json.dumps(chosen).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        files[status].append({"Key": key, "Size": len(body)})
    record.ami_warden_files = files["SUCCEEDED"]
    manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": files}
    key = f"{base}/manifest.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode())
    env.stack.append({"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}})


class ExecutionNotRedrivable(AWSError):
    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


def _redrive_execution(self):
    """RedriveExecution, which moto does not have."""
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    return ActionResult({"redriveDate": _redrive(execution)})


def _redrive(execution):
    """Redrives `execution` as AWS does: the same ARN, input and history, RUNNING again from the
    state it stopped in, with the input that state had; the states before it are not run again,
    and a Distributed Map there redrives its Map Run (see `_map_run`). Returns the redrive's date.

    The execution's own environment carries on (its history, variables and Map Runs); only its
    program restarts, at that state."""
    if execution.status not in ("FAILED", "ABORTED", "TIMED_OUT"):
        raise ExecutionNotRedrivable(f"Execution is {execution.status} and cannot be redriven")
    worker = execution.exec_worker
    env = worker.env
    state_name, state_input = _stopped_at(execution)
    program = worker._get_evaluation_entrypoint()
    program.start_at = StartAt(start_at_name=state_name)
    execution.ami_warden_redrives = getattr(execution, "ami_warden_redrives", 0) + 1
    execution.ami_warden_redrive_date = datetime.now(timezone.utc)
    execution.exec_status, execution.stop_date = ExecutionStatus.RUNNING, None
    execution.error = execution.cause = execution.output = None
    env.stack.clear()
    env.heap.clear()
    # The environment ended with the execution; it runs again, and the program sets where.
    env._program_state = ProgramRunning()
    env.states.reset(state_input)
    env.map_run_record_pool_manager.ami_warden_redriving = state_name
    env.event_manager.add_event(
        context=env.event_history_context,
        event_type=HistoryEventType.ExecutionRedriven,
        event_details=EventDetails(executionRedrivenEventDetails={"redriveCount": execution.ami_warden_redrives}),
    )

    def run():
        program.eval(env)
        worker._execution_communication.terminated()

    threading.Thread(target=run, daemon=True).start()
    return execution.ami_warden_redrive_date


def _stopped_at(execution):
    """The top-level state the execution entered last, and the input it entered with: where a
    redrive resumes. An execution that entered none resumes at StartAt with its own input."""
    definition = json.loads(execution.state_machine.definition)
    for event in reversed(execution.exec_worker.env.event_manager.get_event_history()):
        entered = event.get("stateEnteredEventDetails")
        if entered and entered["name"] in definition["States"] and "input" in entered:
            return entered["name"], json.loads(entered["input"])
    return definition["StartAt"], execution.input_data


def _describe_execution(self):
    """DescribeExecution as moto answers it, plus the redrive count and date AWS reports."""
    result = _replaced["describe_execution"](self)
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    result.result["redriveCount"] = getattr(execution, "ami_warden_redrives", 0)
    if hasattr(execution, "ami_warden_redrive_date"):
        result.result["redriveDate"] = execution.ami_warden_redrive_date
    return result


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
    _replaced["map_props"] = StateMap.from_state_props
    _replaced["map_run"] = DistributedIterationComponent._map_run
    _replaced["describe_execution"] = StepFunctionResponse.describe_execution
    DistributedItemProcessorWorker._eval_input = _eval_input
    DistributedItemProcessorWorker._eval_job = _eval_job
    StateMap.from_state_props = _map_props
    DistributedIterationComponent._map_run = _map_run
    ResourceEvalS3._handle_put_object = staticmethod(_put_results)
    StepFunctionResponse.redrive_execution = _redrive_execution
    StepFunctionResponse.describe_execution = _describe_execution
    StateMachine.__deepcopy__ = _state_machine_copy
