"""The visual job report: one self-contained HTML contact sheet a person opens offline.

Thumbnails are embedded as data URLs (no file beside it to lose, no network); an image whose
file is gone shows a "file missing" tile, never a broken picture. Approved images come first;
QC-rejected and failed ones are shown apart, each with its reason.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from genfactory.exports.common import (
    ExportImage,
    job_images,
    safe,
    settings_items,
    thumbnail_jpeg,
    usage_rows,
)
from genfactory.statuses import ImageStatus
from genfactory.storage import repository

THUMBNAIL_PX = 200
#: The settings a reader of the report wants at a glance (all are in the workbook).
SUMMARY_SETTINGS = (
    "job.count",
    "job.variations",
    "job.keywords_file",
    "generation.aspect_ratios",
    "processing.convert_format",
    "processing.remove_bg",
    "metadata.run_metadata_gen",
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:220px;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:12px}
.card img,.missing{width:200px;height:200px;object-fit:contain;background:#f4f4f4;
display:flex;align-items:center;justify-content:center;color:#888}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;color:#fff;font-size:11px}
.approved{background:#2e7d32}.qc_failed{background:#ef6c00}.failed,.retry_failed{background:#c62828}
.other{background:#616161}.title{font-weight:600;margin:4px 0}.kw{color:#555}
.reason{color:#b71c1c}.card div{overflow-wrap:anywhere}
"""


def _e(value: object) -> str:
    return html.escape(str(safe(str(value))))


def thumbnail_data_url(path: str | None) -> str | None:
    data = thumbnail_jpeg(path, THUMBNAIL_PX, 75)
    return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _card(image: ExportImage) -> str:
    status = image.status
    badge = status if status in {s.value for s in ImageStatus} else "other"
    url = thumbnail_data_url(image.path)
    picture = (
        f'<img src="{url}" alt="{_e(image.file_name)}">'
        if url
        else '<div class="missing">file missing</div>'
    )
    parts = [
        picture,
        f'<div><span class="badge {badge}">{_e(status)}</span> {_e(image.file_name)}</div>',
    ]
    if image.title:
        parts.append(f'<div class="title">{_e(image.title)}</div>')
    if image.keywords:
        parts.append(f'<div class="kw">{_e(", ".join(image.keywords))}</div>')
    if image.reason:
        parts.append(f'<div class="reason">{_e(image.reason)}</div>')
    return '<div class="card">' + "".join(parts) + "</div>"


def _section(title: str, images: Sequence[ExportImage]) -> str:
    if not images:
        return ""
    cards = "\n".join(_card(image) for image in images)
    return f'<h2>{_e(title)} ({len(images)})</h2>\n<div class="grid">\n{cards}\n</div>'


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _table(rows: Sequence[Sequence[object]], header: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def render_report(execution_id: int) -> str:
    """The report of one job as an HTML document."""
    e = repository.get_execution(execution_id)
    images = job_images(execution_id)
    approved = [i for i in images if i.status == ImageStatus.APPROVED]
    rejected = [i for i in images if i.status == ImageStatus.QC_FAILED]
    failed = [i for i in images if i.status in (ImageStatus.FAILED, ImageStatus.RETRY_FAILED)]
    shown = {
        ImageStatus.APPROVED,
        ImageStatus.QC_FAILED,
        ImageStatus.FAILED,
        ImageStatus.RETRY_FAILED,
    }
    others = [i for i in images if i.status not in shown]
    counts = [
        ("Status", e.status),
        ("Images", len(images)),
        ("Approved", len(approved)),
        ("QC failed", len(rejected)),
        ("Failed", len(failed)),
    ]
    costs = [f"{service} {cost}" for service, _usage, cost in usage_rows(e.usage) if cost]
    if costs:
        counts.append(("Cost", ", ".join(costs)))
    if e.error_message:
        counts.append(("Error", e.error_message))
    providers = e.settings_snapshot.get("providers") or {}
    settings = [
        ("Providers", ", ".join(f"{k}={v}" for k, v in providers.items())),
        *(
            (readable, value)
            for dotted, readable, value in settings_items(e.settings_snapshot)
            if dotted in SUMMARY_SETTINGS
        ),
    ]
    body = "\n".join(
        [
            f"<h1>Job {e.id} — {_e(e.label)}</h1>",
            f"<p>Started {_when(e.started_at)} · finished {_when(e.completed_at)}</p>",
            _table(counts),
            "<h2>Usage and cost</h2>",
            _table(usage_rows(e.usage) or [("none", "", "")], ["Service", "Usage", "Cost"]),
            "<h2>Settings</h2>",
            _table(settings, ["Setting", "Value"]),
            _section("Approved", approved),
            _section("Rejected by quality check", rejected),
            _section("Failed", failed),
            _section("Not finished", others),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Job {e.id} — {_e(e.label)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(execution_id: int, path: Path) -> Path:
    path.write_text(render_report(execution_id), encoding="utf-8")
    return path
