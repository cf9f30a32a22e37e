"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import os
import tempfile

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG") else None

# Prometheus: each worker records its metrics in files in this folder and /metrics sums them.
# Set before the workers import prometheus_client (they fork from this process).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="portal-metrics-"))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
