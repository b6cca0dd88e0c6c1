"""Reusable Bugzilla pieces for tests: a fake Bugzilla and a block that points at it.

In another test module (importing the functions registers fixtures named
``bugzilla`` and ``bugzilla_block``)::

    from tests.bugzilla_lab import bugzilla_block_fixture, bugzilla_fixture  # noqa: F401

    async def test_x(bugzilla, bugzilla_block):
        ...  # flows get ``credentials=bugzilla_block``; ``bugzilla.bugs()`` to assert

With the reboot lab, add a :class:`BugzillaPeer` to its peers and save a block
for it once the lab is up::

    peer = BugzillaPeer(products=PRODUCTS)
    with MachineLab(machines=..., state_dir=..., peers=[peer]) as lab:
        name = await save_bugzilla_block(url=peer.url, api_key=peer.api_key)
        ...
        bugs = lab.call(peer.list_bugs)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from blocks.bugzilla import BugzillaCredentials
from lab.machines.bugzilla import BugzillaFake, BugzillaFaults, BugzillaPeer

__all__ = [
    "COMPONENT",
    "PRODUCT",
    "PRODUCTS",
    "BugzillaFake",
    "BugzillaFaults",
    "BugzillaPeer",
    "bugzilla_block_fixture",
    "bugzilla_fixture",
    "save_bugzilla_block",
]

PRODUCT = "Datacenter"
COMPONENT = "Reboots"
PRODUCTS = {PRODUCT: [COMPONENT, "Hardware"]}


async def save_bugzilla_block(
    *, url: str, api_key: str, name: str | None = None, read_timeout: float = 5.0
) -> str:
    """Save a ``BugzillaCredentials`` block (needs the ``prefect_harness`` fixture).

    Args:
        url: The fake's URL.
        api_key: The key to store (a wrong one to test refusals).
        name: Block name; default a fresh random one.
        read_timeout: Seconds per request (small to test timeouts).

    Returns:
        The block's name, to pass as ``credentials=``.
    """
    name = name or f"bugzilla-{secrets.token_hex(4)}"
    block = BugzillaCredentials(url=url, api_key=api_key, read_timeout=read_timeout)
    await block.asave(name, overwrite=True)
    return name


@pytest.fixture(name="bugzilla")
def bugzilla_fixture() -> Iterator[BugzillaFake]:
    """A fresh fake Bugzilla with product ``Datacenter`` (components Reboots, Hardware)."""
    with BugzillaFake(products=PRODUCTS) as fake:
        yield fake


@pytest.fixture(name="bugzilla_block")
async def bugzilla_block_fixture(prefect_harness: None, bugzilla: BugzillaFake) -> str:
    """Name of a saved ``BugzillaCredentials`` block for the ``bugzilla`` fixture."""
    return await save_bugzilla_block(url=bugzilla.url, api_key=bugzilla.api_key)
