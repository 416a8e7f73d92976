"""The metadata step: title, description, keywords stored on the row and embedded in the
staged file (approval is the next step: `tasks.approval`)."""

from __future__ import annotations

import logging
from typing import Any

from genfactory import pricing, stock
from genfactory.engine import pool
from genfactory.engine.runtime import JobRuntime
from genfactory.engine.steps import log_step, timed
from genfactory.providers.base import ImageInput, MetadataRequest
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord
from genfactory.tasks import image_files
from genfactory.tasks.process import staged_path


def describe(runtime: JobRuntime, image: ImageRecord) -> ImageRecord:
    """Generate (if `run_metadata_gen`, once: an image that has metadata is never asked
    again) and embed the metadata into the staged file of a `processed` image."""
    settings = runtime.settings
    staged = staged_path(runtime, image)
    metadata = image.image_metadata
    with timed() as t:
        if settings.metadata.run_metadata_gen and metadata is None:
            request = MetadataRequest(
                image=ImageInput(data=staged.read_bytes(), media_type=image.media_type or ""),
                prompt=image.generation_prompt,
                keyword=image.keyword or "",
            )
            with runtime.guard():
                runtime.check_budget(pricing.call_of(settings, "metadata"))
                metadata = runtime.providers.metadata.describe(request).as_dict()
        if metadata:
            metadata = _stock_ready(metadata, image)
            if metadata != image.image_metadata:
                image = repository.update_image(image.id, image_metadata=metadata)
        if metadata and settings.metadata.embed:
            pool.run_in_pool(
                image_files.embed_file_metadata,
                str(staged),
                str(metadata["title"]),
                str(metadata["description"]),
                list(metadata["keywords"]),
            )
    if metadata:
        log_step(
            f"metadata: {metadata.get('title', '')}",
            step="metadata",
            slot=image.slot,
            image_index=image.image_index,
            duration_ms=t["ms"],
            level=10,
        )
    return image


def _stock_ready(metadata: dict[str, Any], image: ImageRecord) -> dict[str, Any]:
    """The same stock-site rules for every provider (genfactory.stock): what a limit forced
    is logged, never silent."""
    normalized, changes = stock.normalize_metadata(
        str(metadata.get("title", "")),
        str(metadata.get("description", "")),
        list(metadata.get("keywords", [])),
    )
    if changes:
        log_step(
            "stock rules: " + "; ".join(changes),
            step="metadata",
            slot=image.slot,
            image_index=image.image_index,
            level=logging.DEBUG,
        )
    return {**metadata, **normalized.as_dict()}
