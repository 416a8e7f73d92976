"""prefect.yaml points at real flows with parameters the settings model accepts."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from genfactory.config import validate_settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_deployment_entrypoint_and_parameters_are_valid() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert flow.name == "generate-job"
        settings = validate_settings(deployment["parameters"]["settings"])
        keywords = ROOT / str(settings.job.keywords_file)
        assert keywords.is_file(), f"{deployment['name']}: {keywords} missing"
        # Secrets are never deployment parameters.
        assert "api_key" not in str(deployment["parameters"]).lower()
