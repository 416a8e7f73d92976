"""Time the offline providers on one core: render, QC, background removal, metadata.

    .venv/bin/python benchmarks/offline_providers.py [--repeat 5]

Prints the median milliseconds per call at 1024² and 2048². Budget on one quiet core: a
1024² render under 150 ms, background removal of a 2048² image well under a second. The QC
is timed whole and in parts: the pixel checks alone, the OCR (RapidOCR, lettering) and the
explicit-content detector (NudeNet), each with its model already loaded; the one-off model
load per worker process is printed first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from genfactory.config import Settings
from genfactory.prompting import size_for
from genfactory.providers import local_detect
from genfactory.providers.base import GenerationRequest, ImageInput, MetadataRequest, QCRequest
from genfactory.providers.local_background import LocalBackgroundRemover
from genfactory.providers.local_image import LocalRenderer
from genfactory.providers.local_metadata import LocalMetadata
from genfactory.providers.local_qc import LocalQC
from genfactory.providers.registry import ProviderContext


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ctx = ProviderContext(
        settings=Settings.model_validate({"generation": {"local_defect_rate": 0}})
    )
    renderer, qc = LocalRenderer(ctx), LocalQC(ctx)
    pixels_only = LocalQC(
        ProviderContext(
            settings=Settings.model_validate({"qc": {"text_check": False, "nsfw_check": False}})
        )
    )
    for name, load in (("OCR", local_detect._ocr), ("explicit-content", local_detect._nudenet)):
        started = time.perf_counter()
        load()
        print(
            f"{name} model load (once per process): {(time.perf_counter() - started) * 1000:.0f} ms"
        )
    remover, describer = LocalBackgroundRemover(ctx), LocalMetadata(ctx)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"{'size':>6} {'render':>9} {'qc':>9} {'bg removal':>11} {'metadata':>9} "
        f"{'qc pixels':>10} {'ocr':>7} {'nsfw':>7}  (median ms)"
    )
    prompt = "isolated ripe lemon on a white background"
    for side in (1024, 2048):
        width, height = size_for("1:1", side)

        def render(prompt: str = prompt, width: int = width, height: int = height) -> bytes:
            request = GenerationRequest(prompt, "1:1", width, height, seed=4)
            return renderer.generate(request).images[0].data

        data = render()
        image = ImageInput(data, "image/png")
        timings = [
            median_ms(render, args.repeat),
            median_ms(lambda image=image: qc.check(QCRequest(image, prompt, "1:1")), args.repeat),
            median_ms(lambda image=image: remover.remove_background(image), args.repeat),
            median_ms(
                lambda image=image: describer.describe(MetadataRequest(image, prompt, "lemon")),
                args.repeat,
            ),
            median_ms(
                lambda image=image: pixels_only.check(QCRequest(image, prompt, "1:1")), args.repeat
            ),
            median_ms(lambda data=data: local_detect.read_text(data), args.repeat),
            median_ms(lambda data=data: local_detect.detect_explicit_parts(data), args.repeat),
        ]
        print(
            f"{side:>5}² "
            + " ".join(f"{t:>9.0f}" for t in timings[:2])
            + f" {timings[2]:>11.0f} {timings[3]:>9.0f} {timings[4]:>10.0f}"
            + f" {timings[5]:>7.0f} {timings[6]:>7.0f}"
        )


if __name__ == "__main__":
    main()
