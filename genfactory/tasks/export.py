"""The export step: write the files (genfactory.exports) and link them from a Prefect artifact."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from genfactory.engine.artifacts import artifact_key
from genfactory.engine.steps import TASK_OPTIONS, scrub_errors
from genfactory.exports import run_export
from genfactory.logs import redact
from genfactory.storage import repository


@task(name="export", **TASK_OPTIONS)
@scrub_errors
def export_files(execution_ids: list[int], fmt: str, out: str | None = None) -> dict[str, Any]:
    """Write the export; returns where it went and every change the stock limits forced."""
    return run_export(execution_ids, fmt, Path(out) if out else None).as_dict()


@task(name="export-artifact", **TASK_OPTIONS)
def publish_export(execution_ids: list[int], result: dict[str, Any]) -> None:
    """A markdown artifact per job linking the export (the HTML report: the `report` key)."""
    kind = "report" if result["format"] == "html" else f"export-{result['format']}"
    files = [Path(p) for p in result["files"]]
    links = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in files)
    changes = result["changes"]
    body = f"## Export ({result['format']})\n\n{links}\n"
    if changes:
        body += f"\n{result['changes_total']} change(s) the stock limits forced"
        body += f" (all in {result['report']}):\n\n" if result["report"] else ":\n\n"
        body += "\n".join(f"- {line}" for line in changes) + "\n"
    for execution_id in execution_ids:
        label = repository.get_execution(execution_id).label
        # The API may be gone (ephemeral server shutting down); the files are written.
        with contextlib.suppress(Exception):
            create_markdown_artifact(
                markdown=redact(body),
                key=artifact_key(label, execution_id, kind),
                description=f"Export of job {execution_id}: {result['path']}",
            )
