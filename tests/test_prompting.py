"""Keywords files, templates and the slot plan (docs/SPEC.md §1 step 1, §2, §10)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from genfactory.errors import InputFileError
from genfactory.keywords import KeywordSource, read_keywords
from genfactory.prompting import (
    default_template_path,
    fill_template,
    keyword_order,
    load_template,
    placeholders,
    plan_slots,
    size_for,
    validate_template,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# TXT keywords


def test_txt_strips_crlf_spaces_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "keywords.txt",
        "\ufeff# spring batch\r\n  red apple  \r\n\r\n\t# not this one\r\n"
        "blue whale\r\n   \r\nsun hat",
    )
    source = read_keywords(path)
    assert source.kind == "txt"
    assert [e.keyword for e in source.entries] == ["red apple", "blue whale", "sun hat"]
    assert source.entries[0].variables == {"keyword": "red apple"}
    assert source.entries[1].where == "line 5 of keywords.txt"
    assert source.variable_names == ("keyword",)


@pytest.mark.parametrize("content", ["", "\n\n   \n", "# only\n# comments\n"])
def test_txt_without_keywords_is_an_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "empty.txt", content)
    with pytest.raises(InputFileError, match=r"empty\.txt has no keywords; write one keyword"):
        read_keywords(path)


def test_missing_keywords_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nope\.txt does not exist"):
        read_keywords(tmp_path / "nope.txt")


def test_directory_binary_encoding_and_extension_errors(tmp_path: Path) -> None:
    folder = tmp_path / "dir.txt"
    folder.mkdir()
    with pytest.raises(InputFileError, match="is a directory"):
        read_keywords(folder)
    with pytest.raises(InputFileError, match="is a binary file"):
        read_keywords(write(tmp_path, "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
    with pytest.raises(InputFileError, match=r"not valid UTF-8 text.*save it with UTF-8"):
        read_keywords(write(tmp_path, "latin.txt", "caf\xe9 cr\xe8me".encode("latin-1")))
    with pytest.raises(InputFileError, match=r"unsupported type '\.xlsx'.*\.txt.*\.csv"):
        read_keywords(write(tmp_path, "keywords.xlsx", "x"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_keywords_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.txt", "apple\n")
    path.chmod(0)
    try:
        with pytest.raises(InputFileError, match="permission denied"):
            read_keywords(path)
    finally:
        path.chmod(0o644)


# ---------------------------------------------------------------------------------------------
# CSV keywords


def test_csv_rows_fill_header_placeholders(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "keywords.csv",
        '\ufeffSubject,Colour\r\nowl," silver "\r\n\r\n"fox, young",red\r\n,,\r\n',
    )
    source = read_keywords(path)
    assert source.kind == "csv"
    assert source.columns == ("Subject", "Colour")
    assert source.variable_names == ("Subject", "Colour", "keyword")
    assert [e.variables for e in source.entries] == [
        {"Subject": "owl", "Colour": "silver", "keyword": "owl, silver"},
        {"Subject": "fox, young", "Colour": "red", "keyword": "fox, young, red"},
    ]
    assert source.entries[1].where == "row 2 (line 4) of keywords.csv"
    template = "A ${{Colour}} ${{ Subject }} at dusk; about: ${keyword} / {keyword}"
    filled = fill_template(template, source.entries[0].variables, where=source.entries[0].where)
    assert filled == "A silver owl at dusk; about: owl, silver / owl, silver"


def test_csv_keyword_column_is_the_keyword(tmp_path: Path) -> None:
    source = read_keywords(write(tmp_path, "k.csv", "keyword,Style\ncat,watercolor\n"))
    assert source.entries[0].keyword == "cat"
    assert source.variable_names == ("keyword", "Style")


def test_csv_row_missing_a_column_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "keywords.csv", "Subject,Colour,Mood\nowl,silver,calm\nfox,red\n")
    with pytest.raises(InputFileError) as info:
        read_keywords(path)
    message = str(info.value)
    assert "keywords.csv" in message
    assert "row 2 (line 3)" in message
    assert "'Mood'" in message


def test_csv_row_with_an_extra_value_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "keywords.csv", "Subject,Colour\nowl,silver,extra\n")
    with pytest.raises(InputFileError, match=r"row 1 \(line 2\).*extra value in column 3"):
        read_keywords(path)
    # Trailing empty cells (spreadsheet exports) are not extra values.
    source = read_keywords(write(tmp_path, "ok.csv", "Subject,Colour,,\nowl,silver,,\n"))
    assert source.columns == ("Subject", "Colour")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; the first row must name the placeholders"),
        ("\n\n", "is empty"),
        ("Subject,Colour\n", "has a header row .* but no data rows"),
        ("Subject,Subject\nowl,fox\n", "names column 'Subject' twice"),
        ("Subject,,Colour\nowl,x,red\n", "column 2 of the header row has no name"),
        ("Subject,Colour\n , \n", "no data rows"),
        ("keyword,source_stem\nowl,fox\n", "column 'source_stem' is a name genfactory keeps"),
    ],
)
def test_unusable_csv_files_are_errors(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(InputFileError, match=message):
        read_keywords(write(tmp_path, "bad.csv", content))


# ---------------------------------------------------------------------------------------------
# Templates


def test_default_templates_ship_with_the_package() -> None:
    assert default_template_path("local").name == "local_prompt.txt"
    assert default_template_path("openai").name == "system_prompt.txt"
    local = load_template(None, "local")
    llm = load_template(None, "openai")
    for text in (local, llm):
        assert placeholders(text) == ["keyword"]
        validate_template(text, ("keyword",))
    assert "\n" not in local and "no text" in local and "no logos" in local
    assert "prompt" in llm.lower() and "logos" in llm and "famous people" in llm


def test_custom_template_and_its_errors(tmp_path: Path) -> None:
    custom = write(tmp_path, "mine.txt", "\ufeff  ${{Subject}} in the rain  \n")
    assert load_template(custom, "local") == "${{Subject}} in the rain"
    with pytest.raises(InputFileError, match=r"prompt template .*gone\.txt does not exist"):
        load_template(tmp_path / "gone.txt", "local")
    with pytest.raises(InputFileError, match=r"prompt template .* is empty"):
        load_template(write(tmp_path, "blank.txt", "  \n\n"), "local")


def test_unknown_placeholder_names_the_placeholder_the_place_and_the_columns() -> None:
    variables = {"Subject": "owl", "keyword": "owl"}
    with pytest.raises(InputFileError) as info:
        fill_template("a ${{Colour}} ${{Subject}}", variables, where="row 3 of keywords.csv")
    message = str(info.value)
    assert "${{Colour}}" in message
    assert "row 3 of keywords.csv" in message
    assert "Subject, keyword" in message
    with pytest.raises(InputFileError, match=r"\$\{mood\}"):
        validate_template("a ${mood} ${keyword}", ("keyword",))


def test_placeholder_forms_and_literal_braces() -> None:
    variables = {"Subject": "owl", "keyword": "owl"}
    template = 'Return JSON like {"title": "..."} for ${keyword}, {keyword}, ${{subject}}, {other}'
    assert fill_template(template, variables, where="x") == (
        'Return JSON like {"title": "..."} for owl, owl, owl, {other}'
    )
    assert placeholders(template) == ["keyword", "subject"]
    # A value that looks like a placeholder is inserted as text, not expanded again.
    assert fill_template("${keyword}!", {"keyword": "${{Subject}}"}, where="x") == "${{Subject}}!"


# ---------------------------------------------------------------------------------------------
# Slot plan


def txt_source(tmp_path: Path, words: list[str]) -> KeywordSource:
    return read_keywords(write(tmp_path, "k.txt", "\n".join(words)))


def test_slots_walk_keywords_in_order_and_cycle_aspect_ratios(tmp_path: Path) -> None:
    source = txt_source(tmp_path, ["apple", "pear", "plum"])
    plans = plan_slots(
        source, "${keyword}, photo", 7, ["1:1", "16:9"], random_order=False, seed=None
    )
    assert [p.slot for p in plans] == list(range(7))
    assert [p.keyword for p in plans] == ["apple", "pear", "plum", "apple", "pear", "plum", "apple"]
    assert [p.aspect_ratio for p in plans] == ["1:1", "16:9"] * 3 + ["1:1"]
    assert plans[4].system_prompt == "pear, photo"
    assert plans[4].variables == {"keyword": "pear"}


def test_random_order_uses_every_keyword_before_repeating(tmp_path: Path) -> None:
    words = [f"word{i}" for i in range(5)]
    source = txt_source(tmp_path, words)
    plans = plan_slots(source, "${keyword}", 12, ["1:1"], random_order=True, seed=11)
    chosen = [p.keyword for p in plans]
    assert sorted(chosen[:5]) == words and sorted(chosen[5:10]) == words
    assert len(set(chosen[10:])) == 2
    assert chosen[:5] != words or chosen[5:10] != words, "not shuffled"
    # Reproducible with a seed; another seed gives another order.
    again = plan_slots(source, "${keyword}", 12, ["1:1"], random_order=True, seed=11)
    assert [p.keyword for p in again] == chosen
    orders = {tuple(keyword_order(5, 5, random_order=True, seed=s)) for s in range(10)}
    assert len(orders) > 1


def test_random_order_covers_keywords_evenly(tmp_path: Path) -> None:
    counts = Counter(keyword_order(4, 400, random_order=True, seed=None))
    assert set(counts.values()) == {100}


def test_plan_fails_before_anything_when_a_placeholder_is_unknown(tmp_path: Path) -> None:
    source = read_keywords(write(tmp_path, "keywords.csv", "Subject\nowl\nfox\n"))
    with pytest.raises(InputFileError, match=r"\$\{\{Colour\}\}.*keywords\.csv.*Subject, keyword"):
        plan_slots(source, "${{Colour}} ${{Subject}}", 3, ["1:1"], random_order=False, seed=None)
    plans = plan_slots(source, "${{Subject}} at night", 3, ["1:1"], random_order=False, seed=None)
    assert [p.system_prompt for p in plans] == ["owl at night", "fox at night", "owl at night"]


@pytest.mark.parametrize(
    ("ratio", "long_side", "size"),
    [
        ("1:1", 1024, (1024, 1024)),
        ("16:9", 1024, (1024, 576)),
        ("9:16", 1024, (576, 1024)),
        ("4:5", 1024, (816, 1024)),
        ("3:2", 2048, (2048, 1368)),
        ("21:9", 256, (256, 112)),
        ("1:1", 1000, (1000, 1000)),
        ("4:3", 1023, (1016, 760)),
    ],
)
def test_size_for_aspect_ratio(ratio: str, long_side: int, size: tuple[int, int]) -> None:
    width, height = size_for(ratio, long_side)
    assert (width, height) == size
    assert width % 8 == 0 and height % 8 == 0


def test_size_for_rejects_a_malformed_ratio() -> None:
    with pytest.raises(ValueError, match="W:H"):
        size_for("wide", 1024)
