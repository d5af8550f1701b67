"""Runs moto's server app on loopback with the extensions of this package.

    python -m moto_ext.server PORT
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

from moto_ext import (
    cloudtrail,
    dynamodb,
    ec2,
    recycle_bin,
    securityhub,
    stepfunctions,
    sts,
    usage_reports,
)

LOOPBACK = "127.0.0.1"


def serialized(app):
    """A WSGI app that runs `app` for one request at a time, body included."""
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            result = app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
        return [body]

    return handle


def main():
    port = int(sys.argv[1])
    dynamodb.install()
    ec2.install()
    recycle_bin.install()
    cloudtrail.install()
    sts.install()
    securityhub.install()
    stepfunctions.install()
    usage_reports.install()
    app = DomainDispatcherApplication(create_backend_app)
    app = serialized(
        usage_reports.with_controls(
            recycle_bin.with_rules_endpoint(cloudtrail.with_records_endpoint(app))
        )
    )
    # Outside the lock: a local function invoked here calls this server while it runs.
    app = stepfunctions.with_lambda_targets(app)
    run_simple(LOOPBACK, port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
