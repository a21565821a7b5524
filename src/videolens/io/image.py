"""Still images as frames: an example picture for search by image."""

from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (1, H, W, 3) RGB uint8, turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright)[None]
    except FileNotFoundError:
        raise UsageError("image not found", path=path, hint="check the path") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(
            f"not an image PIL can read ({type(err).__name__})",
            path=path,
            hint="pass a JPEG, PNG or WebP picture",
        ) from None
