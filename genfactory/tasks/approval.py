"""The approval step: the staged file gets its name in the output directory and the image is
approved, unless a near-duplicate was approved meanwhile; and, at a job's end, the removal of
what its interrupted attempts left (`housekeeping.job_leftovers`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from genfactory.engine.runtime import JobRuntime
from genfactory.engine.steps import log_step
from genfactory.files import STAGED_DIR, link_no_clobber, remove_quietly, replace_with_link
from genfactory.housekeeping import job_leftovers
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord
from genfactory.tasks.process import duplicate_scope, judge, output_stem, staged_path


def approve(
    runtime: JobRuntime,
    image: ImageRecord,
    *,
    expected: ImageStatus = ImageStatus.PROCESSED,
    rejected: ImageStatus = ImageStatus.QC_FAILED,
    check_duplicates: bool = True,
    **fields: Any,
) -> ImageRecord:
    """`processed` → `approved` with its file in the output directory, or `qc_failed` when a
    near-duplicate was approved meanwhile (the check and the approval are one serialised
    transaction in the store, across processes). A retry approves from `processing` and is
    rejected as `retry_failed`; a manual approval skips the near-duplicate check."""
    staged = staged_path(runtime, image)
    if image.final_image_path:
        # An earlier attempt chose (and recorded) this name, then stopped: the file is ours.
        final = replace_with_link(staged, Path(image.final_image_path))
    else:
        final = link_no_clobber(
            staged,
            Path(str(runtime.settings.job.output_dir)),
            output_stem(runtime, image),
            staged.suffix.lstrip("."),
            reserve=lambda name: repository.update_image(image.id, final_image_path=str(name)),
        )
    approved, duplicate_of = repository.approve_image(
        image.id,
        judge(runtime, image) if check_duplicates else None,
        duplicate_scope(runtime),
        expected=expected,
        rejected=rejected,
        final_image_path=str(final),
        temp_image_path=None,
        **fields,
    )
    fields = {"slot": image.slot, "image_index": image.image_index}
    if duplicate_of is not None:
        remove_quietly(final)  # the original stays in temp, listed, for a retry by hand
        remove_quietly(staged)
        repository.update_image(image.id, final_image_path=None)
        log_step(f"rejected: near-duplicate of {duplicate_of}", step="approve", **fields)
        return approved
    remove_quietly(staged)
    remove_quietly(image.temp_image_path)
    title = (approved.image_metadata or {}).get("title")
    log_step(f"approved {final.name}" + (f": {title}" if title else ""), step="approve", **fields)
    return approved


def remove_leftovers(runtime: JobRuntime) -> None:
    """Remove what interrupted attempts of this execution left behind once nothing of it runs
    any more (`housekeeping.job_leftovers`; a write begun since this run started is spared, it
    may be a retry's), then the staging directory once it is empty."""
    for path in job_leftovers(runtime.execution_id, written_before=runtime.started):
        with contextlib.suppress(OSError):  # one that cannot go does not keep the others
            remove_quietly(path)
    with contextlib.suppress(OSError):
        (Path(str(runtime.settings.job.temp_dir)) / STAGED_DIR).rmdir()
