"""API keys at run time: from the environment, else from Prefect Secret blocks (when a Prefect
server is configured: PREFECT_API_URL in the environment or the Prefect profile).

Keys are loaded inside tasks, never passed as parameters or stored (a Secret block referenced in
a deployment's job variables would be resolved at deploy time and stored in plain text).
"""

from __future__ import annotations

import logging
from typing import Any

from genfactory.config import Credentials, Settings
from genfactory.engine.limits import prefect_server_configured
from genfactory.providers.registry import needed_services

logger = logging.getLogger("genfactory.secrets")


def load_credentials(settings: Settings) -> Credentials:
    """Environment first; a needed key missing there is looked up in its service's Prefect
    Secret block (`ServiceSpec.secret_block`)."""
    credentials = Credentials.from_env()
    found: dict[str, str] = {}
    for spec in needed_services(settings):
        field = spec.key_field
        if field is None or field in found or getattr(credentials, field) is not None:
            continue
        value = _load_block(spec.secret_block) if spec.secret_block else None
        if value:
            found[field] = value
    return credentials.with_keys(**found) if found else credentials


def _load_block(name: str) -> str | None:
    if not prefect_server_configured():
        # Only a Prefect server holds blocks worth asking for; starting the ephemeral API just
        # to learn that a key is missing would cost ~10 s before the error.
        return None
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        value = block.get()
    except Exception as exc:  # no server, no such block: the caller reports the missing key
        logger.debug("no Prefect Secret block %s (%s)", name, exc.__class__.__name__)
        return None
    return str(value) if value else None
