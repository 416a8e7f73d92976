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

Images go out as base64 data URLs typed by their real bytes (SPEC §11); formats the API does
not take (TIFF, BMP, AVIF...) are re-encoded as PNG first.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any, TypeVar

from PIL import Image

from genfactory import stock
from genfactory.errors import ContentRejected, ImageRejected, MalformedResponse, TooFewKeywords
from genfactory.media import sniff_media_type
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
from genfactory.providers.registry import ProviderContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Media types OpenAI vision accepts as they are.
VISION_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}

TITLE_MAX = stock.STRICTEST.title_max
DESCRIPTION_MAX = stock.STRICTEST.description_max

#: Default QC rules (SPEC §3), from the original app.
QC_RULES = (
    "visible text, letters, numbers, captions, watermarks or signatures",
    "logos, brand names or trademarks",
    "famous people, celebrities or well-known fictional characters",
    "copyrighted designs, artworks or recognisable protected architecture",
    "deformed anatomy: malformed hands or fingers, distorted faces, extra or missing limbs",
    "obvious generation artifacts: melted or duplicated shapes, seams, noise, heavy blur",
)

#: Words never used to pad a short keyword list (see `short_keywords_policy`).
PAD_STOPWORDS = frozenset(
    word
    for line in (files("genfactory") / "templates" / "pad_stopwords.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if not line.startswith("#")
    for word in line.split()
)

QC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"],
    "additionalProperties": False,
}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "description", "keywords"],
    "additionalProperties": False,
}
COMBINED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {**QC_SCHEMA["properties"], **METADATA_SCHEMA["properties"]},
    "required": [*QC_SCHEMA["required"], *METADATA_SCHEMA["required"]],
    "additionalProperties": False,
}


class InvalidAnswer(ValueError):
    """An answer that does not follow the schema or the stock limits; worth asking again."""


# ---------------------------------------------------------------------------------------------
# Pure helpers


