"""`flask --app wsgi loyalty jobs run <job>` and `flask --app wsgi loyalty worker`."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup, with_appcontext

from loyalty.clock import now
from loyalty.jobs.service import JOBS, JOBS_BY_NAME
from loyalty.jobs.worker import Worker

jobs_cli = AppGroup("jobs", help="Scheduled jobs.")
BATCH_SIZE = click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))


@jobs_cli.command("run")
@click.argument("job", type=click.Choice([job.name for job in JOBS]))
@BATCH_SIZE
def run_job(job: str, batch_size: int) -> None:
    """Run one job once, now, whatever its schedule: in batches, each batch its own transaction."""
    started = time.perf_counter()
    counts = JOBS_BY_NAME[job].run(now(), batch_size=batch_size)
    summary = ", ".join(f"{name}={count}" for name, count in counts.items()) or "nothing to do"
    click.echo(f"{job}: {summary} in {time.perf_counter() - started:.2f} s")


@click.command("worker")
@BATCH_SIZE
@click.option("--tick", default=1.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds between looks at what is due.")
@click.option("--once", is_flag=True, help="Run what is due now, then stop.")
@with_appcontext  # a plain command, unlike those of an AppGroup: `app.cli` (and its test runner) pushes no context
def worker(batch_size: int, tick: float, once: bool) -> None:
    """Run the scheduled jobs and deliver webhooks until SIGTERM; several workers may run at once."""
    running = Worker(batch_size=batch_size, tick=tick)
    if once:
        for name, counts in running.run_due().items():
            click.echo(f"{name}: " + (", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing to do"))
    else:
        running.run_forever()
