"""The web app: pages and a JSON API over one video library.

Handlers are thin: they parse the request, call :mod:`videolens.index.query` or
:mod:`videolens.tasks` through :class:`LibraryService`, and shape the answer. Model calls
run in FastAPI's threadpool (the endpoints are plain ``def``) and one at a time under a lock:
torch already uses every core for one call, and the library's reader connection and caches
are shared.

Security, in the order a request meets it (see also :mod:`videolens.web.media`):

* ``allowed_hosts`` (set by ``videolens serve`` when bound to loopback) refuses other
  ``Host`` headers, so a web page cannot reach the server by DNS rebinding.
* With a ``token``, every request needs it: ``Authorization: Bearer T``, ``?token=T`` (which
  also sets an HttpOnly, SameSite=Strict cookie so the page's own media and API requests
  carry it) or that cookie; compared in constant time. 401 otherwise.
* Request bodies over the upload limit get 413 before anything parses them.
* Videos are named by integer library id only; files are served only when they are still
  what the library indexed. Everything else is 404.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
from collections.abc import Sequence
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import LabelError, LibraryError, UsageError, VideoDecodeError, VideolensError
from ..library import Library, VideoRecord
from ..models import VideoTextModel
from ..pipelines.classify import VideoResult, iter_classify
from ..pipelines.common import library_model
from ..pipelines.localize import Localization
from ..pipelines.localize import localize as localize_video
from ..pipelines.search import search
from ..tasks.search import Moment
from .media import (
    MAX_UPLOAD_BYTES,
    ThumbnailCache,
    UploadError,
    decode_upload_image,
    servable_path,
    thumb_time,
    video_media_type,
)

HERE = Path(__file__).parent
TOKEN_COOKIE = "videolens_token"
# multipart framing around the image: boundaries, headers, the small form fields
BODY_OVERHEAD = 64 * 1024
MAX_TOP = 100
MAX_LABELS = 200
MAX_TEXT = 1000  # characters in a query or a label; CLIP reads 77 tokens anyway
DEFAULT_TOP = 12
# ids are SQLite integer keys: digits only, so "1e3", "+1", " 1", "..", "%2e" are all 404
_ID = re.compile(r"[0-9]{1,18}")
# pages: scripts and styles from this server only; inline style attributes are allowed for
# the server-rendered bar widths and timeline positions (no inline script anywhere)
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# ---------------------------------------------------------------------------- service


class LibraryService:
    """One open library, its model (loaded once), the model lock and the thumbnail cache.

    Every method that runs the model takes :attr:`model_lock`; callers are worker threads.
    """

    def __init__(self, library: str | os.PathLike, model: VideoTextModel | str | None,
                 device: str, dtype: str):
        self.store = Library.open(library)  # LibraryError when there is none
        try:
            self.encoder = library_model(self.store, model, device, dtype)
        except BaseException:
            self.store.close()
            raise
        self.device, self.dtype = device, dtype
        self.model_lock = threading.Lock()
        self.thumbs = ThumbnailCache(self.store.root / "thumbs")

    def close(self) -> None:
        self.thumbs.close()
        self.store.close()

    def record(self, video_id: str | int) -> VideoRecord:
        """The library video with this id; 404 for anything that is not a known integer id."""
        text = str(video_id)
        record = self.store.video(int(text)) if _ID.fullmatch(text) else None
        if record is None:
            raise HTTPException(404, "no such video in the library")
        return record

    def file(self, record: VideoRecord) -> Path:
        """The file to serve for ``record``; 404 when it is gone or no longer the indexed
        file (see :func:`videolens.web.media.servable_path`)."""
        path = servable_path(record)
        if path is None:
            raise HTTPException(404, "the video file is gone or was replaced")
        return path

    def search(self, text: str | None = None, image=None, top: int = DEFAULT_TOP) -> list[Moment]:
        with self.model_lock:
            return search(text, image=image, library=self.store, model=self.encoder, top=top,
                          device=self.device, dtype=self.dtype)

    def localize(self, record: VideoRecord, actions: list[str]) -> Localization:
        # checked first: when the library cannot answer, localize_video decodes the path,
        # which must still be the indexed file (not a symlink swapped in since)
        path = self.file(record)
        with self.model_lock:
            return localize_video(path, actions, library=self.store.root,
                                  model=self.encoder, device=self.device, dtype=self.dtype)

    def classify(self, record: VideoRecord, labels: list[str], top: int,
                 frames: int | None) -> VideoResult:
        path = self.file(record)
        with self.model_lock:
            [result] = iter_classify([path], labels, model=self.encoder, frames=frames, top=top)
        return result


# ---------------------------------------------------------------------------- API shapes


class MomentOut(BaseModel):
    """A moment of a video matching the query. Times in seconds; ``score`` is the cosine
    similarity of its best frame to the query."""

    video_id: int
    video: str = Field(description="file name (no folders)")
    start: float
    end: float
    score: float
    thumbnail_url: str
    media_url: str
    page_url: str


class SearchOut(BaseModel):
    query: str | None = Field(description="the text searched, or null for an image")
    results: list[MomentOut]


class VideoOut(BaseModel):
    id: int
    video: str = Field(description="file name (no folders)")
    duration: float = Field(description="seconds")
    fps: float
    width: int
    height: int
    num_frames: int = Field(description="frames stored in the library for this video")
    size: int = Field(description="bytes")
    indexed_at: float = Field(description="unix time, seconds")
    available: bool = Field(description="whether the file can be served now")
    media_url: str
    thumbnail_url: str
    page_url: str


class VideosOut(BaseModel):
    videos: list[VideoOut]


class SegmentOut(BaseModel):
    label: str
    start: float
    end: float
    score: float


class LocalizeOut(BaseModel):
    video_id: int
    video: str
    actions: list[str]
    source: str = Field(description="'library' (stored frames) or 'decoded' (sampled now)")
    fps: float
    segments: list[SegmentOut]


class ClassifyIn(BaseModel):
    video_id: int
    labels: list[str] | str = Field(
        description="a list of labels, or one string of labels separated by commas")
    top: int = Field(5, ge=0, le=MAX_LABELS, description="labels returned (0 = all)")
    frames: int | None = Field(None, ge=1, le=256, description="default: the model's")


class LabelScoreOut(BaseModel):
    label: str
    score: float


class ClassifyOut(BaseModel):
    video_id: int
    video: str
    frames: int
    timestamps: list[float]
    scores: list[LabelScoreOut]


def _name(record: VideoRecord) -> str:
    return Path(record.path).name


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


def _file_size(size: int) -> str:
    """Bytes for people: ``812 KB``, ``1.4 MB``, ``2.0 GB``."""
    value = float(size)
    for unit in ("bytes", "KB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.1f} MB"


def _moment_out(moment: Moment) -> MomentOut:
    start = round(moment.start, 3)
    return MomentOut(
        video_id=moment.video_id, video=Path(moment.video).name, start=start,
        end=round(moment.end, 3), score=round(moment.score, 6),
        thumbnail_url=f"/thumbs/{moment.video_id}?t={round(moment.start, 1):g}",
        media_url=f"/media/{moment.video_id}",
        page_url=f"/videos/{moment.video_id}?t={start:g}",
    )


def _video_out(record: VideoRecord) -> VideoOut:
    poster = thumb_time(record.duration * 0.25, record.duration)  # often past a black intro
    return VideoOut(
        id=record.id, video=_name(record), duration=record.duration, fps=record.fps,
        width=record.width, height=record.height, num_frames=record.num_frames,
        size=record.size, indexed_at=record.indexed_at,
        available=servable_path(record) is not None, media_url=f"/media/{record.id}",
        thumbnail_url=f"/thumbs/{record.id}?t={poster:g}", page_url=f"/videos/{record.id}",
    )


def _split_labels(values: Sequence[str] | str) -> list[str]:
    """Labels from strings that may each hold a comma or newline separated list.

    Always a list of plain strings: a single string given to :func:`load_labels` may name
    a label *file*, and a web client must never make the server read one.
    """
    items = [values] if isinstance(values, str) else list(values)
    labels = [part.strip() for item in items for part in re.split(r"[,\n]", item)]
    labels = [label for label in labels if label]
    if not labels:
        raise UsageError("give at least one label (or action)")
    if len(labels) > MAX_LABELS:
        raise UsageError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    if any(len(label) > MAX_TEXT for label in labels):
        raise UsageError(f"a label is longer than {MAX_TEXT} characters")
    return labels


def _check_top(top: int) -> int:
    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"top must be between 1 and {MAX_TOP}, got {top}")
    return top


def _public_message(err: VideolensError) -> str:
    """The error without its file path: a client knows videos by id, not by server path."""
    return " ".join(err.message.split())


# ---------------------------------------------------------------------------- middleware


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


# ---------------------------------------------------------------------------- app


def create_app(
    library: str | Path,
    *,
    model: VideoTextModel | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The ASGI app serving ``library``.

    The library is opened and its model loaded here, before any request: a missing library
    raises LibraryError, a model that cannot load raises ModelLoadError. ``model`` defaults
    to the library's own (a loaded model or a name is checked against it). ``token``: when
    set, required on every request. ``allowed_hosts``: accepted ``Host`` header names (None
    accepts any). ``max_upload_bytes``: the largest query image.
    """
    service = LibraryService(library, model, device, dtype)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="videolens",
        version=__version__,
        description="Search, localize and classify actions in an indexed video library.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.max_upload_bytes = max_upload_bytes
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(version=__version__, clock=_clock, file_size=_file_size)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # the last added runs first: security headers (on every answer, refusals included),
    # host check, token, body size
    app.add_middleware(BodyLimit, limit=max_upload_bytes + BODY_OVERHEAD)
    if token:
        app.add_middleware(TokenGate, token=token)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)
    _add_error_handlers(app)
    _add_api_routes(app, service, max_upload_bytes)
    _add_media_routes(app, service)
    _add_page_routes(app, service, templates, max_upload_bytes)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"detail": "<one line>"}`` with its status code."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems) or "bad request"}, status_code=400)

    @app.exception_handler(UsageError)
    @app.exception_handler(LabelError)
    async def usage(request: Request, exc: VideolensError) -> JSONResponse:
        return JSONResponse({"detail": _public_message(exc)}, status_code=400)

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, exc: VideoDecodeError) -> JSONResponse:
        return JSONResponse({"detail": f"cannot decode the video: {_public_message(exc)}"},
                            status_code=422)

    @app.exception_handler(LibraryError)
    async def library_broken(request: Request, exc: LibraryError) -> JSONResponse:
        return JSONResponse({"detail": f"library error: {_public_message(exc)}"},
                            status_code=503)

    @app.exception_handler(UploadError)
    async def upload(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)


