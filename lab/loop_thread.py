"""An asyncio event loop in a background thread, for lab services that tests start.

Lab state is owned by one loop; code in other threads reaches it through
:meth:`LoopThread.call`. :class:`lab.server.Lab` (the iDRAC fleet) and
:class:`lab.machines.MachineLab` (the reboot lab) both run on one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
START_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 60.0


class LoopThread:
    """Run ``start`` on a new loop in a daemon thread, serve until stopped, then ``stop``.

    Args:
        name: Thread name (shows in ``py-spy`` dumps).
        start: Coroutine factory run first; its exception is re-raised by :meth:`run`.
        stop: Coroutine factory run after the loop is asked to stop.
    """

    def __init__(
        self,
        *,
        name: str,
        start: Callable[[], Coroutine[Any, Any, None]],
        stop: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self._name = name
        self._start = start
        self._stop = stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True between a successful :meth:`run` and :meth:`shutdown`."""
        return self._thread is not None

    def run(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the thread; return once ``start`` finished.

        Raises:
            RuntimeError: Already running.
            TimeoutError: ``start`` took longer than ``timeout_s``.
            Exception: Whatever ``start`` raised (the loop is closed again).
        """
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                started.set_exception(exc)
                finish_loop(loop)
                return
            started.set_result(None)
            loop.run_forever()
            try:
                loop.run_until_complete(self._stop())
            finally:
                finish_loop(loop)

        self._loop = loop
        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        try:
            started.result(timeout=timeout_s)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            self._loop = None
            raise

    def shutdown(self) -> None:
        """Stop the loop (running ``stop``) and join the thread; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = None
        self._loop = None

    def call(
        self, make: Callable[[], Coroutine[Any, Any, T]], *, timeout_s: float = CALL_TIMEOUT_S
    ) -> T:
        """Run a coroutine on the loop from another thread and wait for its result.

        Args:
            make: Builds the coroutine (called on the caller's thread).
            timeout_s: How long to wait.

        Returns:
            The coroutine's result.

        Raises:
            RuntimeError: The loop is not running.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"{self._name} is not running")
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        return future.result(timeout=timeout_s)


def finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a stopped loop, let it unwind, and close it (as asyncio.run does)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