def schema_errors(value: Any, schema: dict[str, Any], where: str = "answer") -> list[str]:
    """What in `value` breaks `schema` (the JSON Schema subset our schemas use)."""
    kind = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return [f"{where} is not a{'n' if kind in ('object', 'array', 'integer') else ''} {kind}"]
    problems: list[str] = []
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where} lacks {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += schema_errors(value[name], sub, f"{where}.{name}")
    elif kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            problems += schema_errors(item, schema["items"], f"{where}[{i}]")
    return problems


def parse_json_answer(text: str) -> Any:
    """JSON from a model's text; local models wrap it in ``` fences or add a sentence."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except ValueError:
                pass
    raise InvalidAnswer("the answer is not JSON")


def normalize_metadata(
    answer: dict[str, Any], *, min_keywords: int, max_keywords: int, strict_count: bool
) -> ImageMetadata:
    """Stock-ready metadata (`genfactory.stock` rules) from a schema-valid answer, or
    InvalidAnswer. At most `max_keywords`; fewer than `min_keywords` is invalid while
    `strict_count`."""
    meta, _changes = stock.normalize_metadata(
        str(answer["title"]), str(answer["description"]), [str(k) for k in answer["keywords"]]
    )
    keywords = list(meta.keywords[:max_keywords])
    if not meta.title:
        raise InvalidAnswer("the title is empty")
    if not meta.description:
        raise InvalidAnswer("the description is empty")
    if not keywords or (strict_count and len(keywords) < min_keywords):
        raise InvalidAnswer(f"only {len(keywords)} usable keywords, {min_keywords} wanted")
    return ImageMetadata(title=meta.title, description=meta.description, keywords=keywords)


def vision_image(image: ImageInput) -> tuple[bytes, str]:
    """(bytes, media type) to send: the real type from the bytes; others re-encoded as PNG."""
    media_type = sniff_media_type(image.data)
    if media_type in VISION_TYPES:
        return image.data, media_type
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            converted = opened.convert("RGBA")
    except (OSError, ValueError) as exc:
        raise ImageRejected(f"the image cannot be read ({exc}); it cannot be checked") from None
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def data_url(image: ImageInput) -> str:
    data, media_type = vision_image(image)
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


#: With `qc.prompt_file` the user's instructions may ask for more than a verdict: whatever
#: else they ask for comes back in `details` (strict schemas allow no free-form fields).
QC_PROMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {**QC_SCHEMA["properties"], "details": {"type": "string"}},
    "required": [*QC_SCHEMA["required"], "details"],
    "additionalProperties": False,
}


def qc_instructions(extra_rules: str | None, prompt: str | None = None) -> str:
    """The QC system message: the built-in rules plus `qc.rules`, or `qc.prompt_file`'s
    instructions in their place (the answer stays passed + reason, and details)."""
    if prompt:
        return (
            f"{prompt.strip()}\n\n"
            'Answer with JSON only: {"passed": true or false, "reason": "one short sentence", '
            '"details": "anything else these instructions ask you to report, as name: value; '
            '... (empty when there is nothing)"}'
        )
    rules = "\n".join(f"- {rule}" for rule in QC_RULES)
    extra = f"\nAlso reject it for:\n{extra_rules.strip()}\n" if extra_rules else ""
    return (
        "You are the quality check of a stock photo agency. Decide whether the image can be "
        "sold as a stock image. Reject it (passed = false) if it shows any of:\n"
        f"{rules}\n{extra}"
        "Otherwise pass it (passed = true). Give the reason in one short sentence.\n"
        'Answer with JSON only: {"passed": true or false, "reason": "..."}'
    )


def metadata_instructions(min_keywords: int, max_keywords: int) -> str:
    return (
        "You write stock image metadata for Adobe Stock and similar agencies. Describe what "
        "is visible in the image.\n"
        f"- title: at most {TITLE_MAX} characters, no commas, a plain descriptive phrase\n"
        f"- description: one or two sentences, at most {DESCRIPTION_MAX} characters\n"
        f"- keywords: {min_keywords} to {max_keywords} unique lowercase keywords, the most "
        "important first; single words or short phrases; no brand names, trademarks, people's "
        "names or artist names\n"
        'Answer with JSON only: {"title": "...", "description": "...", "keywords": ["..."]}'
    )


# ---------------------------------------------------------------------------------------------
# The shared client


def openai_client(ctx: ProviderContext) -> ServiceClient:
    """The HTTP client for an OpenAI-compatible server, Bearer auth.

    The key is optional: local OpenAI-compatible servers run without one (see the registry).
    """
    return ServiceClient(
        ctx,
        "openai",
        base_url=ctx.settings.openai.base_url,
        secret=ctx.credentials.openai_api_key,
        auth_header="Authorization",
        auth_prefix="Bearer ",
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


def short_keywords_policy(
    metadata: ImageMetadata, policy: str, min_keywords: int, max_keywords: int
) -> ImageMetadata:
    """`metadata.too_few_keywords`: pad (words of the title and description), accept or fail."""
    if len(metadata.keywords) >= min_keywords or policy == "accept":
        return metadata
    if policy == "fail":
        raise TooFewKeywords(
            f"the metadata has {len(metadata.keywords)} keywords, fewer than "
            f"metadata.min_keywords = {min_keywords}; set metadata.too_few_keywords = pad or "
            "accept to keep such images",
            service="openai",
        )
    keywords = list(metadata.keywords)
    text = f"{metadata.title} {metadata.description}".lower()
    for word in re.findall(r"[a-z][a-z-]{2,}", text):
        if len(keywords) >= min(min_keywords, max_keywords):
            break
        if word not in keywords and word not in PAD_STOPWORDS and not stock.trademark_in(word):
            keywords.append(word)
    return ImageMetadata(metadata.title, metadata.description, keywords)


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
                self.image_message(_metadata_text(request.prompt, request.keyword), request.image),
            ],
            what="metadata",
            schema_name="stock_metadata",
            schema=METADATA_SCHEMA,
            temperature=self.config.temperature,
            accept=self.metadata_from,
            on_refusal=_refused_metadata,
        )


class OpenAIVisionQC(_OpenAIChat):
    """`QCProvider`: passed/reason from a vision model, rules of SPEC §3 plus `qc.rules`."""

    def _qc_prompt(self) -> str | None:
        path = self.settings.qc.prompt_file
        return load_qc_prompt(path) if path is not None else None

    def check(self, request: QCRequest) -> QCVerdict:
        custom = self._qc_prompt()
        return self.structured(
            [
                {"role": "system", "content": qc_instructions(self.settings.qc.rules, custom)},
                self.image_message(_qc_text(request), request.image),
            ],
            what="quality check",
            schema_name="quality_check",
            schema=QC_PROMPT_SCHEMA if custom else QC_SCHEMA,
            temperature=0.0,
            accept=lambda answer, _last: _verdict(answer),
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
            verdict = _verdict(answer)
            if not verdict.passed:
                return verdict, None
            return verdict, self.metadata_from(answer, last_try)

        text = _qc_text(request) + "\n" + _metadata_text("", keyword)
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


class OpenAIVisionQCMetadata(OpenAIVisionQC):
    """The QC provider under the name of its combined role (`check_and_describe`)."""


def _qc_text(request: QCRequest) -> str:
    text = f"The image was generated from this prompt: {request.prompt}"
    if request.aspect_ratio:
        text += f"\nRequested aspect ratio: {request.aspect_ratio}"
    return text


def _metadata_text(prompt: str, keyword: str) -> str:
    parts = []
    if prompt:
        parts.append(f"The image was generated from this prompt: {prompt}")
    if keyword:
        parts.append(f"Its main keyword: {keyword}")
    return "\n".join(parts) or "Describe this image."


def _verdict(answer: dict[str, Any]) -> QCVerdict:
    reason = " ".join(str(answer["reason"]).split())[:500]
    if not answer["passed"] and not reason:
        raise InvalidAnswer("a failed verdict without a reason")
    # What a custom QC prompt asked for beyond the verdict is kept with the reason (the row's
    # QC details): `details`, and any extra field a lenient server returned.
    known = {"passed", "reason", "details", *METADATA_SCHEMA["properties"]}
    extras = [str(answer.get("details") or "").strip()]
    extras += [f"{name}: {value}" for name, value in answer.items() if name not in known]
    extra = "; ".join(" ".join(e.split()) for e in extras if e)
    if extra:
        reason = f"{reason} ({extra[:500]})" if reason else extra[:500]
    return QCVerdict(passed=bool(answer["passed"]), reason=reason)


def _refused_metadata(text: str) -> ImageMetadata:
    raise ContentRejected(f"OpenAI refused to describe the image: {text[:200]}", service="openai")