def _add_api_routes(app: FastAPI, service: LibraryService, max_upload_bytes: int) -> None:
    @app.get("/api/search", response_model=SearchOut, tags=["search"])
    def api_search(q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
                   top: int = DEFAULT_TOP) -> SearchOut:
        """Moments matching a text query, best first."""
        moments = service.search(q, top=_check_top(top))
        return SearchOut(query=q, results=[_moment_out(m) for m in moments])

    @app.post("/api/search", response_model=SearchOut, tags=["search"])
    def api_search_image(image: Annotated[UploadFile, File(description="JPEG, PNG, WebP…")],
                         top: Annotated[int, Form()] = DEFAULT_TOP) -> SearchOut:
        """Moments that look like an example picture (query by example). 413 over the size
        limit, 415 when the upload is not an image."""
        picture = decode_upload_image(image.file.read(max_upload_bytes + 1),
                                      max_bytes=max_upload_bytes)
        moments = service.search(image=picture, top=_check_top(top))
        return SearchOut(query=None, results=[_moment_out(m) for m in moments])

    @app.get("/api/videos", response_model=VideosOut, tags=["videos"])
    def api_videos() -> VideosOut:
        """Every video in the library, oldest first."""
        return VideosOut(videos=[_video_out(r) for r in service.store.videos()])

    @app.get("/api/videos/{video_id}", response_model=VideoOut, tags=["videos"])
    def api_video(video_id: str) -> VideoOut:
        """One video by library id."""
        return _video_out(service.record(video_id))

    @app.get("/api/localize", response_model=LocalizeOut, tags=["localize"])
    def api_localize(video: str, q: Annotated[list[str], Query()]) -> LocalizeOut:
        """When each action happens in one video. ``q`` is repeatable and may hold a comma
        list: ``?video=3&q=running&q=jumping`` or ``?video=3&q=running,jumping``."""
        record = service.record(video)
        actions = _split_labels(q)
        found = service.localize(record, actions)
        return LocalizeOut(
            video_id=record.id, video=_name(record), actions=actions, source=found.source,
            fps=found.fps, segments=[SegmentOut(**{k: v for k, v in line.items()
                                                   if k != "video"})
                                     for line in found.to_json_lines()])

    @app.post("/api/classify", response_model=ClassifyOut, tags=["classify"])
    def api_classify(body: ClassifyIn) -> ClassifyOut:
        """Rank labels for a whole video (zero-shot)."""
        record = service.record(body.video_id)
        result = service.classify(record, _split_labels(body.labels), body.top, body.frames)
        if not result.ok:
            raise HTTPException(422, f"cannot classify {_name(record)}: decoding failed")
        return ClassifyOut(
            video_id=record.id, video=_name(record), frames=result.frames,
            timestamps=result.timestamps,
            scores=[LabelScoreOut(label=s.label, score=round(s.score, 6)) for s in result.scores])


