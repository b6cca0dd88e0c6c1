"""Prefect task that reports a machine rackflow could not reboot to Bugzilla.

(Named ``bug_report``, not ``bugzilla``: that is a PyPI package name, and a
module of ours with that name could shadow it, PREFECT.md.)

One open bug per problem: when an unresolved bug with the same summary
exists in the product/component, the report becomes a comment on it; once
people close it, the next report files a new bug.

Filing is an action, so never cached, but it is safe to retry: every report
carries a marker line with the task run's id (stable across Prefect
retries). Before filing or commenting, the task looks for that marker on the
open bugs it found, so a retry after a timed-out POST (which Bugzilla may
have carried out) does not file or comment twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from blocks.bugzilla import BugzillaCredentials
from clients.bugzilla import Bug, BugzillaClient
from clients.errors import ServerError
from tasks.retry import failure_of, retry_on_transient

__all__ = ["BugReport", "file_bugzilla_bug", "report_bug", "report_text", "retry_bug_report"]

MARKER_PREFIX = "rackflow report "
# Bugzilla refuses comments over 65,535 characters; leave room for the header.
MAX_LOG_CHARS = 60_000


class BugReport(BaseModel):
    """Where a report went.

    Attributes:
        id: Bug number.
        url: The bug's web page.
        created: True when this report filed the bug, False when it commented.
        comment_id: The comment added to an existing bug (None when filed).
    """

    id: int
    url: str
    created: bool
    comment_id: int | None = None


def report_text(
    *,
    host: str,
    address: str | None,
    requested_by: str,
    attempts_log: str,
    report_id: str,
    first: bool,
) -> str:
    """The description of a new bug, or the comment on an existing one.

    Args:
        host: The machine's name.
        address: Its address, when known.
        requested_by: Who asked for the reboot.
        attempts_log: What was tried and how each attempt ended.
        report_id: Marker that makes retries find their own earlier report.
        first: True for a new bug's description, False for a comment.

    Returns:
        The text (the log's tail is kept when it is too long for Bugzilla).
    """
    log = attempts_log.strip() or "(no attempts recorded)"
    if len(log) > MAX_LOG_CHARS:
        cut = len(log) - MAX_LOG_CHARS
        log = f"[first {cut} characters cut]\n" + log[-MAX_LOG_CHARS:]
    opening = (
        f"rackflow could not reboot {host} and needs a person to look at it."
        if first
        else f"rackflow could not reboot {host} again."
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{opening}\n\n"
        f"Host:         {host}\n"
        f"Address:      {address or 'unknown'}\n"
        f"Requested by: {requested_by}\n"
        f"Reported at:  {when}\n\n"
        f"Attempts:\n{log}\n\n"
        f"-- \n{MARKER_PREFIX}{report_id}"
    )


async def report_bug(
    bz: BugzillaClient,
    *,
    product: str,
    component: str,
    summary: str,
    report_id: str,
    text_for: Callable[[bool], str],
    cc: Sequence[str] = (),
    version: str = "unspecified",
    severity: str | None = None,
) -> BugReport:
    """Comment on the open bug with this summary, or file one; never twice per report.

    Args:
        bz: An open Bugzilla client.
        product: Product to search and file in.
        component: Component to search and file in.
        summary: The bug's summary (the duplicate key).
        report_id: This report's marker id (same across retries of one report).
        text_for: ``text_for(first: bool) -> str`` builds the description or comment.
        cc: Logins to CC on a new bug.
        version: Version of a new bug.
        severity: Severity of a new bug.

    Returns:
        Where the report went.

    Raises:
        RackflowError: Any error of the client (see :mod:`clients.bugzilla`).
    """
    marker = f"{MARKER_PREFIX}{report_id}"
    open_bugs = await bz.find_open_bugs(summary, product=product, component=component)
    done = await _earlier_attempt(bz, open_bugs, marker)
    if done is not None:
        return done
    if open_bugs:
        bug = open_bugs[0]  # the oldest: later duplicates filed by hand are left to people
        comment_id = await bz.add_comment(bug.id, text_for(False))
        return BugReport(id=bug.id, url=bz.bug_url(bug.id), created=False, comment_id=comment_id)
    bug = await bz.create_bug(
        product=product,
        component=component,
        summary=summary,
        description=text_for(True),
        version=version,
        severity=severity,
        cc=cc,
    )
    return BugReport(id=bug.id, url=bz.bug_url(bug.id), created=True)


async def _earlier_attempt(
    bz: BugzillaClient, open_bugs: Sequence[Bug], marker: str
) -> BugReport | None:
    """Find this report's own description or comment, left by an attempt that failed late."""
    for bug in open_bugs:
        for comment in await bz.comments(bug.id):
            if marker in comment.text:
                first = comment.count == 0
                return BugReport(
                    id=bug.id,
                    url=bz.bug_url(bug.id),
                    created=first,
                    comment_id=None if first else comment.id,
                )
    return None


def retry_bug_report(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient errors, and server errors even on POST (the report is idempotent).

    Args:
        task: The Prefect task (unused).
        task_run: The task run (unused).
        state: The failed state; its exception decides.

    Returns:
        True for what :func:`tasks.retry.retry_on_transient` retries, and for
        any :class:`~clients.errors.ServerError`: the marker check makes a
        repeated create or comment safe.
    """
    return retry_on_transient(task, task_run, state) or isinstance(failure_of(state), ServerError)


def _report_id() -> str:
    from prefect.runtime import task_run

    # The task run's id survives Prefect retries; a fresh id outside a run.
    return str(task_run.id or uuid.uuid4())


# Not TRANSIENT_RETRY: one retry more and its own condition (server errors too),
# as the marker check makes a repeated report safe; a report is worth the wait.
@task(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_bug_report,
)
async def file_bugzilla_bug(
    *,
    credentials: str,
    product: str,
    component: str,
    summary: str,
    host: str,
    address: str | None,
    requested_by: str,
    attempts_log: str,
    cc: list[str] | None = None,
    version: str = "unspecified",
    severity: str = "major",
) -> BugReport:
    """Report a machine that could not be rebooted, without filing duplicates.

    Args:
        credentials: ``BugzillaCredentials`` block name.
        product: Bugzilla product, e.g. ``Datacenter``.
        component: Component of that product, e.g. ``Reboots``.
        summary: The bug's summary; open bugs with exactly this summary get a
            comment instead of a new bug.
        host: The machine's name.
        address: Its address, when known.
        requested_by: Who asked for the reboot.
        attempts_log: What was tried and how each attempt ended.
        cc: Logins to CC on a new bug (each needs a Bugzilla account).
        version: Version of a new bug.
        severity: Severity of a new bug.

    Returns:
        The bug's id and URL, whether it was filed now, and the comment id.

    Raises:
        AuthError: The API key was refused (not retried).
        RemoteError: Bugzilla refused the report: unknown product (code 106), CC
            user without an account (504); unknown component or version come as
            NotFoundError (code 51).
        TransportError: Bugzilla unreachable (retried first).
    """
    logger = get_run_logger()
    creds: BugzillaCredentials = await BugzillaCredentials.aload(credentials)
    report_id = _report_id()

    def text_for(first: bool) -> str:
        return report_text(
            host=host,
            address=address,
            requested_by=requested_by,
            attempts_log=attempts_log,
            report_id=report_id,
            first=first,
        )

    async with creds.get_client() as bz:
        report = await report_bug(
            bz,
            product=product,
            component=component,
            summary=summary,
            report_id=report_id,
            text_for=text_for,
            cc=cc or (),
            version=version,
            severity=severity,
        )
    verb = "filed" if report.created else "commented on"
    logger.info("%s bug %d for %s: %s", verb, report.id, host, report.url)
    return report
