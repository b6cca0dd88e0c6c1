"""Tasks retry transient failures (sync and async tasks alike), never wrong credentials."""

from __future__ import annotations

import pytest
from prefect import flow, task

from clients.errors import AuthError, TransportError
from tasks.retry import retry_on_transient

CALLS: list[str] = []


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_transient)
async def flaky_async(kind: str) -> str:
    CALLS.append(kind)
    if len(CALLS) < 3:
        if kind == "transport":
            raise TransportError(target="127.0.0.1", reason="connection refused")
        raise AuthError(status=401, message="bad password")
    return "ok"


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_transient)
def flaky_sync(kind: str) -> str:
    CALLS.append(kind)
    if len(CALLS) < 3:
        raise TransportError(target="127.0.0.1", reason="timeout")
    return "ok"


@flow
async def run_async(kind: str) -> str:
    return await flaky_async(kind)


@flow
def run_sync() -> str:
    return flaky_sync("transport")


async def test_async_task_retries_transport_errors(prefect_harness):
    CALLS.clear()
    assert await run_async("transport") == "ok"
    assert CALLS == ["transport"] * 3


async def test_async_task_does_not_retry_auth_errors(prefect_harness):
    CALLS.clear()
    with pytest.raises(AuthError):
        await run_async("auth")
    assert CALLS == ["auth"]


def test_sync_task_retries_transport_errors(prefect_harness):
    CALLS.clear()
    assert run_sync() == "ok"
    assert CALLS == ["transport"] * 3
