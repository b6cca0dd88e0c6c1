"""Context-manager plumbing for clients that only need closing on exit.

A client whose ``__enter__`` / ``__aenter__`` does nothing (its connection
is opened on first use) and whose exit only closes it inherits one of these
instead of writing the same four methods again. Clients that connect on
entry (SSH, IPMI, the inventory) keep their own ``__enter__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing", "Closing"]


class AsyncClosing(ABC):
    """``async with client:`` returns the client and awaits :meth:`aclose` on exit."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the client's connections (idempotent)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Closing(ABC):
    """``with client:`` returns the client and calls :meth:`close` on exit."""

    @abstractmethod
    def close(self) -> None:
        """Release the client's connections (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
