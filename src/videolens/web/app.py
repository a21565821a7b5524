"""The web app: pages and a JSON API over one video library.

:func:`create_app` joins the parts: :mod:`~videolens.web.service` (the library and its
model), :mod:`~videolens.web.security` (the middlewares), :mod:`~videolens.web.routes` and
:mod:`~videolens.web.schemas`. Videos are named by integer library id only; files are served
only when they are still what the library indexed (:mod:`~videolens.web.media`). Everything
else is 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..errors import LabelError, LibraryError, UsageError, VideoDecodeError, VideolensError
from ..library.thumbs import THUMB_CACHE_BYTES
from ..models import VideoTextModel
from .media import MAX_UPLOAD_BYTES, UploadError
from .routes import add_api_routes, add_media_routes, add_page_routes, clock, file_size
from .schemas import public_message
from .security import BodyLimit, CrossSiteGuard, SecurityHeaders, TokenGate, check_token
from .service import LibraryService, WorkQueue

HERE = Path(__file__).parent
# multipart framing around the image: boundaries, headers, the small form fields
BODY_OVERHEAD = 64 * 1024


def create_app(
    library: str | Path,
    *,
    model: VideoTextModel | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    heavy: WorkQueue | None = None,
    thumb_cache_bytes: int = THUMB_CACHE_BYTES,
) -> FastAPI:
    """The ASGI app serving ``library``.

    The library is opened and its model loaded here, before any request: a missing library
    raises LibraryError, a model that cannot load raises ModelLoadError, a token that cannot
    be sent verbatim raises UsageError (before anything loads). ``model`` defaults to the
    library's own (a loaded model or a name is checked against it). ``token``: when set,
    required on every request. ``allowed_hosts``: accepted ``Host`` header names (None
    accepts any). ``max_upload_bytes``: the largest query image. ``heavy``: how many image
    searches, classify and localize requests run and wait at once (default
    :class:`~videolens.web.service.WorkQueue`). ``thumb_cache_bytes``: the thumbnail
    folder's bound.
    """
    if token:
        check_token(token)
    service = LibraryService(library, model, device, dtype, max_upload_bytes=max_upload_bytes,
                             heavy=heavy, thumb_cache_bytes=thumb_cache_bytes)

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
    templates.env.globals.update(version=__version__, clock=clock, file_size=file_size)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # the last added runs first: security headers (on every answer, refusals included),
    # host check, cross-site check, token, body size
    app.add_middleware(BodyLimit, limit=max_upload_bytes + BODY_OVERHEAD)
    if token:
        app.add_middleware(TokenGate, token=token)
    app.add_middleware(CrossSiteGuard)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)
    add_error_handlers(app)
    add_api_routes(app, service)
    add_media_routes(app, service)
    add_page_routes(app, service, templates)
    return app


def add_error_handlers(app: FastAPI) -> None:
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
        return JSONResponse({"detail": public_message(exc)}, status_code=400)

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, exc: VideoDecodeError) -> JSONResponse:
        return JSONResponse({"detail": f"cannot decode the video: {public_message(exc)}"},
                            status_code=422)

    @app.exception_handler(LibraryError)
    async def library_broken(request: Request, exc: LibraryError) -> JSONResponse:
        return JSONResponse({"detail": f"library error: {public_message(exc)}"},
                            status_code=503)

    @app.exception_handler(UploadError)
    async def upload(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
