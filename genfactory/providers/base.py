"""The provider seams: one small Protocol per role, plain dataclasses in and out.

Real services and offline engines implement the same Protocol, so every layer above is testable
without a network. Providers never import Prefect and never touch the store; they raise the
errors of `genfactory.errors` and report what they spent to a `Usage` object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genfactory.logs import REDACTED

# ---------------------------------------------------------------------------------------------
# Values passed to and from providers


@dataclass(frozen=True)
class PromptRequest:
    """`system_prompt` is the template already filled with the slot's keyword / CSV row."""

    system_prompt: str
    keyword: str
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    aspect_ratio: str
    width: int
    height: int
    count: int = 1
    seed: int | None = None
    negative_prompt: str = ""
    #: A task created by an earlier, interrupted attempt: poll it instead of creating a new one.
    resume_task_id: str | None = None
    #: Called with the provider's task id as soon as the task exists (recorded for resume).
    on_task_created: Callable[[str], None] | None = field(default=None, compare=False)
    #: An existing image file to use instead of generating (`providers.image = files`).
    source_path: str | None = None


@dataclass(frozen=True)
class ImageResult:
    data: bytes
    media_type: str = "image/png"
    seed: int | None = None
    #: Where it came from, for diagnosis only; never used to name a file.
    source: str = ""


@dataclass(frozen=True)
class GenerationResult:
    images: list[ImageResult]
    task_id: str | None = None
    cost: float | None = None
    #: The prompt as the service received it (e.g. with the Midjourney version appended).
    final_prompt: str | None = None


@dataclass(frozen=True)
class ImageInput:
    data: bytes
    media_type: str


@dataclass(frozen=True)
class QCRequest:
    image: ImageInput
    prompt: str
    aspect_ratio: str | None = None


@dataclass(frozen=True)
class QCVerdict:
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class MetadataRequest:
    image: ImageInput
    prompt: str
    keyword: str = ""


@dataclass(frozen=True)
class ImageMetadata:
    title: str
    description: str
    keywords: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "description": self.description, "keywords": self.keywords}


@dataclass(frozen=True)
class BackgroundResult:
    data: bytes  # PNG with alpha
    credits_charged: float | None = None
    #: Set when the service kept the image as it was (e.g. no foreground found).
    note: str | None = None


# ---------------------------------------------------------------------------------------------
# No answer is trusted

#: The methods through which a service's answers leave a provider (one per role).
ROLE_METHODS = ("make_prompt", "generate", "check", "describe", "check_and_describe")
#: What a masked secret leaves behind; keywords holding one are dropped.
MASK = "***"


def scrub_answer(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with `scrub` applied to every text a service wrote into it.

    Covers the role results (prompt strings, QCVerdict, ImageMetadata, GenerationResult and
    its images' sources) and tuples/lists of them; image bytes are left alone.
    """
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, tuple):
        return tuple(scrub_answer(item, scrub) for item in value)
    if isinstance(value, list):
        return [scrub_answer(item, scrub) for item in value]
    if isinstance(value, ImageMetadata):
        keywords = [scrub(k) for k in value.keywords]
        return ImageMetadata(
            title=scrub(value.title),
            description=scrub(value.description),
            keywords=[k for k in keywords if MASK not in k and REDACTED not in k],
        )
    if isinstance(value, QCVerdict | GenerationResult | ImageResult | BackgroundResult):
        changes = {
            f.name: scrub_answer(getattr(value, f.name), scrub)
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), str | list)
        }
        return dataclasses.replace(value, **changes)
    return value


# ---------------------------------------------------------------------------------------------
# The role Protocols


@runtime_checkable
class PromptProvider(Protocol):
    name: str

    def make_prompt(self, request: PromptRequest) -> str: ...


@runtime_checkable
class ImageProvider(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GenerationResult: ...


@runtime_checkable
class QCProvider(Protocol):
    name: str

    def check(self, request: QCRequest) -> QCVerdict: ...


@runtime_checkable
class CombinedQCMetadata(Protocol):
    """A QC provider that also writes the metadata of a passed image in the same call
    (`metadata.combined_with_qc`: half the calls); the metadata is None for a failed image."""

    def check_and_describe(
        self, request: QCRequest, keyword: str = ""
    ) -> tuple[QCVerdict, ImageMetadata | None]: ...


@runtime_checkable
class BackgroundRemover(Protocol):
    name: str

    def remove_background(self, image: ImageInput) -> BackgroundResult: ...


@runtime_checkable
class MetadataProvider(Protocol):
    name: str

    def describe(self, request: MetadataRequest) -> ImageMetadata: ...


class ImageProviderFacts:
    """Facts an image provider class may state about itself, read by the registry from the
    class (without building the provider); a class that states none gets these defaults.

    Subclassing this is optional: the registry reads the attributes wherever they are defined.
    """

    #: Images one generation returns whatever `job.variations` says (Midjourney's grid: 4);
    #: None = `job.variations`.
    images_per_task: int | None = None
    #: A create can be repeated without paying again (local engines, a self-hosted server): a
    #: slot interrupted during its create call is simply run again instead of failing with
    #: `ambiguous_create`.
    repeatable_create: bool = False

    @classmethod
    def fixed_long_side(cls, settings: Any) -> int | None:
        """The long side it renders at whatever the size settings say; None = the slot's
        image size."""
        return None


# ---------------------------------------------------------------------------------------------
# What providers share: usage accounting and per-service concurrency limits


class Usage:
    """Per-service counters for one execution: calls, retries, failures, what was consumed.

    Thread-safe: every slot of a job reports into the same object.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = {}

    def add(self, service: str, **amounts: float) -> None:
        with self._lock:
            entry = self._data.setdefault(service, {})
            for key, amount in amounts.items():
                entry[key] = entry.get(key, 0) + amount

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {service: dict(values) for service, values in self._data.items()}


class Limiter(Protocol):
    """Returns a context manager holding one of the service's concurrency slots."""

    def __call__(self, service: str) -> AbstractContextManager[None]: ...


class LocalLimiter:
    """In-process limiter: at most `limits[service]` calls in flight per service."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._semaphores = {name: threading.BoundedSemaphore(n) for name, n in limits.items()}

    @contextlib.contextmanager
    def __call__(self, service: str) -> Iterator[None]:
        semaphore = self._semaphores.get(service)
        if semaphore is None:
            yield
            return
        with semaphore:
            yield


def no_limit(service: str) -> AbstractContextManager[None]:
    """A limiter that never waits (local engines, tests)."""
    return contextlib.nullcontext()
