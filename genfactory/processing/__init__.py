"""Image processing: pure Pillow/numpy functions composed by `process_image` (docs/SPEC.md §4).

Nothing here reads or writes files except `embed_metadata`; the file edge is
`genfactory.tasks.image_files`, the process pool `genfactory.engine.pool`.
"""

from genfactory.processing.decode import MIN_SIDE, open_image, sendable_as_is
from genfactory.processing.encode import EXTENSIONS, OutputFormat, encode, png_compress_level
from genfactory.processing.metadata import DIGITAL_SOURCE_TYPE, embed_metadata
from genfactory.processing.similarity import find_near_duplicate, hash_distance, perceptual_hash
from genfactory.processing.transform import (
    Background,
    Stage,
    enhance,
    flatten,
    process_image,
    trim_transparent,
    upscale,
)

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "EXTENSIONS",
    "MIN_SIDE",
    "Background",
    "OutputFormat",
    "Stage",
    "embed_metadata",
    "encode",
    "enhance",
    "find_near_duplicate",
    "flatten",
    "hash_distance",
    "open_image",
    "perceptual_hash",
    "png_compress_level",
    "process_image",
    "sendable_as_is",
    "trim_transparent",
    "upscale",
]
