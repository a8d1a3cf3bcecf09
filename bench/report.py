"""Figures into words: the ceiling ratios and targets, a Markdown table for BENCHMARKS.md, the JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import cpu
from bench.load import Result, wrk_path
from bench.server import ROOT

RESULTS = ROOT / "bench" / "results"
NAMES = {"healthz": "GET /healthz", "summary": "member summary", "quote": "checkout quote",
         "redeem": "hold + capture", "hold": "hold", "capture": "capture", "earn": "Stripe payment (earn)",
         "refund": "Stripe refund (20% part)", "mix": "mix", "raw_summary": "raw summary (ceiling)",
         "raw_hold": "raw hold (ceiling)"}
# (what, its phase and operations whose rates add up, the ceiling's phase and operation, target share)
RATIOS = [("summary / raw summary", "summary", ("summary",), "raw_summary", 0.70),
          ("quote / raw summary", "quote", ("quote",), "raw_summary", None),
          ("hold+capture / raw hold", "redeem", ("hold", "capture"), "raw_hold", 0.60),
          ("earn / raw hold", "earn", ("earn",), "raw_hold", None),
          ("refund / raw hold", "refund", ("refund",), "raw_hold", None)]
P99_TARGET_MS, P99_CLIENTS = 40.0, 16
FOREIGN_WARNING = 0.1  # share of a phase's CPU capacity used by others that is worth a warning
P99_OPS = ("summary", "quote", "hold", "capture", "earn", "refund")


def busy_cores(seconds: float = 2.0) -> float:
    """How many cores' worth of CPU the machine is using right now, before any load of ours."""
    busy0, _ = cpu.machine()
    time.sleep(seconds)
    return round((cpu.machine()[0] - busy0) / seconds, 2)


def machine(url: str, workers: int) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    engine = create_engine(url)
    with engine.connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    wrk = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True).stdout.split()  # noqa: S603
    return {"cores": os.cpu_count(), "cpu": model, "postgres": postgres, "gunicorn": metadata.version("gunicorn"),
            "workers": workers, "wrk": wrk[1] if len(wrk) > 1 else "?"}


def _rate(phases: dict[str, Result], phase: str, ops: tuple[str, ...]) -> float | None:
    result = phases.get(phase)
    if result is None or any(op not in result.ops for op in ops):
        return None
    return sum(result.ops[op].rate for op in ops)


def ratios(phases: dict[str, Result]) -> list[dict]:
    rows = []
    for what, phase, ops, ceiling, target in RATIOS:
        rate, limit = _rate(phases, phase, ops), _rate(phases, ceiling, (ceiling,))
        share = rate / limit if rate is not None and limit else None
        verdict = None if target is None or share is None else ("PASS" if share >= target else "MISS")
        rows.append({"what": what, "rate": rate, "ceiling": limit, "share": share, "target": target,
                     "verdict": verdict})
    return rows