def _add_media_routes(app: FastAPI, service: LibraryService) -> None:
    @app.get("/media/{video_id}", tags=["media"],
             responses={200: {"content": {"video/*": {}}}, 206: {"description": "a range"},
                        416: {"description": "range not satisfiable"}})
    @app.head("/media/{video_id}", include_in_schema=False)
    def media(video_id: str) -> FileResponse:
        """The video file, with HTTP Range support (206 / 416)."""
        record = service.record(video_id)
        path = service.file(record)
        # FileResponse (Starlette >= 0.39) answers Range, If-Range and HEAD, streams in
        # 64 KiB chunks, and sets ETag / Last-Modified from the stat
        return FileResponse(path, media_type=video_media_type(path), stat_result=path.stat(),
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/thumbs/{video_id}", tags=["media"],
             responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(video_id: str, t: float = 0.0) -> Response:
        """A JPEG of the video at ``t`` seconds (~320 px wide), cached in the library."""
        record = service.record(video_id)
        path = service.file(record)
        try:
            when = thumb_time(t, record.duration)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        jpeg = service.thumbs.get(record, path, when)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


def _add_page_routes(app: FastAPI, service: LibraryService, templates: Jinja2Templates,
                     max_upload_bytes: int) -> None:
    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"page": name.removesuffix(".html"), **context},
            status_code=status, headers={"Content-Security-Policy": PAGE_CSP})

    def attempt(action):
        """(value, None) or (None, error message) for errors a page shows inline."""
        try:
            return action(), None
        except (VideolensError, UploadError) as err:
            message = err.message if isinstance(err, UploadError) else _public_message(err)
            return None, message
        except HTTPException as err:  # a video whose file is gone
            return None, str(err.detail)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(request: Request, q: str = "", top: int = DEFAULT_TOP) -> HTMLResponse:
        results, error = None, None
        if q.strip():
            moments, error = attempt(lambda: service.search(q[:MAX_TEXT], top=_check_top(top)))
            results = [_moment_out(m) for m in moments or []]
        return page(request, "search.html", 400 if error else 200, q=q, top=top,
                    results=results, error=error, by_image=False)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    def search_by_image_page(request: Request, image: Annotated[UploadFile, File()],
                             top: Annotated[int, Form()] = DEFAULT_TOP) -> HTMLResponse:
        def run() -> list[Moment]:
            picture = decode_upload_image(image.file.read(max_upload_bytes + 1),
                                          max_bytes=max_upload_bytes)
            return service.search(image=picture, top=_check_top(top))

        moments, error = attempt(run)
        return page(request, "search.html", 400 if error else 200, q="", top=top,
                    results=[_moment_out(m) for m in moments or []], error=error,
                    by_image=True, image_name=Path(image.filename or "image").name)

    @app.get("/videos", response_class=HTMLResponse, include_in_schema=False)
    def videos_page(request: Request) -> HTMLResponse:
        return page(request, "videos.html",
                    videos=[_video_out(r) for r in service.store.videos()])

    @app.get("/videos/{video_id}", response_class=HTMLResponse, include_in_schema=False)
    def video_page(request: Request, video_id: str, q: str = "", t: float = 0.0) -> HTMLResponse:
        try:
            record = service.record(video_id)
        except HTTPException:
            return page(request, "error.html", 404, error="No such video in the library.")
        found, error, actions = None, None, []
        if q.strip():
            actions, error = attempt(lambda: _split_labels(q))
        if actions:
            found, error = attempt(lambda: service.localize(record, actions))
        # one timeline row per asked action, in the order asked, even when nothing was found
        tracks = {label: [d for d in found.detections if d.label == label]
                  for label in actions} if found is not None else {}
        return page(request, "video.html", 400 if error else 200, video=_video_out(record),
                    q=q, t=max(0.0, t), found=found, tracks=tracks, error=error)

    @app.get("/classify", response_class=HTMLResponse, include_in_schema=False)
    def classify_page(request: Request, video: str = "", labels: str = "",
                      top: int = 0) -> HTMLResponse:
        records = service.store.videos()
        chosen, result, error = None, None, None
        if video:
            try:
                chosen = service.record(video)
            except HTTPException:
                error = "No such video in the library."
        if chosen is not None and labels.strip():
            result, error = attempt(lambda: service.classify(chosen, _split_labels(labels),
                                                             max(0, top), None))
            if result is not None and not result.ok:
                result, error = None, f"cannot classify {_name(chosen)}: decoding failed"
        return page(request, "classify.html", 400 if error else 200,
                    videos=[(r.id, _name(r)) for r in records],
                    chosen=chosen.id if chosen else None,
                    chosen_name=_name(chosen) if chosen else None, labels=labels, top=top,
                    result=result, error=error)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)
