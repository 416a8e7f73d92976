"""Settings: one pydantic model for every setting (SPEC §10), loaded from TOML, env, then CLI.

`Settings` holds no secret, so it can travel as a Prefect flow parameter and be stored as the
execution's snapshot. API keys live in `Credentials` (``SecretStr``), read from the environment
at run time and never serialised.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from genfactory.errors import ConfigError

ENV_PREFIX = "GENFACTORY_"

# ---------------------------------------------------------------------------------------------
# Value types with their validation


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


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
    prompt: Literal["local", "openai"] = "local"
    image: Literal["local", "piapi", "runware", "openai", "sdwebui", "files"] = "local"
    qc: Literal["local", "openai"] = "local"
    background: Literal["local", "removebg", "none"] = "local"
    metadata: Literal["local", "openai"] = "local"


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


class OpenAISection(_Section):
    base_url: str = Field("https://api.openai.com/v1", description="Env OPENAI_BASE_URL.")
    model: str = "gpt-4o"
    vision_model: str | None = Field(None, description="Default: model.")
    image_model: str = "gpt-image-1"
    image_quality: str = Field("auto", description="gpt-image-1: low|medium|high|auto.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Calls in all per image and step when answers are malformed (the re-ask "
        "policy); malformed bodies are not also retried by the HTTP layer.",
    )


class PiAPISection(_Section):
    base_url: str = Field("https://api.piapi.ai", description="Env PIAPI_BASE_URL.")
    create_path: str = "/api/v1/task"
    poll_path: str = "/api/v1/task/{task_id}"
    model: str = "midjourney"
    task_type: str = "imagine"
    auth_header: str = "X-API-Key"
    output_fields: Annotated[list[str], StrList] = Field(
        default_factory=lambda: ["temporary_image_urls", "image_urls", "image_url"],
        description="Where images are found in data.output, in order of preference.",
    )


class RunwareSection(_Section):
    base_url: str = Field("https://api.runware.ai/v1", description="Env RUNWARE_BASE_URL.")
    model: str = "runware:100@1"
    steps: int | None = Field(None, ge=1, le=100)
    output_type: Literal["URL", "base64Data"] = "URL"
    output_format: Literal["PNG", "JPG", "WEBP"] = "PNG"


class SDWebUISection(_Section):
    base_url: str = Field("http://127.0.0.1:7860", description="Env SDWEBUI_BASE_URL.")
    steps: int = Field(30, ge=1, le=150)
    sampler: str = "Euler a"
    cfg_scale: float = Field(7.0, ge=1, le=30)


class RemoveBGSection(_Section):
    base_url: str = Field("https://api.remove.bg", description="Env REMOVE_BG_BASE_URL.")


class ConcurrencySection(_Section):
    """In-flight calls per service, across all slots of a job."""

    piapi: int = Field(4, ge=1, le=64)
    runware: int = Field(4, ge=1, le=64)
    openai: int = Field(8, ge=1, le=64)
    sdwebui: int = Field(1, ge=1, le=64)
    removebg: int = Field(4, ge=1, le=64)
    scope: Literal["process", "prefect", "auto"] = Field(
        "process",
        description="Where the caps hold: process = this process (fast; one machine), prefect = "
        "Prefect global concurrency limits across workers and jobs (each acquire costs 0.1-5 s "
        "on a busy server), auto = prefect when PREFECT_API_URL is set.",
    )


class PricingSection(_Section):
    """Prices in USD for cost estimates (`--dry-run`, `jobs show`, `job.max_cost`).

    Defaults as published, retrieved 2026-12-01; prices change: edit them for your plan.
    """

    piapi_relax_per_task: float = Field(
        0.015,
        ge=0,
        description="Midjourney imagine task (4 images), relax mode; PAYG rate of "
        "Midjourney task APIs (PiAPI successors' pricing table, 2026-12-01).",
    )
    piapi_fast_per_task: float = Field(0.04, ge=0, description="Same, fast mode.")
    piapi_turbo_per_task: float = Field(0.108, ge=0, description="Same, turbo mode.")
    runware_per_image: float = Field(
        0.0013,
        ge=0,
        description="Runware image, FLUX.1 schnell (runware:100@1), runware.ai/pricing; "
        "the cost Runware reports per image is used when it reports one.",
    )
    openai_image_per_image: float = Field(
        0.042,
        ge=0,
        description="OpenAI Images gpt-image-1 medium 1024x1024 (openai.com/api/pricing); "
        "dall-e-3 standard is 0.04.",
    )
    openai_image_output_per_million: float = Field(
        40.0, ge=0, description="gpt-image-1 image output tokens, per 1M (for actual usage)."
    )
    openai_input_per_million: float = Field(
        2.5, ge=0, description="Chat/vision input tokens per 1M: gpt-4o (openai.com/api/pricing)."
    )
    openai_output_per_million: float = Field(
        10.0, ge=0, description="Chat/vision output tokens per 1M: gpt-4o."
    )
    openai_vision_input_tokens: int = Field(
        1200,
        ge=0,
        description="Estimated input tokens of one vision call (a 1024 px image in high "
        "detail is 765 tokens, plus the instructions).",
    )
    openai_vision_output_tokens: int = Field(
        300, ge=0, description="Estimated output tokens of one vision call."
    )
    openai_prompt_input_tokens: int = Field(
        600, ge=0, description="Estimated input tokens of one prompt-writing call."
    )
    openai_prompt_output_tokens: int = Field(
        120, ge=0, description="Estimated output tokens of one prompt-writing call."
    )
    removebg_per_credit: float = Field(
        0.20,
        ge=0,
        description="remove.bg credit, pay-as-you-go (remove.bg/pricing); 1 credit per image, "
        "1/4 for the preview size.",
    )
    sdwebui_per_image: float = Field(0.0, ge=0, description="Your own SD WebUI: free.")


class Settings(BaseModel):
    """Every setting of a job. Secret-free: safe as a flow parameter and as a stored snapshot."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    job: JobSection = Field(default_factory=JobSection)  # type: ignore[arg-type]
    prompts: PromptSection = Field(default_factory=PromptSection)  # type: ignore[arg-type]
    generation: GenerationSection = Field(default_factory=GenerationSection)  # type: ignore[arg-type]
    providers: ProvidersSection = Field(default_factory=ProvidersSection)
    processing: ProcessingSection = Field(default_factory=ProcessingSection)  # type: ignore[arg-type]
    qc: QualitySection = Field(default_factory=QualitySection)  # type: ignore[arg-type]
    metadata: MetadataSection = Field(default_factory=MetadataSection)  # type: ignore[arg-type]
    openai: OpenAISection = Field(default_factory=OpenAISection)  # type: ignore[arg-type]
    piapi: PiAPISection = Field(default_factory=PiAPISection)  # type: ignore[arg-type]
    runware: RunwareSection = Field(default_factory=RunwareSection)  # type: ignore[arg-type]
    sdwebui: SDWebUISection = Field(default_factory=SDWebUISection)  # type: ignore[arg-type]
    removebg: RemoveBGSection = Field(default_factory=RemoveBGSection)  # type: ignore[arg-type]
    concurrency: ConcurrencySection = Field(default_factory=ConcurrencySection)  # type: ignore[arg-type]
    pricing: PricingSection = Field(default_factory=PricingSection)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        total = self.job.count * self.job.variations
        if total > 10_000:
            raise ValueError(f"job.count x job.variations = {total}; at most 10,000 images per job")
        if self.metadata.min_keywords > self.metadata.max_keywords:
            raise ValueError("metadata.min_keywords must not exceed metadata.max_keywords")
        return self

    @property
    def images_per_slot(self) -> int:
        """Images one generation returns: Midjourney returns its grid of 4."""
        return 4 if self.providers.image == "piapi" else self.job.variations


