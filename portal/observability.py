"""JSON logs carrying the request id, and Prometheus metrics."""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from flask import Flask, g, has_request_context, request
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from pythonjsonlogger.json import JsonFormatter

REQUEST_LATENCY = Histogram(
    "portal_request_duration_seconds",
    "HTTP request latency by endpoint, method and status",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestContextFilter(logging.Filter):
    """Adds request_id (and tenant) to every record logged while serving a request or job."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            tenant = request.environ.get("portal.tenant")
            if tenant is not None:
                record.tenant = tenant.slug
        else:
            from rq import get_current_job

            job = get_current_job()
            if job is not None:
                record.request_id = job.meta.get("request_id")
                record.job_id = job.id
        return True


# Bound values a database error can carry into its text: PostgreSQL's DETAIL ("Key
# (lower(email))=(ada@example.com) already exists") and CONTEXT lines, SQLAlchemy's
# "[parameters: ...]" (the engines also set hide_parameters), and the value quoted in
# "invalid input syntax for type ...: "..."". The statement itself stays, for debugging.
_DB_VALUES = (
    (re.compile(r"^(\s*(?:DETAIL|CONTEXT):).*$", re.M), r"\1 [hidden]"),
    (re.compile(r"\[parameters: [^\n]*"), "[parameters hidden]"),
    (
        re.compile(r'((?:invalid input (?:syntax|value) for|malformed)[^:\n]*: )"[^"\n]*"'),
        r'\1"[hidden]"',
    ),
)


def redact_db_values(text: str) -> str:
    """`text` (a log message or traceback) without the values a database error carries."""
    for pattern, replacement in _DB_VALUES:
        text = pattern.sub(replacement, text)
    return text


class RedactingJsonFormatter(JsonFormatter):
    """JSON log lines whose text fields (message, traceback, extras) carry no bound values of
    database errors: those hold emails and other personal data (issue 11 §6)."""

    def process_log_record(self, log_data):
        return {key: _redact(value) for key, value in super().process_log_record(log_data).items()}


def _redact(value):
    if isinstance(value, str):
        return redact_db_values(value)
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    return value


def log_handler(stream=None) -> logging.Handler:
    """The portal's log handler: JSON lines on `stream` (stderr) with request id and tenant."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestContextFilter())
    return handler


_configured = False


def configure_logging(settings) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    handler = log_handler(sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def observe_request(response, endpoint: str | None) -> None:
    started = g.get("started")
    if started is None:
        return
    REQUEST_LATENCY.labels(
        endpoint=endpoint or "unmatched", method=request.method, status=str(response.status_code)
    ).observe(time.perf_counter() - started)


class TenantStatusCollector:
    """Tenants by status, read from the database at scrape time."""

    def collect(self):
        from portal.db import db
        from portal.tenancy.services import count_by_status

        family = GaugeMetricFamily("portal_tenants", "Tenants by status", labels=["status"])
        if db.engine is not None:
            try:
                with db.platform_scope() as session:
                    for status, n in count_by_status(session).items():
                        family.add_metric([status], n)
            except Exception:
                logging.getLogger(__name__).warning("tenant metrics unavailable", exc_info=True)
        yield family


class QueueCollector:
    """Jobs per queue and state (waiting, running, failed), read from Redis at scrape time."""

    def collect(self):
        from portal.jobs import queue_states

        family = GaugeMetricFamily(
            "portal_queue_jobs", "Jobs by queue and state", labels=["queue", "state"]
        )
        try:
            for q in queue_states():
                family.add_metric([q.name, "waiting"], q.queued)
                family.add_metric([q.name, "running"], q.running)
                family.add_metric([q.name, "failed"], q.failed)
        except Exception:
            logging.getLogger(__name__).warning("queue metrics unavailable", exc_info=True)
        yield family


def init_metrics(app: Flask) -> None:
    @app.after_request
    def _observe(response):
        observe_request(response, request.endpoint)
        return response


_collector_registered = False


def register_collectors() -> None:
    global _collector_registered
    if not _collector_registered:
        REGISTRY.register(TenantStatusCollector())
        REGISTRY.register(QueueCollector())
        _collector_registered = True


def metrics_text() -> bytes:
    """The exposition for /metrics. Under gunicorn (PROMETHEUS_MULTIPROC_DIR set by
    gunicorn.conf.py) every worker writes its samples to files there and this sums them, so
    a scrape sees all workers, not the one that happened to answer."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(TenantStatusCollector())
        registry.register(QueueCollector())
        return generate_latest(registry)
    register_collectors()
    return generate_latest(REGISTRY)
