"""File helpers at the edge: safe names, atomic writes, media types from the bytes."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

_MAGIC: list[tuple[bytes, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
]


def safe_name(text: str, fallback: str = "job") -> str:
    """A file-name-safe version of a label: letters, digits, '.', '_', '-' only."""
    cleaned = _UNSAFE.sub("_", text).strip("._-")[:80]
    return cleaned or fallback


def sniff_media_type(data: bytes) -> tuple[str, str]:
    """(media type, extension) from the first bytes; never from a URL or a file name."""
    for magic, media_type, ext in _MAGIC:
        if data.startswith(magic):
            return media_type, ext
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return "application/octet-stream", "bin"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_quietly(path: str | Path | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
