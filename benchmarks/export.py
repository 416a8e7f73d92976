"""Exports of a big job: time and peak memory of the workbook, the Adobe CSV and the image ZIP.

    .venv/bin/python benchmarks/export.py [--n 10000] [--side 768]

Builds a finished job of N approved images in a temporary store (JPEG files of `side` px made
from 16 synthetic pictures, realistic titles and 40 keywords each), then runs each export in
its own process so every peak is that export's own: wall time, peak resident memory (ru_maxrss)
and the Python heap peak (tracemalloc). With --n-small (default N/5) the same runs on a smaller
job, to show which peaks grow with the job and which stay flat. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FORMATS = ("xlsx", "adobe-csv", "zip")


def _pictures(side: int, count: int = 16) -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(count):
        base = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 6, (side, side, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def build(root: Path, n: int, side: int) -> int:
    """A finished job of `n` approved images in the store under `root`."""
    from genfactory.config import load_settings
    from genfactory.statuses import ImageStatus
    from genfactory.storage import repository

    out = root / "out"
    out.mkdir(parents=True)
    settings = load_settings(overrides={"job.label": "benchmark"}, environ={})
    execution = repository.create_execution(
        label="benchmark",
        settings_snapshot=settings.model_dump(mode="json"),
        output_dir=str(out),
        temp_dir=str(root / "tmp"),
    )
    pictures = _pictures(side)
    keywords = [f"keyword {k}" for k in range(40)]
    per_slot = 100
    for slot in range(0, n, per_slot):
        rows = []
        for index in range(min(per_slot, n - slot)):
            number = slot + index
            path = out / f"benchmark_{slot // per_slot}_{index}.jpg"
            path.write_bytes(pictures[number % len(pictures)])
            rows.append(
                {
                    "image_index": index,
                    "generation_prompt": f"a quiet alpine lake at dawn, mist, photo {number}",
                    "temp_image_path": str(path),
                }
            )
        ids = repository.add_images(execution.id, slot // per_slot, rows)
        for image_id, row in zip(ids, rows, strict=True):
            repository.update_image(
                image_id,
                status=ImageStatus.APPROVED,
                final_image_path=row["temp_image_path"],
                temp_image_path=None,
                image_metadata={
                    "title": "Quiet alpine lake at dawn with mist over the water and pine trees",
                    "description": "A calm mountain lake at sunrise, mist drifting over it.",
                    "keywords": keywords,
                },
            )
    repository.finish_execution(execution.id)
    return execution.id


def run_one(fmt: str, execution_id: int, out: Path) -> dict[str, float]:
    """One export in this process: seconds, peak RSS and Python heap peak in MB."""
    from genfactory.exports import run_export

    tracemalloc.start()
    start = time.perf_counter()
    result = run_export([execution_id], fmt, out)
    seconds = time.perf_counter() - start
    _current, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(
        f.stat().st_size for p in result.files for f in ([p] if p.is_file() else p.rglob("*"))
    )
    return {
        "seconds": seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "heap_mb": heap_peak / 2**20,
        "output_mb": size / 2**20,
    }


def measure(root: Path, n: int, side: int) -> dict[str, dict[str, float]]:
    env = {
        **os.environ,
        "GENFACTORY_DATA_DIR": str(root / "data"),
        "GENFACTORY_DATABASE_URL": f"sqlite:///{root / 'store.sqlite3'}",
    }
    os.environ.update(env)
    start = time.perf_counter()
    execution_id = build(root, n, side)
    print(f"built a job of {n} images ({side}px) in {time.perf_counter() - start:.1f} s")
    results = {}
    for fmt in FORMATS:
        suffix = {"xlsx": ".xlsx", "zip": ".zip"}.get(fmt, "")
        target = root / f"export-{fmt}{suffix}"
        done = subprocess.run(
            [sys.executable, __file__, "--run", fmt, str(execution_id), str(target)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[fmt] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-small", type=int, default=0)
    parser.add_argument("--side", type=int, default=768)
    parser.add_argument("--run", nargs=3, metavar=("FORMAT", "JOB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        fmt, job, out = args.run
        print(json.dumps(run_one(fmt, int(job), Path(out))))
        return
    sizes = [args.n_small or max(1, args.n // 5), args.n]
    table = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="genfactory-export-bench-") as scratch:
            table[n] = measure(Path(scratch), n, args.side)
    print(
        f"\n{'format':<10} {'images':>7} {'seconds':>8} {'peak RSS MB':>12} "
        f"{'heap MB':>8} {'output MB':>10}"
    )
    for n, results in table.items():
        for fmt, r in results.items():
            print(
                f"{fmt:<10} {n:>7} {r['seconds']:>8.1f} {r['rss_mb']:>12.0f} "
                f"{r['heap_mb']:>8.1f} {r['output_mb']:>10.0f}"
            )


if __name__ == "__main__":
    main()
