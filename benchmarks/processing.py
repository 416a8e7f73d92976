"""Processing throughput: one process (inline) against the process pool.

    .venv/bin/python benchmarks/processing.py [--n 48]

Writes N synthetic images (1024x1024 and 1344x768, half opaque RGB, half RGBA cut-outs) to a
temporary directory, then runs the standard pipeline on every file in two modes: inline, one
image after another, and through `run_in_pool` from as many threads as the pool has workers (what
the Prefect task runner does). RGB images: sharpen 5 + saturation 1.4 -> JPEG q90; RGBA
images: trim -> PNG. The pool is warmed before timing; only paths and settings travel to the
workers. Modes alternate for --repeat rounds and the best run of each is reported. Prints
numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genfactory.config import ProcessingSection
from genfactory.engine import pool
from genfactory.tasks import image_files

SIZES = [(1024, 1024), (1344, 768)]
RGB_SETTINGS = ProcessingSection(
    image_enhancement=True, sharpening=5, saturation=1.4, convert_format="jpg", jpg_quality=90
).model_dump(mode="json")
RGBA_SETTINGS = ProcessingSection(
    trim_transparent_background=True, convert_format="png"
).model_dump(mode="json")

Job = tuple[str, str, dict[str, Any]]


def synthetic(width: int, height: int, seed: int, cutout: bool) -> Image.Image:
    """Gradients, soft shapes and grain: compresses and filters like a generated image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack(
        [
            60 + 150 * x / width,
            80 + 100 * np.sin(y / height * 4 + seed),
            120 + 90 * np.cos((x + y) / (width + height) * 6),
        ],
        axis=-1,
    )
    for _ in range(8):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(40, 240)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        arr[mask] = 0.4 * arr[mask] + 0.6 * rng.uniform(0, 255, 3)
    arr += rng.normal(0, 4, arr.shape).astype(np.float32)
    rgb = np.clip(arr, 0, 255).astype(np.uint8)
    if not cutout:
        return Image.fromarray(rgb, "RGB")
    # A subject on a transparent background, as background removal leaves it.
    alpha = (((x - width / 2) / (width * 0.35)) ** 2 + ((y - height / 2) / (height * 0.4)) ** 2) < 1
    rgba = np.dstack([rgb, (alpha * 255).astype(np.uint8)])
    return Image.fromarray(rgba, "RGBA")


def make_inputs(directory: Path, n: int) -> list[Job]:
    """N PNG files: four base pictures, each file shifted differently so no two are equal."""
    bases = {
        (size, cutout): np.asarray(synthetic(*size, seed=len(size) + cutout, cutout=cutout))
        for size in SIZES
        for cutout in (False, True)
    }
    jobs: list[Job] = []
    for i in range(n):
        size, cutout = SIZES[i % 2], (i // 2) % 2 == 1
        pixels = np.roll(bases[(size, cutout)], (7 * i, 13 * i), axis=(0, 1))
        path = directory / f"input_{i:03d}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        jobs.append((str(path), f"bench_{i:03d}", RGBA_SETTINGS if cutout else RGB_SETTINGS))
    return jobs


def run_inline(jobs: list[Job], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds): on an idle machine the two are nearly equal."""
    start, cpu = time.perf_counter(), time.process_time()
    for src, stem, settings in jobs:
        image_files.finish_to_file(src, str(out), stem, settings)
    return time.perf_counter() - start, time.process_time() - cpu


def run_pooled(jobs: list[Job], out: Path, threads: int) -> float:
    def one(job: Job) -> dict[str, Any]:
        src, stem, settings = job
        return pool.run_in_pool(image_files.finish_to_file, src, str(out), stem, settings)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as executor:
        list(executor.map(one, jobs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="images to process (default 48)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each mode, best kept (default 3)"
    )
    args = parser.parse_args()
    os.environ[pool.POOL_ENV] = "1"

    with tempfile.TemporaryDirectory(prefix="genfactory-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        jobs = make_inputs(root, args.n)
        print(f"{args.n} inputs written in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        workers = pool.warm_pool()
        print(f"pool of {workers} workers started in {time.perf_counter() - t0:.2f} s (not timed)")
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        inline_runs: list[tuple[float, float]] = []
        pooled_runs: list[float] = []
        # Interleaved, best of each: other load on the machine hits both modes alike.
        for run in range(args.repeat):
            inline_runs.append(run_inline(jobs, root / f"inline{run}"))
            pooled_runs.append(run_pooled(jobs, root / f"pool{run}", threads=workers * 2))
        pool.shutdown_pool()

        inline, inline_cpu = min(inline_runs)
        pooled = min(pooled_runs)
        single_rate, pool_rate = args.n / inline, args.n / pooled
        print(f"cpus: {os.cpu_count()}, workers: {workers}, load average before: {load_before:.2f}")
        share = inline_cpu / inline
        if share < 0.9:
            # Other processes took CPU from this one: the ratio below understates the pool.
            print(f"note: the single-process run got {share:.0%} of a core; the machine is busy")
        print(f"single process: {inline:6.2f} s  {single_rate:6.2f} images/s")
        print(f"process pool:   {pooled:6.2f} s  {pool_rate:6.2f} images/s")
        print(f"speed-up:       {pool_rate / single_rate:.2f}x")


if __name__ == "__main__":
    main()
