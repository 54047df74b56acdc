"""The work bell: nodes that asked for work and found none wait on it (long poll), and are
answered the moment work may exist, instead of polling with a growing back-off.

Code that makes work leasable (a submission, a probe's chunks, a task requeued by a failure,
a hand-back, an expired lease or a lost chunk) rings it, from any thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WorkBell:
    """An asyncio event renewed on every ring; safe to ring from worker threads."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self.rings = 0

    def ticket(self) -> asyncio.Event:
        """The event the next ring sets: take it BEFORE looking for work, then wait on it, so a
        ring between the look and the wait is never missed."""
        self._loop = asyncio.get_running_loop()
        return self._event

    def ring(self) -> None:
        """Wake every waiting node (callable from any thread)."""
        self.rings += 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed meanwhile (server stopping)
                pass

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


async def long_poll(
    bell: WorkBell,
    look: Callable[[], T | None],
    wait: float,
    recheck: float,
    stopping: asyncio.Event,
    gone: Callable[[], Awaitable[bool]],
) -> T | None:
    """What `look` finds, waiting up to `wait` seconds for it: it looks again whenever `bell`
    rings (and every `recheck` seconds regardless); None when the wait is over, the server
    stops or the client is `gone`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        ticket = bell.ticket()  # before looking: a ring meanwhile is not missed
        found = look()
        left = deadline - loop.time()
        if found is not None or left <= 0 or stopping.is_set():
            return found
        rang = await wait_for(ticket, min(left, recheck))
        if await gone():
            return None
        if not rang and deadline <= loop.time():
            return None  # the wait is over and nothing rang: there is nothing new to find


async def wait_for(ticket: asyncio.Event, timeout: float) -> bool:
    """True when the bell rang within `timeout` seconds."""
    try:
        await asyncio.wait_for(ticket.wait(), timeout)
    except TimeoutError:
        return False
    return True
