"""What the Bugzilla client returns: bugs and comments (the fields rackflow reads)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_SUMMARY", "SEARCH_FIELDS", "Bug", "Comment", "normalize_summary"]

MAX_SUMMARY = 255  # Bugzilla's MAX_FREETEXT_LENGTH
# The fields a duplicate check needs: far less than a whole bug (Bugzilla
# instances with many custom fields answer searches slowly otherwise).
SEARCH_FIELDS = "id,summary,status,resolution,is_open,product,component,version,creation_time"


def normalize_summary(summary: str) -> str:
    """Normalize a summary the way Bugzilla stores it (``clean_text``).

    Args:
        summary: Summary text.

    Returns:
        Control characters (newlines, tabs) replaced by one space, ends trimmed.
    """
    return re.sub(r"[\x00-\x1f\x7f]+", " ", summary).strip()


class Bug(BaseModel):
    """A bug as Bugzilla's ``GET /rest/bug`` describes it (the fields rackflow reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    summary: str
    status: str
    resolution: str = ""
    is_open: bool | None = None
    product: str = ""
    component: str = ""
    version: str = ""
    severity: str | None = None
    creation_time: str | None = None
    cc: list[str] = Field(default_factory=list)

    @property
    def open(self) -> bool:
        """True while unresolved (``is_open``, else an empty resolution)."""
        return self.is_open if self.is_open is not None else not self.resolution


class Comment(BaseModel):
    """One comment of a bug; ``count`` 0 is the bug's description."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    bug_id: int
    count: int
    text: str
    creator: str = ""
    creation_time: str | None = None
    is_private: bool = False
