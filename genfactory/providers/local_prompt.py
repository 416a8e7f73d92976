"""The offline prompt engine: a direct template, filled, is the image prompt.

No model is involved, so nothing is invented and nothing the user wrote is dropped: comment
lines go, lines are joined into one, list markers and whitespace are collapsed, and the slot's
keyword / CSV values are guaranteed to be in the result. A template written as instructions
to a model ("You are...", "Your task...", "Guidelines:") cannot be followed without one:
`check_direct_template` stops such a job before it starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from genfactory.errors import BadRequest, ConfigError
from genfactory.providers.base import PromptRequest
from genfactory.providers.registry import ProviderContext

# Sentences or lines that address a prompt writer rather than describe a picture. Only starts
# are matched, so an image description such as "a chef who never smiles" is left alone.
_INSTRUCTION = re.compile(
    r"^(?:you\s+are\b|you're\b|you\s+will\b|you\s+must\b|your\s+(?:task|job|goal|role|"
    r"mission|output|answer|response)\b|act\s+as\b|"
    r"(?:guidelines|instructions|rules|requirements|constraints|output\s+format)\s*:|"
    r"use\s+(?:these|the\s+following)\s+(?:\w+\s+)?(?:elements|details|keywords|words|ideas)\b|"
    r"(?:write|generate|create|craft|compose|produce|give\s+me)\s+(?:a|an|one|\d+|the)\s+"
    r"(?:\w+\s+){0,3}prompts?\b|"
    r"(?:the|each|this|your)\s+prompts?\s+(?:must|should|will|needs?)\b|"
    r"(?:answer|respond|reply)\s+(?:with|only|in)\b|(?:return|output)\s+only\b)",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z\"'(])")
_SPACES = re.compile(r"\s+")


def instruction_sentence(template: str) -> str | None:
    """The first sentence of `template` that instructs a model, or None for a direct one."""
    for line, _is_item in _content_lines(template):
        for sentence in _SENTENCE_END.split(line):
            sentence = _SPACES.sub(" ", sentence).strip()
            if _INSTRUCTION.match(sentence):
                return sentence
    return None


def check_direct_template(template: str, path: Path | None) -> None:
    """ConfigError when the local prompt provider is given a template of instructions."""
    sentence = instruction_sentence(template)
    if sentence is None:
        return
    shown = sentence if len(sentence) <= 60 else sentence[:57] + "..."
    where = f"prompt template {path}" if path else "the prompt template"
    raise ConfigError(
        f"{where} reads as instructions to a model ({shown!r}), which providers.prompt = local "
        "would send to the image generator as the picture itself; set providers.prompt = "
        "openai (an OpenAI-compatible server such as Ollama) or write a direct template that "
        "describes the picture, e.g. '${keyword}, watercolor illustration, white background'"
    )


class TemplatePromptProvider:
    """Offline `PromptProvider`: the filled template, joined into one line."""

    name = "local"

    #: Before any work (the registry's `check_prompt_template`): the template is the prompt.
    check_template = staticmethod(check_direct_template)

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    def make_prompt(self, request: PromptRequest) -> str:
        """One single-line image prompt: every sentence of the template, and the slot's values."""
        required = _required_values(request)
        prompt = _join([line for line, _is_item in _content_lines(request.system_prompt)])
        missing = [value for value in required if value.casefold() not in prompt.casefold()]
        if missing:
            # The template did not use the keyword: the subject must lead the prompt.
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


def _join(parts: list[str]) -> str:
    """Join pieces into one line: a comma unless the previous piece already ends a clause."""
    out = ""
    for part in parts:
        part = _SPACES.sub(" ", part).strip()
        if not part:
            continue
        if not out:
            out = part
        elif out[-1] in ",;:.!?":
            out = f"{out} {part}"
        else:
            out = f"{out}, {part}"
    return out.strip()


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
