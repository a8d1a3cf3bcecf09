"""`flask --app wsgi loyalty jobs ...`."""

from __future__ import annotations

import time
from collections.abc import Callable

import click
from flask.cli import AppGroup

from loyalty import writes
from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.tiers import service as tiers

jobs_cli = AppGroup("jobs", help="Scheduled jobs.")

JOBS: dict[str, Callable[..., dict[str, int]]] = {
    "release-expired-holds": lambda batch_size: checkout.release_expired(now(), batch_size=batch_size),
    "evaluate-tiers": lambda batch_size: tiers.evaluate_all(now(), batch_size=batch_size),
    "purge-idempotency-keys": lambda batch_size: writes.purge_expired(now(), batch_size=batch_size),
}


@jobs_cli.command("run")
@click.argument("job", type=click.Choice(sorted(JOBS)))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
def run_job(job: str, batch_size: int) -> None:
    """Run one job once, in batches, each batch its own transaction."""
    started = time.perf_counter()
    counts = JOBS[job](batch_size)
    summary = ", ".join(f"{name}={count}" for name, count in counts.items()) or "nothing to do"
    click.echo(f"{job}: {summary} in {time.perf_counter() - started:.2f} s")
