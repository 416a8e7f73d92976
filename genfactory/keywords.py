"""Keywords files (docs/SPEC.md §2): a .txt (one keyword per line) or a .csv (a header, one slot's
variables per row) read into a `KeywordSource`. Pure (no Prefect, no SQL, no network); every
user mistake is an `InputFileError` with one sentence naming the file, the place and the fix.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genfactory.errors import InputFileError
from genfactory.image_folder import SOURCE_PATH, SOURCE_STEM

#: The variable every slot has: the TXT line, or a CSV row's values joined with ", ".
KEYWORD = "keyword"

# Keywords files larger than this are almost certainly the wrong file (an image, a dump...).
_MAX_KEYWORDS_FILE_BYTES = 50 * 1024 * 1024


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
    text = read_text_file(path, what="keywords file")
    if suffix == ".txt":
        return _parse_txt(path, text)
    return _parse_csv(path, text)


def read_text_file(path: Path, *, what: str) -> str:
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
        if name in (SOURCE_PATH, SOURCE_STEM):
            raise InputFileError(
                f"keywords file {path}: column {name!r} is a name genfactory keeps for images "
                "from job.images_dir (it names their files); rename the column"
            )
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
