"""Lab time: one clock per lab, scaled by a single speed factor.

Everything that takes time on a simulated device (session expiry today;
firmware jobs and reboots in later issues) reads :class:`LabClock` instead of
the wall clock, so a demo can run a 10-minute BIOS update in 10 seconds with
``speed=60`` while the ordering and the intermediate states stay the same.
Nothing in the lab completes instantly: work is expressed in lab seconds and
waited for with :meth:`LabClock.sleep`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LabClock:
    """Monotonic lab time running ``speed`` times faster than real time.

    Args:
        speed: How many lab seconds pass per real second (must be > 0).
        monotonic: Source of real monotonic seconds (injectable for tests).

    Raises:
        ValueError: If ``speed`` is not positive.
    """

    def __init__(
        self, *, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self._speed = float(speed)
        self._monotonic = monotonic
        self._origin = monotonic()

    @property
    def speed(self) -> float:
        """Lab seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Lab seconds elapsed since the clock was created.

        Returns:
            Monotonic lab time in seconds.
        """
        return (self._monotonic() - self._origin) * self._speed

    def real_seconds(self, lab_seconds: float) -> float:
        """Convert a lab duration to the real duration it takes.

        Args:
            lab_seconds: Duration in lab time.

        Returns:
            The same duration in real seconds.
        """
        return max(0.0, lab_seconds) / self._speed

    async def sleep(self, lab_seconds: float) -> None:
        """Wait for a duration of lab time.

        Args:
            lab_seconds: How long to wait, in lab seconds.
        """
        await asyncio.sleep(self.real_seconds(lab_seconds))
