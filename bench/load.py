"""Drive a server with wrk and bench/wrk/driver.lua; parse what the Lua threads recorded.

`wrk -t C -c C`: one connection per wrk thread, so each thread's Lua state runs its own request -> response
state machine (a hold, then its capture). All threads stop starting operations at one deadline, finish
the one under way and write their figures to a file each; once every thread has, wrk is told to stop
(SIGINT) and its done() writes wrk's totals. So every request sent is answered and counted, and the
database can be checked against the counts exactly. Rates and latencies are those of the answers that
came before the deadline; CPU use is measured from wrk's start to the deadline.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import cpu
from bench.server import ROOT, WORK, Server

LUA = ROOT / "bench" / "wrk"
DRAIN_SECONDS = 30  # how long a thread may take to finish its last operation after the deadline
PAIRS = {"redeem"}  # operations of two requests (hold, capture), recorded besides their requests


@dataclass
class OpStats:
    requests: int  # answered before the deadline
    errors: int  # of those: non-2xx or a wrong answer
    rate: float  # answered without error before the deadline, per second
    p50_ms: float
    p99_ms: float
    mean_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0  # answered after the deadline: under way when the phase ended
    late_ok: int = 0

    @property
    def ok(self) -> int:
        """Every answer without error, late ones included: what the database must hold."""
        return self.requests - self.errors + self.late_ok


@dataclass
class Result:
    label: str
    clients: int
    seconds: float
    ops: dict[str, OpStats]
    cpu: dict  # CPU seconds per party, and top_others: see bench.cpu.Watch
    client: dict[str, float]  # the load generator's own figures: requests, CPU seconds, CPU us per request
    exhausted: dict[str, int] = field(default_factory=dict)  # operation -> threads that ran out of bodies
    workers: dict[str, float] | None = None  # CPU seconds per gunicorn worker, when asked

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of them at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does it)")
    return found


def drive(label: str, port: int, ops: str, *, clients: int, seconds: float, server: Server, database: str,
          env: dict[str, str] | None = None, per_worker: bool = False) -> Result:
    """Run `ops` (e.g. "summary" or "summary:40,quote:25") for `seconds` at `clients` connections."""
    results = WORK / f"{label}.results"
    for stale in WORK.glob(f"{label}.results*"):
        stale.unlink()
    deadline = time.monotonic() + seconds
    variables = {**os.environ, "BENCH_LUA_DIR": str(LUA), "BENCH_OPS": ops, "BENCH_RESULTS": str(results),
                 "BENCH_DEADLINE": f"{deadline * 1000:.3f}", "BENCH_TAG": label, **(env or {})}
    command = [wrk_path(), "-t", str(clients), "-c", str(clients), "-d", f"{math.ceil(seconds) + DRAIN_SECONDS}s",
               "--timeout", "30s", "-s", str(LUA / "driver.lua"), f"http://127.0.0.1:{port}"]
    watch = cpu.Watch(server.pid, frozenset({database})).start()
    with (WORK / f"{label}.wrk.txt").open("w") as output:
        process = subprocess.Popen(command, env=variables, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        time.sleep(max(0.0, deadline - time.monotonic()))
        client_cpu = _cpu_of(process.pid)
        usage = watch.stop(client_cpu)
        _wait_drained(process, results, clients, deadline)
    recorded = _parse(results, clients)
    window = deadline - sum(recorded["starts"]) / len(recorded["starts"]) / 1000
    stats = _op_stats(recorded, window)
    requests = sum(s.requests for op, s in stats.items() if op not in PAIRS)
    return Result(label, clients, round(window, 3), stats, usage,
                  {"requests": requests, "cpu_s": round(client_cpu, 3),
                   "cpu_us_per_request": round(client_cpu / requests * 1e6, 1) if requests else None},
                  recorded["exhausted"], watch.workers if per_worker else None)


def _cpu_of(pid: int) -> float:
    """A running process's CPU seconds, all its threads."""
    process = cpu.processes().get(pid)
    return process.own if process else 0.0


def _wait_drained(process: subprocess.Popen, results: Path, clients: int, deadline: float) -> None:
    """Wait until every thread has written its figures (or wrk's own end), then stop wrk."""
    give_up = deadline + DRAIN_SECONDS
    while process.poll() is None and time.monotonic() < give_up:
        if len(_thread_files(results)) >= clients:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # wrk's handler ends its wait; it then calls done()
    if process.wait() != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}; see {results.with_suffix('.wrk.txt')}")


def _thread_files(results: Path) -> list[Path]:
    return sorted(results.parent.glob(results.name + ".thread.*[0-9]"))


def _parse(results: Path, clients: int) -> dict:
    recorded: dict = {"wrk": {}, "lat": {}, "status": {}, "errors": {}, "exhausted": {}, "late": {}, "starts": []}
    files = _thread_files(results)
    if len(files) < clients:
        raise RuntimeError(f"{clients - len(files)} wrk threads did not finish within {DRAIN_SECONDS} s "
                           "of the deadline: their figures are lost")
    for line in [*results.read_text().splitlines(), *(line for f in files for line in f.read_text().splitlines())]:
        kind, _, rest = line.partition(" ")
        parts = rest.split()
        if kind == "wrk":
            recorded["wrk"] = {parts[i]: int(parts[i + 1]) for i in range(0, len(parts), 2)}
        elif kind == "lat":
            recorded["lat"].setdefault(parts[0], []).extend(float(v) for v in parts[1:])
        elif kind == "status":
            key = f"{parts[0]} {parts[1]}"
            recorded["status"][key] = recorded["status"].get(key, 0) + int(parts[2])
        elif kind == "error":
            recorded["errors"][parts[0]] = recorded["errors"].get(parts[0], 0) + int(parts[1])
        elif kind == "start":
            recorded["starts"].append(float(parts[0]))
        elif kind == "late":
            total, ok = recorded["late"].get(parts[0], (0, 0))
            recorded["late"][parts[0]] = (total + int(parts[1]), ok + int(parts[2]))
        elif kind == "exhausted":
            recorded["exhausted"][parts[0]] = recorded["exhausted"].get(parts[0], 0) + 1
    return recorded


def _op_stats(recorded: dict, seconds: float) -> dict[str, OpStats]:
    stats = {}
    for op in sorted(set(recorded["lat"]) | set(recorded["late"])):
        latencies, errors = recorded["lat"].get(op, []), recorded["errors"].get(op, 0)
        statuses = {key.split()[1]: n for key, n in recorded["status"].items() if key.split()[0] == op}
        late, late_ok = recorded["late"].get(op, (0, 0))
        stats[op] = OpStats(len(latencies), errors, round((len(latencies) - errors) / seconds, 1),
                            round(percentile(latencies, 0.50), 2), round(percentile(latencies, 0.99), 2),
                            round(sum(latencies) / len(latencies), 2) if latencies else float("nan"), statuses,
                            late, late_ok)
    return stats
