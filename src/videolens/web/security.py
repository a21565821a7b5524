"""The security middlewares, in the order a request meets them (outermost first):

* :class:`SecurityHeaders` adds no-sniff, no-referrer and no-framing headers to every
  answer, refusals included.
* ``allowed_hosts`` (Starlette's TrustedHostMiddleware, set by ``videolens serve`` when bound
  to loopback) refuses other ``Host`` headers, so a web page cannot reach the server by DNS
  rebinding.
* :class:`TokenGate`: with a ``token``, every request needs it: ``Authorization: Bearer T``,
  ``?token=T`` (which also sets an HttpOnly, SameSite=Strict cookie so the page's own media
  and API requests carry it) or that cookie; compared in constant time. 401 otherwise.
* :class:`BodyLimit`: request bodies over the upload limit get 413 before anything parses
  them.

Plain ASGI classes (no FastAPI), so each can be tested alone.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "videolens_token"


class TokenGate:
    """401 unless the request carries the token (header, query or cookie); a valid query
    token also sets the cookie, so a page opened with ``?token=T`` works from then on."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        from_cookie = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None
        via_query = self._matches(query.get("token"))
        if not (via_query or self._matches(bearer) or self._matches(from_cookie)):
            response = JSONResponse({"detail": "missing or wrong token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if not via_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = (f"{TOKEN_COOKIE}={self.token.decode()}; Path=/; HttpOnly; "
                         "SameSite=Strict")
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", value.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class BodyLimit:
    """413 for a request body over ``limit`` bytes, before any parser sees it.

    The body is read here (at most ``limit`` bytes kept) and replayed to the app, so the
    limit holds for chunked uploads without a Content-Length too.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": f"the request body is larger than "
                                  f"{self.limit // (1024 * 1024)} MB"}, status_code=413)
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and \
                    int(value) > self.limit:
                await too_large(scope, receive, send)
                return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: let the app see it
            size += len(message.get("body", b""))
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    """Headers for every response: no MIME sniffing, no referrer (a ``?token=`` URL must not
    leak to other sites), no framing."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
               (b"x-frame-options", b"DENY")]

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
