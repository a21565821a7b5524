"""What the web app serves besides JSON: library video files (HTTP Range, from one checked
descriptor) and uploaded query images (decoded within a pixel budget). Thumbnails are
library storage: :mod:`videolens.library.thumbs`.

Security model: a video is reachable only through its library id, and only while the file
at the stored path is still the file that was indexed there (see
:func:`videolens.library.files.open_indexed`): the file is opened once, without following
any symlink, checked on the open descriptor, and served from that descriptor.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

import anyio
import numpy as np
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..library import VideoRecord
from ..library.files import indexed_file, open_indexed

# By extension, not by mimetypes: its table depends on the system (/etc/mime.types) and
# lacks several video types; a browser needs the right type to pick a demuxer.
VIDEO_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".webm": "video/webm", ".mkv": "video/x-matroska", ".ogv": "video/ogg",
    ".avi": "video/x-msvideo", ".mpg": "video/mpeg", ".mpeg": "video/mpeg",
    ".ts": "video/mp2t", ".m2ts": "video/mp2t", ".3gp": "video/3gpp", ".flv": "video/x-flv",
    ".wmv": "video/x-ms-wmv",
}
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Pixels decoded at full size: 4096 x 4096 (a 4K or 5K screenshot, a 12 MP photo as PNG).
# A 105 KB PNG can declare 36 MP (108 MB of RGB); refused from its header.
MAX_UPLOAD_PIXELS = 4096 * 4096
# A baseline JPEG decodes at 1/2, 1/4 or 1/8 scale (DCT scaling, PIL's draft), line by line:
# a 64 MP photo costs ~1 MP of memory. Progressive JPEGs keep every coefficient of the
# full image while decoding, so they get the full-size budget above.
MAX_JPEG_PIXELS = 64_000_000
# PIL plugins tried on an upload (JPEG includes a phone's MPO); TIFF, PSD, ICO and the rest
# are not needed for a query picture and are more parser surface for untrusted bytes
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
CHUNK = 64 * 1024  # bytes per read when streaming a video


def video_media_type(path: str | os.PathLike) -> str:
    """The Content-Type for a video file, from its extension."""
    return VIDEO_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def servable_path(record: VideoRecord) -> Path | None:
    """The stored path of ``record`` if its file may be served now (it is still the indexed
    file: see :func:`~videolens.library.files.open_indexed`), else None.

    A check for code that must take a path (the decoders of classify and localize); what the
    server sends itself is read from the descriptor :func:`open_video_file` returns."""
    with indexed_file(record.path, record.size, record.mtime_ns) as fd:
        return Path(record.path) if fd is not None else None


def open_video_file(record: VideoRecord) -> int | None:
    """A descriptor of the indexed file of ``record`` (the caller closes it), or None."""
    return open_indexed(record.path, record.size, record.mtime_ns)


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` a ``Range`` header asks of a ``size``-byte file, or None
    to send the whole file (RFC 9110 14.2: a server may ignore a Range it does not support;
    malformed ones and several ranges at once are ignored here).

    Raises RangeNotSatisfiable when the one range asked starts at or past the end.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":  # a suffix: the last N bytes
        if last == "":
            return None
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


class VideoFileResponse(Response):
    """A video file sent from an open descriptor ``fd`` (which this response closes), with
    HTTP Range (206 / 416), If-Range, HEAD, and ETag / Last-Modified computed as Starlette's
    FileResponse does. Reads with ``pread`` in a worker thread, 64 KiB at a time, and stops
    when the client disconnects."""

    def __init__(self, fd: int, *, media_type: str, headers: dict[str, str] | None = None):
        self.fd = fd
        # closes the descriptor exactly once: after sending, or when never sent at all
        self._close = weakref.finalize(self, os.close, fd)
        self.stat_result = os.fstat(fd)
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        info = self.stat_result
        etag = hashlib.md5(f"{info.st_mtime}-{info.st_size}".encode(),
                           usedforsecurity=False).hexdigest()
        self.headers.setdefault("accept-ranges", "bytes")
        self.headers.setdefault("last-modified", formatdate(info.st_mtime, usegmt=True))
        self.headers.setdefault("etag", f'"{etag}"')
        self.headers["content-length"] = str(info.st_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._send(scope, receive, send)
        finally:
            self._close()

    async def _send(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self.stat_result.st_size
        request = Headers(scope=scope)
        wanted = request.get("range")
        if_range = request.get("if-range")
        if if_range is not None and if_range not in (self.headers["etag"],
                                                     self.headers["last-modified"]):
            wanted = None  # the client's copy is older: send it all
        start, end, status = 0, size, 200
        headers = self.headers.mutablecopy()
        if wanted is not None:
            try:
                asked = parse_range(wanted, size)
            except RangeNotSatisfiable:
                refused = Response(status_code=416, headers={"content-range": f"bytes */{size}"})
                await refused(scope, receive, send)
                return
            if asked is not None:
                (start, end), status = asked, 206
                headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
                headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": status, "headers": headers.raw})
        if scope["method"].upper() == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as group:

            async def stop_on_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stop_on_disconnect)
            offset = start
            while offset < end:
                chunk = await anyio.to_thread.run_sync(os.pread, self.fd,
                                                       min(CHUNK, end - offset), offset)
                if not chunk:  # the file shrank while being sent: end the body here
                    break
                offset += len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": offset < end})
            if offset < end:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()


@dataclass
class UploadError(Exception):
    """An uploaded query image that is refused: ``status`` 413 (too large) or 415 (not an
    image)."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


