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
from genfactory.providers.registry import required_keys

logger = logging.getLogger("genfactory.secrets")

#: Credentials field -> Prefect Secret block name.
SECRET_BLOCKS = {
    "piapi_api_key": "genfactory-piapi-api-key",
    "openai_api_key": "genfactory-openai-api-key",
    "remove_bg_api_key": "genfactory-remove-bg-api-key",
    "runware_api_key": "genfactory-runware-api-key",
}


def needed_keys(settings: Settings) -> set[str]:
    """Credentials fields the configured providers need."""
    return {field for field, _env in required_keys(settings).values()}


def load_credentials(settings: Settings) -> Credentials:
    """Environment first; a needed key missing there is looked up as a Prefect Secret block."""
    credentials = Credentials.from_env()
    missing = [f for f in needed_keys(settings) if getattr(credentials, f) is None]
    if not missing:
        return credentials
    values = {
        f: getattr(credentials, f).get_secret_value()
        for f in Credentials.model_fields
        if getattr(credentials, f) is not None
    }
    for field in missing:
        value = _load_block(SECRET_BLOCKS[field])
        if value:
            values[field] = value
    return Credentials.model_validate(values)


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
