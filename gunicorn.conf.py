"""Production gunicorn settings: `gunicorn wsgi:app` reads this file from the working directory.

Every setting can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os

bind = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000")
# Sync workers, one request at a time each, one more than there are cores: a request is CPU-bound Python between
# short database round trips, so more processes only contend for the cores, and threads for one GIL. Measured on
# 2 cores (BENCHMARKS.md, "Worker model"): 2-3 sync workers serve the most with the lowest p99, 9 serve a third
# less; gthread workers serve less, with twice the p99, and leave connections piled on some processes.
# With the database on another host requests wait longer on the network: raise WEB_CONCURRENCY there.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "sync"
# Loading the app before forking shares its code pages between workers and fails fast on a bad config.
preload_app = True
timeout = 30
graceful_timeout = 30
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 10_000
max_requests_jitter = 1_000
accesslog = None
loglevel = "warning"



def on_starting(server) -> None:
    """Refuse to start workers whose login throttles would each count alone (config.check_shared_rate_limits)."""
    from config import check_shared_rate_limits, load_config

    check_shared_rate_limits(load_config(), server.cfg.workers)


def post_fork(server, worker) -> None:
    """A forked worker must not share the parent's database connections: drop them without closing."""
    app = worker.app.wsgi()
    sqlalchemy = getattr(app, "extensions", {}).get("sqlalchemy")
    if sqlalchemy is not None:
        with app.app_context():
            sqlalchemy.engine.dispose(close=False)
