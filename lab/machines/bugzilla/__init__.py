"""A fake Bugzilla 5.0 REST API, where reboot flows file their bug reports.

Served by aiohttp over plain HTTP on 127.0.0.1 (free port). Shapes follow
Bugzilla 5.0 (``Bugzilla/WebService/Constants.pm``, ``.../REST/Resources/Bug.pm``)::

    GET  /rest/bug?product=&component=&summary=&status=&resolution=---&include_fields=
    POST /rest/bug                {product, component, summary, version, description,
                                   op_sys, platform, severity, priority, cc}  201 {"id": N}
    GET  /rest/bug/{id}           {"bugs": [bug], "faults": []}
    PUT  /rest/bug/{id}           {status, resolution, comment: {body}}  {"bugs": [changes]}
    GET  /rest/bug/{id}/comment   {"bugs": {"<id>": {"comments": [...]}}, "comments": {}}
    POST /rest/bug/{id}/comment   {comment}  200 {"id": N}
    GET  /rest/version            {"version": "5.0.6"}
    GET  /show_bug.cgi?id=N       a small HTML page (what ``bug_url`` links to)

Authentication: ``X-BUGZILLA-API-KEY`` header, ``api_key`` query parameter or
body field. A wrong key is refused even on reads (code 306, which Bugzilla
maps to HTTP 400, not 401); writes without a key get code 410 (HTTP 401).
Errors are Bugzilla's JSON: ``{"error": true, "code": N, "message": ...}``
with the HTTP status of ``REST_STATUS_CODE_MAP``.

:class:`BugzillaPeer` is a reboot-lab peer (``MachineLab(peers=[peer])``);
:class:`BugzillaFake` serves one on its own loop thread. State (``bugs``,
``comments``, ``requests``) is owned by the loop: read it there.

- :mod:`lab.machines.bugzilla.tracker`: bugs, comments and Bugzilla's rules (no HTTP);
- :mod:`lab.machines.bugzilla.server`: the REST front-end, faults, the loop-thread runner.
"""

from lab.machines.bugzilla.server import BugzillaFake, BugzillaFaults, BugzillaPeer
from lab.machines.bugzilla.tracker import OPEN_STATUSES, BugTracker, BugzillaError, clean_text

__all__ = [
    "OPEN_STATUSES",
    "BugTracker",
    "BugzillaError",
    "BugzillaFake",
    "BugzillaFaults",
    "BugzillaPeer",
    "clean_text",
]
