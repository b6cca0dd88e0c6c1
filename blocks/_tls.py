"""TLS verification settings shared by the credential blocks."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

logger = logging.getLogger("rackflow.blocks")

# (peer, run id) pairs already warned about: one warning per run is enough
# for an operator to notice that verification is off.
_warned_insecure: set[tuple[str, str]] = set()


def _current_run_key() -> str:
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
    except Exception:  # noqa: BLE001 - no Prefect context is a normal local call
        ctx = None
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else "local"


def tls_context(*, verify: bool, ca_bundle: str | None, peer: str) -> ssl.SSLContext | bool:
    """Build the TLS verification setting for a client.

    Args:
        verify: Verify the peer's certificate.
        ca_bundle: A CA bundle file path, or the PEM text itself; None: the system store.
        peer: What is being connected to, for the warning (never a secret).

    Returns:
        An ``ssl.SSLContext`` trusting ``ca_bundle`` (or the system store), or False
        when verification is off (warned once per run and peer).
    """
    if not verify:
        key = (peer, _current_run_key())
        if key not in _warned_insecure:
            _warned_insecure.add(key)
            logger.warning(
                "TLS verification is OFF for %s: its identity is not checked and the "
                "password can be intercepted",
                peer,
            )
        return False
    if not ca_bundle:
        return ssl.create_default_context()
    bundle = ca_bundle.strip()
    if bundle.startswith("-----BEGIN"):
        return ssl.create_default_context(cadata=bundle)
    return ssl.create_default_context(cafile=str(Path(bundle).expanduser()))
