"""The fake Bugzilla's bugs and comments, and Bugzilla 5.0's rules for them (no HTTP).

:class:`BugTracker` checks what a request asks for the way Bugzilla does
(same error codes and messages, see ``Bugzilla/WebService/Constants.pm``)
and keeps bugs and comments as the JSON dicts the REST API returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

__all__ = ["CLOSED_STATUSES", "OPEN_STATUSES", "BugTracker", "BugzillaError", "clean_text"]

OPEN_STATUSES = ("UNCONFIRMED", "CONFIRMED", "IN_PROGRESS")
CLOSED_STATUSES = ("RESOLVED", "VERIFIED")
RESOLUTIONS = ("FIXED", "INVALID", "WONTFIX", "DUPLICATE", "WORKSFORME")
LEGAL = {
    "severity": ("blocker", "critical", "major", "normal", "minor", "trivial", "enhancement"),
    "priority": ("Highest", "High", "Normal", "Low", "Lowest", "---"),
    "op_sys": ("All", "Windows", "Mac OS", "Linux", "Other"),
    "platform": ("All", "PC", "Macintosh", "Other"),
}
DEFAULTS = {"severity": "normal", "priority": "---", "op_sys": "All", "platform": "All"}
MAX_SUMMARY = 255  # MAX_FREETEXT_LENGTH
MAX_COMMENT = 65535


class BugzillaError(Exception):
    """An error Bugzilla reports as JSON (internal to the fake)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_text(text: str) -> str:
    """Bugzilla's ``clean_text``: control characters become one space, then trim."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


class BugTracker:
    """Bugs and their comments, changed only through Bugzilla's checks.

    Args:
        products: Product name -> component names bugs may be filed against.
        versions: Versions every product has.
        users: Logins that exist (for ``cc``); None accepts any address with ``@``.
    """

    def __init__(
        self,
        *,
        products: Mapping[str, Sequence[str]],
        versions: Sequence[str],
        users: Iterable[str] | None,
    ) -> None:
        self.products = {p: list(c) for p, c in products.items()}
        self.versions = list(versions)
        self.users = None if users is None else set(users)
        self.bugs: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self._next_comment = 1

    def bug(self, raw: str) -> dict[str, Any]:
        """The bug a URL names (``/rest/bug/{id}``, ``show_bug.cgi?id=``).

        Raises:
            BugzillaError: 100 not a number, 101 no such bug.
        """
        if not raw.isdigit():
            raise BugzillaError(100, f"'{raw}' is not a valid bug number nor an alias to a bug.")
        bug = self.bugs.get(int(raw))
        if bug is None:
            raise BugzillaError(101, f"Bug #{raw} does not exist.")
        return bug

    def search(self, query: MultiMapping[str]) -> list[dict[str, Any]]:
        """``Bug.search``: field filters, ``limit`` and ``include_fields``.

        Raises:
            BugzillaError: 52 for a bad ``limit``.
        """
        found = [b for b in self.bugs.values() if _matches(b, query)]
        fields = [f for v in query.getall("include_fields", []) for f in v.split(",") if f]
        raw_limit = query.get("limit", "0") or "0"
        if not raw_limit.isdigit():
            raise BugzillaError(52, f"Invalid parameter passed to Bug.search: limit={raw_limit}")
        limit = int(raw_limit)
        found = found[:limit] if limit > 0 else found
        return [_only(b, fields) for b in found]

    def create(self, body: Mapping[str, Any], *, creator: str) -> dict[str, Any]:
        """``Bug.create``: file a bug, its description as comment 0.

        Raises:
            BugzillaError: What Bugzilla refuses (missing field, unknown product ...).
        """
        bug = self._validated_new_bug(body, creator=creator)
        self.bugs[bug["id"]] = bug
        self.comments[bug["id"]] = []
        self._store_comment(bug, str(body.get("description") or ""), creator=creator)
        return bug

    def add_comment(self, bug: dict[str, Any], text: Any, *, creator: str) -> dict[str, Any]:
        """``Bug.add_comment``.

        Raises:
            BugzillaError: 50 no comment, 114 too long.
        """
        if not isinstance(text, str) or not text.strip():
            raise BugzillaError(50, "The function Bug.add_comment requires a comment argument.")
        if len(text) > MAX_COMMENT:
            raise BugzillaError(114, f"Comments cannot be longer than {MAX_COMMENT} characters.")
        comment = self._store_comment(bug, text, creator=creator)
        bug["last_change_time"] = comment["creation_time"]
        return comment

    def update(
        self, bug: dict[str, Any], body: Mapping[str, Any], *, creator: str
    ) -> dict[str, Any]:
        """``Bug.update`` of status, resolution and a comment.

        Returns:
            The bug's entry of the answer (``id``, ``changes``, ...).

        Raises:
            BugzillaError: 51 unknown status, 121/122 (see :meth:`set_status`).
        """
        before = {"status": bug["status"], "resolution": bug["resolution"]}
        status = str(body.get("status", bug["status"]))
        resolution = body.get("resolution")
        if status not in OPEN_STATUSES + CLOSED_STATUSES:
            raise BugzillaError(51, f"There is no status named '{status}'.")
        self.set_status(bug, status, None if resolution is None else str(resolution))
        comment = body.get("comment")
        if isinstance(comment, dict) and str(comment.get("body", "")).strip():
            self._store_comment(bug, str(comment["body"]), creator=creator)
        changes = {
            k: {"removed": before[k], "added": bug[k]} for k in before if before[k] != bug[k]
        }
        result = {"id": bug["id"], "alias": [], "last_change_time": bug["last_change_time"]}
        return result | {"changes": changes}

    def set_status(self, bug: dict[str, Any], status: str, resolution: str | None) -> None:
        """Change a bug's status (and resolution when closing it).

        Raises:
            BugzillaError: 121 closing without a valid resolution, 122 a resolution
                on an open bug.
        """
        if status in CLOSED_STATUSES:
            resolution = resolution or (bug["resolution"] or None)
            if resolution not in RESOLUTIONS:
                raise BugzillaError(
                    121, f"A valid resolution is required to mark bugs as {status}."
                )
        elif resolution:
            raise BugzillaError(122, "You cannot set a resolution for open bugs.")
        bug["status"], bug["resolution"] = status, resolution or ""
        bug["is_open"] = status in OPEN_STATUSES
        bug["last_change_time"] = _now()

    def _validated_new_bug(self, body: Mapping[str, Any], *, creator: str) -> dict[str, Any]:
        for field in ("product", "component", "summary", "version"):
            if field not in body or body[field] is None:
                raise BugzillaError(
                    50,
                    f"The function Bugzilla::Bug->create requires a {field} argument, "
                    "and that argument was not set.",
                )
        product, component = self._checked_component(body)
        version = str(body["version"]).strip()
        if version not in self.versions:
            raise BugzillaError(
                51, f"There is no version named '{version}' in the '{product}' product."
            )
        summary = _checked_summary(body["summary"])
        choices = {f: str(body.get(f) or DEFAULTS[f]) for f in LEGAL}
        for field, value in choices.items():
            if value not in LEGAL[field]:
                raise BugzillaError(51, f"There is no {field.replace('_', ' ')} named '{value}'.")
        now = _now()
        return {
            "id": max(self.bugs, default=0) + 1,
            "alias": [],
            "summary": summary,
            "product": product,
            "component": component,
            "version": version,
            "status": "CONFIRMED",
            "resolution": "",
            "is_open": True,
            "is_confirmed": True,
            **choices,
            "cc": self._checked_cc(body.get("cc")),
            "creator": creator,
            "assigned_to": f"{component.lower()}@{product.lower()}.bugs",
            "classification": "Unclassified",
            "target_milestone": "---",
            "creation_time": now,
            "last_change_time": now,
            "keywords": [],
            "whiteboard": "",
            "url": "",
            "dupe_of": None,
        }

    def _checked_component(self, body: Mapping[str, Any]) -> tuple[str, str]:
        product, component = str(body["product"]).strip(), str(body["component"]).strip()
        if product not in self.products:
            raise BugzillaError(
                106,
                f"Sorry, either the product '{product}' does not exist or you aren't "
                "authorized to enter a bug into it.",
            )
        if not component:
            raise BugzillaError(105, "You must choose a component to file this bug in.")
        if component not in self.products[product]:
            raise BugzillaError(
                51, f"There is no component named '{component}' in the '{product}' product."
            )
        return product, component

    def _checked_cc(self, raw: Any) -> list[str]:
        cc = [raw] if isinstance(raw, str) else list(raw or [])
        for login in cc:
            known = "@" in str(login) if self.users is None else login in self.users
            if not known:
                raise BugzillaError(
                    504,
                    f"There is no user named '{login}'. Either you mis-typed the name or "
                    "that user has not yet registered for a Bugzilla account.",
                )
        return [str(c) for c in dict.fromkeys(cc)]

    def _store_comment(self, bug: dict[str, Any], text: str, *, creator: str) -> dict[str, Any]:
        comments = self.comments[bug["id"]]
        now = _now()
        comment = {
            "id": self._next_comment,
            "bug_id": bug["id"],
            "count": len(comments),
            "text": text.rstrip(),  # Bugzilla strips trailing whitespace from comments
            "creator": creator,
            "author": creator,
            "time": now,
            "creation_time": now,
            "is_private": False,
            "attachment_id": None,
            "tags": [],
        }
        self._next_comment += 1
        comments.append(comment)
        return comment


def _checked_summary(raw: Any) -> str:
    summary = clean_text(str(raw))
    if not summary:
        raise BugzillaError(107, "You must enter a summary for this bug.")
    if len(summary) > MAX_SUMMARY:
        raise BugzillaError(
            104,
            f"The text you entered in the Summary field is too long ({len(summary)} "
            f"characters, above the maximum length allowed of {MAX_SUMMARY} characters).",
        )
    return summary


def _matches(bug: Mapping[str, Any], query: MultiMapping[str]) -> bool:
    def any_of(name: str) -> list[str]:
        return list(query.getall(name, []))

    for field in ("product", "component", "status", "version", "severity", "creator"):
        wanted = any_of(field)
        if wanted and bug[field] not in wanted:
            return False
    resolutions = ["" if r == "---" else r for r in any_of("resolution")]
    if resolutions and bug["resolution"] not in resolutions:
        return False
    ids = any_of("id")
    if ids and str(bug["id"]) not in ids:
        return False
    # Bug.search's ``summary`` is a case-insensitive substring match (any of several).
    summaries = any_of("summary")
    return not summaries or any(s.lower() in bug["summary"].lower() for s in summaries)


def _only(bug: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    if not fields or "_all" in fields or "_default" in fields:
        return dict(bug)
    return {k: v for k, v in bug.items() if k in fields}
