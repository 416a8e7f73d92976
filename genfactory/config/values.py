"""Setting value types and their parsers: aspect ratios, image sizes, LoRAs, comma lists."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator


def _split_list(value: Any) -> Any:
    """Env vars and --set give lists as 'a,b,c'."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_RATIO = re.compile(r"^(\d+):(\d+)$")


def parse_aspect_ratio(value: str) -> tuple[int, int]:
    """'16:9' -> (16, 9); anything else is a ConfigError-worthy ValueError."""
    match = _RATIO.match(value.strip())
    if not match:
        raise ValueError(f"aspect ratio {value!r} must look like W:H, e.g. 16:9")
    w, h = int(match.group(1)), int(match.group(2))
    if w == 0 or h == 0:
        raise ValueError(f"aspect ratio {value!r} has a zero side; both sides must be >= 1")
    if max(w / h, h / w) > 8:
        raise ValueError(f"aspect ratio {value!r} is more extreme than 8:1")
    return w, h


def fit_size(
    aspect_ratio: str, long_side: int, *, multiple: int, low: int = 128, high: int = 2048
) -> tuple[int, int]:
    """(width, height) with the ratio's shape, the given long side, sides multiples of `multiple`
    within [low, high]."""

    def snap(value: float) -> int:
        lowest = -(-low // multiple) * multiple
        highest = high // multiple * multiple
        return min(highest, max(lowest, int(value / multiple + 0.5) * multiple))

    rw, rh = parse_aspect_ratio(aspect_ratio)
    long_px = snap(long_side)
    if rw >= rh:
        return long_px, snap(long_px * rh / rw)
    return snap(long_px * rw / rh), long_px


def _check_ratio(value: str) -> str:
    parse_aspect_ratio(value)
    return value.strip()


_SIZE = re.compile(r"^(\d+)[xX×](\d+)$")


def parse_image_size(value: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768); each side 128–2048 and a multiple of 8."""
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"image size {value!r} must look like WxH, e.g. 1024x1024")
    w, h = int(match.group(1)), int(match.group(2))
    for side in (w, h):
        if not 128 <= side <= 2048 or side % 8:
            raise ValueError(
                f"image size {value!r}: each side must be 128-2048 and a multiple of 8"
            )
    return w, h


def _check_size(value: str) -> str:
    w, h = parse_image_size(value)
    return f"{w}x{h}"


def parse_lora(value: str) -> tuple[str, float]:
    """'runware:123@1:0.8' -> ('runware:123@1', 0.8); weight 0–10."""
    model, sep, weight = value.strip().rpartition(":")
    if not sep or not model:
        raise ValueError(f"LoRA {value!r} must look like model:weight, e.g. civitai:123@4:0.8")
    try:
        w = float(weight)
    except ValueError:
        raise ValueError(f"LoRA {value!r}: weight {weight!r} is not a number") from None
    if not 0 <= w <= 10:
        raise ValueError(f"LoRA {value!r}: weight must be between 0 and 10")
    return model, w


def _check_lora(value: str) -> str:
    parse_lora(value)
    return value.strip()


AspectRatio = Annotated[str, AfterValidator(_check_ratio)]
ImageSize = Annotated[str, AfterValidator(_check_size)]
Lora = Annotated[str, AfterValidator(_check_lora)]
StrList = BeforeValidator(_split_list)
