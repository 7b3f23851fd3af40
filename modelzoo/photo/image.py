"""Reading photos: any format Pillow decodes, EXIF orientation applied, grayscale/palette/
16-bit converted to 8-bit RGB, transparency composited over black."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import MissingFileError
from ..errors import InputContractError


# Pillow's own decompression-bomb threshold: larger photos are refused before they are decoded.
MAX_PIXELS = 89_478_485


class ImageTooLargeError(InputContractError):
    """A photo has more pixels than `load_image` decodes."""


def load_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(h, w, 3) uint8 RGB. Missing file → MissingFileError; undecodable → InputContractError;
    more than `max_pixels` pixels → ImageTooLargeError (read from the header: nothing is decoded)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no such image: {path}")
    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # the size check below replaces Pillow's
    try:
        opened = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputContractError(f"cannot read image {path}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
    try:
        with opened as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLargeError(f"image {path} is {w}×{h} ({w * h / 1e6:.1f} megapixels); the limit is "
                                         f"{max_pixels / 1e6:.1f} megapixels: downscale it first")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(a / (257.0 if a.max() > 255 else 1.0), 0, 255).round().astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageTooLargeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputContractError(f"cannot read image {path}: {exc}") from None
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputContractError(f"image {path} is empty ({rgb.shape[1]}×{rgb.shape[0]})")
    return np.ascontiguousarray(rgb)
