"""Near-duplicate checks as a job makes them: N approvals in one job with the check on.

Each image is recorded, passes QC and processing, then gets the pre-check (`approved_hashes`,
as `tasks.process` reads it) and the serialised approval (`approve_image` with a judge), in a
fresh SQLite store. Prints the CPU per image of the two, and the wall time.

Usage:
    .venv/bin/python benchmarks/dedupe.py [--images 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="gf-dedupe-")) / "store.sqlite3"
    os.environ["GENFACTORY_DATABASE_URL"] = f"sqlite:///{store}"

    from genfactory.processing import find_near_duplicate
    from genfactory.storage import repository

    job = repository.create_execution(
        label="dedupe", settings_snapshot={}, output_dir="/o", temp_dir="/t"
    )
    rng = random.Random(1)

    def judge_for(phash: int) -> Callable[[list[tuple[int, str]]], int | None]:
        def judge(approved: list[tuple[int, str]]) -> int | None:
            return find_near_duplicate(phash, [(i, int(h, 16)) for i, h in approved], 4)

        return judge

    cpu = wall = 0.0
    for slot in range(args.images):
        phash = rng.getrandbits(64)
        image = repository.add_image(
            execution_id=job.id,
            slot=slot,
            image_index=0,
            generation_prompt="p",
            temp_image_path="/t/x.png",
            phash=format(phash, "016x"),
        )
        repository.transition_image(image.id, "generated", "qc_passed")
        repository.transition_image(image.id, "qc_passed", "processed")
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        earlier = [(i, h) for i, h in repository.approved_hashes(job.id) if i != image.id]
        judge_for(phash)(earlier)
        repository.approve_image(image.id, judge_for(phash), job.id)
        cpu += time.process_time() - cpu_start
        wall += time.perf_counter() - wall_start
    print(
        f"{args.images} approvals: {cpu / args.images * 1000:.2f} ms CPU per image "
        f"(pre-check + approval), {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
