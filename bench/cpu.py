"""CPU seconds from /proc, so a report can say who used the machine's cores during a phase.

The parties:
- client: the load generator (wrk's own CPU up to the deadline; pgbench's or the async client's rusage);
- server: the gunicorn tree (master and workers: utime + stime of each living process plus cutime + cstime,
  so a worker recycled mid-phase still counts once it is reaped);
- postgres: PostgreSQL's processes serving the bench's databases (backends named after the database,
  autovacuum workers on it, and the shared background processes: checkpointer, WAL writer, ...);
- harness: this Python process;
- foreign: someone else's work: backends of other databases and any other user process (a test suite, a
  profiler); when it is large the phase's figures are understated, and `top_others` names it;
- kernel: the rest of the busy time: kernel threads, interrupts, and what no sample caught.

Processes come and go (pgbench's backends at its end, a recycled worker's), and the postmaster's cutime
mixes every database's, so every process is sampled every SAMPLE_SECONDS while a phase runs: its CPU is
its last sample less its first (0 if it started during the phase).
"""

from __future__ import annotations

import os
import re
import resource
import threading
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5  # a sample of every process costs ~8 ms of CPU
# "postgres: 15/main: <user> <database> <host(port)> <activity>", or "... autovacuum worker <database>".
_BACKEND = re.compile(r": \S+ (\S+) (?:\S+\(\d+\)|\[local\])|autovacuum worker (\S+)")


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str
    own: float  # seconds
    reaped: float  # seconds of children it has waited for


def _read(pid: int) -> Process | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]  # comm may hold spaces and parentheses
    fields = raw[raw.rindex(")") + 2:].split()  # from field 3 (state) on
    ticks = [int(value) for value in fields[11:15]]  # utime, stime, cutime, cstime
    return Process(pid, int(fields[1]), name, (ticks[0] + ticks[1]) / TICK, (ticks[2] + ticks[3]) / TICK)


def processes() -> dict[int, Process]:
    """Every process on the machine that could be read (one may exit while we look)."""
    found = (_read(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {p.pid: p for p in found if p is not None}


def tree(table: dict[int, Process], root: int) -> list[Process]:
    """`root` and all its living descendants."""
    members, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            members.append(table[pid])
            frontier += [p.pid for p in table.values() if p.ppid == pid]
    return members


def machine() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core summed."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def database_of(pid: int) -> str | None:
    """The database a PostgreSQL process serves; None for the postmaster and the shared background ones."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    match = _BACKEND.search(title)
    return (match.group(1) or match.group(2)) if match else None


def _server(table: dict[int, Process], server_pid: int | None) -> list[Process]:
    return tree(table, server_pid) if server_pid else []


@dataclass
class Watch:
    """CPU use from start() to stop(): see the module's docstring for who is who. Every process on the
    machine is sampled, so what `other` was can be named (its biggest consumers, by command)."""

    server_pid: int | None
    databases: frozenset[str]
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _party: dict[int, str] = field(default_factory=dict)  # pid -> postgres, ours, kernel, or who else
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watch:
        table = processes()
        self._server0 = _server(table, self.server_pid)
        self._machine0, self._self0 = machine(), _self_cpu()
        self._sample(table, first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self._sample(processes())

    def _sample(self, table: dict[int, Process], first: bool = False) -> None:
        for pid, p in table.items():
            if pid not in self._party:
                self._party[pid] = self._classify(p)
                self._first[pid] = p.own if first else 0.0
            self._last[pid] = p.own

    def _classify(self, p: Process) -> str:
        """Our own processes (this one, its children, the gunicorn workers) are measured otherwise."""
        if p.pid == os.getpid() or p.ppid == os.getpid() or (self.server_pid and p.ppid == self.server_pid):
            return "ours"
        if p.name == "postgres":
            database = database_of(p.pid)
            return "postgres" if database is None or database in self.databases else "PostgreSQL, other databases"
        return _command(p.pid) or "kernel"  # kernel threads have no command line

    def stop(self, client: float) -> dict:
        """Stop sampling; answers CPU seconds per party (`client` is the load generator's own, given), and
        `top_others`: the biggest other consumers by command."""
        self._done.set()
        self._thread.join()
        table = processes()
        self._sample(table)
        server1, (busy1, total1), self1 = _server(table, self.server_pid), machine(), _self_cpu()
        self.workers = _worker_seconds(self._server0, server1, self.server_pid)
        used: dict[str, float] = {}
        for pid, last in self._last.items():
            used[self._party[pid]] = used.get(self._party[pid], 0.0) + last - self._first[pid]
        used.pop("ours", None)
        used.pop("kernel", None)  # left in the residual, with interrupts
        parties = {"client": client, "server": _tree_seconds(server1) - _tree_seconds(self._server0),
                   "postgres": used.pop("postgres", 0.0), "harness": self1 - self._self0,
                   "foreign": sum(used.values())}
        busy, total = busy1 - self._machine0[0], total1 - self._machine0[1]
        parties["kernel"] = max(0.0, busy - sum(parties.values()))
        others = {name: round(seconds, 2) for name, seconds in sorted(used.items(), key=lambda kv: -kv[1])[:3]
                  if seconds >= 0.05}
        return {**{k: round(v, 3) for k, v in parties.items()}, "idle": round(max(0.0, total - busy), 3),
                "capacity": round(total, 3), "top_others": others}


def _command(pid: int) -> str:
    """A short name for a process: its command line's first words."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return " ".join(w.decode(errors="replace").rsplit("/", 1)[-1] for w in words[:4] if w)[:60]


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tree_seconds(members: list[Process]) -> float:
    return sum(p.own + p.reaped for p in members)


def _worker_seconds(before: list[Process], after: list[Process], master: int | None) -> dict[str, float]:
    """Each worker's CPU seconds in the window; the master and workers that came and went (recycled after
    max_requests) are summed as `master+recycled`."""
    start = {p.pid: p.own for p in before}
    spread = {str(p.pid): round(p.own - start.get(p.pid, 0.0), 3) for p in after if p.pid != master}
    spread["master+recycled"] = round(max(0.0, _tree_seconds(after) - _tree_seconds(before) - sum(spread.values())),
                                      3)
    return spread
