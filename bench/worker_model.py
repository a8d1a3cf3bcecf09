"""`make bench-workers`: gunicorn's sync workers against gthread workers (`--threads 4`), the same number
of worker processes, each under wrk's keep-alive connections, on the member summary and on hold + capture:
throughput, p50, p99, and how the work spread over the worker processes (each one's CPU seconds from
/proc, as shares of the workers' total). Then sync workers at other counts (`--counts`), to choose how many.

    make bench-workers    (or: python -m bench.worker_model [--members 100000] [--seconds 15] [--clients 16]
                           [--workers N] [--counts 2,3,9])

Sync workers close the connection after every answer (wrk reconnects, and any worker may take the next
one); gthread workers keep it, so a connection stays with the process that accepted it.
"""

from __future__ import annotations

import argparse
import sys

from bench import report, tally
from bench.load import Result, drive
from bench.program import Program, prepare
from bench.run import load_arguments, lua_env, ok_counts, show, warm_up
from bench.server import serving

MODELS = {"sync": (), "gthread": ("--worker-class", "gthread", "--threads", "4")}
PHASES = ("summary", "redeem")


def measure(program: Program, model: str, args: argparse.Namespace) -> tuple[int, list[Result]]:
    """(worker processes, each phase's result) for one worker model: "sync", "gthread", or "syncN" for N sync
    workers."""
    count = int(model.removeprefix("sync")) if model.startswith("sync") and model != "sync" else args.workers
    with serving("wsgi:app", program.url, workers=count, extra=MODELS.get(model, ())) as server:
        workers = len(server.workers())
        print(f"{model}: {workers} workers", flush=True)
        results = [warm_up(f"{model}-warmup", server, program, args.clients)]
        results += [show(drive(f"{model}-{phase}", server.port, phase, clients=args.clients, seconds=args.seconds,
                              server=server, database=program.database, env=lua_env(program), per_worker=True))
                   for phase in PHASES]
    return workers, results


def spread(workers: dict[str, float]) -> str:
    """Each worker's share of the workers' CPU seconds, largest first; then the master and recycled ones."""
    own = sorted((v for k, v in workers.items() if k.isdigit()), reverse=True)
    total = sum(own) or 1.0
    return " / ".join(f"{v / total:.0%}" for v in own) + f" (master+recycled {workers['master+recycled']:.1f} s)"


def markdown(results: dict[str, list[Result]], args: argparse.Namespace, workers: int) -> str:
    lines = [f"{workers} worker processes, {args.clients} keep-alive connections, {args.seconds:g} s a phase, "
             f"{args.members:,} members.", "",
             "| workers | phase | operation | ok/s | p50 ms | p99 ms | errors | CPU share of each worker "
             "| someone else's CPU s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for model, phases in results.items():
        for result in phases:
            for op, s in result.ops.items():
                lines.append(f"| {model} | {report.NAMES[result.label.split('-', 1)[1]]} | {report.NAMES[op]} "
                             f"| {s.rate:,.0f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.errors} "
                             f"| {spread(result.workers or {})} | {result.cpu['foreign']:.1f} of "
                             f"{result.cpu['capacity']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = load_arguments(__doc__)
    parser.add_argument("--counts", default="2,3,9", help="other numbers of sync workers to measure")
    args = parser.parse_args()

    program = prepare(args.members)
    print(f"seeded {args.members:,} members in {program.seed_seconds:.1f} s", flush=True)
    models = [*MODELS, *(f"sync{n}" for n in args.counts.split(",") if n)]
    measured = {model: measure(program, model, args) for model in models}
    checks = tally.check(program.url, ok_counts([r for _, phases in measured.values() for r in phases]))
    results = {model: phases[1:] for model, (_, phases) in measured.items()}  # the warm-ups are not reported
    workers = measured["sync"][0]
    path = report.save({"args": vars(args), "machine": report.machine(program.url, workers),
                        "results": {m: [r.as_dict() for r in phases] for m, phases in results.items()},
                        "checks": [c.as_dict() for c in checks]}, prefix="workers-")
    print("\n" + markdown(results, args, workers) + "\n\nChecks after the run: " +
          "; ".join(f"{c.name} {c.database} (counted {c.counted})" for c in checks) +
          f".\nSaved {path.relative_to(report.ROOT)}")
    if not all(c.ok for c in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
