"""The offline quality check: decodable, big enough, the asked aspect ratio, not blank, sharp,
no visible lettering, no explicit content.

Lettering and explicit content are found by the ONNX models that ship in the
`rapidocr-onnxruntime` and `nudenet` wheels (`local_detect`), run through `ctx.run_heavy` (the
process pool in a job). It cannot judge logos, faces or anatomy - that takes a vision model.
The pixel measurements run on a grayscale copy at most `ANALYSIS_SIDE` px long:

* *spread*: the luminance standard deviation; below `qc.blank_stddev` the image is blank or
  washed out.
* *sharpness*: the mean absolute Laplacian over the strongest 1 % of edge pixels. Averaging
  only the strongest edges keeps a sharp subject on a plain background sharp (a whole-image
  mean would call it blurred because most of it is flat), while a defocused frame has no
  strong edge anywhere. Below `qc.blur_threshold` the image is blurred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from genfactory.config import QualitySection, Settings, parse_aspect_ratio
from genfactory.errors import BadRequest
from genfactory.processing.decode import load_reduced
from genfactory.prompting import load_qc_prompt
from genfactory.providers import local_detect
from genfactory.providers.base import QCRequest, QCVerdict
from genfactory.providers.registry import ProviderContext

#: Long side of the copy the measurements run on: fast, and independent of the output size.
ANALYSIS_SIDE = 512
#: Share of pixels (the strongest edges) whose Laplacian is averaged for the sharpness.
EDGE_SHARE = 0.01


@dataclass(frozen=True)
class ImageStats:
    """What the local QC measures on an image."""

    width: int
    height: int
    #: Luminance standard deviation (0-255 scale).
    stddev: float
    #: Mean |Laplacian| of the strongest `EDGE_SHARE` of pixels (0-255 scale).
    sharpness: float


class LocalQC:
    """Offline `QCProvider`: technical checks that need no model."""

    name = "local"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def check(self, request: QCRequest) -> QCVerdict:
        """Pass, or fail with one sentence that names the measured and the allowed value."""
        qc = self.ctx.settings.qc
        # Bytes that do not decode raise UnreadableImage from processing, as everywhere.
        image, (width, height) = decode(
            request.image.data, self.ctx.settings.processing.max_image_pixels
        )
        if width < qc.min_width or height < qc.min_height:
            return QCVerdict(
                False,
                f"image is too small ({width}x{height}; at least "
                f"{qc.min_width}x{qc.min_height} required)",
            )
        if request.aspect_ratio:
            try:
                rw, rh = parse_aspect_ratio(request.aspect_ratio)
            except ValueError as exc:
                raise BadRequest(f"cannot check the aspect ratio: {exc}", service="local") from None
            expected, actual = rw / rh, width / height
            deviation = abs(actual / expected - 1)
            if deviation > qc.aspect_tolerance:
                return QCVerdict(
                    False,
                    f"aspect ratio {actual:.3f} ({width}x{height}) does not match the requested "
                    f"{request.aspect_ratio} ({expected:.3f}); off by {deviation:.1%}, "
                    f"tolerance {qc.aspect_tolerance:.1%}",
                )
        stats = measure(image)
        if stats.stddev < qc.blank_stddev:
            return QCVerdict(
                False,
                f"image is blank or nearly uniform (std-dev {stats.stddev:.1f} < "
                f"{qc.blank_stddev:g})",
            )
        if stats.sharpness < qc.blur_threshold:
            return QCVerdict(
                False,
                f"image is blurred (edge sharpness {stats.sharpness:.1f} < {qc.blur_threshold:g})",
            )
        passed = (
            f"technical checks passed (std-dev {stats.stddev:.1f}, "
            f"edge sharpness {stats.sharpness:.1f})"
        )
        if not (qc.text_check or qc.nsfw_check):
            return QCVerdict(True, passed)
        found = self.ctx.run_heavy(
            local_detect.inspect, request.image.data, qc.text_check, qc.nsfw_check
        )
        return judge(found, qc, passed)


def judge(found: dict[str, list[Any]], qc: QualitySection, passed: str) -> QCVerdict:
    """The verdict on the detectors' findings (`local_detect.inspect`'s answer)."""
    hit = local_detect.explicit(found["nsfw"], qc.nsfw_threshold)
    if hit is not None:
        return QCVerdict(
            False,
            f"explicit content: {hit.label.lower().replace('_', ' ')} (score {hit.score:.2f} "
            f">= {qc.nsfw_threshold:g})",
        )
    lines = local_detect.visible_text(
        found["text"], min_height=qc.text_min_height, min_confidence=qc.text_min_confidence
    )
    if not lines:
        return QCVerdict(True, passed)
    read = ", ".join(repr(line.text) for line in lines[:5])
    if qc.text_mode == "report":
        return QCVerdict(True, f"{passed}; visible text (reported): {read}")
    return QCVerdict(False, f"visible text: {read}")


def start_warnings(settings: Settings) -> list[str]:
    """What a job should be told before it starts about its QC settings; a `qc.prompt_file`
    that cannot be read is an InputFileError here, before anything is created."""
    qc = settings.qc
    if qc.prompt_file is not None:
        load_qc_prompt(qc.prompt_file)
    if settings.providers.qc != "local" or not qc.run_quality_check:
        return []
    ignored = [
        name
        for name, value in (("qc.rules", qc.rules), ("qc.prompt_file", qc.prompt_file))
        if value
    ]
    return [
        f"{name} is ignored: the local QC follows no written rules (it checks size, aspect "
        "ratio, blank, blur, lettering and explicit content); set providers.qc = openai "
        "(or an OpenAI-compatible vision server) to apply them"
        for name in ignored
    ]


def decode(data: bytes, max_pixels: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image and its full size, decoded by processing (UnreadableImage or
    ImageRejected); JPEGs at reduced scale (the checks never need more than `ANALYSIS_SIDE`)."""
    return load_reduced(data, side=ANALYSIS_SIDE, max_pixels=max_pixels)


def _gray(image: Image.Image) -> Image.Image:
    """Grayscale, with transparency flattened onto white (what a buyer would see)."""
    if image.mode in ("I", "I;16", "F") and not image.has_transparency_data:
        arr = np.asarray(image, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr / top * 255).astype(np.uint8), "L")
    return local_detect.on_white(image, "L")


def measure(image: Image.Image) -> ImageStats:
    """Spread and sharpness of an image, on a grayscale copy at most `ANALYSIS_SIDE` long."""
    width, height = image.size
    gray = _gray(image)
    if max(gray.size) > ANALYSIS_SIDE:
        gray.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BOX)
    arr = np.asarray(gray, dtype=np.float32)
    stddev = float(arr.std())
    if arr.shape[0] < 3 or arr.shape[1] < 3:
        return ImageStats(width, height, stddev, 0.0)
    lap = np.abs(
        4 * arr[1:-1, 1:-1] - arr[:-2, 1:-1] - arr[2:, 1:-1] - arr[1:-1, :-2] - arr[1:-1, 2:]
    ).ravel()
    top = max(1, int(lap.size * EDGE_SHARE))
    strongest = np.partition(lap, lap.size - top)[lap.size - top :]
    return ImageStats(width, height, stddev, float(strongest.mean()))
