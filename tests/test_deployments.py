"""prefect.yaml: the deployments a user registers, their parameters as the UI form shows them,
and a job started the way a deployment run starts it (a keywords file and a count)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.exceptions import ParameterTypeError

from genfactory.errors import ConfigError
from genfactory.serve import DeploymentSpec, load_flow, read_specs
from genfactory.statuses import JobStatus
from genfactory.storage import repository

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
EXPECTED = {
    "generate": "genfactory/flows/generate_job.py:generate_job",
    "resume": "genfactory/flows/generate_job.py:resume_job",
    "retry": "genfactory/flows/retry_images.py:retry_images",
    "rerun": "genfactory/flows/rerun_jobs.py:rerun_jobs",
    "export": "genfactory/flows/export_job.py:export_job",
}


def _specs() -> dict[str, DeploymentSpec]:
    return {spec.name: spec for spec in read_specs(PREFECT_YAML)}


def _flow_or_skip(spec: DeploymentSpec) -> Any:
    """The deployment's flow; a flow module from a branch not merged yet skips, naming it."""
    if importlib.util.find_spec(spec.module) is None:
        pytest.skip(f"{spec.module} is not merged yet (deployment {spec.name!r})")
    flow = load_flow(spec)
    assert flow is not None
    return flow


def test_prefect_yaml_lists_the_deployments_with_queued_collisions() -> None:
    specs = _specs()
    assert {name: spec.entrypoint for name, spec in specs.items()} == EXPECTED
    for spec in specs.values():
        assert spec.raw["work_pool"]["name"] == "genfactory"
        limit = spec.raw["concurrency_limit"]
        assert limit["limit"] >= 1 and limit["collision_strategy"] == "ENQUEUE"
        assert "genfactory" in spec.raw["tags"]
        assert not spec.raw.get("schedules")  # the nightly example stays commented out
    text = PREFECT_YAML.read_text()
    assert "#   - cron:" in text
    # Secrets are never parameters.
    parameters = str([spec.raw.get("parameters") for spec in specs.values()]).lower()
    assert not re.search(r"api_key|secret|password|token", parameters)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_deployment_loads_from_its_entrypoint_and_accepts_its_parameters(name: str) -> None:
    from prefect.flows import load_flow_from_entrypoint

    spec = _specs()[name]
    _flow_or_skip(spec)
    # As a worker loads it: from the file, under a module name of Prefect's choosing.
    flow = load_flow_from_entrypoint(str(ROOT / spec.entrypoint))
    parameters = dict(spec.raw.get("parameters") or {})
    # Raises a pydantic error ("... is not fully defined") when the signature cannot be
    # resolved; a parameter with no default (resume's job id) is only reported missing.
    try:
        flow.validate_parameters(parameters)
    except ParameterTypeError as exc:
        problems = [line for line in str(exc).splitlines() if line.startswith(" - ")]
        assert problems and all(line.endswith(": Field required") for line in problems), exc


def test_the_generate_form_needs_only_a_keywords_file_and_a_count() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    spec = _specs()["generate"]
    flow = load_flow_from_entrypoint(str(ROOT / spec.entrypoint))
    schema = parameter_schema(flow)
    assert schema.required == []
    properties = schema.properties
    for field in ("keywords_file", "count", "label", "config_file", "overrides", "settings"):
        assert properties[field].get("description"), field
    assert spec.raw["parameters"] == {"keywords_file": "examples/keywords.txt", "count": 3}
    assert (ROOT / spec.raw["parameters"]["keywords_file"]).is_file()
    # What the UI sends for count is checked and cast like the CLI's --count.
    cast = flow.validate_parameters({"keywords_file": "k.txt", "count": "4"})
    assert cast["count"] == 4


def test_a_job_from_a_keywords_file_and_a_count_produces_images(
    tmp_path: Path, prefect_harness: None
) -> None:
    from genfactory.flows.generate_job import generate_job

    overrides = {
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "generation.local_long_side": 256,
        "generation.local_defect_rate": 0,
        "qc.min_width": 64,
        "qc.min_height": 64,
    }
    summary = generate_job(
        keywords_file=str(ROOT / "examples" / "keywords.txt"),
        count=2,
        label="from-params",
        overrides=overrides,
    )
    execution = repository.get_execution(summary["execution_id"])
    assert execution.status == JobStatus.COMPLETED
    assert execution.label == "from-params"
    assert execution.settings_snapshot["job"]["count"] == 2
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == summary["approved"] >= 1
    assert all(name.startswith("from-params_") for name in files)


def test_a_job_without_a_label_is_named_after_its_run(
    tmp_path: Path, prefect_harness: None
) -> None:
    from genfactory.flows.generate_job import generate_job

    state = generate_job(
        keywords_file=str(ROOT / "examples" / "keywords.txt"),
        count=1,
        overrides={"job.output_dir": str(tmp_path / "out"), "job.temp_dir": str(tmp_path / "t")},
        return_state=True,
    )
    summary = state.result()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == f"generate-job/{summary['label']}"
    assert summary["label"].startswith("job_")


def test_settings_and_small_parameters_together_are_refused(
    tmp_path: Path, prefect_harness: None
) -> None:
    from genfactory.config import load_settings
    from genfactory.flows.generate_job import generate_job

    settings = load_settings(overrides={"job.keywords_file": "k.txt"}, environ={})
    with pytest.raises(ConfigError, match="either settings or keywords_file"):
        generate_job(settings, count=3)
    with pytest.raises(ConfigError, match=r"setting job.count = 0"):
        generate_job(keywords_file=str(ROOT / "examples" / "keywords.txt"), count=0)
    assert repository.list_executions() == []


def test_serve_reads_the_same_deployments_and_names_a_missing_flow_module(
    tmp_path: Path,
) -> None:
    from genfactory.serve import served_deployments

    data = yaml.safe_load(PREFECT_YAML.read_text())
    data["deployments"].append(
        {"name": "later", "entrypoint": "genfactory/flows/not_merged.py:later"}
    )
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(data))
    deployments, skipped = served_deployments(path)
    served = {d.name: d for d in deployments}
    assert "later: genfactory.flows.not_merged is not installed" in skipped
    assert {"generate", "resume"} <= set(served)
    generate = served["generate"]
    assert generate.flow_name == "generate-job"
    assert generate.parameters == {"keywords_file": "examples/keywords.txt", "count": 3}
    assert generate.concurrency_limit == 2
    assert str(generate.concurrency_options.collision_strategy.value) == "ENQUEUE"
    with pytest.raises(ConfigError, match="lists no deployments"):
        (tmp_path / "empty.yaml").write_text("name: x\n")
        read_specs(tmp_path / "empty.yaml")


def test_a_label_from_the_config_file_or_the_environment_is_kept_by_a_deployment_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genfactory.flows.generate_job import _deployment_settings

    config = tmp_path / "job.toml"
    config.write_text('[job]\nlabel = "from-toml"\n')
    assert _deployment_settings(None, 2, None, str(config), None).job.label == "from-toml"
    # The named parameter still wins over the file.
    assert _deployment_settings(None, 2, "named", str(config), None).job.label == "named"
    monkeypatch.setenv("GENFACTORY_JOB__LABEL", "from-env")
    assert _deployment_settings(None, 2, None, None, None).job.label == "from-env"
    monkeypatch.delenv("GENFACTORY_JOB__LABEL")
    # Nothing names one: a fresh default label.
    assert re.fullmatch(
        r"job_\d{8}_\d{6}_\w{4}", _deployment_settings(None, 2, None, None, None).job.label or ""
    )
