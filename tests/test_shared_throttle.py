"""The login throttle holds across workers: two app processes (as two gunicorn workers are) counting in one shared
store let the limit through once, not once each. Needs Redis on 127.0.0.1:6379: without it that test skips, saying
why, except where LOYALTY_REQUIRE_REDIS is set (`.ci/run`), where it fails. Production refuses to start several
workers that would each count alone."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMIT = 3
# One app process, as a gunicorn worker is: its own memory, its own limiter.
_SERVE = ("from werkzeug.serving import make_server; from loyalty import create_app; "
          "server = make_server('127.0.0.1', 0, create_app('testing'), threaded=True); "
          "print(server.port, flush=True); server.serve_forever()")


@contextmanager
def worker(database_uri: str, storage_uri: str, prefix: str) -> Iterator[str]:
    """An app in a process of its own; answers its host:port."""
    env = {**os.environ, "DATABASE_URL": database_uri, "LOYALTY_RATELIMIT_STORAGE_URI": storage_uri,
           "LOYALTY_RATELIMIT_KEY_PREFIX": prefix, "LOYALTY_LOGIN_RATE_LIMIT_PER_ACCOUNT": f"{LIMIT} per minute",
           "LOYALTY_RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": "false", "LOYALTY_LOG_LEVEL": "ERROR"}
    process = subprocess.Popen([sys.executable, "-c", _SERVE], cwd=ROOT, env=env,  # noqa: S603
                               stdout=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()
        assert port, "the app process did not start"
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def failed_logins_before_the_throttle(workers: list[str], email: str) -> int:
    """Wrong passwords sent to each worker in turn until one answers 429: how many were let through."""
    body = json.dumps({"email": email, "password": "wrong password"})
    for attempt in range(len(workers) * LIMIT + 1):
        connection = http.client.HTTPConnection(workers[attempt % len(workers)], timeout=30)
        connection.request("POST", "/v1/auth/login", body=body, headers={"Content-Type": "application/json"})
        status = connection.getresponse().status
        connection.close()
        if status == 429:
            return attempt
        assert status == 401
    return len(workers) * LIMIT + 1


def throttled_across(database_uri: str, storage_uri: str, email: str, count: int = 2) -> int:
    prefix = f"test-{uuid.uuid4().hex}"
    with ExitStack() as stack:
        workers = [stack.enter_context(worker(database_uri, storage_uri, prefix)) for _ in range(count)]
        return failed_logins_before_the_throttle(workers, email)


@pytest.fixture
def shared_redis() -> str:
    """The Redis the workers share; answers its URL."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        missing("redis", f"no Redis answers at {REDIS_URL}: {error}")
    return REDIS_URL


# The app processes sign in a member this test created: it must be committed for them to see.
@pytest.mark.real_commits
def test_two_workers_sharing_redis_let_the_limit_through_once(app, database_uri, make_member, shared_redis):
    assert throttled_across(database_uri, shared_redis, make_member()["email"]) == LIMIT


@pytest.mark.real_commits
def test_two_workers_counting_in_their_own_memory_let_the_limit_through_once_each(app, database_uri, make_member):
    """Why production refuses per-process storage with several workers."""
    assert throttled_across(database_uri, "memory://", make_member()["email"]) == 2 * LIMIT


# --- Production refuses per-process counting with several workers ------------------------------------------------

PRODUCTION = {"LOYALTY_ENV": "production", "LOYALTY_SECRET_KEY": "s" * 40}


def gunicorn(workers: int, **settings: str) -> tuple[bool, str]:
    """Start gunicorn with the project's gunicorn.conf.py (--check-config would not run its hooks): whether it
    booted a worker (then it is stopped) and what it printed."""
    env = {**os.environ, **PRODUCTION, **settings, "WEB_CONCURRENCY": str(workers), "LOYALTY_BIND": "127.0.0.1:0",
           "DATABASE_URL": "sqlite://", "GUNICORN_CMD_ARGS": "--log-level info"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed, booted = [], False
    try:
        for line in process.stdout:  # until it boots a worker, or exits
            printed.append(line)
            if "Booting worker" in line:
                booted = True
                break
    finally:
        if process.poll() is None:
            process.terminate()
        printed.append(process.communicate(timeout=60)[0])
    return booted, "".join(printed)


def test_production_refuses_to_start_several_workers_counting_in_their_own_memory():
    booted, printed = gunicorn(3)

    assert not booted
    assert "Error: LOYALTY_RATELIMIT_STORAGE_URI is 'memory://'" in printed


@pytest.mark.parametrize(("workers", "storage"), [(1, "memory://"), (3, REDIS_URL)])
def test_production_starts_one_worker_in_memory_or_several_sharing_a_store(workers, storage):
    booted, printed = gunicorn(workers, LOYALTY_RATELIMIT_STORAGE_URI=storage)

    assert booted, printed
