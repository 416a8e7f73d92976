"""What the CLI prints besides its tables: records as JSON (`--json`, times in ISO 8601) and
the estimated cost lines of a job."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """Records, dicts, lists, times and paths as JSON-ready values."""
    if callable(getattr(value, "as_dict", None)):  # a store record (genfactory.storage.models)
        return plain(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout (secrets never reach here: records hold none)."""
    from genfactory.logs import redact_value

    sys.stdout.write(json.dumps(redact_value(plain(value)), indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def cost_rows(snapshot: dict[str, Any], usage: dict[str, Any]) -> list[tuple[str, Any]]:
    """`jobs show` and the run summary: the estimated cost per service, from the usage and the
    job's own prices."""
    from genfactory import pricing
    from genfactory.config import Settings

    try:
        settings = Settings.model_validate(snapshot)
    except ValueError:  # a snapshot from an older version: today's default prices
        settings = Settings()
    return [
        (f"cost {service}", f"{cost} (estimated)")
        for service, _calls, cost in pricing.cost_rows(settings, usage)
    ]
