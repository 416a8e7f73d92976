"""The approval step: the staged file gets its name in the output directory and the image is
approved, unless a near-duplicate was approved meanwhile; and the clean-up of staged files an
interrupted approval left."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from genfactory.engine.runtime import JobRuntime
from genfactory.engine.steps import log_step
from genfactory.files import (
    STAGED_DIR,
    link_no_clobber,
    partial_writes,
    remove_quietly,
    replace_with_link,
)
from genfactory.media import EXTENSIONS
from genfactory.processing.metadata import embedding_leftovers
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


def clean_approved_leftovers(runtime: JobRuntime) -> None:
    """What interrupted attempts of this execution left behind, once nothing of it runs any
    more: staged files of approved images and their half-embedded copies, originals no image
    row points at any more (an approval whose clean-up the kill cut short), half-written files
    (originals, staged and delivered files) a killed process never renamed, and the staging
    directory once it is empty."""
    temp_dir = Path(str(runtime.settings.job.temp_dir))
    staging = temp_dir / STAGED_DIR
    owned = f"_e{runtime.execution_id}"  # in every temp name of this execution, and no other's
    kept: set[Path] = set()
    for image in repository.list_images(execution_id=runtime.execution_id):
        if image.status != ImageStatus.APPROVED:
            if image.temp_image_path:  # a retry starts from it
                kept.add(Path(image.temp_image_path))
            continue
        staged = staged_path(runtime, image)
        remove_quietly(staged)
        for leftover in embedding_leftovers(staged):  # a metadata write the kill cut short
            remove_quietly(leftover)
        if image.final_image_path:  # `replace_with_link` cut short: the name is this image's
            final = Path(image.final_image_path)
            for partial in partial_writes(final.parent, stem=final.name):
                remove_quietly(partial)
    with contextlib.suppress(OSError):
        for path in temp_dir.iterdir():
            if _original_of_this_job(path, owned) and path not in kept:
                remove_quietly(path)
    # Names with this execution's id are written by its own processes only, which are done.
    for directory in (temp_dir, staging):
        for partial in partial_writes(directory, owned):
            remove_quietly(partial)
    with contextlib.suppress(OSError):
        staging.rmdir()


#: The extensions `generate` gives the originals it saves to temp.
_ORIGINAL_EXTENSIONS = {f".{ext}" for ext in EXTENSIONS.values()} | {".bin"}


def _original_of_this_job(path: Path, owned: str) -> bool:
    return (
        not path.name.startswith(".")
        and path.suffix in _ORIGINAL_EXTENSIONS
        and path.stem.endswith(owned)
        and path.is_file()
    )
