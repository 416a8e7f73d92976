"""OpenAI-compatible chat completions: prompt writing, vision QC and stock metadata.

Works with api.openai.com and with local OpenAI-compatible servers (Ollama, LM Studio, vLLM).
OPENAI_API_KEY is required only when `openai.base_url` is api.openai.com; other servers get no
Authorization header unless a key is set (see `registry.key_required`).
Vision calls ask for structured outputs (`response_format: json_schema`, strict), but local
servers may ignore the schema, so every answer is validated here. The re-ask policy
(`_OpenAIChat.reask`) is the only one that repeats a call after a malformed answer (an unreadable
body, no choices, an answer off the schema or the stock limits): `openai.max_attempts` calls in
all per image and step, then `MalformedResponse` with the raw text kept. The HTTP layer retries
only transport failures for these calls (`retry_malformed=False`). Metadata with too few
keywords is never asked again: `metadata.too_few_keywords` pads, accepts or fails it.

Images go out as base64 data URLs typed by their real bytes (docs/SPEC.md §11); formats the API does
not take (TIFF, BMP, AVIF...) are re-encoded as PNG first. What is asked and how answers are
checked (schemas, instructions, normalisation) is in `openai_answers`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from genfactory.errors import ContentRejected, MalformedResponse
from genfactory.media import sniff_media_type
from genfactory.processing.decode import as_png
from genfactory.prompting import load_qc_prompt
from genfactory.providers.base import (
    ImageInput,
    ImageMetadata,
    MetadataRequest,
    PromptRequest,
    QCRequest,
    QCVerdict,
)
from genfactory.providers.http import RAW_LIMIT, ServiceClient, ServiceProvider
from genfactory.providers.openai_answers import (
    COMBINED_SCHEMA,
    METADATA_SCHEMA,
    QC_PROMPT_SCHEMA,
    QC_SCHEMA,
    InvalidAnswer,
    metadata_instructions,
    metadata_text,
    normalize_metadata,
    parse_json_answer,
    qc_instructions,
    qc_text,
    schema_errors,
    short_keywords_policy,
    verdict_from,
)
from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Media types OpenAI vision accepts as they are.
VISION_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}


def vision_image(image: ImageInput) -> tuple[bytes, str]:
    """(bytes, media type) to send: the real type from the bytes; others re-encoded as PNG."""
    media_type = sniff_media_type(image.data)
    if media_type in VISION_TYPES:
        return image.data, media_type
    # Decoded by processing, which raises UnreadableImage for bytes that are not an image.
    return as_png(image.data, mode="RGBA"), "image/png"


def data_url(image: ImageInput) -> str:
    data, media_type = vision_image(image)
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


# ---------------------------------------------------------------------------------------------
# The shared client


def openai_client(ctx: ProviderContext) -> ServiceClient:
    """The HTTP client for an OpenAI-compatible server, Bearer auth.

    The key is optional: local OpenAI-compatible servers run without one (see the registry).
    """
    return ServiceClient.for_service(
        ctx, "openai", auth_header="Authorization", auth_prefix="Bearer "
    )


class _OpenAIChat(ServiceProvider):
    """Chat completions with the HTTP error policy, token accounting and answer validation."""

    name = "openai"

    def __init__(self, ctx: ProviderContext) -> None:
        self.config = ctx.settings.openai
        super().__init__(ctx, openai_client(ctx))

    @property
    def vision_model(self) -> str:
        return self.config.vision_model or self.config.model

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float,
        schema_name: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> tuple[str, str | None]:
        """One chat completion: (content, refusal). Records tokens."""
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name or "answer", "strict": True, "schema": schema},
            }
        # Malformed bodies are the re-ask policy's business, not the HTTP layer's.
        answer = self.http.request_json(
            "POST", "/chat/completions", json=body, retry_malformed=False
        )
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if isinstance(usage, dict):
            self.ctx.usage.add(
                "openai",
                prompt_tokens=_number(usage.get("prompt_tokens")),
                completion_tokens=_number(usage.get("completion_tokens")),
            )
        try:
            message = answer["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse(
                "OpenAI answered without choices[0].message; check openai.base_url points to an "
                "OpenAI-compatible server",
                service="openai",
                raw=self.http.scrub(str(answer)[:RAW_LIMIT]),
            ) from None
        refusal = message.get("refusal") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        return (content if isinstance(content, str) else ""), (
            refusal if isinstance(refusal, str) and refusal else None
        )

    def structured(
        self,
        messages: list[dict[str, Any]],
        *,
        what: str,
        schema_name: str,
        schema: dict[str, Any],
        temperature: float,
        accept: Callable[[dict[str, Any], bool], T],
        on_refusal: Callable[[str], T],
    ) -> T:
        """Ask (re-asking per `reask`) until the answer passes `schema` and `accept`."""

        def once(last_try: bool) -> T:
            content, refusal = self.complete(
                messages,
                model=self.vision_model,
                temperature=temperature,
                schema_name=schema_name,
                schema=schema,
            )
            if refusal:
                return on_refusal(self.http.scrub(refusal))
            try:
                parsed = parse_json_answer(content)
                errors = schema_errors(parsed, schema)
                if errors:
                    raise InvalidAnswer("; ".join(errors[:3]))
                return accept(parsed, last_try)
            except InvalidAnswer as exc:
                raise _Reask(str(exc), content) from None

        return self.reask(
            what,
            once,
            hint=f"the model {self.vision_model!r} may not support structured outputs, try "
            "another openai.vision_model",
        )

    def reask(self, what: str, once: Callable[[bool], T], *, hint: str) -> T:
        """The re-ask policy: `once(last_try)` up to `openai.max_attempts` calls in all.

        `once` raises `_Reask` for an answer worth asking again; an unreadable body or an
        answer without choices (`MalformedResponse` from `complete`) counts the same.
        """
        attempts = self.config.max_attempts
        problem, raw = "", ""
        for attempt in range(1, attempts + 1):
            try:
                return once(attempt == attempts)
            except _Reask as exc:
                problem, raw = exc.problem, exc.raw
            except MalformedResponse as exc:
                problem, raw = "an unreadable answer", exc.raw or ""
            if attempt < attempts:
                self.ctx.usage.add("openai", reasks=1)
                log.warning(
                    "OpenAI gave an invalid %s answer (%s); asking again (%d of %d)",
                    what,
                    problem,
                    attempt + 1,
                    attempts,
                )
        self.ctx.usage.add("openai", failures=1)
        raise MalformedResponse(
            f"OpenAI gave no valid {what} answer in {attempts} calls (last: {problem}); {hint}",
            service="openai",
            raw=self.http.scrub(raw[:RAW_LIMIT]),
        )

    def image_message(self, text: str, image: ImageInput) -> dict[str, Any]:
        return {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": data_url(image)}},
            ],
        }

    def metadata_from(self, answer: dict[str, Any], last_try: bool) -> ImageMetadata:
        """Normalised metadata; a short keyword list follows `metadata.too_few_keywords`
        instead of costing another call."""
        limits = self.settings.metadata
        metadata = normalize_metadata(
            answer,
            min_keywords=limits.min_keywords,
            max_keywords=limits.max_keywords,
            strict_count=False,
        )
        return short_keywords_policy(
            metadata, limits.too_few_keywords, limits.min_keywords, limits.max_keywords
        )


class _Reask(Exception):
    """An answer worth asking again: what was wrong, and the raw text for diagnosis."""

    def __init__(self, problem: str, raw: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.raw = raw


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


# ---------------------------------------------------------------------------------------------
# The providers


class OpenAIPrompt(_OpenAIChat):
    """`PromptProvider`: the filled system prompt + the keyword in, one image prompt out."""

    def make_prompt(self, request: PromptRequest) -> str:
        messages = [
            {"role": "system", "content": request.system_prompt},
            {"role": "user", "content": request.keyword},
        ]

        def once(_last_try: bool) -> str:
            content, refusal = self.complete(
                messages, model=self.config.model, temperature=self.config.temperature
            )
            if refusal:
                raise ContentRejected(
                    f"OpenAI refused to write a prompt for {request.keyword!r}: "
                    f"{self.http.scrub(refusal)[:200]}; change the keyword",
                    service="openai",
                )
            prompt = " ".join(content.strip().strip('"').split())
            if not prompt:
                raise _Reask("an empty answer")
            return prompt

        return self.reask(f"prompt ({request.keyword!r})", once, hint="check openai.model")


class OpenAIVisionMetadata(_OpenAIChat):
    """`MetadataProvider`: stock title, description and keywords from a vision model."""

    def describe(self, request: MetadataRequest) -> ImageMetadata:
        limits = self.settings.metadata
        return self.structured(
            [
                {
                    "role": "system",
                    "content": metadata_instructions(limits.min_keywords, limits.max_keywords),
                },
                self.image_message(metadata_text(request.prompt, request.keyword), request.image),
            ],
            what="metadata",
            schema_name="stock_metadata",
            schema=METADATA_SCHEMA,
            temperature=self.config.temperature,
            accept=self.metadata_from,
            on_refusal=_refused_metadata,
        )


class OpenAIVisionQC(_OpenAIChat):
    """`QCProvider`: passed/reason from a vision model, rules of docs/SPEC.md §3 plus `qc.rules`."""

    def _qc_prompt(self) -> str | None:
        path = self.settings.qc.prompt_file
        return load_qc_prompt(path) if path is not None else None

    def check(self, request: QCRequest) -> QCVerdict:
        custom = self._qc_prompt()
        return self.structured(
            [
                {"role": "system", "content": qc_instructions(self.settings.qc.rules, custom)},
                self.image_message(qc_text(request), request.image),
            ],
            what="quality check",
            schema_name="quality_check",
            schema=QC_PROMPT_SCHEMA if custom else QC_SCHEMA,
            temperature=0.0,
            accept=lambda answer, _last: verdict_from(answer),
            on_refusal=lambda text: QCVerdict(False, f"the vision model refused: {text[:200]}"),
        )

    def check_and_describe(
        self, request: QCRequest, keyword: str = ""
    ) -> tuple[QCVerdict, ImageMetadata | None]:
        """QC and metadata in one vision call (`metadata.combined_with_qc`): half the calls.

        Metadata only for a passed image. The QC task uses this whenever its provider has it,
        so the combined mode needs no registry entry of its own.
        """
        limits = self.settings.metadata
        instructions = (
            qc_instructions(self.settings.qc.rules, self._qc_prompt()).rsplit("\n", 1)[0]
            + "\n\nIf it passes, also write its stock metadata.\n"
            + metadata_instructions(limits.min_keywords, limits.max_keywords).rsplit("\n", 1)[0]
            + "\nIf it does not pass, give an empty title, description and keywords.\n"
            'Answer with JSON only: {"passed": ..., "reason": "...", "title": "...", '
            '"description": "...", "keywords": ["..."]}'
        )

        def accept(
            answer: dict[str, Any], last_try: bool
        ) -> tuple[QCVerdict, ImageMetadata | None]:
            verdict = verdict_from(answer)
            if not verdict.passed:
                return verdict, None
            return verdict, self.metadata_from(answer, last_try)

        text = qc_text(request) + "\n" + metadata_text("", keyword)
        return self.structured(
            [{"role": "system", "content": instructions}, self.image_message(text, request.image)],
            what="quality check and metadata",
            schema_name="quality_check_and_metadata",
            schema=COMBINED_SCHEMA,
            temperature=0.0,
            accept=accept,
            on_refusal=lambda text: (
                QCVerdict(False, f"the vision model refused: {text[:200]}"),
                None,
            ),
        )


def _refused_metadata(text: str) -> ImageMetadata:
    raise ContentRejected(f"OpenAI refused to describe the image: {text[:200]}", service="openai")


__all__ = [
    "OpenAIPrompt",
    "OpenAIVisionMetadata",
    "OpenAIVisionQC",
    "openai_client",
]
