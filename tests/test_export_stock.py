"""Stock rules and the stock CSVs: every limit, and every change listed, never silent."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from genfactory import stock
from genfactory.exports import run_export
from genfactory.exports.stock_csv import (
    ADOBE_HEADER,
    MAX_BYTES,
    MAX_ROWS,
    numbered,
    write_split_csv,
)
from tests.test_export_support import make_job

TITLE_71 = "Spring meadow, wild flowers, morning light, blue sky, quiet hills, bee!"
TITLE_LONG = "Spring meadow with wild flowers in the morning light under a blue sky, quiet hills"
KEYWORDS_60 = [f"Keyword {i}" for i in range(60)]
LABEL_40 = "spring_meadow_flowers_collection_2026_ab"


def _rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text("utf-8")), delimiter=delimiter))


def test_title_keywords_and_description_to_adobe_limits() -> None:
    assert len(TITLE_71) == 71 and "," in TITLE_71
    keywords = ["Nike shoes", "meadow", "MEADOW", "apple", "apple iphone", *KEYWORDS_60]
    meta, changes = stock.normalize_metadata(TITLE_71, "word " * 60, keywords, stock.ADOBE)
    assert len(meta.title) <= 70 and "," not in meta.title
    assert meta.title.startswith("Spring meadow wild flowers")
    assert len(meta.description) <= 200
    assert len(meta.keywords) == 49
    assert len(set(meta.keywords)) == 49
    assert all(k == k.lower() for k in meta.keywords)
    # Most important first; brands go, "apple" too next to "iphone", but the fruit stays.
    assert meta.keywords[:3] == ("meadow", "keyword 0", "keyword 1")
    fruit, _ = stock.normalize_metadata("Apples", "", ["apple", "fruit", "orchard"])
    assert fruit.keywords == ("apple", "fruit", "orchard")
    text = "\n".join(changes)
    # Without its commas the title fits: nothing more is cut.
    assert "commas removed" in text and "title cut" not in text
    long_meta, long_changes = stock.normalize_metadata(TITLE_LONG, "", [], stock.ADOBE)
    assert len(long_meta.title) <= 70 and "," not in long_meta.title
    assert (
        long_meta.title == "Spring meadow with wild flowers in the morning light under a blue sky"
    )
    assert long_changes == [
        "title: commas removed",
        f"title cut from {len(TITLE_LONG) - 1} to 69 characters",
    ]
    assert "description cut from" in text
    assert "1 duplicate(s) merged" in text
    assert "trademarks: nike shoes, apple, apple iphone" in text
    assert "12 beyond 49 dropped" in text


def test_metadata_within_limits_is_unchanged() -> None:
    meta, changes = stock.normalize_metadata("Red fox in snow", "A fox.", ["fox", "snow"])
    assert (meta.title, meta.keywords, changes) == ("Red fox in snow", ("fox", "snow"), [])


def test_stock_names_are_short_unique_and_keep_the_extension() -> None:
    namer = stock.StockNamer()
    first, changes = namer.name(f"/out/{LABEL_40}_0_0.jpeg")
    second, _ = namer.name(f"/other/{LABEL_40}_0_0.JPEG")
    third, _ = namer.name("/out/fox.png")
    fourth, _ = namer.name("/elsewhere/fox.png")
    assert len(first) <= 30 and len(second) <= 30
    assert first.endswith(".jpg") and second.endswith(".jpg") and first != second
    assert second.removesuffix(".jpg").endswith("_2")
    assert (third, fourth) == ("fox.png", "fox_2.png")
    assert changes and "shortened" in changes[0]


def test_adobe_csv_header_limits_and_the_files_it_names(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        label=LABEL_40,
        approved=3,
        metadata={"title": TITLE_LONG, "description": "A meadow.", "keywords": KEYWORDS_60},
    )
    result = run_export([job.id], "adobe-csv", tmp_path / "adobe")
    csv_path = tmp_path / "adobe" / "adobe_stock.csv"
    raw = csv_path.read_bytes()
    assert raw.startswith(b"Filename,Title,Keywords,Category,Releases\n")
    raw.decode("utf-8")
    rows = _rows(csv_path)
    assert rows[0] == ADOBE_HEADER
    names = [row[0] for row in rows[1:]]
    # Approved images only; rejected and failed ones are not for sale.
    assert len(names) == 3 and len(set(names)) == 3
    for filename, title, keywords, _category, _releases in rows[1:]:
        assert len(filename) <= 30
        assert len(title) <= 70 and "," not in title
        assert len(keywords.split(",")) == 49
    # The CSV names exactly the files exported beside it.
    assert sorted(names) == sorted(p.name for p in (tmp_path / "adobe" / "images").iterdir())
    # Every forced change is in the report, per image, and in the result the CLI prints.
    report = (tmp_path / "adobe" / "export_report.txt").read_text()
    for name in names:
        assert f"({name}) [Adobe Stock]: title cut from 81 to 69 characters" in report
        assert f"({name}) [Adobe Stock]: keywords: 11 beyond 49 dropped" in report
        assert f"({name}) [Adobe Stock]: file name shortened" in report
    assert len(result.changes) == 3 * 4  # name, commas, title, keywords per image


def test_csv_files_split_at_5000_rows_and_1_mb(tmp_path: Path) -> None:
    rows = [[f"f{i}.jpg", "A title", "a,b,c", "", ""] for i in range(MAX_ROWS + 1)]
    files = write_split_csv(rows, ADOBE_HEADER, numbered(tmp_path / "a.csv"))
    assert [p.name for p in files] == ["a.csv", "a_2.csv"]
    assert [len(_rows(p)) - 1 for p in files] == [MAX_ROWS, 1]
    big = [[f"f{i}.jpg", "T", ",".join(["keyword"] * 49 * 6), "", ""] for i in range(2500)]
    files = write_split_csv(big, ADOBE_HEADER, numbered(tmp_path / "b.csv"))
    assert len(files) > 1
    assert all(p.stat().st_size <= MAX_BYTES for p in files)
    assert all(_rows(p)[0] == ADOBE_HEADER for p in files)
    assert sum(len(_rows(p)) - 1 for p in files) == 2500


def test_freepik_csv_header_limits_and_ai_marker(tmp_path: Path) -> None:
    long_title = "Meadow " * 20
    job = make_job(
        tmp_path,
        approved=2,
        metadata={"title": long_title, "description": "d", "keywords": KEYWORDS_60},
    )
    result = run_export([job.id], "freepik-csv", tmp_path / "fp" / "upload.csv")
    path = tmp_path / "fp" / "upload.csv"
    assert path.read_bytes().startswith(b"Filename;Title;Keywords;Prompt;Model\n")
    rows = _rows(path, ";")
    assert len(rows) == 3
    for filename, title, keywords, prompt, model in rows[1:]:
        assert (tmp_path / "fp" / "upload_images" / filename).is_file()
        assert len(title) <= 100
        assert len(keywords.split(",")) == 50
        # The AI-generated marker: the prompt and the generator.
        assert prompt.startswith("a spring meadow") and model == "Other"
    assert (tmp_path / "fp" / "upload_report.txt").is_file()
    assert any("beyond 50 dropped" in line for line in result.changes)


def test_cli_prints_every_change(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genfactory.cli import app

    job = make_job(
        tmp_path,
        approved=2,
        metadata={"title": TITLE_LONG, "description": "d", "keywords": ["fox", "Nike"]},
    )
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["export", str(job.id), "--format", "adobe-csv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("title cut from 81") == 2
    assert result.output.count("trademarks: nike") == 2
    assert f"Export written: {out}" in " ".join(result.output.split())
    bad = CliRunner().invoke(app, ["export", str(job.id), "--format", "shutterstock"])
    assert bad.exit_code == 2 and "unknown export format" in bad.output
    missing = CliRunner().invoke(app, ["export", "999"])
    assert missing.exit_code == 2 and "job 999 does not exist" in missing.output
