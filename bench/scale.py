"""`make bench-scale`: does a member summary or a hold cost more when the history is longer? For each size a
fresh scratch database with that many members (10 earns each), gunicorn's production configuration, then
the member summary and hold + capture driven by one client serially (wrk -t1 -c1) and at --clients.

    make bench-scale    (or: python -m bench.scale [--sizes 10000,100000,1000000] [--seconds 10] [--clients 16])

1,000,000 members take a few minutes to seed. Prints per size: seed time, database size, ok/s, p50, p99.
"""

from __future__ import annotations

import argparse
import sys

from bench import report, tally
from bench.load import Result, drive
from bench.program import Program, prepare
from bench.run import load_arguments, lua_env, ok_counts, show, warm_up
from bench.server import serving

PHASES = ("summary", "redeem")


def measure(size: int, args: argparse.Namespace) -> tuple[Program, list[Result], list[tally.Check]]:
    program = prepare(size)
    print(f"{size:,} members: seeded in {program.seed_seconds:.1f} s, database "
          f"{program.database_bytes / 2**20:,.0f} MiB", flush=True)
    with serving("wsgi:app", program.url, workers=args.workers) as server:
        results = [warm_up(f"scale{size}-warmup", server, program, args.clients)]
        for clients in sorted({1, args.clients}):
            results += [show(drive(f"scale{size}-c{clients}-{phase}", server.port, phase, clients=clients,
                                   seconds=args.seconds, server=server, database=program.database,
                                   env=lua_env(program))) for phase in PHASES]
    return program, results[1:], tally.check(program.url, ok_counts(results))  # the warm-up is not reported


def markdown(rows: list[tuple[Program, list[Result], list[tally.Check]]]) -> str:
    lines = ["| members | seed s | database MiB | clients | operation | ok/s | p50 ms | p99 ms | errors "
             "| someone else's CPU s |",
             "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for program, results, _ in rows:
        for result in results:
            for op, s in result.ops.items():
                lines.append(f"| {program.members:,} | {program.seed_seconds:.0f} | "
                             f"{program.database_bytes / 2**20:,.0f} | {result.clients} | {report.NAMES[op]} "
                             f"| {s.rate:,.0f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.errors} "
                             f"| {result.cpu['foreign']:.1f} of {result.cpu['capacity']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = load_arguments(__doc__, seconds=10.0, members=False)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="member counts, comma separated")
    args = parser.parse_args()

    rows = [measure(int(size), args) for size in args.sizes.split(",")]
    checks = [c for _, _, size_checks in rows for c in size_checks]
    path = report.save({"args": vars(args), "sizes": [
        {"members": p.members, "seed_seconds": p.seed_seconds, "database_bytes": p.database_bytes,
         "results": [r.as_dict() for r in results], "checks": [c.as_dict() for c in size_checks]}
        for p, results, size_checks in rows]}, prefix="scale-")
    print("\n" + markdown(rows) + f"\n\nChecks after each size: {'all pass' if all(c.ok for c in checks) else ''}"
          + "; ".join(f"{c.name} {c.database} (counted {c.counted})" for c in checks if not c.ok)
          + f".\nSaved {path.relative_to(report.ROOT)}")
    if not all(c.ok for c in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