# EXIF orientation -> the transpose that shows the picture upright (PIL's exif_transpose)
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
            6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def decode_upload_image(data: bytes | BinaryIO, *, max_bytes: int = MAX_UPLOAD_BYTES,
                        max_pixels: int = MAX_UPLOAD_PIXELS, max_side: int = 448,
                        slot: AbstractContextManager | None = None) -> np.ndarray:
    """An uploaded picture as ``(H, W, 3)`` RGB uint8, turned upright by its EXIF orientation
    and shrunk (bicubic, as video frames are when indexed) so that its longer side is at
    most ``max_side`` pixels: what the model needs, never more.

    ``data``: the bytes, or a binary file positioned at its start (read as needed, never
    whole). Memory stays within the pixel budget: a baseline JPEG of up to
    :data:`MAX_JPEG_PIXELS` decodes at a reduced scale; anything else (PNG, WebP, GIF, BMP,
    progressive JPEG) over ``max_pixels`` is refused from its header, before any pixel.

    ``slot``: entered around the pixel decode only (a work queue's slot), so that what is
    refused from its header is refused at once, however busy the decoders are.

    Raises UploadError: 413 over ``max_bytes`` or the pixel budget; 415 when it is not an
    image PIL reads in one of :data:`UPLOAD_FORMATS`.
    """
    from PIL import Image, UnidentifiedImageError

    source: BinaryIO = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    size = source.seek(0, os.SEEK_END)
    source.seek(0)
    if size > max_bytes:
        raise UploadError(413, f"the image is larger than {max_bytes // (1024 * 1024)} MB")
    if size == 0:
        raise UploadError(415, "the upload is empty, not an image")
    try:
        with Image.open(source, formats=UPLOAD_FORMATS) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            scaled = image.format in ("JPEG", "MPO") and not image.info.get("progressive")
            limit = MAX_JPEG_PIXELS if scaled else max_pixels
            if width * height > limit:
                raise UploadError(413, f"the image has too many pixels ({width} x {height}; "
                                  f"at most {limit / 1e6:.1f} megapixels"
                                  f"{'' if scaled else ' unless it is a baseline JPEG'}): "
                                  "send a smaller picture")
            scale = min(1.0, max_side / max(width, height))
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            with slot or contextlib.nullcontext():
                if scaled:
                    image.draft("RGB", target)  # DCT scaling: decodes at >= target size
                image.load()
                # after load: a PNG's eXIf chunk may follow its pixels (getexif loads them)
                orientation = image.getexif().get(0x0112, 1)
                picture = image.convert("RGB") if image.mode != "RGB" else image
                if picture.size != target:
                    picture = picture.resize(target, Image.Resampling.BICUBIC)
                if orientation in _UPRIGHT:
                    picture = picture.transpose(getattr(Image.Transpose,
                                                        _UPRIGHT[orientation]))
                upright = np.asarray(picture)  # a copy of the pixels
                # free the full-size pixels while the slot is held: leaving it returns freed
                # memory to the system, and must find these freed already
                picture.close()
                image.close()
                return upright
    except UploadError:
        raise
    except Image.DecompressionBombError as err:
        raise UploadError(413, "the image has too many pixels") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        # SyntaxError: some PIL plugins report a malformed header that way
        raise UploadError(415, "not an image (send a JPEG, PNG or WebP picture)") from err
