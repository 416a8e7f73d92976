"""Fixes found trying the CLI as a new user would (issue 16, point 6): each test failed before
its fix."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genfactory.cli import app, job_runner
from genfactory.config import load_settings
from genfactory.errors import InputFileError
from genfactory.keywords import read_keywords
from genfactory.storage import repository
from genfactory.tasks.initialize import default_label, resolve_places

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_runner.console, "_width", 80)


@pytest.mark.parametrize("item", ["foo", "=5"])
def test_a_malformed_set_is_one_sentence_and_exit_2(item: str, isolated_store: Path) -> None:
    code, out = invoke("run", "--set", item)
    assert code == 2
    assert "must look like section.name=value" in out
    assert "Traceback" not in out
    assert not isolated_store.exists()


def test_a_csv_with_an_unclosed_quote_is_refused_naming_its_line(tmp_path: Path) -> None:
    keywords = tmp_path / "k.csv"
    keywords.write_text('Subject,Style\nfox,oil\n"red fox,oil\nblue lake,water\n')
    with pytest.raises(InputFileError, match=r"line 3 opens a quote .* never closed"):
        read_keywords(keywords)


def test_read_only_commands_and_refused_starts_create_nothing(
    isolated_store: Path, tmp_path: Path
) -> None:
    code, out = invoke("jobs", "show", "9999")
    assert code == 2 and "job 9999 does not exist" in out
    code, out = invoke("images", "show", "5")
    assert code == 2 and "image 5 does not exist" in out
    for args in (["jobs", "list"], ["images", "list"], ["stats"], ["clean", "--dry-run"]):
        assert invoke(*args)[0] == 0, args
    bad = tmp_path / "bad.csv"
    bad.write_text('Subject\n"fox\n')
    code, out = invoke("run", "--keywords", str(bad))
    assert code == 2 and "never closed" in out
    assert not isolated_store.exists()


def test_an_unknown_job_status_is_an_error_like_an_unknown_image_status() -> None:
    code, out = invoke("jobs", "list", "--status", "bogus")
    assert code == 2 and "unknown status 'bogus'" in out
    assert invoke("images", "list", "--status", "bogus")[0] == 2


def _plain(text: str) -> str:
    return re.sub(r"[\s│┃|]", "", text)


@pytest.mark.usefixtures("narrow")
def test_tables_fit_80_columns_and_drop_nothing(tmp_path: Path) -> None:
    log = tmp_path / "a-rather-long-directory-name" / "logs" / ("x" * 40 + "_1.log")
    execution = repository.create_execution(
        label="a_long_label_for_a_job_20261201_101112_abcd",
        settings_snapshot={"processing": {"convert_format": "jpg"}},
        output_dir=str(tmp_path / "out"),
        temp_dir=str(tmp_path / "tmp"),
        log_path=str(log),
    )
    code, out = invoke("jobs", "list")
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines())
    header = next(line for line in out.splitlines() if "label" in line)
    for column in ("id", "label", "status", "total", "ok", "qc_fail", "failed", "started"):
        assert column in header
    code, out = invoke("jobs", "show", str(execution.id))
    assert code == 0 and all(len(line) <= 80 for line in out.splitlines())
    assert _plain(str(log)) in _plain(out)


def test_version_and_h_exist_and_flags_show_no_value() -> None:
    code, out = invoke("--version")
    assert code == 0 and out.startswith("genfactory ")
    code, out = invoke("run", "-h")
    assert code == 0 and "--verbose" in out
    assert "<bool>" not in out


@pytest.mark.parametrize("signal_name", ["Ctrl-C", "SIGTERM"])
def test_a_signal_is_said_in_words(signal_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.exceptions import TerminationSignal

    error = KeyboardInterrupt() if signal_name == "Ctrl-C" else TerminationSignal(signal=15)

    def start(_flows: object) -> object:
        raise error

    with pytest.raises(typer.Exit) as ended:
        job_runner.run_job(None, start)
    assert ended.value.exit_code == 130
    err = capsys.readouterr().err
    assert f"stopped by {signal_name}" in err
    assert "KeyboardInterrupt" not in err and "TerminationSignal" not in err


def test_jobs_show_shows_the_settings_and_never_a_secret(tmp_path: Path) -> None:
    settings = load_settings(overrides={"processing.convert_format": "webp"}, environ={})
    execution = repository.create_execution(
        label="shown",
        settings_snapshot=settings.model_dump(mode="json"),
        output_dir=str(tmp_path),
        temp_dir=str(tmp_path),
    )
    code, out = invoke("jobs", "show", str(execution.id))
    assert code == 0 and "convert_format=webp" in _plain(out)
    assert "api_key" not in out


def test_two_default_labels_of_one_second_differ() -> None:
    now = datetime(2026, 12, 1, 10, 0, 0)
    assert default_label(now) != default_label(now)
    assert default_label(now).startswith("job_20261201_100000_")


def test_the_default_output_layout_gives_each_job_its_own_folder(isolated_store: Path) -> None:
    per_job = resolve_places(load_settings(overrides={"job.label": "a"}, environ={}))
    assert per_job.job.output_dir == (isolated_store / "output" / "a").resolve()
    flat = resolve_places(
        load_settings(overrides={"job.label": "b", "job.output_layout": "flat"}, environ={})
    )
    assert flat.job.output_dir == (isolated_store / "output").resolve()
