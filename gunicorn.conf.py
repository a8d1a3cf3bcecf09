"""Production gunicorn settings: `gunicorn wsgi:app` reads this file from the working directory.

Every setting can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os

bind = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000")
# Sync workers, one request at a time each: a request's work is CPU and short database round trips.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
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



def post_fork(server, worker) -> None:
    """A forked worker must not share the parent's database connections: drop them without closing."""
    app = worker.app.wsgi()
    sqlalchemy = getattr(app, "extensions", {}).get("sqlalchemy")
    if sqlalchemy is not None:
        with app.app_context():
            sqlalchemy.engine.dispose(close=False)