def p99_targets(phases: dict[str, Result]) -> list[dict]:
    """Each operation alone, in its own phase (the hold and capture in the hold+capture phase)."""
    rows = []
    for op in P99_OPS:
        result = phases.get("redeem" if op in ("hold", "capture") else op)
        if result is not None and op in result.ops:
            p99 = result.ops[op].p99_ms
            rows.append({"op": op, "p99_ms": p99, "clients": result.clients,
                         "verdict": "PASS" if p99 < P99_TARGET_MS else "MISS"})
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(run: dict) -> str:
    m, a = run["machine"], run["args"]
    lines = [f"Machine: {m['cores']} cores ({m['cpu']}), PostgreSQL {m['postgres']}, gunicorn {m['gunicorn']} "
             f"with {m['workers']} sync workers (gunicorn.conf.py), wrk {m['wrk']}; {a['members']:,} members "
             f"(10 earns each), {a['clients']} keep-alive connections, {a['seconds']:g} s per phase; the machine was "
             f"using {run['busy_before']:g} cores before the bench started.", "",
             "| phase | operation | requests | ok/s | p50 ms | p99 ms | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for phase in run["phases"]:
        for op, s in phase["ops"].items():
            lines.append(f"| {NAMES.get(phase['label'], phase['label'])} | {NAMES.get(op, op)} | {s['requests']:,} "
                         f"| {s['rate']:,.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['errors']} |")
    lines += ["", f"CPU seconds per phase (capacity = {m['cores']} cores x wall time; load generator = wrk, or "
              "pgbench in its rows; harness = bench.run itself; someone else = other databases' backends and other "
              "user processes; kernel = kernel threads, interrupts, unattributed):", "",
              "| phase | capacity | load generator | gunicorn | postgres | harness | someone else | kernel | idle "
              "| load generator us/request |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for phase in [*run["phases"], *run["pgbench"]]:
        c = phase["cpu"]
        lines.append(f"| {NAMES.get(phase['label'], phase['label'])} | {c['capacity']:.1f} | {c['client']:.1f} "
                     f"| {c['server']:.1f} | {c['postgres']:.1f} | {c['harness']:.1f} | {c['foreign']:.1f} "
                     f"| {c['kernel']:.1f} | {c['idle']:.1f} | {_num(phase['client']['cpu_us_per_request'])} |")
    return "\n".join([*lines, "", *_ceiling_lines(run)])


def _ceiling_lines(run: dict) -> list[str]:
    lines = ["| app / ceiling | app ok/s | ceiling ok/s | share | target | |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in run["ratios"]:
        lines.append(f"| {r['what']} | {_num(r['rate'])} | {_num(r['ceiling'])} | {_pct(r['share'])} "
                     f"| {_pct(r['target']) if r['target'] else '-'} | {r['verdict'] or ''} |")
    for r in run["p99_targets"]:
        lines.append(f"| p99 of {r['op']} at {r['clients']} clients | {r['p99_ms']:.1f} ms | | | "
                     f"< {P99_TARGET_MS:.0f} ms{'' if r['clients'] == P99_CLIENTS else ' (set at 16)'} "
                     f"| {r['verdict']} |")
    healthz = next((p for p in run["phases"] if p["label"] == "healthz"), None)
    lines += ["", "Outer ceilings: " + "; ".join(
        ([f"GET /healthz of the real app {healthz['ops']['healthz']['rate']:,.0f}/s"] if healthz else []) +
        [f"{p['label']} {p.get('tps', 0):,.0f} tps (latency average {p.get('latency_avg_ms', 0):.1f} ms)"
         for p in run["pgbench"]]) + "."]
    if (loadgen := run.get("loadgen")) and healthz:
        wrk_us, async_us = healthz["client"]["cpu_us_per_request"], loadgen["cpu_us_per_request"]
        verdict = "wrk is the lighter and is the one used" if wrk_us <= async_us else \
            "the async client was lighter this time: look at the load generator before trusting the figures"
        lines.append(f"Load generator on GET /healthz: wrk {wrk_us:,.0f} us CPU a request "
                     f"({healthz['ops']['healthz']['rate']:,.0f}/s); async Python client {async_us:,.0f} us a request "
                     f"({loadgen['requests_per_s']:,.0f}/s, {loadgen['seconds']:g} s): {verdict}.")
    busy = [f"{NAMES.get(p['label'], p['label'])} ({', '.join(f'{k}: {v:.1f} s' for k, v in others.items())})"
            for p in [*run["phases"], *run["pgbench"]] if (others := p["cpu"].get("top_others"))
            and p["cpu"]["foreign"] > FOREIGN_WARNING * p["cpu"]["capacity"]]
    if busy:
        lines.append("Someone else's work shared the machine during: " + "; ".join(busy) +
                     ". Those phases' figures are understated.")
    lines.append("Checks after the run: " + "; ".join(
        f"{c['name']} {c['database']} (counted {c['counted']}){'' if c['ok'] else ' MISMATCH'}"
        for c in run["checks"]) + ".")
    return lines


def save(run: dict, prefix: str = "") -> Path:
    """bench/results/<prefix><UTC timestamp>.json (gitignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(run, indent=2, default=str) + "\n")
    return path
