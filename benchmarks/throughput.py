"""Job engine throughput against fake services of known latency (issue: the job engine).

Runs one real job (`generate_job`) in this process: PiAPI-style generation (4 images per
slot), vision QC, remove.bg and vision metadata, each answered by the project's fake services
in a subprocess (so their CPU is not counted as ours) a fixed latency after the request
arrived, their own work included, as a remote service answers. Prints:

- wall time (the whole command, Prefect start included) and flow-run time (the job's own
  started_at → completed_at in the store);
- the ideal: ceil(S / C) × the critical path of one slot (generation + per image QC,
  background removal and metadata, one after another), and `ratio to ideal`;
- images/s, orchestration CPU per image (this process's CPU; image work runs in the pool),
  peak RSS, store errors and lost slots (slots or images left in no final state, or planned
  images missing);
- python_speed_ms, one fixed pure-Python loop: CPU figures of two machines compare only
  scaled by it.

Usage:
    .venv/bin/python benchmarks/throughput.py --slots 100 --concurrency 16 --api server
    .venv/bin/python benchmarks/throughput.py --offline --slots 100

`--api ephemeral` lets Prefect start its ephemeral API in this process; `server` starts
`prefect server start` on loopback (SQLite); `postgres` the same with its database on the local
PostgreSQL (postgresql://postgres@127.0.0.1:5432, a new database per run); `url` uses the
server in PREFECT_API_URL as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAKE_SCRIPT = """
import sys, time
from tests.fakes.server import FakeServices
port, polls, long_side = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fake = FakeServices(port=port, polls_until_done=polls, image_long_side=long_side).start()
fake.qc_reject_words = ()
for service, seconds in (("openai", float(sys.argv[4])), ("removebg", float(sys.argv[5]))):
    if seconds:
        fake.set_latency(service, seconds)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def start_prefect_server(kind: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    from genfactory.engine.server import server_environment

    # The local server as `genfactory server start` runs it (its service settings included).
    env = server_environment({**os.environ, "PREFECT_HOME": str(workdir / "prefect-home")})
    database = ""
    if kind == "postgres":
        database = f"gf_bench_{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{database}"'],
            check=True,
            capture_output=True,
        )
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        )
    log = open(workdir / "prefect-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    wait_http(f"{url}/health", 120)
    return server, url, database


def direct_image_work(settings: Any, slots: int, concurrency: int) -> float:
    """Seconds the same offline image work takes without Prefect and without the store: render,
    QC, process (in the same pool), metadata, embed, `concurrency` slots at a time. What a job
    spends beyond this is orchestration."""
    from concurrent.futures import ThreadPoolExecutor

    from genfactory import prompting
    from genfactory.engine import pool as process_pool
    from genfactory.providers.base import (
        GenerationRequest,
        ImageInput,
        MetadataRequest,
        QCRequest,
        Usage,
    )
    from genfactory.providers.registry import ProviderContext, build_provider
    from genfactory.tasks import image_files

    ctx = ProviderContext(settings=settings, usage=Usage(), run_heavy=process_pool.run_in_pool)
    renderer, qc, metadata = (build_provider(r, ctx) for r in ("image", "qc", "metadata"))
    out = Path(tempfile.mkdtemp(prefix="gf-direct-"))
    used = settings.processing.model_dump(mode="json")

    def one(slot: int) -> None:
        ratio = settings.generation.aspect_ratios[slot % len(settings.generation.aspect_ratios)]
        width, height = prompting.size_for(ratio, settings.generation.local_long_side)
        result = renderer.generate(
            GenerationRequest(
                prompt=f"subject number {slot % 50}",
                aspect_ratio=ratio,
                width=width,
                height=height,
                count=1,
                seed=slot,
            )
        )
        for index, image in enumerate(result.images):
            src = out / f"{slot}_{index}.png"
            src.write_bytes(image.data)
            process_pool.run_in_pool(
                image_files.hash_file, str(src), settings.processing.max_image_pixels
            )
            verdict = qc.check(
                QCRequest(image=ImageInput(image.data, "image/png"), prompt="p", aspect_ratio=ratio)
            )
            if not verdict.passed:
                continue
            done = process_pool.run_in_pool(
                image_files.finish_to_file, str(src), str(out), src.stem, used
            )
            meta = metadata.describe(
                MetadataRequest(
                    image=ImageInput(Path(done["path"]).read_bytes(), "image/png"),
                    prompt=f"subject number {slot % 50}",
                    keyword=f"subject number {slot % 50}",
                )
            ).as_dict()
            process_pool.run_in_pool(
                image_files.embed_file_metadata,
                done["path"],
                meta["title"],
                meta["description"],
                meta["keywords"],
            )

    process_pool.warm_pool()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(slots)))
    elapsed = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def python_speed_ms() -> float:
    """Milliseconds of one fixed pure-Python loop (best of three): this machine's speed, so
    CPU figures taken on different machines can be compared."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every process: pool, server, fakes)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session: int) -> float:
    """CPU seconds of the live processes of one session (the Prefect server and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _drain_prefect() -> None:
    """Ship the logs and events still queued in this process while the API is up."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        from genfactory.engine import pool as process_pool

        process_pool.shutdown_pool()
        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
    except Exception as exc:  # figures are printed already; say why the drain failed
        print(f"(draining Prefect's log and event queues failed: {exc})", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--api", choices=["ephemeral", "server", "postgres", "url"], default="server"
    )
    parser.add_argument("--generation-seconds", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=0.25)
    parser.add_argument("--qc-seconds", type=float, default=0.4, help="vision QC and metadata")
    parser.add_argument("--bg-seconds", type=float, default=0.4)
    parser.add_argument("--long-side", type=int, default=512, help="fake image long side")
    parser.add_argument("--offline", action="store_true", help="local engines, 1 image per slot")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    speed = python_speed_ms()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gf-throughput-"))
    os.environ["GENFACTORY_DATA_DIR"] = str(workdir / "data")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ["PREFECT_HOME"] = str(workdir / "prefect-home")
    store_db = ""
    if args.store == "postgres":
        store_db = f"gf_store_{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{store_db}"'],
            check=True,
            capture_output=True,
        )
        os.environ["GENFACTORY_DATABASE_URL"] = (
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{store_db}"
        )
    else:
        os.environ["GENFACTORY_DATABASE_URL"] = f"sqlite:///{workdir / 'data' / 'store.sqlite3'}"

    server = fake = None
    prefect_db = ""
    try:
        if args.api in ("server", "postgres"):
            server, api_url, prefect_db = start_prefect_server(args.api, workdir)
            os.environ["PREFECT_API_URL"] = api_url
        elif args.api == "ephemeral":
            os.environ.pop("PREFECT_API_URL", None)
            os.environ["GENFACTORY_PREFECT_SERVER"] = "ephemeral"

        keywords = workdir / "keywords.txt"
        keywords.write_text("\n".join(f"subject number {i}" for i in range(50)) + "\n")
        settings_data: dict[str, Any] = {
            "job": {
                "keywords_file": str(keywords),
                "count": args.slots,
                "max_concurrency": args.concurrency,
                "label": "throughput",
                "seed": 1,
            },
        }
        polls = 1
        if args.offline:
            settings_data["job"]["variations"] = 1
            settings_data["generation"] = {"local_long_side": args.long_side}
            images_per_slot = 1
            critical = 0.0
        else:
            polls = max(1, round(args.generation_seconds / args.poll_interval) + 1)
            port = free_port()
            fake = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    FAKE_SCRIPT,
                    str(port),
                    str(polls),
                    str(args.long_side),
                    str(args.qc_seconds),
                    str(args.bg_seconds),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            assert fake.stdout is not None
            fake.stdout.readline()
            base = f"http://127.0.0.1:{port}"
            os.environ.update(
                {
                    "PIAPI_BASE_URL": f"{base}/piapi",
                    "OPENAI_BASE_URL": f"{base}/openai/v1",
                    "REMOVE_BG_BASE_URL": f"{base}/removebg",
                }
            )
            from tests.fakes.server import DEFAULT_KEYS

            os.environ["PIAPI_API_KEY"] = str(DEFAULT_KEYS["piapi"])
            os.environ["OPENAI_API_KEY"] = str(DEFAULT_KEYS["openai"])
            os.environ["REMOVE_BG_API_KEY"] = str(DEFAULT_KEYS["removebg"])
            cap = max(args.concurrency, 4)
            settings_data.update(
                {
                    "providers": {
                        "image": "piapi",
                        "qc": "openai",
                        "metadata": "openai",
                        "background": "removebg",
                    },
                    "processing": {"remove_bg": True},
                    "piapi": {"base_url": f"{base}/piapi"},
                    "openai": {"base_url": f"{base}/openai/v1"},
                    "removebg": {"base_url": f"{base}/removebg"},
                    "generation": {
                        "polling_interval_seconds": args.poll_interval,
                        "http_timeout_seconds": 30,
                    },
                    "concurrency": {
                        "piapi": min(cap, 64),
                        "openai": min(2 * cap, 64),
                        "removebg": min(cap, 64),
                    },
                }
            )
            images_per_slot = 4
            generation = (polls - 1) * args.poll_interval
            critical = generation + images_per_slot * (2 * args.qc_seconds + args.bg_seconds)

        from genfactory.cli.job_runner import quiet_console_logs
        from genfactory.config import Settings
        from genfactory.flows import generate_job
        from genfactory.storage import repository
        from genfactory.tasks.initialize import prepare

        settings, _ = prepare(Settings.model_validate(settings_data))
        quiet_console_logs()  # as `genfactory run` does: the job pays what the command pays
        from genfactory.engine import pool as process_pool

        process_pool.warm_pool()  # both the job and the direct baseline start with a warm pool
        if args.offline:
            # ...whose workers have loaded the detectors' models (OCR, NudeNet) already.
            direct_image_work(settings, 4 * process_pool.pool_size(), args.concurrency)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        machine_before = machine_cpu_seconds()
        server_before = session_cpu_seconds(server.pid) if server is not None else 0.0
        fake_before = session_cpu_seconds(fake.pid) if fake is not None else 0.0
        flow_started = time.perf_counter()
        state = generate_job(settings, return_state=True)
        flow_wall = time.perf_counter() - flow_started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        machine_cpu = machine_cpu_seconds() - machine_before
        server_cpu = session_cpu_seconds(server.pid) - server_before if server is not None else 0.0
        fake_cpu = session_cpu_seconds(fake.pid) - fake_before if fake is not None else 0.0
        summary = state.result() if state.is_completed() else {}
        executions = repository.list_executions(limit=1)
        execution = executions[0]
        flow_time = (
            (execution.completed_at - execution.started_at).total_seconds()
            if execution.completed_at and execution.started_at
            else flow_wall
        )
        slots = repository.list_slots(execution.id)
        images = repository.list_images(execution_id=execution.id)
        final_images = {"approved", "qc_failed", "failed", "retry_failed"}
        lost_slots = sum(1 for s in slots if s.status not in ("generated", "failed"))
        lost_slots += max(0, args.slots - len(slots))
        unfinished = sum(1 for i in images if i.status not in final_images)
        missing = sum(1 for s in slots if s.status == "generated") * images_per_slot - len(images)
        store_errors = sum(
            1
            for row in [*slots, *images]
            if row.error and ("database" in row.error.lower() or "OperationalError" in row.error)
        )
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        n_images = max(1, len(images))
        ideal = math.ceil(args.slots / args.concurrency) * critical if critical else 0.0
        direct = direct_machine = direct_own = None
        if args.offline:
            direct_before = machine_cpu_seconds()
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            direct = direct_image_work(settings, args.slots, args.concurrency)
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            direct_machine = machine_cpu_seconds() - direct_before
            direct_own = (own_after.ru_utime - own_before.ru_utime) + (
                own_after.ru_stime - own_before.ru_stime
            )
        figures = {
            "slots": args.slots,
            "concurrency": args.concurrency,
            "api": args.api,
            "store": args.store,
            "status": str(execution.status),
            "images": len(images),
            "approved": sum(1 for i in images if i.status == "approved"),
            "wall_seconds": round(time.perf_counter() - started, 2),
            "flow_run_seconds": round(flow_time, 2),
            "ideal_seconds": round(ideal, 2),
            "ratio_to_ideal": round(flow_time / ideal, 3) if ideal else None,
            "images_per_second": round(len(images) / flow_time, 2) if flow_time else None,
            "orchestration_cpu_ms_per_image": round(cpu / n_images * 1000, 1),
            "machine_cpu_ms_per_image": round(machine_cpu / n_images * 1000, 1),
            "prefect_server_cpu_ms_per_image": round(server_cpu / n_images * 1000, 1),
            "fake_services_cpu_ms_per_image": round(fake_cpu / n_images * 1000, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "store_errors": store_errors,
            "lost_slots": lost_slots,
            "unfinished_images": unfinished,
            "missing_images": max(0, missing),
            "failed_slots": sum(1 for s in slots if s.status == "failed"),
            "load_average": round(os.getloadavg()[0], 2),
            "python_speed_ms": speed,
        }
        if direct is not None:
            figures["image_work_seconds"] = round(direct, 2)
            figures["image_work_machine_cpu_ms_per_image"] = round(
                (direct_machine or 0.0) / n_images * 1000, 1
            )
            figures["image_work_process_cpu_ms_per_image"] = round(
                (direct_own or 0.0) / n_images * 1000, 1
            )
            figures["share_outside_image_work"] = round(max(0.0, 1 - direct / flow_time), 3)
        del summary
        reasons: dict[str, int] = {}
        for row in [*slots, *images]:
            reason = getattr(row, "qc_reason", None) or row.error
            if reason and row.status in ("failed", "qc_failed"):
                reasons[reason[:100]] = reasons.get(reason[:100], 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  {n} x {reason}")
        for key, value in figures.items():
            print(f"{key:34s} {value}")
        if figures["ratio_to_ideal"] is not None:
            print(f"ratio to ideal {figures['ratio_to_ideal']}")
        if args.json:
            print(json.dumps(figures))
    finally:
        if server is not None:
            _drain_prefect()  # before the server stops: nothing is shipped to a dead API
        for process in (fake, server):
            if process is not None:
                try:
                    os.killpg(process.pid, 15)
                    process.wait(timeout=20)
                except Exception:
                    pass
        for database in (prefect_db, store_db):
            if database:
                subprocess.run(
                    [
                        "psql",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "postgres",
                        "-c",
                        f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                    ],
                    capture_output=True,
                )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
