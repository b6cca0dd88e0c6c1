"""Bugzilla reports: the fake over real HTTP, the client, the block and the task."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import httpx
import pytest
from prefect import flow

from blocks.bugzilla import BugzillaCredentials
from clients.bugzilla import BugzillaClient
from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RemoteError,
    ServerError,
    TransportError,
)
from lab.machines import MachineLab
from tasks.bug_report import BugReport, file_bugzilla_bug
from tests.bugzilla_lab import (  # noqa: F401 - *_fixture: the bugzilla, bugzilla_block fixtures
    COMPONENT,
    PRODUCT,
    BugzillaFake,
    BugzillaFaults,
    BugzillaPeer,
    bugzilla_block_fixture,
    bugzilla_fixture,
    save_bugzilla_block,
)

SUMMARY = "Reboot failed: m1.lab.test"

# No waiting between retries in tests (the production task backs off exponentially).
fast_task = file_bugzilla_bug.with_options(retry_delay_seconds=0, retry_jitter_factor=None)


@flow(name="bugzilla-report-test")
async def report_flow(credentials: str, log: str, summary: str = SUMMARY, **kw) -> BugReport:
    params = {
        "product": PRODUCT,
        "component": COMPONENT,
        "host": "m1.lab.test",
        "address": "127.78.0.1",
        "requested_by": "alice",
    } | kw
    return await fast_task(credentials=credentials, summary=summary, attempts_log=log, **params)


def client(fake: BugzillaFake, **kw) -> BugzillaClient:
    return BugzillaClient(url=fake.url, api_key=kw.pop("api_key", fake.api_key), **kw)


# -- the task, under Prefect ------------------------------------------------------------


async def test_report_files_then_comments_then_files_again_once_closed(bugzilla, bugzilla_block):
    first = await report_flow(
        bugzilla_block, "ssh reboot: timed out\nipmi cycle: no answer", cc=["ops@lab.test"]
    )
    assert first.created and first.comment_id is None
    assert first.url == f"{bugzilla.url}/show_bug.cgi?id={first.id}"
    [bug] = bugzilla.bugs()
    assert (bug["id"], bug["summary"], bug["product"], bug["component"]) == (
        first.id,
        SUMMARY,
        PRODUCT,
        COMPONENT,
    )
    assert (bug["version"], bug["severity"], bug["cc"], bug["op_sys"]) == (
        "unspecified",
        "major",
        ["ops@lab.test"],
        "All",
    )
    [description] = bugzilla.comments(first.id)
    for text in ("m1.lab.test", "127.78.0.1", "alice", "ssh reboot: timed out", "ipmi cycle"):
        assert text in description["text"]
    async with httpx.AsyncClient() as web:
        page = await web.get(first.url)
    assert page.status_code == 200 and SUMMARY in page.text

    second = await report_flow(bugzilla_block, "pdu cycle: machine never came back")
    assert (second.id, second.created) == (first.id, False)
    assert len(bugzilla.bugs()) == 1
    comments = bugzilla.comments(first.id)
    assert [c["id"] for c in comments][-1] == second.comment_id
    assert "pdu cycle: machine never came back" in comments[-1]["text"]
    assert "alice" in comments[-1]["text"]

    bugzilla.close_bug(first.id)
    third = await report_flow(bugzilla_block, "ssh reboot: refused")
    assert third.created and third.id != first.id
    assert [(b["id"], b["is_open"]) for b in bugzilla.bugs()] == [
        (first.id, False),
        (third.id, True),
    ]


async def test_similar_summaries_are_not_duplicates(bugzilla, bugzilla_block):
    async with client(bugzilla) as bz:
        for summary in (SUMMARY + " and m2.lab.test", SUMMARY.upper()):
            await bz.create_bug(
                product=PRODUCT, component=COMPONENT, summary=summary, description="by hand"
            )
        other = await bz.create_bug(
            product=PRODUCT, component="Hardware", summary=SUMMARY, description="by hand"
        )
    report = await report_flow(bugzilla_block, "ssh reboot: timed out")
    assert report.created
    assert len(bugzilla.bugs()) == 4
    assert report.id != other.id


async def test_timed_out_create_is_retried_without_a_second_bug(bugzilla):
    name = await save_bugzilla_block(url=bugzilla.url, api_key=bugzilla.api_key, read_timeout=0.3)
    # Bugzilla files the bug, but answers after the client gave up.
    bugzilla.set_faults(BugzillaFaults(stall_writes=1, stall_s=1.0))
    report = await report_flow(name, "ssh reboot: timed out")
    assert report.created
    [bug] = bugzilla.bugs()
    assert bug["id"] == report.id
    assert len(bugzilla.comments(report.id)) == 1  # the description, nothing added
    requests = bugzilla.requests()
    assert requests.count(("POST", "/rest/bug")) == 1
    assert requests.count(("GET", "/rest/bug")) == 2  # the retry searched again


async def test_timed_out_comment_is_retried_without_a_second_comment(bugzilla):
    name = await save_bugzilla_block(url=bugzilla.url, api_key=bugzilla.api_key, read_timeout=0.3)
    first = await report_flow(name, "first")
    bugzilla.set_faults(BugzillaFaults(stall_writes=1, stall_s=1.0))
    second = await report_flow(name, "second")
    assert (second.id, second.created) == (first.id, False)
    comments = bugzilla.comments(first.id)
    assert [c["id"] for c in comments] == [comments[0]["id"], second.comment_id]
    assert bugzilla.requests().count(("POST", f"/rest/bug/{first.id}/comment")) == 1
    assert bugzilla.requests().count(("GET", "/rest/bug")) == 3  # first, second, its retry


async def test_server_error_on_create_is_retried(bugzilla, bugzilla_block):
    bugzilla.set_faults(BugzillaFaults(fail_requests=1, fail_method="POST"))
    report = await report_flow(bugzilla_block, "ssh reboot: timed out")
    assert report.created and len(bugzilla.bugs()) == 1
    assert bugzilla.requests().count(("POST", "/rest/bug")) == 2


async def test_bad_api_key_fails_at_once_and_never_shows_the_key(bugzilla, caplog):
    wrong = "wrong-" + bugzilla.api_key[::-1]
    name = await save_bugzilla_block(url=bugzilla.url, api_key=wrong)
    caplog.set_level(logging.DEBUG)
    state = await report_flow(name, "ssh reboot: timed out", return_state=True)
    assert state.is_failed()
    with pytest.raises(AuthError) as info:
        await state.result()
    assert info.value.code == "306"
    assert wrong not in str(info.value) and wrong not in repr(info.value.__dict__)
    assert wrong not in caplog.text
    assert bugzilla.requests() == [("GET", "/rest/bug")]  # not retried
    assert bugzilla.bugs() == []


async def test_unknown_product_is_a_clear_error(bugzilla, bugzilla_block):
    state = await report_flow(
        bugzilla_block, "ssh reboot: timed out", product="Nope", return_state=True
    )
    with pytest.raises(RemoteError) as info:
        await state.result()
    assert not isinstance(info.value, AuthError)
    assert info.value.code == "106" and "'Nope' does not exist" in str(info.value)
    assert bugzilla.requests().count(("POST", "/rest/bug")) == 1  # not retried
    state = await report_flow(
        bugzilla_block, "ssh reboot: timed out", component="Nope", return_state=True
    )
    with pytest.raises(NotFoundError, match="no component named 'Nope' in the 'Datacenter'"):
        await state.result()
    assert bugzilla.bugs() == []


# -- client against the fake ------------------------------------------------------------


async def test_client_reads_back_normalized_summaries_and_comments(bugzilla):
    async with client(bugzilla) as bz:
        bug = await bz.create_bug(
            product=PRODUCT, component=COMPONENT, summary="  Disk\tgone  ", description="d"
        )
        assert bug.summary == "Disk gone" and bug.open and bug.status == "CONFIRMED"
        assert [b.id for b in await bz.find_open_bugs("Disk\ngone", **_where())] == [bug.id]
        comment_id = await bz.add_comment(bug.id, "again")
        assert [(c.count, c.id) for c in await bz.comments(bug.id)][-1] == (1, comment_id)
        await bz.set_status(bug.id, "RESOLVED", resolution="WONTFIX")
        assert (await bz.get_bug(bug.id)).resolution == "WONTFIX"
        assert await bz.find_open_bugs("Disk gone", **_where()) == []
        with pytest.raises(RemoteError) as info:
            await bz.set_status(bug.id, "CONFIRMED", resolution="FIXED")
        assert info.value.code == "122"
        with pytest.raises(NotFoundError):
            await bz.get_bug(999)
        with pytest.raises(PreconditionError):
            await bz.create_bug(
                product=PRODUCT, component=COMPONENT, summary="x" * 256, description="d"
            )


async def test_write_without_a_key_and_unknown_cc_user_are_refused():
    with BugzillaFake(users=["ops@lab.test"]) as fake:
        async with httpx.AsyncClient() as web:
            anonymous = await web.post(f"{fake.url}/rest/bug", json={"product": "Datacenter"})
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == 410 and anonymous.json()["error"] is True
        async with client(fake) as bz:
            with pytest.raises(RemoteError) as info:
                await bz.create_bug(
                    product="Datacenter",
                    component="Reboots",
                    summary="s",
                    description="d",
                    cc=["nobody@lab.test"],
                )
        assert info.value.code == "504" and "nobody@lab.test" in info.value.message
        assert fake.bugs() == []


async def test_bad_key_is_not_logged_by_the_client(bugzilla, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "secret-" + bugzilla.api_key
    async with client(bugzilla, api_key=wrong) as bz:
        with pytest.raises(AuthError) as info:
            await bz.find_open_bugs(SUMMARY, **_where())
    assert not info.value.retryable
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert wrong not in repr(bz)


async def test_unreachable_bugzilla_is_a_retryable_transport_error(bugzilla):
    url = bugzilla.url
    bugzilla.stop()
    async with BugzillaClient(url=url, api_key="k", timeout=2) as bz:
        with pytest.raises(TransportError) as info:
            await bz.find_open_bugs(SUMMARY, **_where())
    assert info.value.retryable


async def test_error_mapping_without_bugzilla_json():
    answers = {
        "/rest/bug/1": httpx.Response(503, headers={"Retry-After": "7"}, text="busy"),
        "/rest/bug/2": httpx.Response(502, text="<html>bad gateway</html>"),
        "/rest/bug/3": httpx.Response(200, json={"error": True, "code": 32000, "message": "odd"}),
        "/rest/bug/4": httpx.Response(200, json={"bugs": [{"id": "x"}]}),
        "/rest/bug/5/comment": httpx.Response(500, text="oops"),
    }
    transport = httpx.MockTransport(lambda request: answers[request.url.path])
    async with BugzillaClient(url="https://bz.test", api_key="k", transport=transport) as bz:
        with pytest.raises(BusyError) as busy:
            await bz.get_bug(1)
        assert busy.value.retry_after == 7.0
        with pytest.raises(ServerError) as read_failed:
            await bz.get_bug(2)
        assert read_failed.value.retryable  # a GET may be repeated
        with pytest.raises(RemoteError, match="odd"):
            await bz.get_bug(3)
        with pytest.raises(ProtocolError):
            await bz.get_bug(4)
        with pytest.raises(ServerError) as write_failed:
            await bz.add_comment(5, "x")
        assert not write_failed.value.retryable  # a POST may have happened


# -- block and lab ------------------------------------------------------------------------


def test_block_builds_a_client_without_io_and_rejects_bad_urls():
    creds = BugzillaCredentials(url="https://bz.example.test/", api_key="k-123")
    bz = creds.get_client()
    assert bz.url == "https://bz.example.test"
    assert bz.bug_url(5) == "https://bz.example.test/show_bug.cgi?id=5"
    assert "k-123" not in repr(creds) and "k-123" not in repr(bz)
    for bad in ("ftp://bz.test", "https://user:pw@bz.test", "bz.test"):
        with pytest.raises(ValueError):
            BugzillaCredentials(url=bad, api_key="k")


async def test_peer_runs_inside_the_reboot_lab():
    peer = BugzillaPeer(products={"Lab": ["Power"]})
    with tempfile.TemporaryDirectory() as tmp:
        with MachineLab(machines=MachineLab.generate(1), state_dir=Path(tmp), peers=[peer]) as lab:
            async with BugzillaClient(url=peer.url, api_key=peer.api_key) as bz:
                bug = await bz.create_bug(
                    product="Lab", component="Power", summary="m1 down", description="d"
                )
            assert [b["summary"] for b in lab.call(peer.list_bugs)] == ["m1 down"]
            lab.call(lambda: peer.close_bug(bug.id))
            assert lab.call(peer.list_bugs)[0]["status"] == "RESOLVED"


def _where() -> dict[str, str]:
    return {"product": PRODUCT, "component": COMPONENT}
