"""Offline detectors whose models ship inside their PyPI wheels: nothing is downloaded.

* visible text: RapidOCR runs PaddleOCR's PP-OCRv4 detection and recognition ONNX models
  (files under `rapidocr_onnxruntime/models/` in its wheel);
* explicit content: NudeNet's 320n ONNX detector (`nudenet/320n.onnx` in its wheel).

Both are top-level functions of bytes and plain values, so the task layer can ship them to a
worker of the process pool; each process loads a model once (`functools.cache`) and keeps the
ONNX session for every later image. One ONNX thread per session: the pool already runs one
worker per core, and more threads would only fight over them.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: OCR runs on a copy at most this long: lettering a buyer would notice stays readable, and
#: the cost per image stays near a tenth of a second per megapixel.
OCR_LONG_SIDE = 960

#: NudeNet classes that make an image unsellable on stock sites (covered parts, faces, feet...
#: are ordinary content).
EXPLICIT_CLASSES = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


@dataclass(frozen=True)
class TextLine:
    """One line of text the OCR read: the text, its confidence and its height in px."""

    text: str
    confidence: float
    #: Height of the line's box as a share of the image height (0-1).
    height_share: float


@dataclass(frozen=True)
class Detection:
    """One NudeNet detection: the class name and its score (0-1)."""

    label: str
    score: float


class DetectorUnavailable(RuntimeError):
    """A detector's package or its native libraries cannot be loaded on this machine."""


def _unavailable(what: str, setting: str, exc: BaseException) -> DetectorUnavailable:
    return DetectorUnavailable(
        f"the offline {what} check cannot load ({type(exc).__name__}: {exc}); reinstall "
        f"genfactory's dependencies (pip install -e .) or set {setting} = false"
    )


@functools.cache
def _ocr() -> Any:
    try:
        from rapidocr_onnxruntime import RapidOCR  # imported late: 0.5 s, only where it runs
    except (ImportError, OSError) as exc:
        raise _unavailable("text", "qc.text_check", exc) from None

    return RapidOCR(
        det_limit_side_len=OCR_LONG_SIDE,
        det_limit_type="max",
        intra_op_num_threads=1,
        inter_op_num_threads=1,
    )


@functools.cache
def _nudenet() -> Any:
    try:
        import nudenet
        import onnxruntime
    except (ImportError, OSError) as exc:
        raise _unavailable("explicit-content", "qc.nsfw_check", exc) from None

    detector = nudenet.NudeDetector()
    # NudeDetector builds its session with every core; rebuild it with one thread.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    detector.onnx_session = onnxruntime.InferenceSession(
        str(Path(nudenet.__file__).with_name("320n.onnx")),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    return detector


def _rgb_array(data: bytes, long_side: int) -> tuple[np.ndarray, int]:
    """The image as an RGB array at most `long_side` long, and its full height in px."""
    with Image.open(io.BytesIO(data)) as image:
        height = image.height
        if image.format == "JPEG":
            image.draft("RGB", (long_side, long_side))
        rgb = on_white(image, "RGB")
    if max(rgb.size) > long_side:
        rgb.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return np.asarray(rgb), height


def on_white(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode` ("RGB", "L"), with transparency composed onto white (what a buyer
    sees)."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert(mode)
    return image.convert(mode)


def read_text(data: bytes) -> list[TextLine]:
    """Every line of text the OCR reads in the image, largest first."""
    arr, _height = _rgb_array(data, OCR_LONG_SIDE)
    # RapidOCR expects OpenCV's BGR order for arrays.
    result, _elapsed = _ocr()(np.ascontiguousarray(arr[:, :, ::-1]), use_cls=False)
    lines = []
    for box, text, score in result or []:
        ys = [point[1] for point in box]
        share = (max(ys) - min(ys)) / arr.shape[0]
        lines.append(TextLine(str(text).strip(), float(score), float(share)))
    return sorted(lines, key=lambda line: -line.height_share)


def visible_text(
    lines: list[TextLine], *, min_height: float, min_confidence: float, min_chars: int = 2
) -> list[TextLine]:
    """The lines that count as visible lettering: tall, confident and made of letters/digits."""
    return [
        line
        for line in lines
        if line.height_share >= min_height
        and line.confidence >= min_confidence
        and sum(ch.isalnum() for ch in line.text) >= min_chars
    ]


def detect_explicit_parts(data: bytes) -> list[Detection]:
    """NudeNet's detections for the image (every class, any score above its own 0.2 floor)."""
    arr, _height = _rgb_array(data, 1024)
    found = _nudenet().detect(np.ascontiguousarray(arr[:, :, ::-1]))
    return [Detection(str(d["class"]), float(d["score"])) for d in found]


def explicit(detections: list[Detection], threshold: float) -> Detection | None:
    """The most certain explicit detection at or above `threshold`, or None."""
    hits = [d for d in detections if d.label in EXPLICIT_CLASSES and d.score >= threshold]
    return max(hits, key=lambda d: d.score) if hits else None


def inspect(data: bytes, text: bool, nsfw: bool) -> dict[str, Any]:
    """Run the enabled detectors on one image; plain values only, so it pickles.

    Returns ``{"text": [TextLine...], "nsfw": [Detection...]}`` (lists empty when off).
    """
    return {
        "text": read_text(data) if text else [],
        "nsfw": detect_explicit_parts(data) if nsfw else [],
    }
