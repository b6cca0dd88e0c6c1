"""Set rackflow up on a Prefect server: work pool, blocks, deployments.

Run as ``make deploy`` (``python -m deployments.bootstrap``) with
``PREFECT_API_URL`` pointing at the server. Idempotent: safe to run again
after pulling new code.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

import blocks

REPO = Path(__file__).resolve().parent.parent
POOL = "onprem"


async def ensure_work_pool(name: str = POOL) -> bool:
    """Create the on-prem process work pool if it does not exist.

    Args:
        name: Work pool name.

    Returns:
        True when it was created, False when it already existed.
    """
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return False
    return True


def register_blocks() -> list[str]:
    """Register rackflow's block types and schemas with the server.

    Returns:
        The block type slugs registered.
    """
    slugs = []
    for name in blocks.__all__:
        block = getattr(blocks, name)
        block.register_type_and_schema()
        slugs.append(block.get_block_type_slug())
    return slugs


def deploy_all(code_dir: Path = REPO) -> None:
    """Run ``prefect --no-prompt deploy --all`` from the repository root.

    Args:
        code_dir: Checkout the workers run the flows from.

    Raises:
        subprocess.CalledProcessError: When Prefect refuses a deployment.
    """
    env = dict(os.environ, RACKFLOW_CODE_DIR=str(code_dir))
    prefect = Path(sys.executable).with_name("prefect")
    subprocess.run(  # noqa: S603 - fixed arguments, our own venv's prefect
        [str(prefect), "--no-prompt", "deploy", "--all"], cwd=code_dir, env=env, check=True
    )


def main() -> None:
    """Bootstrap pool, blocks and deployments, then say how to start a worker."""
    created = asyncio.run(ensure_work_pool())
    print(f"work pool {POOL!r}: {'created' if created else 'already there'}")
    for slug in register_blocks():
        print(f"block type registered: {slug}")
    deploy_all()
    print(
        "\nNext: create the credentials block once (the password is read from the environment):\n"
        "  RACKFLOW_BMC_PASSWORD=... rackflow blocks create-redfish redfish --username <user>\n"
        "then start a worker beside the hardware:\n"
        f"  prefect worker start --pool {POOL} --limit 4"
    )


if __name__ == "__main__":
    main()
