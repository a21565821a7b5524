"""The routes: the JSON API (``/api/...``), media (``/media``, ``/thumbs``) and the pages.

Handlers are thin: they parse the request, call :class:`~videolens.web.service.LibraryService`
and shape the answer with :mod:`videolens.web.schemas`. Model calls run in FastAPI's
threadpool (the endpoints are plain ``def``) and one at a time under the service's lock:
torch already uses every core for one call, and the library's reader connection and caches
are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from ..errors import VideolensError
from ..tasks.search import Moment
from ..tasks.timefmt import clock
from .media import UploadError, VideoFileResponse, open_video_file, video_media_type
from .schemas import (
    MAX_TEXT,
    ClassifyIn,
    ClassifyOut,
    LabelScoreOut,
    LocalizeOut,
    SearchOut,
    SegmentOut,
    VideoOut,
    VideosOut,
    check_top,
    moment_out,
    public_message,
    split_labels,
    video_name,
    video_out,
)
from .security import PAGE_CSP
from .service import DEFAULT_TOP, LibraryService, ServerBusy

T = TypeVar("T")

__all__ = ["add_api_routes", "add_media_routes", "add_page_routes", "clock", "file_size"]


def file_size(size: int) -> str:
    """Bytes for people: ``812 KB``, ``1.4 MB``, ``2.0 GB``."""
    value = float(size)
    for unit in ("bytes", "KB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.1f} MB"


def _first(*values: int | None) -> int:
    return next(value for value in values if value is not None)


def add_api_routes(app: FastAPI, service: LibraryService) -> None:
    @app.get("/api/search", response_model=SearchOut, tags=["search"])
    def api_search(q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
                   top: int = DEFAULT_TOP) -> SearchOut:
        """Moments matching a text query, best first."""
        moments = service.search(q, top=check_top(top))
        return SearchOut(query=q, results=[moment_out(m) for m in moments])

    @app.post("/api/search", response_model=SearchOut, tags=["search"],
              responses={413: {"description": "over the size or pixel limit"},
                         415: {"description": "not an image"},
                         503: {"description": "busy: retry after Retry-After seconds"}})
    def api_search_image(
        image: Annotated[UploadFile, File(description="JPEG, PNG, WebP…")],
        top_form: Annotated[int | None, Form(alias="top")] = None,
        top_query: Annotated[int | None, Query(alias="top")] = None,
    ) -> SearchOut:
        """Moments that look like an example picture (query by example). ``top`` (moments,
        default 10) may be a form field or in the query string."""
        top = _first(top_query, top_form, DEFAULT_TOP)
        moments = service.search_image(image.file, top=check_top(top))
        return SearchOut(query=None, results=[moment_out(m) for m in moments])

    @app.get("/api/videos", response_model=VideosOut, tags=["videos"])
    def api_videos() -> VideosOut:
        """Every video in the library, oldest first."""
        return VideosOut(videos=[video_out(r) for r in service.store.videos()])

    @app.get("/api/videos/{video_id}", response_model=VideoOut, tags=["videos"])
    def api_video(video_id: str) -> VideoOut:
        """One video by library id."""
        return video_out(service.record(video_id))

    @app.get("/api/localize", response_model=LocalizeOut, tags=["localize"])
    def api_localize(video: str, q: Annotated[list[str], Query()]) -> LocalizeOut:
        """When each action happens in one video. ``q`` is repeatable and may hold a comma
        list: ``?video=3&q=running&q=jumping`` or ``?video=3&q=running,jumping``."""
        record = service.record(video)
        actions = split_labels(q)
        found = service.localize(record, actions)
        return LocalizeOut(
            video_id=record.id, video=video_name(record), actions=actions, source=found.source,
            fps=found.fps, segments=[SegmentOut(**{k: v for k, v in line.items()
                                                   if k != "video"})
                                     for line in found.to_json_lines()])

    @app.post("/api/classify", response_model=ClassifyOut, tags=["classify"])
    def api_classify(body: ClassifyIn) -> ClassifyOut:
        """Rank labels for a whole video (zero-shot)."""
        record = service.record(body.video_id)
        result = service.classify(record, split_labels(body.labels), body.top, body.frames)
        if not result.ok:
            raise HTTPException(422, f"cannot classify {video_name(record)}: decoding failed")
        return ClassifyOut(
            video_id=record.id, video=video_name(record), frames=result.frames,
            timestamps=result.timestamps,
            scores=[LabelScoreOut(label=s.label, score=round(s.score, 6)) for s in result.scores])


def add_media_routes(app: FastAPI, service: LibraryService) -> None:
    @app.get("/media/{video_id}", tags=["media"],
             responses={200: {"content": {"video/*": {}}}, 206: {"description": "a range"},
                        416: {"description": "range not satisfiable"}})
    @app.head("/media/{video_id}", include_in_schema=False)
    def media(video_id: str) -> Response:
        """The video file, with HTTP Range support (206 / 416)."""
        record = service.record(video_id)
        # opened once and checked on the descriptor, then served from it: nothing swapped
        # in at the path afterwards can be sent
        fd = open_video_file(record)
        if fd is None:
            raise HTTPException(404, "the video file is gone or was replaced")
        return VideoFileResponse(fd, media_type=video_media_type(record.path),
                                 headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/thumbs/{video_id}", tags=["media"],
             responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(video_id: str, t: float = 0.0) -> Response:
        """A JPEG of the video at its stored frame nearest ``t`` seconds (~320 px wide),
        cached in the library."""
        record = service.record(video_id)
        try:
            jpeg = service.thumbnail(record, t)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


def add_page_routes(app: FastAPI, service: LibraryService, templates: Jinja2Templates
                    ) -> None:
    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"page": name.removesuffix(".html"), **context},
            status_code=status, headers={"Content-Security-Policy": PAGE_CSP})

    def attempt(action: Callable[[], T]) -> tuple[T | None, str | None]:
        """(value, None) or (None, error message) for errors a page shows inline."""
        try:
            return action(), None
        except (VideolensError, UploadError) as err:
            message = err.message if isinstance(err, UploadError) else public_message(err)
            return None, message
        except HTTPException as err:  # a video whose file is gone; busy
            return None, str(err.detail)

    def status(error: str | None) -> int:
        return 200 if error is None else 503 if error == ServerBusy().detail else 400

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(request: Request, q: str = "", top: int = DEFAULT_TOP) -> HTMLResponse:
        results, error = None, None
        if q.strip():
            moments, error = attempt(lambda: service.search(q[:MAX_TEXT], top=check_top(top)))
            results = [moment_out(m) for m in moments or []]
        return page(request, "search.html", status(error), q=q, top=top,
                    results=results, error=error, by_image=False)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    def search_by_image_page(request: Request, image: Annotated[UploadFile, File()],
                             top: Annotated[int, Form()] = DEFAULT_TOP) -> HTMLResponse:
        def run() -> list[Moment]:
            return service.search_image(image.file, top=check_top(top))

        moments, error = attempt(run)
        return page(request, "search.html", status(error), q="", top=top,
                    results=[moment_out(m) for m in moments or []], error=error,
                    by_image=True, image_name=Path(image.filename or "image").name)

    @app.get("/videos", response_class=HTMLResponse, include_in_schema=False)
    def videos_page(request: Request) -> HTMLResponse:
        return page(request, "videos.html",
                    videos=[video_out(r) for r in service.store.videos()])

    @app.get("/videos/{video_id}", response_class=HTMLResponse, include_in_schema=False)
    def video_page(request: Request, video_id: str, q: str = "", t: float = 0.0) -> HTMLResponse:
        try:
            record = service.record(video_id)
        except HTTPException:
            return page(request, "error.html", 404, error="No such video in the library.")
        found, error, actions = None, None, []
        if q.strip():
            actions, error = attempt(lambda: split_labels(q))
        if actions:
            found, error = attempt(lambda: service.localize(record, actions))
        # one timeline row per asked action, in the order asked, even when nothing was found
        tracks = {label: [d for d in found.detections if d.label == label]
                  for label in actions} if found is not None else {}
        return page(request, "video.html", status(error), video=video_out(record),
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
            result, error = attempt(lambda: service.classify(chosen, split_labels(labels),
                                                             max(0, top), None))
            if result is not None and not result.ok:
                result, error = None, f"cannot classify {video_name(chosen)}: decoding failed"
        return page(request, "classify.html", status(error),
                    videos=[(r.id, video_name(r)) for r in records],
                    chosen=chosen.id if chosen else None,
                    chosen_name=video_name(chosen) if chosen else None, labels=labels, top=top,
                    result=result, error=error)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)
