"""HTTP servers on 127.0.0.1 standing in for the other side (a shop's webhook receiver, Stripe's API)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer(ThreadingHTTPServer):
    # The default backlog of 5 drops some of the connections a worker opens at once, and each costs a
    # one-second SYN retry.
    request_queue_size = 64
    daemon_threads = True
    receiver: Any = None  # what the handler records into, reached as self.server.receiver

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], receiver: Any = None) -> Iterator[LocalServer]:
    server = LocalServer(("127.0.0.1", 0), handler)
    server.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if receiver is not None and hasattr(receiver, "release"):
            receiver.release.set()  # let a handler told to hang go
        server.shutdown()
        server.server_close()
        thread.join()
