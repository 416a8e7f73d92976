"""`genfactory serve`: the deployments of prefect.yaml served from one process.

For a user with one machine and a Prefect server (genfactory's local one or their own): no work
pool and no worker; runs started from the UI, `prefect deployment run` or a schedule execute
as subprocesses of this process, with its environment (API keys, store URL, data dir).
prefect.yaml stays the one list of deployments: names, parameters, tags, concurrency.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genfactory.errors import ConfigError

#: The checkout's prefect.yaml (an editable install); `--file` names another.
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "prefect.yaml"


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of prefect.yaml, as far as serving needs it."""

    name: str
    entrypoint: str
    raw: dict[str, Any]

    @property
    def module(self) -> str:
        path = self.entrypoint.partition(":")[0]
        return path.removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        return self.entrypoint.partition(":")[2]


def read_specs(path: Path) -> list[DeploymentSpec]:
    """The deployments listed in a prefect.yaml."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; pass --file with the project's prefect.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix the file") from None
    entries = data.get("deployments") or []
    specs = [
        DeploymentSpec(str(entry["name"]), str(entry["entrypoint"]), entry)
        for entry in entries
        if isinstance(entry, dict) and entry.get("name") and entry.get("entrypoint")
    ]
    if not specs:
        raise ConfigError(f"{path} lists no deployments; add them under `deployments:`")
    return specs


def load_flow(spec: DeploymentSpec) -> Any | None:
    """The spec's flow, or None when its module is not installed (a flow from a branch that is
    not merged yet); an error inside an installed module is raised."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and spec.module.startswith(exc.name):
            return None
        raise
    return getattr(module, spec.function)


def to_runner_deployment(spec: DeploymentSpec, flow: Any) -> Any:
    """The served equivalent of a prefect.yaml entry (work pool and pull steps do not apply:
    the runs execute here)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    raw = spec.raw
    limit = raw.get("concurrency_limit")
    concurrency = ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit
    return flow.to_deployment(
        name=spec.name,
        description=raw.get("description"),
        tags=list(raw.get("tags") or []),
        parameters=dict(raw.get("parameters") or {}),
        concurrency_limit=concurrency,
        schedules=raw.get("schedules"),
    )


def served_deployments(path: Path) -> tuple[list[Any], list[str]]:
    """RunnerDeployments for every entry whose flow is installed, and one line per entry
    skipped."""
    deployments: list[Any] = []
    skipped: list[str] = []
    for spec in read_specs(path):
        flow = load_flow(spec)
        if flow is None:
            skipped.append(f"{spec.name}: {spec.module} is not installed")
            continue
        deployments.append(to_runner_deployment(spec, flow))
    return deployments, skipped


def serve(
    deployments: list[Any],
    limit: int | None,
    notify: Callable[[str], None],
    ready: Callable[[], None] = lambda: None,
) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code. `ready` is called once every
    deployment is registered with the API (a run started from then on is picked up).

    The first signal stops polling and cancels the runs in flight (their jobs end `cancelled`,
    resumable), schedules are paused, then the process exits; a second signal exits at once.
    Our own handlers, because Prefect's `serve` turns Ctrl-C into a KeyboardInterrupt in the
    middle of its shutdown (a traceback, and the schedules left unpaused)."""
    return asyncio.run(_serve(deployments, limit, notify, ready))


async def _take_over(deployments: list[Any], notify: Callable[[str], None]) -> None:
    """Delete same-named deployments bound to a work pool (`prefect deploy`): re-registering
    one for serving keeps its work pool and an empty code path, and its runs then fail to load
    the flow ("Downloading flow code from storage at None")."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                notify(
                    f"{name} was deployed to work pool {existing.work_pool_name}: served here now"
                )
                await client.delete_deployment(existing.id)


async def _serve(
    deployments: list[Any],
    limit: int | None,
    notify: Callable[[str], None],
    ready: Callable[[], None],
) -> int:
    from prefect.runner import Runner

    await _take_over(deployments, notify)
    runner = Runner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        await runner.aadd_deployment(deployment)
    ready()
    loop = asyncio.get_running_loop()
    signals: list[int] = []
    stopping: list[asyncio.Task[None]] = []

    def _on_signal(signum: int) -> None:
        signals.append(signum)
        if len(signals) > 1:
            os._exit(130)
        stopping.append(loop.create_task(runner.astop()))

    async def _install_handlers() -> None:
        # After Runner.start() has installed its own SIGTERM handler (which exits mid-loop).
        while not runner.started:
            await asyncio.sleep(0.05)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, sig)

    installer = loop.create_task(_install_handlers())
    await runner.start()
    installer.cancel()
    return 130 if signal.SIGINT in signals else 0
