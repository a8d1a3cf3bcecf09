"""Client processes for the benchmarks: one per simulated client, so the GIL is not what is measured."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def run_clients(target: Callable[..., None], args: tuple[Any, ...], clients: int) -> list[Any]:
    """Run `target(*args, n, results)` in `clients` processes; answers what each put on `results`."""
    results = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=target, args=(*args, n, results)) for n in range(clients)]
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return outcomes
