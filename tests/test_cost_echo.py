"""No answer is trusted: a whole job against services that echo the API key in every answer.

The key must end up nowhere: no row of any table, no log file, no console line, no request sent
on to another service, no byte of an output or temp file (embedded XMP/IPTC included).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from genfactory.config import load_settings
from genfactory.flows import generate_job
from genfactory.statuses import ImageStatus
from genfactory.storage import repository
from genfactory.storage.db import get_engine
from tests.fakes.fixtures import exported_fakes
from tests.fakes.server import FakeServices

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def echoing(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    with exported_fakes(monkeypatch, image_long_side=192) as fake:
        fake.echo_key = True
        yield fake


def every_row() -> list[str]:
    """Every row of every table of the store, as text."""
    engine = get_engine()
    metadata = MetaData()
    metadata.reflect(engine)
    rows = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows += [f"{table.name}: {tuple(row)!r}" for row in conn.execute(select(table))]
    return rows


def test_an_echoing_service_leaves_the_key_nowhere(
    tmp_path: Path,
    echoing: FakeServices,
    isolated_store: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    keywords = tmp_path / "keywords.txt"
    # The fake QC rejects logos: rejected images keep the (echoing) reason.
    keywords.write_text("red fox in a snowy forest\ncompany logo mockup on a desk\n")
    values: dict[str, Any] = {
        "job.keywords_file": str(keywords),
        "job.output_dir": str(tmp_path / "out"),
        "job.temp_dir": str(tmp_path / "tmp"),
        "job.count": 2,
        "providers.prompt": "openai",
        "providers.image": "piapi",
        "providers.qc": "openai",
        "providers.background": "removebg",
        "providers.metadata": "openai",
        "processing.remove_bg": True,
        "processing.convert_format": "jpg",
        "metadata.embed": True,
        "generation.polling_interval_seconds": 0.05,
        "generation.http_timeout_seconds": 2.0,
        "qc.min_width": 64,
        "qc.min_height": 64,
        "concurrency.scope": "process",
    }
    summary = generate_job(load_settings(overrides=values, environ=echoing.env()))
    keys = [key for key in echoing.keys.values() if key]
    images = repository.list_images(execution_id=summary["execution_id"])
    approved = [i for i in images if i.status == ImageStatus.APPROVED]
    assert approved, [i.error or i.qc_reason for i in images]
    # The answers did carry the key: what is left of it is the mask.
    assert all(str(i.image_metadata["title"]).endswith("***") for i in approved)
    reasons = [i.qc_reason for i in images if i.qc_reason]
    assert reasons and all("***" in str(r) for r in reasons), reasons

    # Nothing sent on: the echoed prompt reached PiAPI scrubbed.
    for request in echoing.requests():
        assert not any(key.encode() in request.body for key in keys), request.path
    # No row of any table.
    rows = every_row()
    assert len(rows) > len(images)
    assert not [row for row in rows if any(key in row for key in keys)]
    # No byte of any file: log, outputs (with their XMP/IPTC), temp files, the store itself.
    files = [p for p in (*tmp_path.rglob("*"), *isolated_store.rglob("*")) if p.is_file()]
    assert any(p.suffix == ".jpg" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(key.encode() in data for key in keys), path
    # No console line, no log record.
    out, err = capfd.readouterr()
    assert not any(key in out + err + caplog.text for key in keys)
