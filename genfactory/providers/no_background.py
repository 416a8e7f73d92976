"""`providers.background = "none"`: no background removal, stated once, here.

The background provider like any other: with `processing.remove_bg` on, the process step hands
it the prepared image and gets it back unchanged (the written file is the same as without the
step), with a note saying removal is off. No caller checks for "none".
"""

from __future__ import annotations

from genfactory.processing.decode import as_png
from genfactory.providers.base import BackgroundResult, ImageInput
from genfactory.providers.registry import ProviderContext

NOTE = "background removal is off (providers.background = none); image kept"


class KeepBackground:
    """`BackgroundRemover` that returns the image unchanged, as PNG, with a note."""

    name = "none"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def remove_background(self, image: ImageInput) -> BackgroundResult:
        return BackgroundResult(data=as_png(image.data), credits_charged=None, note=NOTE)

    def close(self) -> None:
        """Nothing to release."""
