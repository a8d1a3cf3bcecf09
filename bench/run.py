"""`make bench`: the app's checkout and member operations over HTTP under gunicorn's production
configuration on the machine's PostgreSQL, each next to its ceiling, with who used the CPU.

    make bench    (or: python -m bench.run [--members 100000] [--seconds 15] [--clients 16] [--workers N])

1. A scratch database `loyalty_bench`, migrated and seeded (bench.program).
2. `gunicorn -c gunicorn.conf.py wsgi:app`, driven by wrk + bench/wrk/*.lua at --clients connections, each
   operation alone for --seconds: GET /healthz, the member summary, a checkout quote, a hold then its
   capture, signed Stripe payment_intent.succeeded events (earn), charge.refunded events each refunding
   another 20% of an order just paid (refund); then all of them mixed. The async Python client's cost
   per request is set against wrk's on GET /healthz.
3. Ceilings: bench/raw_app.py under the same gunicorn configuration (raw summary, raw hold), pgbench's
   TPC-B-like run and bench/pgbench/hold.sql.
4. The database must then hold exactly what wrk counted and `ledger verify` must pass: otherwise exit 1.
   Timings are reported (PASS/MISS against the targets), never asserted.

Results: bench/results/<UTC timestamp>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from sqlalchemy import create_engine, text

from bench import ceilings, report, tally, webhook_bodies
from bench.load import Result, drive
from bench.program import Program, prepare, reset_raw_tables
from bench.server import Server, serving

MIX = "summary:40,quote:25,redeem:15,earn:12,refund:8"  # weights of the operations a mix thread picks from
WARM_UP_SECONDS = 2.0
LOADGEN_SECONDS = 5.0
BUSY_WARNING = 0.25  # cores busy before the bench starts


def lua_env(program: Program) -> dict[str, str]:
    return {"BENCH_MEMBERS": str(program.members), "BENCH_API_KEY": program.api_key, "BENCH_COUPON": program.coupon}


def show(result: Result) -> Result:
    """One line a phase as it ends, so a long run shows progress."""
    ops = ", ".join(f"{op} {s.rate:,.0f}/s p50 {s.p50_ms:.1f} p99 {s.p99_ms:.1f} ms err {s.errors}"
                    for op, s in result.ops.items())
    c = result.cpu
    print(f"  {result.label}: {ops}; CPU s wrk {c['client']:.1f} gunicorn {c['server']:.1f} "
          f"postgres {c['postgres']:.1f} kernel {c['kernel']:.1f} idle {c['idle']:.1f}"
          + (f"; someone else {c['foreign']:.1f}: {c['top_others']}" if c["top_others"] else "")
          + (f"; threads out of bodies: {result.exhausted}" if result.exhausted else ""), flush=True)
    return result


def warm_up(label: str, server: Server, program: Program, clients: int, ops: str = "summary,quote,redeem") -> Result:
    """A short unreported run first, at least two connections a worker, so that no worker serves its first
    requests (empty caches, no database connection yet: tens of ms more) inside a measured phase."""
    return drive(label, server.port, ops, clients=max(clients, 2 * len(server.workers())), seconds=WARM_UP_SECONDS,
                 server=server, database=program.database, env=lua_env(program))


def paid(url: str, payments: list[webhook_bodies.Payment]) -> list[webhook_bodies.Payment]:
    """The payments the app recorded as orders, in the order they were made."""
    engine = create_engine(url)
    with engine.connect() as connection:
        recorded = set(connection.execute(text("SELECT payment_intent_id FROM orders "
                                               "WHERE payment_intent_id IS NOT NULL")).scalars())
    engine.dispose()
    return [p for p in payments if p.intent in recorded]


def app_phases(program: Program, server: Server, clients: int, seconds: float) -> list[Result]:
    """Each operation alone, then the mix; webhook bodies are signed right before their phase."""
    env = lua_env(program)
    results = [show(drive(label, server.port, label, clients=clients, seconds=seconds, server=server,
                          database=program.database, env=env)) for label in ("summary", "quote", "redeem")]
    made = webhook_bodies.new_payments("earn", clients, webhook_bodies.per_thread(seconds), program.members)
    pattern = webhook_bodies.write("earn", "earn", made)
    results.append(show(drive("earn", server.port, "earn", clients=clients, seconds=seconds, server=server,
                              database=program.database, env={**env, "BENCH_EARN_BODIES": pattern})))
    orders = paid(program.url, [p for thread in made for p in thread])
    cut = len(orders) * 3 // 4  # the rest is refunded in the mix
    refunds = webhook_bodies.deal(orders[:cut], clients, webhook_bodies.per_thread(seconds))
    pattern = webhook_bodies.write("refund", "refund", refunds)
    results.append(show(drive("refund", server.port, "refund", clients=clients, seconds=seconds, server=server,
                              database=program.database, env={**env, "BENCH_REFUND_BODIES": pattern})))
    results.append(show(mix(program, server, clients, seconds, orders[cut:])))
    return results


def mix_share(op: str) -> float:
    weights = dict(entry.split(":") for entry in MIX.split(","))
    return int(weights[op]) / sum(int(w) for w in weights.values())


def mix(program: Program, server: Server, clients: int, seconds: float,
        orders: list[webhook_bodies.Payment]) -> Result:
    """Every operation at once, each thread picking the next by MIX's weights; the refunds are of `orders`."""
    earn = webhook_bodies.new_payments("mix", clients, webhook_bodies.per_thread(seconds, mix_share("earn")),
                                       program.members)
    refund = webhook_bodies.deal(orders, clients, webhook_bodies.per_thread(seconds, mix_share("refund")))
    env = {**lua_env(program), "BENCH_EARN_BODIES": webhook_bodies.write("earn", "mix", earn),
           "BENCH_REFUND_BODIES": webhook_bodies.write("refund", "mix", refund)}
    return drive("mix", server.port, MIX, clients=clients, seconds=seconds, server=server, database=program.database,
                 env=env)


