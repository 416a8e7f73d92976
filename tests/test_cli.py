"""The CLI: user mistakes are one sentence and exit code 2, and create nothing."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genfactory.cli import app
from genfactory.startup import pause_collection, resume_collection
from genfactory.storage import repository

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty.txt"
    empty.write_text("# only a comment\n\n")
    ragged = tmp / "ragged.csv"
    ragged.write_text("Subject,Style\nfox,watercolor\nlemon\n")
    csv = tmp / "good.csv"
    csv.write_text("Subject,Style\nfox,watercolor\n")
    template = tmp / "template.txt"
    template.write_text("${{Subject}} in ${{Colour}}\n")
    unknown_key = tmp / "unknown.toml"
    unknown_key.write_text("[processing]\njpeg_quality = 90\n")
    blocker = tmp / "a-file"
    blocker.write_text("x")
    kw = str(EXAMPLES / "keywords.txt")
    return {
        "missing keywords file": (["--keywords", str(tmp / "nope.txt")], "nope.txt"),
        "empty keywords file": (["--keywords", str(empty)], "empty.txt"),
        "keywords path is a directory": (["--keywords", str(tmp)], str(tmp.name)),
        "ragged csv row": (["--keywords", str(ragged)], "row 2"),
        "unknown placeholder": (
            ["--keywords", str(csv), "--set", f"prompts.template={template}"],
            "Colour",
        ),
        "aspect ratio 16-9": (["--keywords", kw, "--set", "generation.aspect_ratios=16-9"], "16-9"),
        "aspect ratio 0:1": (["--keywords", kw, "--set", "generation.aspect_ratios=0:1"], "0:1"),
        "jpg_quality 0": (["--keywords", kw, "--set", "processing.jpg_quality=0"], "jpg_quality"),
        "jpg_quality 101": (
            ["--keywords", kw, "--set", "processing.jpg_quality=101"],
            "jpg_quality",
        ),
        "count 0": (["--keywords", kw, "--count", "0"], "job.count = 0"),
        "unknown provider": (["--keywords", kw, "--set", "providers.image=dalle"], "dalle"),
        "unknown key in settings file": (["--config", str(unknown_key)], "jpeg_quality"),
        "unwritable output dir": (
            ["--keywords", kw, "--output-dir", str(blocker / "out")],
            "cannot be written",
        ),
        "no keywords at all": ([], "no keywords file"),
        "remote provider without key": (
            ["--keywords", kw, "--set", "providers.image=piapi"],
            "PIAPI_API_KEY",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(Path("/tmp")).keys()))
def test_bad_input_is_one_clear_sentence_and_creates_nothing(
    case: str, tmp_path: Path, isolated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIAPI_API_KEY", raising=False)
    args, fragment = _bad_inputs(tmp_path)[case]
    out = tmp_path / "output"
    if "--output-dir" not in args:
        args = [*args, "--output-dir", str(out)]
    code, output = invoke("run", *args)
    assert code == 2, output
    assert fragment in output
    assert "Traceback" not in output
    assert output.strip().startswith("error:")
    assert not out.exists()
    assert repository.list_executions() == []


def test_jobs_show_unknown_id_is_a_clear_error() -> None:
    code, output = invoke("jobs", "show", "42")
    assert code == 2 and "job 42 does not exist" in output


def test_images_list_rejects_unknown_status() -> None:
    code, output = invoke("images", "list", "--status", "done")
    assert code == 2 and "unknown status 'done'" in output


def test_settings_command_prints_a_loadable_template(tmp_path: Path) -> None:
    code, output = invoke("settings")
    assert code == 0
    path = tmp_path / "all.toml"
    path.write_text(output)
    from genfactory.config import load_settings

    assert load_settings(path, environ={}).processing.jpg_quality == 85


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_run_then_jobs_list_shows_the_counts(tmp_path: Path) -> None:
    # The console script pauses the garbage collector for the start-up (`startup`); the job
    # turns it back on when its slots start, any other command before it runs.
    pause_collection()
    try:
        code, output = _run_example(tmp_path)
        assert gc.isenabled(), output
        pause_collection()
        code_list, listing = invoke("jobs", "list")
        assert gc.isenabled(), listing
    finally:
        resume_collection()
        gc.enable()
    assert code == 0, output
    execution = repository.list_executions()[0]
    assert execution.label == "cli-test" and execution.total_images == 8
    assert f"Approved images: {tmp_path / 'out'}" in output
    assert "Log: " in output and "Store: sqlite" in output
    assert code_list == 0
    row = next(line for line in listing.splitlines() if "cli-test" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[2:7] == [
        "completed",
        "8",
        str(execution.approved_images),
        str(execution.qc_failed_images),
        str(execution.failed_images),
    ]


def test_the_console_script_runs_the_cli_with_the_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import genfactory.cli
    from genfactory import launch

    seen: list[bool] = []
    monkeypatch.setattr(genfactory.cli, "main", lambda: seen.append(gc.isenabled()))
    try:
        launch.main()
    finally:
        resume_collection()
        gc.enable()
    assert seen == [False]


INSPECT_WITHOUT_PREFECT = """
import sys
from typer.testing import CliRunner
from genfactory.cli import app
for args in (["jobs", "list"], ["jobs", "show", sys.argv[1]], ["images", "list"], ["stats"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
print(sorted(name for name in sys.modules if name.split(".")[0] == "prefect"))
"""


def test_inspection_commands_start_without_prefect() -> None:
    # Importing Prefect took 1.9 s of `jobs list`'s 2.9 s; reading the store needs none of it.
    execution = repository.create_execution(
        label="inspect", settings_snapshot={}, output_dir="/o", temp_dir="/t"
    )
    done = subprocess.run(
        [sys.executable, "-c", INSPECT_WITHOUT_PREFECT, str(execution.id)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _run_example(tmp_path: Path) -> tuple[int, str]:
    return invoke(
        "run",
        "--config",
        str(EXAMPLES / "job.toml"),
        "--count",
        "2",
        "--output-dir",
        str(tmp_path / "out"),
        "--label",
        "cli-test",
        "--set",
        "generation.local_long_side=512",
    )


def test_jobs_show_reports_usage_per_service() -> None:
    execution = repository.create_execution(
        label="usage-test",
        settings_snapshot={"providers": {"image": "piapi"}},
        output_dir="/o",
        temp_dir="/t",
    )
    repository.add_usage(
        execution.id,
        {"piapi": {"calls": 9, "retries": 2}, "removebg": {"calls": 4, "credits": 1.5}},
    )
    code, output = invoke("jobs", "show", str(execution.id))
    assert code == 0
    assert "usage piapi" in output and "calls 9, retries 2" in output
    assert "usage removebg" in output and "credits 1.5" in output
