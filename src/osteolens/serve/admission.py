"""Admission to the predict route: the bearer token and a prediction slot, before the body is read.

FastAPI reads and parses a multipart body before the endpoint (and its dependencies) run,
so a limit taken inside the endpoint lets every queued request hold its whole upload in
memory. :class:`Admission` is a pure ASGI middleware in front of the app: a request to the
guarded route is checked for its token and then waits for a :class:`Slots` slot without
calling ``receive``; only a request holding a slot has its body read.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections import deque

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

UNAUTHORISED = "missing or wrong bearer token. Fix: send 'Authorization: Bearer <token>'."
#: Seconds a client told "queue full" (503) is asked to wait before retrying.
RETRY_AFTER_S = 5


def bearer_ok(header: str, token: str) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>`` (constant-time comparison)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class Slots:
    """At most ``limit`` holders at once, first come first served; ``max_waiting`` bounds the queue.

    Safe across threads and event loops (a waiter is woken on its own loop), so one instance
    serves uvicorn's loop and the per-request loops of Starlette's test client alike.
    """

    def __init__(self, limit: int, max_waiting: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the slot limit must be at least 1, got {limit}")
        if max_waiting is not None and max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0 or None, got {max_waiting}")
        self.limit, self.max_waiting = limit, max_waiting
        self._free = limit
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot now."""
        return len(self._waiters)

    async def acquire(self) -> bool:
        """Take a slot, waiting in line for one; False (at once) when the queue is full."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            if self.max_waiting is not None and len(self._waiters) >= self.max_waiting:
                return False
            entry = (loop, loop.create_future())
            self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            with self._lock:
                queued = entry in self._waiters
                if queued:
                    self._waiters.remove(entry)
            if not queued:  # the slot was already handed to us: pass it on
                self.release()
            raise
        return True

    def release(self) -> None:
        """Give a slot back: to the first waiter, else to the pool."""
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            loop, future = self._waiters.popleft()
        loop.call_soon_threadsafe(_grant, future)


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Admission:
    """ASGI middleware: ``POST path`` is authorised, then waits for a slot before its body is read.

    Answers 401 (token configured, header missing or wrong) and 503 with ``Retry-After``
    (the queue is full) without reading the body; other routes pass straight through.
    """

    def __init__(self, app: ASGIApp, slots: Slots, path: str, token: str | None = None) -> None:
        self.app, self.slots, self.path, self.token = app, slots, path, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.token is not None:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not bearer_ok(header, self.token):
                response = JSONResponse({"detail": UNAUTHORISED}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        if not await self.slots.acquire():
            response = JSONResponse(
                {"detail": f"the service is busy: {self.slots.limit} prediction(s) running and "
                           f"{self.slots.max_waiting} waiting. Fix: retry after {RETRY_AFTER_S} s."},
                status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()
