"""Prefect flows: orchestration only (no files, HTTP or SQL here)."""

from genfactory.flows.generate_job import generate_job, resume_job

__all__ = ["generate_job", "resume_job"]
