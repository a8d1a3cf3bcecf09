"""The outer ceilings that need no app: pgbench's built-in TPC-B-like run on a scratch database of its own,
and bench/pgbench/hold.sql (the raw hold's row work) on the bench database. Same clients and seconds as
the app's phases; pgbench uses 2 threads (-j 2), one a core. Also the load generator check: the async
Python client (bench/async_client.py) against wrk on GET /healthz.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from sqlalchemy.engine import make_url

from bench import cpu
from bench.ledger_bench import scratch_database
from bench.server import ROOT, Server

HOLD_SCRIPT = ROOT / "bench" / "pgbench" / "hold.sql"


def _connection_args(url: str) -> list[str]:
    parsed = make_url(url)
    return ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]


def _measured(command: list[str], database: str, server_pid: int | None = None) -> tuple[str, dict, float]:
    """Run a load generator to its end; answers its output, the CPU each party used, and its own CPU."""
    watch = cpu.Watch(server_pid, frozenset({database})).start()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    output = process.stdout.read().decode() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    own = usage.ru_utime + usage.ru_stime
    parties = watch.stop(own)
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}):\n{output}")
    return output, parties, own


def _pgbench(label: str, url: str, extra: list[str], clients: int, seconds: float) -> dict:
    command = [_pgbench_path(), *_connection_args(url), "-M", "prepared", "-c", str(clients), "-j", "2",
               "-T", str(max(1, round(seconds))), *extra, make_url(url).database]
    output, usage, own = _measured(command, make_url(url).database)
    figures = {name: float(match.group(1)) for name, pattern in (
        ("tps", r"tps = ([\d.]+) \(without initial"), ("latency_avg_ms", r"latency average = ([\d.]+) ms"),
        ("transactions", r"number of transactions actually processed: (\d+)"),
        ("failed", r"number of failed transactions: (\d+)")) if (match := re.search(pattern, output))}
    transactions = figures.get("transactions", 0)
    return {"label": label, "clients": clients, "seconds": seconds, **figures, "cpu": usage,
            "client": {"requests": transactions, "cpu_s": round(own, 3),
                       "cpu_us_per_request": round(own / transactions * 1e6, 1) if transactions else None}}


def _pgbench_path() -> str:
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench is not installed (apt-get install -y postgresql-client)")
    return found


def pgbench_tpcb(clients: int, seconds: float, scale: int = 10) -> dict:
    """pgbench -i -s `scale` on loyalty_bench_pgbench, then the built-in TPC-B-like script."""
    url = scratch_database("loyalty_bench_pgbench")
    subprocess.run([_pgbench_path(), *_connection_args(url), "-i", "-q", "-s", str(scale),  # noqa: S603
                    make_url(url).database], check=True, capture_output=True)
    return _pgbench("pgbench tpcb-like", url, [], clients, seconds)


def pgbench_hold(url: str, members: int, clients: int, seconds: float) -> dict:
    """bench/pgbench/hold.sql on the bench database's bench_raw_* tables."""
    return _pgbench("pgbench hold.sql", url, ["-n", "-f", str(HOLD_SCRIPT), "-D", f"members={members}"],
                    clients, seconds)


def async_client(server: Server, database: str, clients: int, seconds: float) -> dict:
    """bench.async_client on GET /healthz; its own figures plus the CPU each party used."""
    command = [sys.executable, "-m", "bench.async_client", "--port", str(server.port), "--clients", str(clients),
               "--seconds", str(seconds)]
    output, usage, _ = _measured(command, database, server.pid)
    return {**json.loads(output.strip().splitlines()[-1]), "cpu": usage}
