"""What genfactory asks an OpenAI-compatible model and how it checks the answers: the schemas,
the instructions, JSON parsing, stock-metadata normalisation, the short-keyword policy and the
QC verdict. Pure functions, no HTTP (the providers are in `openai_chat`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from genfactory import stock
from genfactory.errors import TooFewKeywords
from genfactory.providers.base import ImageMetadata, QCRequest, QCVerdict

TITLE_MAX = stock.STRICTEST.title_max
DESCRIPTION_MAX = stock.STRICTEST.description_max

#: Default QC rules (docs/SPEC.md §3), from the original app.
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


def qc_text(request: QCRequest) -> str:
    """The user message of a QC call: the prompt and the asked aspect ratio."""
    text = f"The image was generated from this prompt: {request.prompt}"
    if request.aspect_ratio:
        text += f"\nRequested aspect ratio: {request.aspect_ratio}"
    return text


def metadata_text(prompt: str, keyword: str) -> str:
    """The user message of a metadata call: the prompt and the main keyword, if known."""
    parts = []
    if prompt:
        parts.append(f"The image was generated from this prompt: {prompt}")
    if keyword:
        parts.append(f"Its main keyword: {keyword}")
    return "\n".join(parts) or "Describe this image."


def verdict_from(answer: dict[str, Any]) -> QCVerdict:
    """The verdict of a schema-valid QC answer; extra fields are kept with the reason."""
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
