"""Slot building for a job's initialisation: prompt templates and the slot plan.

Pure functions (no Prefect, no SQL, no network): load and fill a prompt template (docs/SPEC.md §10
placeholders), and plan the job's generation slots with their keyword (from a keywords file,
`genfactory.keywords`), filled prompt template and aspect ratio. Every user mistake is an
`InputFileError` with one sentence naming the file, the place and the fix.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genfactory.config import fit_size
from genfactory.errors import InputFileError, UserError
from genfactory.keywords import KEYWORD, KeywordSource, read_keywords, read_text_file

if TYPE_CHECKING:
    from genfactory.config import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: Shipped default templates: the offline engine gets a ready image prompt, an LLM gets
#: instructions for writing one.
DEFAULT_TEMPLATES = {"local": "local_prompt.txt"}
LLM_TEMPLATE = "system_prompt.txt"

# ---------------------------------------------------------------------------------------------
# Templates


def default_template_path(provider_name: str) -> Path:
    """The shipped template for a prompt provider: the offline one or the LLM instructions."""
    return TEMPLATES_DIR / DEFAULT_TEMPLATES.get(provider_name, LLM_TEMPLATE)


def load_template(path: Path | None, provider_name: str) -> str:
    """The template text from `path`, or the shipped default for `provider_name` when None."""
    source = Path(path) if path is not None else default_template_path(provider_name)
    text = read_text_file(source, what="prompt template")
    if not text.strip():
        raise InputFileError(
            f"prompt template {source} is empty; write the prompt (with placeholders such "
            "as ${keyword}) or leave prompts.template unset to use the default"
        )
    return text.strip()


def load_qc_prompt(path: Path) -> str:
    """The vision QC instructions of `qc.prompt_file`, or InputFileError naming the problem."""
    text = read_text_file(Path(path).expanduser(), what="QC prompt file (qc.prompt_file)").strip()
    if not text:
        raise InputFileError(f"QC prompt file {path} is empty; write the QC instructions")
    return text


# ${{Header}} (CSV columns), ${name} and {name}. The ${{...}} form is tried first so its
# inner braces are not read as a ${...} placeholder.
_PLACEHOLDER = re.compile(
    r"\$\{\{\s*(?P<double>[^{}]+?)\s*\}\}"
    r"|\$\{\s*(?P<dollar>[^{}]+?)\s*\}"
    r"|(?<![\w$])\{(?P<bare>[A-Za-z_][\w \-]*?)\}"
)


@dataclass(frozen=True)
class _Placeholder:
    name: str
    text: str
    #: `{name}` is only a placeholder when the name is known: LLM templates often contain
    #: literal braces (JSON examples), which must stay as written.
    strict: bool


def _placeholders(template: str) -> Iterable[tuple[re.Match[str], _Placeholder]]:
    for match in _PLACEHOLDER.finditer(template):
        if match.group("double") is not None:
            yield match, _Placeholder(match.group("double"), match.group(0), strict=True)
        elif match.group("dollar") is not None:
            yield match, _Placeholder(match.group("dollar"), match.group(0), strict=True)
        else:
            yield match, _Placeholder(match.group("bare").strip(), match.group(0), strict=False)


def placeholders(template: str) -> list[str]:
    """The distinct placeholder names a template uses, in order of first use.

    Bare ``{name}`` counts only for ``keyword``; other bare braces are literal text.
    """
    names: list[str] = []
    for _match, ph in _placeholders(template):
        if (ph.strict or ph.name == KEYWORD) and ph.name not in names:
            names.append(ph.name)
    return names


def _resolve(name: str, known: Sequence[str]) -> str | None:
    """Exact name first, then a unique case-insensitive match (`${{subject}}` for Subject)."""
    if name in known:
        return name
    folded = [k for k in known if k.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _unknown(name: str, text: str, known: Sequence[str], where: str) -> InputFileError:
    shown = ", ".join(known) if known else "(none)"
    return InputFileError(
        f"prompt template placeholder {text} ({name!r}) is unknown for {where}; "
        f"known placeholders: {shown}. Fix the template or add a {name!r} column"
    )


def validate_template(
    template: str, columns: Sequence[str], *, where: str = "the keywords file"
) -> None:
    """Fail before any work when the template uses a placeholder the keywords cannot fill.

    `columns` are the available variable names (e.g. `KeywordSource.variable_names`).
    """
    known = list(columns)
    if KEYWORD not in known:
        known.append(KEYWORD)
    for _match, ph in _placeholders(template):
        if ph.strict and _resolve(ph.name, known) is None:
            raise _unknown(ph.name, ph.text, known, where)


def fill_template(template: str, variables: Mapping[str, str], *, where: str) -> str:
    """Replace `${{Header}}`, `${keyword}` and `{keyword}` placeholders with their values.

    An unknown `${{...}}` / `${...}` placeholder raises `InputFileError` naming it, `where`
    (e.g. "row 3 of keywords.csv") and the known names. Unknown bare `{...}` stay as written.
    """
    known = list(variables)
    out: list[str] = []
    last = 0
    for match, ph in _placeholders(template):
        resolved = _resolve(ph.name, known)
        if resolved is None:
            if ph.strict:
                raise _unknown(ph.name, ph.text, known, where)
            continue
        out.append(template[last : match.start()])
        out.append(variables[resolved])
        last = match.end()
    out.append(template[last:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The slot plan


@dataclass(frozen=True)
class SlotPlan:
    """One generation slot: its keyword, variables, filled prompt template and aspect ratio."""

    slot: int
    keyword: str
    variables: dict[str, str] = field(default_factory=dict)
    system_prompt: str = ""
    aspect_ratio: str = "1:1"


def keyword_order(n_entries: int, count: int, *, random_order: bool, seed: int | None) -> list[int]:
    """Entry index for each of `count` slots.

    In order: 0, 1, ..., n-1, 0, 1, ... Random: a shuffled pass over all entries (no entry
    twice until every entry was used), then a fresh shuffle; reproducible with `seed`.
    """
    if n_entries < 1:
        raise ValueError("no keyword entries to plan slots from")
    if not random_order:
        return [i % n_entries for i in range(count)]
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < count:
        batch = list(range(n_entries))
        rng.shuffle(batch)
        order.extend(batch)
    return order[:count]


def plan_slots(
    source: KeywordSource,
    template: str,
    count: int,
    aspect_ratios: Sequence[str],
    *,
    random_order: bool,
    seed: int | None,
) -> list[SlotPlan]:
    """Plan `count` slots: slot i gets `aspect_ratios[i % n]` and the next keyword entry."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if not aspect_ratios:
        raise ValueError("at least one aspect ratio is needed")
    validate_template(template, source.variable_names, where=source.path.name)
    order = keyword_order(len(source.entries), count, random_order=random_order, seed=seed)
    plans = []
    for slot, index in enumerate(order):
        entry = source.entries[index]
        plans.append(
            SlotPlan(
                slot=slot,
                keyword=entry.keyword,
                variables=dict(entry.variables),
                system_prompt=fill_template(template, entry.variables, where=entry.where),
                aspect_ratio=aspect_ratios[slot % len(aspect_ratios)],
            )
        )
    return plans


def plan_job_slots(
    settings: Settings, check_template: Callable[[str], None] | None = None
) -> list[SlotPlan]:
    """The slots of a generation job: its keywords file and prompt template, planned as the
    settings say; `check_template` sees the template before any slot is planned."""
    if settings.job.keywords_file is None:
        raise UserError(
            "no keywords file: pass --keywords FILE or set job.keywords_file in the settings file"
        )
    source = read_keywords(Path(settings.job.keywords_file).expanduser())
    template = load_template(settings.prompts.template, settings.providers.prompt)
    if check_template is not None:
        check_template(template)
    return plan_slots(
        source,
        template,
        settings.job.count,
        settings.generation.aspect_ratios,
        random_order=settings.job.keyword_random,
        seed=settings.job.seed,
    )


def size_for(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    """(width, height) for `aspect_ratio` with the given long side, both multiples of 8.

    The short side is the multiple of 8 closest to the exact ratio, e.g. 16:9 at 1024 ->
    (1024, 576), 4:5 at 1024 -> (816, 1024).
    """
    return fit_size(aspect_ratio, long_side, multiple=8, low=8, high=max(long_side, 8))
