"""Prefect flows: orchestration only (no files, HTTP or SQL here).

Imported lazily: a job's command should not pay for the export flow's pandas and openpyxl.
"""

from __future__ import annotations

import importlib
from typing import Any

_FLOWS = {
    "generate_job": "genfactory.flows.generate_job",
    "resume_job": "genfactory.flows.generate_job",
    "export_job": "genfactory.flows.export_job",
}

__all__ = sorted(_FLOWS)


def __getattr__(name: str) -> Any:
    if name in _FLOWS:
        return getattr(importlib.import_module(_FLOWS[name]), name)
    raise AttributeError(f"module 'genfactory.flows' has no attribute {name!r}")
