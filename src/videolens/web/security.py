"""The security middlewares, in the order a request meets them (outermost first):

* :class:`SecurityHeaders` adds no-sniff, no-referrer and no-framing headers to every
  answer, refusals included.
* ``allowed_hosts`` (Starlette's TrustedHostMiddleware, set by ``videolens serve`` when bound
  to loopback) refuses other ``Host`` headers, so a web page cannot reach the server by DNS
  rebinding.
* :class:`CrossSiteGuard` refuses what another web site's page makes a browser send (form
  posts, ``<img>``/``<video>`` tags, scripts), by its ``Sec-Fetch-Site`` and ``Origin``
  headers; a person following a link to a page still arrives, and clients that send neither
  header (curl, scripts) are not affected.
* :class:`TokenGate`: with a ``token``, every request needs it: ``Authorization: Bearer T``,
  ``?token=T`` (which also sets an HttpOnly, SameSite=Strict cookie so the page's own media
  and API requests carry it) or that cookie; compared in constant time. 401 otherwise, as a
  small page asking for the token when a browser asks for a page.
* :class:`BodyLimit`: request bodies over the upload limit get 413, counted while they stream
  in, so nothing holds a large body in memory.

Plain ASGI classes (no FastAPI), so each can be tested alone.
"""

from __future__ import annotations

import hmac
import html
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UsageError

TOKEN_COOKIE = "videolens_token"
# pages: scripts and styles from this server only; inline style attributes are allowed for
# the server-rendered bar widths and timeline positions (no inline script anywhere)
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# URL-safe characters only (RFC 3986 "unreserved"): the token then reads the same in a
# header, a ?token= query (where '+' would turn into a space) and a cookie (where ';' and
# ',' end the value), and no encoding can make two spellings of one token
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
MAX_TOKEN = 512


def check_token(token: str) -> str:
    """``token`` if it can be sent verbatim in every way the server accepts it; UsageError
    (what is wrong, and how to make a good one) otherwise."""
    if not _TOKEN.fullmatch(token) or len(token) > MAX_TOKEN:
        bad = sorted({ch for ch in token if not _TOKEN.fullmatch(ch)})
        what = (f"characters {''.join(bad)!r} cannot be sent as they are in a URL, header or "
                "cookie" if bad else f"it is longer than {MAX_TOKEN} characters" if token
                else "it is empty")
        raise UsageError(
            f"the token cannot be used: {what}",
            hint="use letters, digits and - . _ ~ only, e.g. python -c \"import secrets; "
                 "print(secrets.token_urlsafe(24))\"")
    return token


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