def raw_phases(program: Program, clients: int, seconds: float, workers: int | None) -> list[Result]:
    reset_raw_tables(program.url)
    with serving("bench.raw_app:app", program.url, workers=workers, ready_path="/healthz") as server:
        warm_up("raw-warmup", server, program, clients, "raw_summary,raw_hold")
        return [show(drive(label, server.port, label, clients=clients, seconds=seconds, server=server,
                           database=program.database, env=lua_env(program))) for label in ("raw_summary", "raw_hold")]


def pgbench_phases(program: Program, clients: int, seconds: float) -> list[dict]:
    reset_raw_tables(program.url)  # hold.sql starts from the balances the raw hold started from
    results = [ceilings.pgbench_hold(program.url, program.members, clients, seconds),
               ceilings.pgbench_tpcb(clients, seconds)]
    for r in results:
        print(f"  {r['label']}: {r.get('tps', 0):,.0f} tps, latency average {r.get('latency_avg_ms', 0):.1f} ms, "
              f"failed {r.get('failed', 0):.0f}", flush=True)
    return results


def ok_counts(results: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        for op, s in result.ops.items():
            counts[op] = counts.get(op, 0) + s.ok
    return counts


def measure(args: argparse.Namespace, program: Program) -> dict:
    with serving("wsgi:app", program.url, workers=args.workers) as server:
        workers = len(server.workers())
        print(f"gunicorn wsgi:app: {workers} workers (log: {server.log.relative_to(report.ROOT)}); "
              f"{args.clients} connections, {args.seconds:g} s a phase", flush=True)
        env = lua_env(program)
        warmed = warm_up("warmup", server, program, args.clients)
        healthz = show(drive("healthz", server.port, "healthz", clients=args.clients, seconds=args.seconds,
                             server=server, database=program.database, env=env))
        loadgen = ceilings.async_client(server, program.database, args.clients, min(LOADGEN_SECONDS, args.seconds))
        print(f"  async Python client on /healthz: {loadgen['requests_per_s']:,.0f}/s, "
              f"{loadgen['cpu_us_per_request']:,.0f} us CPU a request", flush=True)
        app = app_phases(program, server, args.clients, args.seconds)
    raw = raw_phases(program, args.clients, args.seconds, args.workers)
    pgbench = pgbench_phases(program, args.clients, args.seconds)
    checks = tally.check(program.url, ok_counts([warmed, *app]))
    phases = {r.label: r for r in [healthz, *app, *raw]}
    return {"args": vars(args), "machine": report.machine(program.url, workers), "program": asdict(program),
            "phases": [r.as_dict() for r in phases.values()], "loadgen": loadgen, "pgbench": pgbench,
            "ratios": report.ratios(phases), "p99_targets": report.p99_targets(phases),
            "checks": [c.as_dict() for c in checks]}


def load_arguments(doc: str, *, seconds: float = 15.0, members: bool = True) -> argparse.ArgumentParser:
    """The options every wrk-driven benchmark takes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if members:
        parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="default: gunicorn.conf.py's")
    return parser


def main() -> None:
    parser = load_arguments(__doc__)
    args = parser.parse_args()
    if args.seconds > 240:
        parser.error("--seconds above 240 would outlive the webhook signatures (300 s tolerance)")

    busy = report.busy_cores()
    if busy > BUSY_WARNING:
        print(f"WARNING: the machine is already using {busy:g} of its cores: the figures will be understated.")
    program = prepare(args.members)
    print(f"seeded {args.members:,} members in {program.seed_seconds:.1f} s "
          f"(database {program.database_bytes / 2**20:,.0f} MiB)", flush=True)
    run = {"busy_before": busy, **measure(args, program)}
    path = report.save({**run, "program": {**run["program"], "api_key": "(not saved)"}})
    print("\n" + report.markdown(run) + f"\n\nSaved {path.relative_to(report.ROOT)}")
    if not all(c["ok"] for c in run["checks"]):
        print("CORRECTNESS FAILURE: the database does not hold what was counted, or the ledger does not verify.")
        sys.exit(1)


if __name__ == "__main__":
    main()
