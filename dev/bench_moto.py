"""The local stack's moto server, for benchmarks: the same app `moto_ext.server` runs (the
extensions of `dev/moto_ext`, one request at a time, loopback only), plus a request counter
that every client is measured by in the same way, whatever its language or SDK.

    PYTHONPATH=dev .local/venv/bin/python dev/bench_moto.py PORT [--profile FILE]

Local-only endpoints (answered here, never passed to moto):

- `GET /_bench/calls`: `{"EC2.DescribeImages": {"requests": 3, "seconds": 0.41}, ...}` — the
  requests served since the last reset, by service and operation, and the time moto spent on
  them (inside the server's one-request-at-a-time lock: neither the client's time nor a wait
  for the lock is in it).
- `POST /_bench/reset`: zeroes the counter.
- `POST /_bench/profile`: with `--profile FILE`, writes the cProfile statistics of the requests
  served so far to FILE (`python -m pstats FILE`) and starts afresh.

The service is read from the SigV4 credential scope of the `Authorization` header (`ec2`,
`dynamodb`, `autoscaling`, `sts`, ...), the operation from `X-Amz-Target` (JSON protocols:
DynamoDB) or the `Action` parameter (query protocols: EC2, Auto Scaling, STS, SNS). Requests
without a signature count as `unsigned.<path>`.

This is a tool of the benchmarks, not of the product: `dev/local-stack` keeps running
`moto_ext.server`; this runs that same module's `main()`, only wrapping the app it builds, and
nothing here changes what moto answers. It also turns off werkzeug's per-request log line.
"""
import cProfile
import io
import json
import logging
import re
import sys
import threading
import time
from urllib.parse import parse_qs

from moto_ext import server
from moto_ext.server import LOOPBACK

SERVICE_NAMES = {
    "ec2": "EC2",
    "dynamodb": "DynamoDB",
    "autoscaling": "AutoScaling",
    "sts": "STS",
    "sns": "SNS",
    "sqs": "SQS",
    "iam": "IAM",
    "events": "EventBridge",
}
_SCOPE = re.compile(r"Credential=[^/,]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def operation_of(environ):
    """`(service, operation)` of a request; restores the body it had to read."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = _SCOPE.search(auth)
    if not scope:
        return "unsigned", environ.get("PATH_INFO", "/")
    service = SERVICE_NAMES.get(scope.group(1), scope.group(1))
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1]
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if not action and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if b"Action=" in body[:4096]:
            action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return service, action[0]
    return service, f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO', '/')}"


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key, seconds):
        with self.lock:
            entry = self.counts.setdefault(key, {"requests": 0, "seconds": 0.0})
            entry["requests"] += 1
            entry["seconds"] += seconds

    def take(self, reset):
        with self.lock:
            out = {f"{s}.{o}": dict(v) for (s, o), v in sorted(self.counts.items())}
            if reset:
                self.counts = {}
            return out


def counted(app, counter, profile_file=None):
    """`app` with the counter (and the profiler) around it. Placed inside the server's
    one-request-at-a-time lock, so a request's time is moto's work on it, not its wait."""
    profiler = cProfile.Profile() if profile_file else None

    def reply(start_response, payload):
        body = json.dumps(payload, indent=1).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def run(environ, start_response):
        result = app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            close = getattr(result, "close", None)
            if close:
                close()

    def handle(environ, start_response):
        nonlocal profiler
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            if path == "/_bench/calls":
                return reply(start_response, counter.take(reset=False))
            if path == "/_bench/reset":
                return reply(start_response, counter.take(reset=True))
            if path == "/_bench/profile" and profiler is not None:
                profiler.dump_stats(profile_file)
                profiler = cProfile.Profile()
                return reply(start_response, {"written": profile_file})
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown /_bench/ endpoint\n"]
        key = operation_of(environ)
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
            try:
                body = run(environ, start_response)
            finally:
                profiler.disable()
        else:
            body = run(environ, start_response)
        counter.add(key, time.perf_counter() - started)
        return body

    return handle


def main():
    """Runs `moto_ext.server.main()` itself — the local stack's extensions and wiring, whatever
    they are — with the counter slipped in where it builds its serialized app."""
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--profile"):
        sys.exit("usage: bench_moto.py PORT [--profile FILE]")
    port = sys.argv[1]
    profile_file = sys.argv[3] if len(sys.argv) == 4 else None
    counter = Counter()
    plain_serialized = server.serialized
    wired = []

    def serialized_and_counted(app):
        wired.append(True)
        return plain_serialized(counted(app, counter, profile_file))

    plain_run_simple = server.run_simple

    def run_simple(host, port_, app, **kwargs):
        if not wired:
            sys.exit("bench_moto: moto_ext.server no longer builds its app with serialized(); update bench_moto.py")
        if host != LOOPBACK:
            sys.exit(f"bench_moto: refusing to listen on {host}")
        plain_run_simple(host, port_, app, **kwargs)

    server.serialized = serialized_and_counted
    server.run_simple = run_simple
    # One log line per request would cost the server time on every request measured.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sys.argv = [sys.argv[0], port]
    server.main()


if __name__ == "__main__":
    main()
