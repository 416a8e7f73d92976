"""Slot building for a job's initialisation: keywords files, templates, the slot plan.

Pure functions (no Prefect, no SQL, no network): read a keywords file (SPEC §2), load and fill
a prompt template (SPEC §10 placeholders), and plan the job's generation slots with their
keyword, filled prompt template and aspect ratio. Every user mistake is an `InputFileError`
with one sentence naming the file, the place and the fix.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genfactory.config import fit_size
from genfactory.errors import InputFileError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: Shipped default templates: the offline engine gets a ready image prompt, an LLM gets
#: instructions for writing one.
DEFAULT_TEMPLATES = {"local": "local_prompt.txt"}
LLM_TEMPLATE = "system_prompt.txt"

#: The variable every slot has: the TXT line, or a CSV row's values joined with ", ".
KEYWORD = "keyword"

# Keywords files larger than this are almost certainly the wrong file (an image, a dump...).
_MAX_KEYWORDS_FILE_BYTES = 50 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Keywords files


@dataclass(frozen=True)
class KeywordEntry:
    """One keyword line or CSV row: the variables it provides and where it came from."""

    keyword: str
    variables: dict[str, str]
    #: Human-readable place for messages, e.g. "row 3 (line 4) of keywords.csv".
    where: str


@dataclass(frozen=True)
class KeywordSource:
    """A parsed keywords file: its entries in file order and the placeholder names it fills."""

    path: Path
    kind: Literal["txt", "csv"]
    entries: tuple[KeywordEntry, ...]
    #: CSV header names (in file order); empty for TXT files.
    columns: tuple[str, ...] = ()

    @property
    def variable_names(self) -> tuple[str, ...]:
        """Every placeholder name the entries fill (the CSV columns plus ``keyword``)."""
        if KEYWORD in self.columns:
            return self.columns
        return (*self.columns, KEYWORD)

    def __len__(self) -> int:
        return len(self.entries)


def read_keywords(path: Path) -> KeywordSource:
    """Read a `.txt` (one keyword per line) or `.csv` (header row = placeholder names) file.

    TXT: CRLF and surrounding spaces are stripped; blank lines and `#` comments are skipped.
    CSV: UTF-8 (a BOM is fine); blank rows are skipped; a row with a missing or extra column is
    an error naming the row and the column. Anything unusable raises `InputFileError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv"):
        raise InputFileError(
            f"keywords file {path} has an unsupported type {path.suffix or '(no extension)'!r}; "
            "use a .txt file (one keyword per line) or a .csv file (header row of placeholders)"
        )
    text = _read_text(path, what="keywords file")
    if suffix == ".txt":
        return _parse_txt(path, text)
    return _parse_csv(path, text)


def _read_text(path: Path, *, what: str) -> str:
    """The file as text, or an InputFileError saying what is wrong and how to fix it."""
    if not path.exists():
        raise InputFileError(f"{what} {path} does not exist; check the path in the settings")
    if path.is_dir():
        raise InputFileError(f"{what} {path} is a directory; give the path of a file")
    try:
        size = path.stat().st_size
        if size > _MAX_KEYWORDS_FILE_BYTES:
            raise InputFileError(
                f"{what} {path} is {size / 1e6:.0f} MB, too large for a text file; "
                "check that it is the right file"
            )
        raw = path.read_bytes()
    except PermissionError:
        raise InputFileError(
            f"{what} {path} cannot be read (permission denied); make it readable"
        ) from None
    except OSError as exc:
        raise InputFileError(
            f"{what} {path} cannot be read ({exc.strerror or exc}); check the file"
        ) from None
    if b"\x00" in raw:
        raise InputFileError(f"{what} {path} is a binary file, not text; save it as UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{what} {path} is not valid UTF-8 text (byte {exc.start}); save it with UTF-8 encoding"
        ) from None


def _parse_txt(path: Path, text: str) -> KeywordSource:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        keyword = line.strip()
        if not keyword or keyword.startswith("#"):
            continue
        entries.append(
            KeywordEntry(keyword, {KEYWORD: keyword}, where=f"line {number} of {path.name}")
        )
    if not entries:
        raise InputFileError(
            f"keywords file {path} has no keywords; write one keyword per line "
            "(blank lines and lines starting with # are ignored)"
        )
    return KeywordSource(path=path, kind="txt", entries=tuple(entries))


def _parse_csv(path: Path, text: str) -> KeywordSource:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputFileError(
            f"keywords file {path} is not valid CSV ({exc}); fix the file"
        ) from None
    _check_quotes_closed(path, text)
    # Line numbers for messages: csv rows may span lines (quoted newlines), so track them.
    lines = _csv_line_numbers(text)
    numbered = [(lines[i] if i < len(lines) else i + 1, row) for i, row in enumerate(rows)]
    numbered = [(n, row) for n, row in numbered if any(cell.strip() for cell in row)]
    if not numbered:
        raise InputFileError(
            f"keywords file {path} is empty; the first row must name the placeholders "
            "(e.g. Subject,Colour) and each following row fills them"
        )
    header_line, header = numbered[0]
    columns = [name.strip() for name in header]
    # Spreadsheets often export trailing empty columns; those are not placeholders.
    while columns and not columns[-1]:
        columns.pop()
    for position, name in enumerate(columns, start=1):
        if not name:
            raise InputFileError(
                f"keywords file {path}: column {position} of the header row has no name; "
                "give every column a placeholder name"
            )
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise InputFileError(
                f"keywords file {path}: the header row names column {name!r} twice; "
                "column names must be unique"
            )
        seen.add(name)

    entries = []
    for data_row, (line, row) in enumerate(numbered[1:], start=1):
        where = f"row {data_row} (line {line}) of {path.name}"
        cells = [cell.strip() for cell in row]
        if len(cells) < len(columns):
            missing = columns[len(cells)]
            raise InputFileError(
                f"keywords file {path}: {where} has no value for column {missing!r} "
                f"({len(cells)} of {len(columns)} columns); add the missing value"
            )
        extra = cells[len(columns) :]
        if any(extra):
            position = len(columns) + next(i for i, cell in enumerate(extra) if cell) + 1
            raise InputFileError(
                f"keywords file {path}: {where} has an extra value in column {position} "
                f"but the header names only {len(columns)} columns; remove it or add a header"
            )
        variables = dict(zip(columns, cells, strict=False))
        # Blank rows were skipped above, so every row has at least one value.
        keyword = variables.get(KEYWORD) or ", ".join(cell for cell in variables.values() if cell)
        variables.setdefault(KEYWORD, keyword)
        entries.append(KeywordEntry(keyword, variables, where=where))
    if not entries:
        raise InputFileError(
            f"keywords file {path} has a header row (line {header_line}) but no data rows; "
            "add one row per keyword below the header"
        )
    return KeywordSource(path=path, kind="csv", entries=tuple(entries), columns=tuple(columns))


def _check_quotes_closed(path: Path, text: str) -> None:
    """A quote never closed would silently swallow every following row into one cell."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    previous_end = 0
    try:
        for _row in reader:
            previous_end = reader.line_num
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return  # other irregular quoting reads as before
        raise InputFileError(
            f'keywords file {path}: line {previous_end + 1} opens a quote (") that is never '
            "closed; close it, or remove it"
        ) from None


def _csv_line_numbers(text: str) -> list[int]:
    """The 1-based line on which each CSV record starts."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts = []
    previous_end = 0
    for _row in reader:
        starts.append(previous_end + 1)
        previous_end = reader.line_num
    return starts


# ---------------------------------------------------------------------------------------------
# Templates


def default_template_path(provider_name: str) -> Path:
    """The shipped template for a prompt provider: the offline one or the LLM instructions."""
    return TEMPLATES_DIR / DEFAULT_TEMPLATES.get(provider_name, LLM_TEMPLATE)


def load_template(path: Path | None, provider_name: str) -> str:
    """The template text from `path`, or the shipped default for `provider_name` when None."""
    source = Path(path) if path is not None else default_template_path(provider_name)
    text = _read_text(source, what="prompt template")
    if not text.strip():
        raise InputFileError(
            f"prompt template {source} is empty; write the prompt (with placeholders such "
            "as ${keyword}) or leave prompts.template unset to use the default"
        )
    return text.strip()


def load_qc_prompt(path: Path) -> str:
    """The vision QC instructions of `qc.prompt_file`, or InputFileError naming the problem."""
    text = _read_text(Path(path).expanduser(), what="QC prompt file (qc.prompt_file)").strip()
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


def size_for(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    """(width, height) for `aspect_ratio` with the given long side, both multiples of 8.

    The short side is the multiple of 8 closest to the exact ratio, e.g. 16:9 at 1024 ->
    (1024, 576), 4:5 at 1024 -> (816, 1024).
    """
    return fit_size(aspect_ratio, long_side, multiple=8, low=8, high=max(long_side, 8))
