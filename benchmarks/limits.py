"""Cost of one per-service concurrency slot: genfactory's PrefectLimiter (a Prefect global
concurrency limit) against the in-process LocalLimiter.

    export PREFECT_API_URL=http://127.0.0.1:4200/api     # the server to measure
    .venv/bin/python benchmarks/limits.py [--n 50] [--threads 4] [--cap 2]

Prints milliseconds per acquire+release, uncontended (one caller) and contended (`--threads`
callers sharing `--cap` slots, each holding its slot 50 ms, as an HTTP exchange would).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

HOLD_SECONDS = 0.05


def _uncontended(slot: Callable[[], AbstractContextManager[None]], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with slot():
            pass
        times.append(time.perf_counter() - start)
    return times


def _contended(
    slot: Callable[[], AbstractContextManager[None]], n: int, threads: int
) -> tuple[list[float], float]:
    """Per-call overhead beyond the time spent holding the slot, and the wall time."""
    overheads: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(n):
            start = time.perf_counter()
            with slot():
                acquired = time.perf_counter()
                time.sleep(HOLD_SECONDS)
            released = time.perf_counter()
            with lock:
                overheads.append((acquired - start) + (released - acquired - HOLD_SECONDS))

    begin = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return overheads, time.perf_counter() - begin


def _report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(
        f"{name:<34} median {statistics.median(times) * 1000:8.2f} ms   "
        f"p95 {p95 * 1000:8.2f} ms   n={len(times)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50, help="acquisitions per caller")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cap", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("set PREFECT_API_URL to the Prefect server to measure")

    from genfactory.engine.limits import PrefectLimiter
    from genfactory.providers.base import LocalLimiter

    service = "bench"
    print(f"server {os.environ['PREFECT_API_URL']}, load average {os.getloadavg()[0]:.2f}")
    for label, limiter in (
        ("LocalLimiter", LocalLimiter({service: args.cap})),
        ("PrefectLimiter", PrefectLimiter({service: args.cap})),
    ):

        def slot(limiter: object = limiter) -> AbstractContextManager[None]:
            return limiter(service)  # type: ignore[operator, no-any-return]

        with slot():  # warm-up: creates the global limit, opens the client
            pass
        _report(f"{label} uncontended", _uncontended(slot, args.n))
        overheads, wall = _contended(slot, args.n, args.threads)
        _report(f"{label} {args.threads} threads / cap {args.cap}", overheads)
        ideal = args.n * args.threads * HOLD_SECONDS / args.cap
        print(f"{'':<34} wall {wall:6.2f} s (ideal {ideal:.2f} s)")


if __name__ == "__main__":
    main()