# ---------------------------------------------------------------------------------------------
# Secrets


class Credentials(BaseModel):
    """API keys. Never part of Settings, never logged, stored or passed as a parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    piapi_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    remove_bg_api_key: SecretStr | None = None
    runware_api_key: SecretStr | None = None

    #: field -> environment variable names, the first set wins
    ENV_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "piapi_api_key": ("PIAPI_API_KEY", "GENFACTORY_PIAPI_API_KEY"),
        "openai_api_key": ("OPENAI_API_KEY", "GENFACTORY_OPENAI_API_KEY"),
        "remove_bg_api_key": ("REMOVE_BG_API_KEY", "GENFACTORY_REMOVE_BG_API_KEY"),
        "runware_api_key": ("RUNWARE_API_KEY", "GENFACTORY_RUNWARE_API_KEY"),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read every key from the environment (blank values count as missing)."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for field, names in cls.ENV_NAMES.items():
            for name in names:
                if env.get(name, "").strip():
                    values[field] = env[name].strip()
                    break
        return cls.model_validate(values)

    def secret_values(self) -> list[str]:
        """The raw key strings, for the log redaction filter only."""
        out = []
        for field in type(self).model_fields:
            value = getattr(self, field)
            if value is not None and value.get_secret_value():
                out.append(value.get_secret_value())
        return out


# ---------------------------------------------------------------------------------------------
# Loading: TOML file, then environment, then CLI overrides

#: Plain env vars (the services' own names) mapped onto settings.
BASE_URL_ENV: dict[str, tuple[str, str]] = {
    "PIAPI_BASE_URL": ("piapi", "base_url"),
    "OPENAI_BASE_URL": ("openai", "base_url"),
    "REMOVE_BG_BASE_URL": ("removebg", "base_url"),
    "SDWEBUI_BASE_URL": ("sdwebui", "base_url"),
    "RUNWARE_BASE_URL": ("runware", "base_url"),
}

#: GENFACTORY_* variables that are not settings.
NON_SETTING_ENV = {
    "GENFACTORY_DATABASE_URL",
    "GENFACTORY_DATA_DIR",
    "GENFACTORY_LOG_LEVEL",
    "GENFACTORY_REQUIRE_POSTGRES",
    "GENFACTORY_TEST_POSTGRES_URL",
    "GENFACTORY_PROCESS_POOL",
    *(name for names in Credentials.ENV_NAMES.values() for name in names),
}


def section_names() -> list[str]:
    return list(Settings.model_fields)


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"{source}: setting {dotted!r} must be written section.name "
            f"(sections: {', '.join(section_names())})"
        )
    section, name = parts
    if section not in Settings.model_fields:
        raise ConfigError(
            f"{source}: unknown settings section {section!r} in {dotted!r}; "
            f"known sections: {', '.join(section_names())}"
        )
    known = _section_model(section).model_fields
    if name not in known:
        raise ConfigError(
            f"{source}: unknown setting {dotted!r}; settings in [{section}]: {', '.join(known)}"
        )
    target.setdefault(section, {})[name] = value


def _section_model(section: str) -> type[BaseModel]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read a settings file; every problem is a ConfigError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; check the --config path") from None
    except OSError as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
    checked: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"settings file {path}: {section!r} must be a [section] table; "
                f"known sections: {', '.join(section_names())}"
            )
        for name, value in values.items():
            _set_dotted(checked, f"{section}.{name}", value, f"settings file {path}")
    # Relative paths in a settings file are relative to the file, as users expect.
    for section, name in (("job", "keywords_file"), ("prompts", "template")):
        value = checked.get(section, {}).get(name)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            checked[section][name] = str((path.parent / value).resolve())
    return checked


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from GENFACTORY_<SECTION>__<NAME> and the services' *_BASE_URL variables."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, (section, field) in BASE_URL_ENV.items():
        if env.get(name, "").strip():
            out.setdefault(section, {})[field] = env[name].strip()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" in rest:
            section, _, field = rest.partition("__")
            _set_dotted(out, f"{section.lower()}.{field.lower()}", value, f"environment {name}")
        elif any(rest.lower().startswith(s + "_") for s in section_names()):
            raise ConfigError(
                f"environment {name}: settings use a double underscore, e.g. "
                f"GENFACTORY_PROCESSING__JPG_QUALITY=90"
            )
    return out


def parse_set_option(item: str) -> tuple[str, Any]:
    """'processing.jpg_quality=90' -> ('processing.jpg_quality', 90): values parse as TOML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {item!r} must look like section.name=value, e.g. processing.jpg_quality=90"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words: relax, png, 16:9,1:1 ...
    return key.strip(), value


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from a TOML file, then the environment, then dotted-name overrides."""
    data: dict[str, Any] = read_toml(config_file) if config_file else {}
    data = _merge(data, env_overrides(environ))
    cli: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        _set_dotted(cli, dotted, value, "option")
    data = _merge(data, cli)
    return validate_settings(data)


def validate_settings(data: Mapping[str, Any]) -> Settings:
    """Validate a settings mapping, turning pydantic's report into one clear ConfigError."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data)) from None


