"""`export_job`: write an export of one or more jobs and link it from an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow

from genfactory.exports import ExportFormat
from genfactory.tasks.export import export_files, publish_export


@flow(
    name="export-job",
    flow_run_name="export/{fmt}",
    persist_result=False,
)
def export_job(
    execution_ids: list[int], fmt: ExportFormat = ExportFormat.XLSX, out: str | None = None
) -> dict[str, Any]:
    """Export jobs as xlsx, adobe-csv, freepik-csv, zip or html; returns where it went."""
    result = export_files(execution_ids, str(fmt), out)
    publish_export(execution_ids, result)
    return result
