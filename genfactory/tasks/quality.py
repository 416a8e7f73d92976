"""The QC step, first after generation: nothing else is spent on a rejected image."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from genfactory.providers.base import ImageInput, QCRequest
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.tasks.common import TASK_OPTIONS, log_step, scrub_errors, timed
from genfactory.tasks.runtime import get_runtime


@task(name="quality-check", **TASK_OPTIONS)
@scrub_errors
def quality_check(execution_id: int, image_id: int) -> bool:
    """True when the image may go on; a rejected image becomes `qc_failed` with the reason and
    its file stays in the temp directory."""
    runtime = get_runtime(execution_id)
    runtime.check()
    settings = runtime.settings
    if not settings.qc.run_quality_check:
        return True
    image = repository.get_image(image_id)
    data = Path(str(image.temp_image_path)).read_bytes()
    request = QCRequest(
        image=ImageInput(data=data, media_type=image.media_type or "application/octet-stream"),
        prompt=image.generation_prompt,
        aspect_ratio=image.aspect_ratio,
    )
    provider = runtime.provider("qc")
    with runtime.guard(), timed() as t:
        if settings.metadata.combined_with_qc and hasattr(provider, "check_and_describe"):
            verdict, metadata = provider.check_and_describe(request, image.keyword or "")
            if metadata is not None and verdict.passed:
                repository.update_image(image_id, image_metadata=metadata.as_dict())
        else:
            verdict = provider.check(request)
    if verdict.passed:
        if "visible text" in verdict.reason:  # qc.text_mode = report: the text read is kept
            repository.update_image(image_id, qc_reason=verdict.reason)
        log_step(
            "passed", step="qc", slot=image.slot, image_index=image.image_index, duration_ms=t["ms"]
        )
        return True
    repository.update_image(image_id, status=ImageStatus.QC_FAILED, qc_reason=verdict.reason)
    log_step(
        f"rejected: {verdict.reason}",
        step="qc",
        slot=image.slot,
        image_index=image.image_index,
        duration_ms=t["ms"],
    )
    return False
