"""The worker: runs each job when it is due, in `JOBS` order, until told to stop.

Several workers on several hosts may run at once. Each job is taken under a PostgreSQL advisory lock held
on a connection of its own, and only when its `job_schedule` row says it is due; the worker that ran it
moves the row ahead before letting go. So each scheduled run happens once, and a job never runs twice at
the same moment. SQLite has no such lock: run one worker there.

SIGTERM (or SIGINT) lets the job in hand finish its batch, then the worker stops: a batch is one
transaction, so nothing is half done, and what was not reached is still due for the next worker.
"""

from __future__ import annotations

import logging
import signal
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs.models import JobSchedule
from loyalty.jobs.service import JOBS, Job
from loyalty.unit_of_work import unit_of_work

log = logging.getLogger(__name__)


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """Whether this worker holds the job's lock, for the duration of the block."""
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    key = zlib.crc32(f"loyalty-job:{name}".encode())
    # A session-level lock outlives transactions: autocommit, so none is left open on this connection.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        try:
            yield bool(held)
        finally:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


class Worker:
    def __init__(self, *, batch_size: int = 1000, tick: float = 1.0) -> None:
        self.batch_size = batch_size
        self.tick = tick
        self.stopping = False

    def stop(self, *_: object) -> None:
        log.info("worker stopping after the batch in hand")
        self.stopping = True

    def keep_going(self) -> bool:
        return not self.stopping

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("worker started")
        while not self.stopping:
            self.run_due()
            slept = 0.0
            while slept < self.tick and not self.stopping:
                time.sleep(0.1)
                slept += 0.1
        log.info("worker stopped")

    def run_due(self) -> dict[str, dict[str, int]]:
        """Run every job that is due now, in order; answers what each did."""
        done = {}
        for job in JOBS:
            if self.stopping:
                break
            with exclusive(job.name) as mine:
                if mine and (result := self._run_if_due(job)) is not None:
                    done[job.name] = result
        return done

    def _run_if_due(self, job: Job) -> dict[str, int] | None:
        started = now()
        with unit_of_work() as work:
            schedule = db.session.get(JobSchedule, job.name, populate_existing=True)
            if schedule is None:
                schedule = JobSchedule(name=job.name, next_run_at=started)
                db.session.add(schedule)
            if schedule.next_run_at > started:
                work.discard()
                return None
            schedule.last_started_at = started
        try:
            # Each batch of the job is a unit of work of its own (`loyalty.unit_of_work.run_batches`).
            result = job.run(started, batch_size=self.batch_size, keep_going=self.keep_going)
        except Exception:
            db.session.rollback()
            log.exception("job %s failed; it runs again when next due", job.name)
            result = {"failed": 1}
        with unit_of_work():
            schedule = db.session.get(JobSchedule, job.name, populate_existing=True)
            # Stopped part way: still due, so the next worker finishes it.
            schedule.next_run_at = started if self.stopping else started + job.every
            schedule.last_finished_at = now()
            schedule.last_result = ", ".join(f"{k}={v}" for k, v in result.items())[:300]
        return result
