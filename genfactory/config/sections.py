"""The job's settings sections: job, prompts, generation, providers, processing, qc, metadata.

The options of each service (its base URL, models ...), the concurrency caps and the price list
are in `genfactory.config.service_sections`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from genfactory import services
from genfactory.config.values import AspectRatio, ImageSize, Lora, StrList


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ServiceChoice:
    """The type of `providers.<role>`: a name the service table (`genfactory.services`) has for
    the role. Read when a value is validated or a schema is made, so the choices (in messages,
    `genfactory settings`, the Prefect UI's parameter form) are always the table's."""

    def __init__(self, role: str) -> None:
        self.role = role

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, core_schema.str_schema())

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["enum"] = list(services.names_for(self.role))
        return json_schema

    def check(self, value: str) -> str:
        names = services.names_for(self.role)
        if value not in names:
            shown = [repr(name) for name in names]
            expected = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return value


# ---------------------------------------------------------------------------------------------
# Sections


class JobSection(_Section):
    count: int = Field(
        1, ge=1, description="Generation slots (prompts sent to the image provider)."
    )
    variations: int = Field(
        1, ge=1, le=20, description="Images per generation for providers with `n` (Midjourney: 4)."
    )
    label: str | None = Field(
        None,
        description="Job label; default job_YYYYMMDD_HHMMSS_xxxx (local time, unique).",
        max_length=120,
    )
    keywords_file: Path | None = Field(None, description="Keywords .txt (one per line) or .csv.")
    keyword_random: bool = Field(False, description="Sample keywords at random, not in order.")
    output_dir: Path | None = Field(None, description="Approved files; default <data dir>/output.")
    output_layout: Literal["flat", "per_job"] = Field(
        "per_job",
        description="In the default output dir: per_job = output/<label>/, flat = all in output/.",
    )
    temp_dir: Path | None = Field(None, description="Downloads before QC; default <data dir>/temp.")
    max_concurrency: int = Field(4, ge=1, le=64, description="Generation slots in flight at once.")
    seed: int | None = Field(None, description="Base seed for reproducible keyword order/images.")
    debug: bool = Field(False, description="Verbose logs (debug level).")
    max_cost: float | None = Field(
        None,
        ge=0,
        description="Budget in USD: the job stops before a paid call that would go past it "
        "(estimated from [pricing]); unset = no budget. CLI --max-cost.",
    )
    images_dir: Path | None = Field(
        None, description="Use the image files in this folder instead of generating (read only)."
    )


class PromptSection(_Section):
    template: Path | None = Field(
        None,
        description="System prompt template; ${{Header}}, {keyword}, ${keyword} placeholders. "
        "Default: the template shipped for the prompt provider.",
    )
    negative_prompt: str = Field("", description="For providers that accept one.")


class GenerationSection(_Section):
    aspect_ratios: Annotated[list[AspectRatio], StrList] = Field(
        default_factory=lambda: ["1:1", "16:9", "9:16"],
        min_length=1,
        description="Cycled per slot: slot i gets aspect_ratios[i % n].",
    )
    image_sizes: Annotated[list[ImageSize], StrList] = Field(
        default_factory=lambda: ["1024x1024"],
        min_length=1,
        description="WxH list cycled per slot, for providers that take a size (not Midjourney).",
    )
    size_from_aspect_ratio: bool = Field(
        True,
        description="Derive each slot's size from its aspect ratio (long side = the slot's "
        "image size's long side) instead of using image_sizes as given.",
    )
    midjourney_version: str = Field(
        "6.1",
        pattern=r"^(\d+(\.\d+)?|niji \d+)$",
        description="Appended to Midjourney prompts as --v X or --niji X.",
    )
    process_mode: Literal["relax", "fast", "turbo"] = "relax"
    polling_interval_seconds: float = Field(10.0, ge=0.05, le=300)
    timeout_enabled: bool = Field(True, description="Overall generation timeout on/off.")
    polling_timeout_minutes: float = Field(15, ge=1 / 60, le=60)
    http_timeout_seconds: float = Field(
        30.0, gt=0, le=300, description="Timeout of every single network call, always on."
    )
    max_poll_errors: int = Field(3, ge=1, le=20, description="Consecutive poll errors allowed.")
    retries: int = Field(
        1,
        ge=0,
        le=5,
        description="In-call retries of a call after a transient failure (429, 5xx, timeout, "
        "connection error), after the first try; the HTTP layer is their only owner. Paid "
        "creates are retried only when nothing can have been created.",
    )
    retry_backoff_seconds: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Backoff base of those retries: full jitter in [0, base * 2^(n-1)], at most "
        "60 s; a Retry-After is waited for up to 60 s, longer ones fail as rate limited.",
    )
    max_download_mb: float = Field(
        50,
        gt=0,
        le=2048,
        description="Largest image download in MB (the largest real outputs are ~30 MB); "
        "stopped while streaming, the image fails with download_too_large.",
    )
    loras: Annotated[list[Lora], StrList] = Field(default_factory=list)
    local_long_side: int = Field(
        1024, ge=128, le=2048, description="Long side of the local renderer's images."
    )
    local_defect_rate: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Share of local renders with a generator defect (blur/washout) for QC.",
    )


class ProvidersSection(_Section):
    """Which service or engine fills each role (`genfactory.services` lists them)."""

    prompt: Annotated[str, ServiceChoice("prompt")] = "local"
    image: Annotated[str, ServiceChoice("image")] = "local"
    qc: Annotated[str, ServiceChoice("qc")] = "local"
    background: Annotated[str, ServiceChoice("background")] = "local"
    metadata: Annotated[str, ServiceChoice("metadata")] = "local"


class ProcessingSection(_Section):
    trim_transparent_background: bool = False
    remove_bg: bool = False
    remove_bg_size: Literal["auto", "preview", "full", "50MP"] = "auto"
    remove_bg_failure_mode: Literal["soft", "fail"] = "soft"
    image_enhancement: bool = False
    sharpening: float = Field(5.0, ge=0, le=10, multiple_of=0.5)
    saturation: float = Field(1.4, ge=0.0, le=2.0)
    convert_format: Literal["png", "jpg", "webp"] = "png"
    jpg_quality: int = Field(85, ge=1, le=100)
    webp_quality: int = Field(85, ge=1, le=100)
    png_quality: int = Field(100, ge=1, le=100, description="100 = fastest, 1 = smallest file.")
    jpg_background: Literal["white", "black"] = "white"
    min_megapixels: float = Field(0.0, ge=0, le=100, description="Upscale to this; 0 = off.")
    max_image_pixels: int = Field(
        178_956_970, ge=1_000_000, description="Images above this are refused (bomb guard)."
    )
    near_duplicate_threshold: int = Field(
        0, ge=0, le=64, description="Max perceptual-hash distance of a near-duplicate; 0 = off."
    )
    near_duplicate_scope: Literal["job", "store"] = "job"


class QualitySection(_Section):
    run_quality_check: bool = True
    min_width: int = Field(256, ge=1)
    min_height: int = Field(256, ge=1)
    aspect_tolerance: float = Field(0.03, ge=0, le=1, description="Relative ratio deviation.")
    blank_stddev: float = Field(6.0, ge=0, description="Below this luminance std-dev = blank.")
    blur_threshold: float = Field(
        5.0,
        ge=0,
        description="Below this edge sharpness (mean |Laplacian| of the strongest 1%) = blurred.",
    )
    rules: str | None = Field(None, description="Extra QC rules for vision providers.")
    prompt_file: Path | None = Field(
        None, description="Vision QC instructions replacing the built-in rules."
    )
    text_check: bool = Field(True, description="Local QC reads visible text (offline OCR).")
    text_mode: Literal["reject", "report"] = Field(
        "reject", description="reject: text fails QC; report: the text read is stored, QC goes on."
    )
    text_min_height: float = Field(
        0.03, ge=0, le=1, description="Smallest lettering that counts, as a share of the height."
    )
    text_min_confidence: float = Field(0.8, ge=0, le=1, description="OCR confidence that counts.")
    nsfw_check: bool = Field(True, description="Local QC rejects explicit content (NudeNet).")
    nsfw_threshold: float = Field(0.5, ge=0, le=1, description="Detector score that rejects.")


class MetadataSection(_Section):
    run_metadata_gen: bool = True
    embed: bool = Field(True, description="Write IPTC/XMP into JPEG/PNG/WebP outputs.")
    min_keywords: int = Field(25, ge=1, le=49)
    max_keywords: int = Field(49, ge=1, le=49)
    combined_with_qc: bool = Field(
        False, description="Run QC and metadata in one vision call (half the calls)."
    )
    too_few_keywords: Literal["accept", "pad", "fail"] = Field(
        "pad",
        description="An answer with fewer than min_keywords keywords: pad = add words of its "
        "title and description, then accept; accept = keep it as it is; fail = fail the image. "
        "Never asked again.",
    )


__all__ = [
    "GenerationSection",
    "JobSection",
    "MetadataSection",
    "ProcessingSection",
    "PromptSection",
    "ProvidersSection",
    "QualitySection",
    "ServiceChoice",
]
