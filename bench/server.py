"""gunicorn with the production configuration (`gunicorn -c gunicorn.conf.py`), for the benchmarks.

The command line only adds what a bench needs: `--bind` on a free local port, `--workers` when asked (else
the config's WEB_CONCURRENCY or cores * 2 + 1), and a worker class for bench.worker_model. The app logs as
production does (JSON access lines at INFO); they go to bench/.work/gunicorn-<port>.log, not the terminal.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import cpu

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PID_FILE = WORK / "gunicorn.pid"
WEBHOOK_SECRET = "whsec_bench_" + "x" * 24
SECRET_KEY = "bench-" + "s" * 40


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        return sorted(p.pid for p in cpu.tree(cpu.processes(), self.pid) if p.pid != self.pid)

    def stop(self) -> None:
        """SIGTERM (a graceful stop: workers finish their request), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        PID_FILE.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_stray() -> None:
    """A gunicorn a crashed bench left running (recorded in our pid file, and still a gunicorn): stop it."""
    try:
        pid = int(PID_FILE.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"gunicorn" in command and b"gunicorn.conf.py" in command:
        os.kill(pid, signal.SIGTERM)
        for _ in range(400):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    PID_FILE.unlink(missing_ok=True)


def environment(url: str) -> dict[str, str]:
    """Production settings; the login throttle shares the machine's Redis, as production must across workers."""
    return {"LOYALTY_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0", "LOYALTY_RATELIMIT_KEY_PREFIX": "bench",
            **os.environ, "LOYALTY_ENV": "production", "DATABASE_URL": url, "LOYALTY_SECRET_KEY": SECRET_KEY,
            "LOYALTY_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


def start(app: str, url: str, *, workers: int | None = None, extra: tuple[str, ...] = (),
          ready_path: str = "/readyz") -> Server:
    """Start `gunicorn -c gunicorn.conf.py <app>` and wait until `ready_path` answers 200."""
    stop_stray()
    WORK.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = WORK / f"gunicorn-{port}.log"
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py",
               "--bind", f"127.0.0.1:{port}", *(["--workers", str(workers)] if workers else []), *extra, app]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=environment(url), stdout=output,  # noqa: S603
                                   stderr=subprocess.STDOUT)
    PID_FILE.write_text(str(process.pid))
    server = Server(process, port, log)
    _wait_ready(server, ready_path)
    return server


def _wait_ready(server: Server, path: str) -> None:
    for _ in range(300):
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}; see {server.log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                _wait_workers(server)
                return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gunicorn did not answer {path}; see {server.log}")


def _wait_workers(server: Server) -> None:
    """One worker answering is not all of them forked: wait until their count holds still."""
    count = -1
    for _ in range(50):
        time.sleep(0.3)
        if len(server.workers()) == count:
            return
        count = len(server.workers())


@contextmanager
def serving(app: str, url: str, **options) -> Iterator[Server]:
    server = start(app, url, **options)
    try:
        yield server
    finally:
        server.stop()
