"""The routes every node calls for every chunk, taken without the framework's layers.

A busy farm takes hundreds of results, leases and heartbeats a second, and each went through
CORS, the exception layer, the router's match against every route and two wrappers around
every message sent: about a sixth of the event loop's time. Nodes send no `Origin`, so CORS
has nothing to do for them; the Host check and the outermost error layer stay in front.
`FastRoutes` sits behind the Host check and answers those routes itself, with the same
endpoints and the same error handlers (one JSON shape); anything else, and any request that
carries an `Origin` (a browser's), goes down the usual stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class FastRoutes:
    """ASGI middleware: `routes` answered directly, errors by `handlers` (by exception class,
    the closest base class's, as Starlette picks them)."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[Route], handlers: Mapping[type[Exception], Handler]
    ):
        self.app = app
        self.routes = tuple(routes)
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(k == b"origin" for k, _ in scope["headers"]):
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await self._answer(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None
