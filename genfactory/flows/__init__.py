"""Prefect flows: orchestration only (no files, HTTP or SQL here)."""

from genfactory.flows.export_job import export_job
from genfactory.flows.generate_job import generate_job, resume_job

__all__ = ["export_job", "generate_job", "resume_job"]
