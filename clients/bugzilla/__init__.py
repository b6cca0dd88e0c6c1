"""An async client for the Bugzilla 5 REST API: find, file and comment on bugs.

We use httpx rather than python-bugzilla: that library is synchronous
(requests) and defaults to XML-RPC, while our tasks are async and need only
four REST calls.

The API key travels in the ``X-BUGZILLA-API-KEY`` header, never in a URL
(URLs end up in logs and error messages), and is scrubbed from any text the
server sends back. How Bugzilla's errors map to :mod:`clients.errors` is
told in :mod:`clients.bugzilla._wire`.

- :mod:`clients.bugzilla.models`: :class:`Bug`, :class:`Comment`, :func:`normalize_summary`;
- :mod:`clients.bugzilla.client`: :class:`BugzillaClient`.
"""

from clients.bugzilla.client import API_KEY_HEADER, BugzillaClient
from clients.bugzilla.models import MAX_SUMMARY, SEARCH_FIELDS, Bug, Comment, normalize_summary

__all__ = [
    "API_KEY_HEADER",
    "MAX_SUMMARY",
    "SEARCH_FIELDS",
    "Bug",
    "BugzillaClient",
    "Comment",
    "normalize_summary",
]
