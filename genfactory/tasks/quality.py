"""The QC step, first after generation: nothing else is spent on a rejected image."""

from __future__ import annotations

import logging
from pathlib import Path

from genfactory import pricing
from genfactory.engine.runtime import JobRuntime
from genfactory.engine.steps import log_step, timed
from genfactory.providers.base import ImageInput, QCRequest
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.repository import ImageRecord


def check_quality(runtime: JobRuntime, image: ImageRecord) -> ImageRecord:
    """`generated` → `qc_passed`, or `qc_failed` with the reason (its file stays in temp).
    With QC off the image passes without a call."""
    settings = runtime.settings
    if not settings.qc.run_quality_check:
        return repository.transition_image(image.id, ImageStatus.GENERATED, ImageStatus.QC_PASSED)
    data = Path(str(image.temp_image_path)).read_bytes()
    request = QCRequest(
        image=ImageInput(data=data, media_type=image.media_type or "application/octet-stream"),
        prompt=image.generation_prompt,
        aspect_ratio=image.aspect_ratio,
    )
    provider = runtime.providers.qc
    combined = runtime.providers.qc_metadata if settings.metadata.combined_with_qc else None
    metadata = None
    with runtime.guard(), timed() as t:
        runtime.check_budget(pricing.call_of(settings, "qc"))
        if combined is not None:
            verdict, metadata = combined.check_and_describe(request, image.keyword or "")
        else:
            verdict = provider.check(request)
    fields = {"image_index": image.image_index, "slot": image.slot, "duration_ms": t["ms"]}
    if verdict.passed:
        log_step("passed", step="qc", level=logging.DEBUG, **fields)
        extra: dict[str, object] = {}
        if metadata is not None:
            extra["image_metadata"] = metadata.as_dict()
        if "visible text" in verdict.reason:  # qc.text_mode = report: the text read is kept
            extra["qc_reason"] = verdict.reason
        return repository.transition_image(
            image.id, ImageStatus.GENERATED, ImageStatus.QC_PASSED, **extra
        )
    log_step(f"rejected: {verdict.reason}", step="qc", **fields)
    return repository.transition_image(
        image.id, ImageStatus.GENERATED, ImageStatus.QC_FAILED, qc_reason=verdict.reason
    )
