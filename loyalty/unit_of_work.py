"""One unit of work: the only place a transaction is committed.

Services add and flush; they never commit. Whoever answers for a whole piece of work opens one unit of work
around it and the unit of work ends the transaction once, all or nothing: a request (`@write`, the console's
forms, the Stripe webhook view, the few views and sign-ins that write without `@write`), a command of the CLI,
or one batch of a job (`run_batches`). A block that ends normally commits; one that raises rolls back and
re-raises; `discard()` rolls back a block that ended normally, for an answer that is not a success.

A write that must stay even if what follows fails (an API key's last use, noted before the request's own work
begins) is a unit of work of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Final

from loyalty.batches import KeepGoing, always
from loyalty.extensions import db


class UnitOfWork:
    """The unit of work in hand, as `with unit_of_work() as work` names it."""

    def __init__(self) -> None:
        self.discarded = False

    def discard(self) -> None:
        """Roll back at the end of the block instead of committing: the work changed nothing after all."""
        self.discarded = True


@contextmanager
def unit_of_work() -> Iterator[UnitOfWork]:
    """Commit what the block did when it ends normally; roll it back when it raises, or was discarded."""
    work = UnitOfWork()
    try:
        yield work
    except BaseException:
        db.session.rollback()
        raise
    if work.discarded:
        db.session.rollback()
    else:
        db.session.commit()


# What a batch job yields when a transaction ends inside a batch rather than with it.
SAME_BATCH: Final = None
Counts = dict[str, int]
Batches = Iterator[Counts | None]
"""A job done in batches, as a generator: each step between two yields is one transaction, run by `run_batches`
in a unit of work of its own. A step that ends a batch yields what the batch did (counts to add up); one that ends
a transaction inside a batch (a lease committed before the network is waited on, say) yields `SAME_BATCH`."""


def run_batches(batches: Batches, counts: Counts, keep_going: KeepGoing = always) -> Counts:
    """Run `batches` to the end, each step in a unit of work of its own, asking `keep_going()` before each batch;
    answers `counts` plus what every batch did. A step that raises rolls back its own transaction only: the batches
    done stay done, and the job resumes from them when run again."""
    totals = dict(counts)
    with closing(batches):
        while keep_going():
            done: Counts | None = SAME_BATCH
            while done is SAME_BATCH:
                with unit_of_work():
                    done = next(batches, _FINISHED)
            if done is _FINISHED:
                break
            for name, count in done.items():
                totals[name] = totals.get(name, 0) + count
    return totals


_FINISHED: Final[Counts] = {}
