"""Media types from the bytes themselves: URLs, extensions and Content-Type lie
(docs/SPEC.md §11)."""

from __future__ import annotations

#: File extension per media type, for files genfactory writes.
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/tiff": "tif",
    "image/bmp": "bmp",
}


def sniff_media_type(data: bytes) -> str | None:
    """The image type from its magic bytes; URLs, extensions and Content-Type lie
    (docs/SPEC.md §11)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[:2] == b"BM":
        return "image/bmp"
    return None


def extension_for(media_type: str | None) -> str:
    """The file extension for a sniffed media type ("bin" when unknown)."""
    return EXTENSIONS.get(media_type or "", "bin")
