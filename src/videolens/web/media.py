"""What the web app serves besides JSON: library video files (HTTP Range) and uploaded query
images. No FastAPI here: these are plain functions the routes call, so each can be tested
alone. Thumbnails are library storage: :mod:`videolens.library.thumbs`.

Security model: a video is reachable only through its library id, and only when the file at
the stored path is still the file that was indexed there — the library stores resolved paths,
so a path whose resolution differs now (a file swapped for a symlink, a renamed parent that
became a link) is refused.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..library import VideoRecord

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
MAX_UPLOAD_PIXELS = 40_000_000  # a 10 MB PNG can still expand to gigabytes of pixels


def video_media_type(path: str | os.PathLike) -> str:
    """The Content-Type for a video file, from its extension."""
    return VIDEO_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def servable_path(record: VideoRecord) -> Path | None:
    """The file of ``record`` if it may be served now, else None.

    It may when the stored path still resolves to itself (the store keeps resolved paths,
    so any symlink on the way now means the file or a folder was swapped since indexing)
    and is a regular file.
    """
    stored = Path(record.path)
    if not stored.is_absolute():
        return None
    try:
        resolved = stored.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if resolved != stored or not resolved.is_file():
        return None
    return resolved


@dataclass
class UploadError(Exception):
    """An uploaded query image that is refused: ``status`` 413 (too large) or 415 (not an
    image)."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def decode_upload_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES,
                        max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """An uploaded picture as ``(H, W, 3)`` RGB uint8, turned upright by its EXIF orientation.

    Raises UploadError: 413 over ``max_bytes`` or ``max_pixels``; 415 when PIL cannot
    decode it as an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise UploadError(413, f"the image is larger than {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise UploadError(415, "the upload is empty, not an image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # the header gives the size before any pixel is decoded
            if image.width * image.height > max_pixels:
                raise UploadError(413, f"the image has more than {max_pixels:,} pixels")
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright)
    except UploadError:
        raise
    except Image.DecompressionBombError as err:
        raise UploadError(413, "the image has too many pixels") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        # SyntaxError: some PIL plugins report a malformed header that way
        raise UploadError(415, "not an image (send a JPEG, PNG or WebP picture)") from err