def describe_validation_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    messages = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
        value = _lookup(data, [p for p in err["loc"]])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            messages.append(f"unknown setting {loc!r}")
        elif loc:
            shown = "" if value is _MISSING else f" = {value!r}"
            messages.append(f"setting {loc}{shown}: {msg}")
        else:
            messages.append(msg)
    return "invalid settings: " + "; ".join(messages)


_MISSING = object()


def _lookup(data: Any, path: list[Any]) -> Any:
    for part in path:
        if (isinstance(data, Mapping) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return _MISSING
    return data


def apply_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """A copy of settings with dotted-name overrides applied and validated."""
    data = settings.model_dump(mode="json")
    extra: dict[str, Any] = {}
    for dotted, value in overrides.items():
        _set_dotted(extra, dotted, value, "override")
    return validate_settings(_merge(data, extra))


def settings_template() -> str:
    """A TOML document listing every setting with its default and description."""
    lines = ["# genfactory job settings: every setting with its default.", ""]
    for section in section_names():
        model = _section_model(section)
        lines.append(f"[{section}]")
        for name, field in model.model_fields.items():
            if field.description:
                lines.append(f"# {field.description}")
            default = field.get_default(call_default_factory=True)
            if default is None:
                lines.append(f"# {name} = ")
            else:
                lines.append(f"{name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
