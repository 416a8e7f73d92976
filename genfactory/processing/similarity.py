"""Perceptual hashes, to catch near-identical images before they reach a stock agency."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import numpy as np
from PIL import Image

from genfactory.processing.colour import rgb_or_rgba
from genfactory.processing.transform import flatten

_HASH_SIZE = 8
_SAMPLE = 32
_MASK64 = (1 << 64) - 1


@cache
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: coefficients = D @ x @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix: np.ndarray = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0, :] = np.sqrt(1.0 / n)
    return matrix


def perceptual_hash(image: Image.Image) -> int:
    """64-bit DCT pHash as an unsigned integer in [0, 2**64): ``format(h, "016x")`` stores it.

    The image is shrunk to 32×32 grey (alpha flattened onto white), transformed with a 2-D
    DCT; each of the 8×8 lowest frequencies gives one bit: above the median or not. Small
    noise, shifts, brightness changes and re-encoding move only a few bits.
    """
    image = rgb_or_rgba(image)
    small = image.resize((_SAMPLE, _SAMPLE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    grey = np.asarray(flatten(small, "white").convert("L"), dtype=np.float64)
    dct = _dct_matrix(_SAMPLE)
    low = (dct @ grey @ dct.T)[:_HASH_SIZE, :_HASH_SIZE].ravel()
    bits = low > np.median(low)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hash_distance(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes (signed or unsigned), 0–64."""
    return ((a ^ b) & _MASK64).bit_count()


def find_near_duplicate(h: int, earlier: Iterable[tuple[int, int]], threshold: int) -> int | None:
    """The id of the first earlier ``(image_id, phash)`` within ``threshold`` bits of ``h``.

    ``threshold`` 0 turns the check off (None); the comparison is inclusive.
    """
    if threshold <= 0:
        return None
    for image_id, other in earlier:
        if hash_distance(h, other) <= threshold:
            return image_id
    return None