class CrossSiteGuard:
    """403 for a request another site's page made a browser send.

    Browsers (Chrome 76+, Firefox 90+, Safari 16.4+) say where a request comes from in
    ``Sec-Fetch-Site``; every browser sends ``Origin`` with a POST. Refused: any request whose
    ``Origin`` is not this server's own (``null`` included), and any ``same-site`` or
    ``cross-site`` request except a person's top-level GET navigation to a page (following a
    link). So a foreign page can neither post a query image or a classify request, nor make
    the server decode thumbnails or stream videos through ``<img>`` or ``<video>`` tags.
    ``same-site`` counts as foreign too: another port on localhost is another program.
    """

    PAGES_ONLY = ("/api/", "/media/", "/thumbs/", "/static/", "/docs", "/openapi.json",
                  "/redoc")

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope)
        if why is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": f"cross-site request refused: {why}"},
                                status_code=403)
        await response(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why the request in ``scope`` is refused, or None when it may pass."""
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and _normal_origin(origin) != _own_origin(scope, headers):
            return f"it comes from a page of {origin}"
        site = headers.get("sec-fetch-site", "").lower()
        if site not in ("same-site", "cross-site"):
            return None  # same-origin, none (typed, bookmark) or a client without the header
        navigation = (scope.get("method", "GET") in ("GET", "HEAD")
                      and headers.get("sec-fetch-mode", "").lower() == "navigate"
                      and headers.get("sec-fetch-dest", "document").lower() == "document"
                      and not scope["path"].startswith(self.PAGES_ONLY))
        return None if navigation else "it was made by another site's page"


def _own_origin(scope: Scope, headers: Headers) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"),
                                               scope.get("scheme", "http"))
    return _normal_origin(f"{scheme}://{headers.get('host', '')}")


def _normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port."""
    origin = origin.strip().lower().rstrip("/")
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


class TokenGate:
    """401 unless the request carries the token (header, query or cookie); a valid query
    token also sets the cookie, so a page opened with ``?token=T`` works from then on.

    ``token`` must pass :func:`check_token` (ASCII): what a client sends is compared as raw
    bytes, so a token in any other encoding simply does not match.
    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = check_token(token).encode("ascii")

    def _matches(self, given: bytes | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        # headers arrive as bytes and Starlette decodes them as latin-1: encoding back to
        # latin-1 gives the bytes the client sent
        bearer = auth[7:].strip().encode("latin-1") if auth[:7].lower() == "bearer " else None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        given = next((value for key, value in query if key == "token"), None)
        via_query = self._matches(given.encode("utf-8") if given is not None else None)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        from_cookie = (cookie[TOKEN_COOKIE].value.encode("latin-1")
                       if TOKEN_COOKIE in cookie else None)
        if not (via_query or self._matches(bearer) or self._matches(from_cookie)):
            if _wants_page(scope, headers):
                response = _token_page(scope, query, wrong=given is not None)
            else:
                response = JSONResponse({"detail": "missing or wrong token"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if not via_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = f"{TOKEN_COOKIE}={self.token.decode('ascii')}; Path=/; HttpOnly; " \
                        "SameSite=Strict"
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", value.encode("ascii"))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _wants_page(scope: Scope, headers: Headers) -> bool:
    """A browser opening a page (GET, asks for HTML), not a script or an API client."""
    return scope["type"] == "http" and scope["method"] in ("GET", "HEAD") \
        and "text/html" in headers.get("accept", "")


def _token_page(scope: Scope, query: list[tuple[str, str]], *, wrong: bool) -> HTMLResponse:
    """401 as a page with one field for the token; it reopens the same page with ``?token=``
    (and the rest of the query), which also sets the cookie."""
    keep = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                   for k, v in query if k != "token")
    said = ("<p class=\"wrong\">That token is not right.</p>" if wrong else "")
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Token needed · videolens</title>
<style>body{{font:16px system-ui,sans-serif;max-width:28rem;margin:15vh auto;padding:0 1rem}}
input[type=password]{{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}}
button{{margin-top:.75rem;padding:.5rem 1rem;font:inherit}}.wrong{{color:#b00020}}</style>
</head><body>
<h1>videolens</h1>
<p>This library is protected by a token. Paste the token the server was started with.</p>
{said}
<form method="get" action="{html.escape(scope['path'])}">{keep}
<input type="password" name="token" aria-label="Token" autofocus required autocomplete="off">
<button type="submit">Open</button>
</form>
</body></html>
"""
    return HTMLResponse(body, status_code=401, headers={
        "WWW-Authenticate": "Bearer", "Content-Security-Policy": PAGE_CSP,
        "Cache-Control": "no-store"})


class BodyLimit:
    """413 for a request body over ``limit`` bytes, counted as it streams to the app.

    Nothing is buffered here: past the limit the app's ``receive`` sees the client go away
    (so a parser stops at once and the rest of the body is never read), and whatever the app
    answers to that is replaced by the 413. A Content-Length over the limit is refused before
    the app runs. Holds for chunked uploads without a Content-Length too.
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
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        received = 0
        over = started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over:  # the app's answer to a body it never fully got
                    await too_large(scope, receive, send)
            if not over:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
            if not started:  # the app gave up on the cut body with an exception
                await too_large(scope, receive, send)
