"""The local Prefect server genfactory starts once and reuses.

Without `PREFECT_API_URL`, every Prefect flow would start an ephemeral API inside the command
(10–20 s each time), and that API dies with the command, before the run is fully recorded. So
`genfactory run` starts `prefect server start` on 127.0.0.1 in the background on first use (its
own session: Ctrl-C in the terminal does not reach it), and every later command reuses it.
A user who set `PREFECT_API_URL` keeps their own server; `GENFACTORY_PREFECT_SERVER=ephemeral`
keeps Prefect's ephemeral API (tests do). Imports no Prefect: the URL must be in the
environment before Prefect is first imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from genfactory.errors import UserError
from genfactory.storage.db import data_dir

MODE_ENV = "GENFACTORY_PREFECT_SERVER"
PORT_ENV = "GENFACTORY_PREFECT_PORT"
DEFAULT_PORT = 4200
START_TIMEOUT_SECONDS = 90.0

#: Settings of the local server unless the user's environment sets them. Prefect's task run
#: recorder writes each task-run state event in a transaction of its own by default (batch size
#: 1): with SQLite that cost the server about 8 ms of CPU per event, 3 events per task run, more
#: CPU than the job itself. In batches of up to 100, written at least every second (so the UI
#: lags by one second at most), it costs a third of that (benchmarks/README.md).
SERVER_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def server_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a local server started from `base`: `SERVER_DEFAULTS` where `base`
    sets nothing, and no `PREFECT_API_URL` (the server is the API)."""
    env = {**SERVER_DEFAULTS, **base}
    env.pop("PREFECT_API_URL", None)
    return env


@dataclass(frozen=True)
class ServerStatus:
    url: str
    running: bool
    pid: int | None
    managed: bool  # started by genfactory (its pid file is ours)

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


def port() -> int:
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise UserError(f"{PORT_ENV}={value!r} is not a port number; e.g. {DEFAULT_PORT}")
    return int(value)


def local_url() -> str:
    return f"http://127.0.0.1:{port()}/api"


def _pid_file() -> Path:
    return data_dir() / "prefect-server.pid"


def _log_file() -> Path:
    return data_dir() / "logs" / "prefect-server.log"


def healthy(url: str, timeout: float = 1.0) -> bool:
    """True when a Prefect API answers its health check at `url`."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except Exception:
        return False


def _read_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def status() -> ServerStatus:
    url = local_url()
    pid = _read_pid()
    return ServerStatus(url=url, running=healthy(url), pid=pid, managed=pid is not None)


def choose_api() -> str | None:
    """Decide which Prefect API this command uses and put it in the environment (before
    Prefect is imported): the user's `PREFECT_API_URL`, Prefect's ephemeral API (None), or the
    local server (started later by `ensure_started`)."""
    if os.environ.get("PREFECT_API_URL", "").strip():
        return os.environ["PREFECT_API_URL"]
    if os.environ.get(MODE_ENV, "").strip().lower() == "ephemeral":
        return None
    url = local_url()
    os.environ["PREFECT_API_URL"] = url
    os.environ["GENFACTORY_LOCAL_PREFECT"] = "1"
    return url


def ensure_started(url: str | None) -> bool:
    """Start the local server at `url` if genfactory chose it and it is not answering; True
    when it had to be started (the first command pays its start-up, later ones do not)."""
    if url is None or os.environ.get("GENFACTORY_LOCAL_PREFECT") != "1" or healthy(url):
        return False
    start()
    return True


def start(timeout: float = START_TIMEOUT_SECONDS) -> ServerStatus:
    """Start the local server in the background (if none answers) and wait until it does."""
    current = status()
    if current.running:
        return current
    log_path = _log_file()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = server_environment(os.environ)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C in a terminal spares it
        )
    _pid_file().write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(current.url):
            return status()
        if process.poll() is not None:
            raise UserError(
                f"the local Prefect server could not start (exit {process.returncode}); see "
                f"{log_path}, or set {PORT_ENV} if port {port()} is taken"
            )
        time.sleep(0.25)
    raise UserError(
        f"the local Prefect server did not answer within {timeout:.0f} s; see {log_path}"
    )


def stop(timeout: float = 20.0) -> bool:
    """Stop the local server genfactory started; False when none of ours was running."""
    pid = _read_pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)
    return True
