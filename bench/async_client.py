"""A tiny asyncio HTTP/1.1 load generator: keep-alive GETs of one path at a fixed concurrency, to measure
what a client costs in CPU per request next to wrk (bench.run runs both on GET /healthz). Standard library
only. A server that answers `Connection: close` (gunicorn's sync workers) is reconnected to, as wrk does.

    python -m bench.async_client --port 8000 [--path /healthz] [--clients 16] [--seconds 5]

Prints one JSON line: requests, errors, seconds, requests_per_s, p50_ms, p99_ms, cpu_s, cpu_us_per_request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.load import percentile


async def _client(port: int, path: str, deadline: float, latencies: list[float], errors: list[int]) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(request)
            status, headers = _head(await reader.readuntil(b"\r\n\r\n"))
            await reader.readexactly(int(headers.get("content-length", "0")))
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors.append(0)
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return int(lines[0].split(" ", 2)[1]), {k.strip().lower(): v.strip() for k, v in headers.items()}


async def run(port: int, path: str, clients: int, seconds: float) -> dict[str, float]:
    """Drive `clients` connections for `seconds`; answers the figures, the CPU this process used included."""
    latencies: list[float] = []
    errors: list[int] = []
    cpu, started = time.process_time(), time.monotonic()
    await asyncio.gather(*(_client(port, path, started + seconds, latencies, errors) for _ in range(clients)))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    return {"requests": len(latencies), "errors": len(errors), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "cpu_s": round(cpu, 3),
            "cpu_us_per_request": round(cpu / len(latencies) * 1e6, 1) if latencies else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.path, args.clients, args.seconds))))


if __name__ == "__main__":
    main()
