"""Cost before and after: planned calls, estimates from usage, the budget, `run --dry-run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genfactory import pricing
from genfactory.cli import app
from genfactory.config import Settings
from genfactory.providers.base import Usage
from genfactory.storage import repository
from tests.fakes.fixtures import exported_fakes
from tests.fakes.server import FakeServices

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()

REMOTE: dict[str, dict[str, object]] = {
    "providers": {
        "prompt": "openai",
        "image": "piapi",
        "qc": "openai",
        "metadata": "openai",
        "background": "removebg",
    },
    "processing": {"remove_bg": True},
}


def remote(**sections: dict[str, object]) -> Settings:
    data = {key: dict(value) for key, value in REMOTE.items()}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Settings.model_validate(data)


def test_planned_calls_follow_the_providers_and_the_switches() -> None:
    assert pricing.planned_calls(Settings(), 5) == {}  # local providers: nothing to pay
    assert pricing.planned_calls(remote(), 8) == {
        "openai": {"prompt_calls": 8, "vision_calls": 64},  # QC + metadata on 32 images
        "piapi": {"tasks": 8},
        "removebg": {"images": 32, "credits": 32},
    }
    combined = remote(metadata={"combined_with_qc": True}, processing={"remove_bg": False})
    assert pricing.planned_calls(combined, 8) == {
        "openai": {"prompt_calls": 8, "vision_calls": 32},
        "piapi": {"tasks": 8},
    }
    runware = remote(providers={"image": "runware"}, job={"variations": 3})
    assert pricing.planned_calls(runware, 2)["runware"] == {"images": 6}


def test_estimates_use_the_editable_prices() -> None:
    settings = remote(
        pricing={"piapi_relax_per_task": 0.5, "removebg_per_credit": 1.0},
        processing={"remove_bg_size": "preview"},
    )
    cost = pricing.estimate_cost(settings, pricing.planned_calls(settings, 2))
    assert cost["piapi"] == 1.0
    assert cost["removebg"] == 2.0  # 8 images x 1/4 credit
    openai = 2 * (600 * 2.5 + 120 * 10) / 1e6 + 16 * (1200 * 2.5 + 300 * 10) / 1e6
    assert cost["openai"] == pytest.approx(openai)
    assert cost["total"] == pytest.approx(3.0 + openai)
    fast = remote(generation={"process_mode": "fast"})
    assert pricing.estimate_cost(fast, {"piapi": {"tasks": 10}})["piapi"] == pytest.approx(0.4)


def test_estimates_from_usage_use_what_the_services_reported() -> None:
    usage = Usage()
    usage.add("openai", calls=3, prompt_tokens=1_000_000, completion_tokens=100_000)
    usage.add("runware", calls=1, cost=0.25, images=4)
    usage.add("removebg", calls=2, credits=1.5)
    usage.add("piapi", calls=5, tasks=2, ambiguous_creates=1)  # a maybe-charged create counts
    cost = pricing.estimate_cost(Settings(), usage)
    assert cost == {
        "openai": pytest.approx(2.5 + 1.0),
        "runware": 0.25,
        "removebg": pytest.approx(0.3),
        "piapi": pytest.approx(0.045),
        "total": pytest.approx(4.095),
    }


def test_the_budget_stops_before_the_call_that_would_pass_it() -> None:
    settings = remote(job={"max_cost": 0.05})
    usage = Usage()
    assert pricing.budget_exceeded(remote(), {"piapi": {"tasks": 1000}}) is None  # no budget
    assert pricing.budget_exceeded(settings, usage) is None
    usage.add("piapi", tasks=3)  # $0.045 spent
    assert pricing.budget_exceeded(settings, usage) is None
    reason = pricing.budget_exceeded(settings, usage, next_call={"piapi": {"tasks": 1}})
    assert reason is not None
    assert "$0.0450" in reason and "job.max_cost = $0.05" in reason and "--max-cost" in reason


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    with exported_fakes(monkeypatch) as fake:
        yield fake


def test_dry_run_prints_the_plan_and_creates_and_sends_nothing(
    fake: FakeServices, tmp_path: Path, isolated_store: Path
) -> None:
    out = tmp_path / "never" / "out"
    args = ["run", "--dry-run", "--keywords", str(EXAMPLES / "keywords.txt"), "--count", "6"]
    args += ["--output-dir", str(out), "--max-cost", "0.5"]
    for section, values in REMOTE.items():
        args += [
            item
            for key, value in values.items()
            for item in ("--set", f"{section}.{key}={str(value).lower()}")
        ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "slots 6, images 24" in output
    assert "tasks 6" in output and "prompt_calls 6, vision_calls 48" in output
    assert "credits 24" in output and "$4.8000" in output  # 24 remove.bg credits at $0.20
    assert "job.max_cost = $0.5, OVER" in output
    assert fake.requests() == []  # no service contacted
    assert not out.exists() and not isolated_store.exists()  # no directory, no store file


def test_dry_run_still_fails_on_bad_input_with_one_sentence(fake: FakeServices) -> None:
    result = runner.invoke(app, ["run", "--dry-run", "--keywords", "/nope/keywords.txt"])
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_dry_run_refuses_the_template_a_run_refuses(tmp_path: Path, fake: FakeServices) -> None:
    template = tmp_path / "template.txt"
    template.write_text("Write a detailed prompt for an image of ${keyword}.\n")
    args = ["run", "--dry-run", "--keywords", str(EXAMPLES / "keywords.txt")]
    result = runner.invoke(app, [*args, "--set", f"prompts.template={template}"])
    assert result.exit_code == 2, result.output
    assert "reads as instructions to a model" in " ".join(result.output.split())


def test_jobs_show_reports_the_estimated_cost_per_service() -> None:
    execution = repository.create_execution(
        label="cost-test",
        settings_snapshot=remote(generation={"process_mode": "turbo"}).model_dump(mode="json"),
        output_dir="/o",
        temp_dir="/t",
    )
    repository.add_usage(
        execution.id, {"piapi": {"calls": 9, "tasks": 2}, "removebg": {"calls": 4, "credits": 3}}
    )
    result = runner.invoke(app, ["jobs", "show", str(execution.id)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.replace("│", " ").split())
    assert "cost piapi $0.2160 (estimated)" in output  # 2 turbo tasks at $0.108
    assert "cost removebg $0.6000 (estimated)" in output
    assert "cost total $0.8160 (estimated)" in output
