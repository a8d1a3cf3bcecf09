"""Request ids, JSON logs, Prometheus metrics and the health endpoints."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import sys
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text

from loyalty.errors import NotFound, ServiceUnavailable, Unauthenticated

REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

HTTP_REQUESTS = Counter(
    "loyalty_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"]
)
HTTP_LATENCY = Histogram(
    "loyalty_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56),
)

health = Blueprint("health", __name__)
access_log = logging.getLogger("loyalty.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id when there is one."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            try:
                record.request_id = g.get("request_id")
            except RuntimeError:  # outside a request
                record.request_id = None
        return True


def configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if app.config["LOG_JSON"]:
        JsonFormatter.converter = time.gmtime
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger("loyalty")
    root.handlers[:] = [handler]
    root.setLevel(app.config["LOG_LEVEL"])
    root.propagate = False


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _CLIENT_REQUEST_ID.match(incoming) else "req_" + secrets.token_hex(12)
    g.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    HTTP_REQUESTS.labels(request.method, endpoint, response.status_code).inc()
    HTTP_LATENCY.labels(request.method, endpoint).observe(elapsed)
    # The path template, never the raw path: ids and query strings stay out of the logs.
    access_log.info(
        "%s %s %s %.1fms", request.method, endpoint, response.status_code, elapsed * 1000,
        extra={
            "method": request.method,
            "endpoint": endpoint,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 2),
        },
    )
    return response


@health.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    """The database answers."""
    from loyalty.extensions import db

    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:
        db.session.rollback()
        logging.getLogger("loyalty.health").warning("database not ready: %s", type(error).__name__)
        raise ServiceUnavailable("The database is not reachable.") from None
    return jsonify(status="ok", database="ok")


@health.get("/metrics")
def metrics():
    """Prometheus metrics; aggregated across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set.

    With METRICS_TOKEN set, only `Authorization: Bearer <token>` may read them; without one they are open in
    development and testing and off (404) in production."""
    _check_metrics_token()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, content_type=CONTENT_TYPE_LATEST)


def _check_metrics_token() -> None:
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        if current_app.config["ENV_NAME"] == "production":
            raise NotFound("Set LOYALTY_METRICS_TOKEN to serve metrics.")
        return
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), str(token).encode()):
        raise Unauthenticated("Send `Authorization: Bearer <metrics token>`.", headers={"WWW-Authenticate": "Bearer"})


def init_app(app: Flask) -> None:
    configure_logging(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_blueprint(health)
