"""Work done in batches, each its own transaction, asks `keep_going()` before each batch: a worker told to
stop finishes the batch in hand and leaves the rest for the next run."""

from __future__ import annotations

from collections.abc import Callable

KeepGoing = Callable[[], bool]


def always() -> bool:
    return True
