"""The offline prompt engine: turns a filled template into one clean, single-line image prompt.

No model is involved, so nothing is invented: the prompt is the template's own text, tidied.
Comment lines go, lines are joined into one, list markers and whitespace are collapsed, and
sentences addressed to a writer ("You are...", "Write one prompt for: X") are dropped, keeping
what follows their colon. The slot's keyword / CSV values are guaranteed to be in the result.
"""

from __future__ import annotations

import re

from genfactory.errors import BadRequest
from genfactory.providers.base import PromptRequest
from genfactory.providers.registry import ProviderContext

# Sentences that instruct a prompt writer rather than describe an image. Only sentence starts
# are matched, so an image description such as "a chef who never smiles" is left alone.
_INSTRUCTION = re.compile(
    r"^(?:you\b|your\b|please\b|i want\b|i need\b|write\b|return\b|respond\b|answer\b|reply\b|"
    r"output\b|give me\b|provide\b|generate (?:a|an|one)\s+(?:\w+\s+)?prompt\b|"
    r"create (?:a|an|one)\s+(?:\w+\s+)?prompt\b|make sure\b|ensure\b|do not\b|don't\b|"
    r"never\b|always\b|only\b|the prompt\b|each prompt\b|this prompt\b|"
    r"(?:a|an|one) (?:\w+\s+)?prompt\b|as an? \w+ prompt\b)",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_SPACES = re.compile(r"\s+")


class TemplatePromptProvider:
    """Offline `PromptProvider`: the filled template, cleaned into one line."""

    name = "local"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def make_prompt(self, request: PromptRequest) -> str:
        """One single-line image prompt containing the slot's keyword / CSV values."""
        required = _required_values(request)
        parts: list[str] = []
        in_instruction_list = False
        for line, is_item in _content_lines(request.system_prompt):
            if is_item and in_instruction_list:
                # An item under "The prompt must:" is a rule for the writer, not the image.
                parts.extend(_keep_values(line, required))
                continue
            kept, opens_list = _clean(line, required)
            parts.extend(kept)
            in_instruction_list = opens_list
        prompt = _join(parts)
        missing = [value for value in required if value.casefold() not in prompt.casefold()]
        if missing:
            # The template did not use the keyword (or it sat in a dropped instruction): the
            # subject must lead the prompt, so put it first.
            prompt = _join([", ".join(missing), prompt])
        prompt = prompt.strip(" ,;")
        if not prompt:
            raise BadRequest(
                "the prompt template and the keyword are both empty; nothing to draw",
                service="local",
            )
        return prompt


def _content_lines(text: str) -> list[tuple[str, bool]]:
    """(line, is_list_item) for non-blank lines that are not `#` comments, markers removed."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        stripped = _LIST_MARKER.sub("", line).strip()
        if stripped:
            lines.append((stripped, stripped != line))
    return lines


def _clean(line: str, required: list[str]) -> tuple[list[str], bool]:
    """The descriptive sentences of one line, and whether it opens a list of instructions.

    An instruction is dropped, except the text after its colon when that text holds the slot's
    values ("Write one prompt for this subject: red fox" -> "red fox").
    """
    kept: list[str] = []
    opens_list = False
    for sentence in _SENTENCE_END.split(line):
        sentence = _SPACES.sub(" ", sentence).strip()
        if not sentence:
            continue
        opens_list = False
        if _INSTRUCTION.match(sentence):
            _head, colon, tail = sentence.partition(":")
            if colon and not tail.strip():
                opens_list = True
            kept.extend(_keep_values(tail, required) if colon else [])
            continue
        kept.append(sentence)
    return kept, opens_list


def _keep_values(text: str, required: list[str]) -> list[str]:
    """`text` (trailing period removed) if it carries one of the slot's values, else nothing."""
    text = _SPACES.sub(" ", text).strip().rstrip(".")
    folded = text.casefold()
    if text and any(value.casefold() in folded for value in required):
        return [text]
    return []


def _join(parts: list[str]) -> str:
    """Join pieces into one line: a comma unless the previous piece already ends a clause."""
    out = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if not out:
            out = part
        elif out[-1] in ",;:.!?":
            out = f"{out} {part}"
        else:
            out = f"{out}, {part}"
    return _SPACES.sub(" ", out).strip()


def _required_values(request: PromptRequest) -> list[str]:
    """The values that must appear: CSV column values, or the keyword for a TXT line."""
    values = [
        value.strip()
        for name, value in request.variables.items()
        if name != "keyword" and value.strip()
    ]
    if not values and request.keyword.strip():
        values = [request.keyword.strip()]
    unique: list[str] = []
    for value in values:
        value = _SPACES.sub(" ", value)
        if value.casefold() not in (u.casefold() for u in unique):
            unique.append(value)
    return unique
