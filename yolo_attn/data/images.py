"""Image files as datasets hold them: checked once before training reads them, each refusal under a named reason.

The checks are YOLOv5's dataset scan (``verify_image_label`` in ultralytics/yolov5 ``utils/dataloaders.py``: PIL
verify, a minimum size, EXIF-rotated sizes, the JPEG end-of-image marker), with two differences: a truncated JPEG is
skipped, not rewritten inside the dataset, and every skip or conversion is counted under its reason
(:data:`SKIP_REASONS`, :func:`conversions`) for the one summary line of the scan.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})
MIN_IMAGE_SIDE = 10  # pixels; smaller images are skipped (YOLOv5's check)
EXIF_ORIENTATION = 274
JPEG_END = b"\xff\xd9"  # the end-of-image marker every complete JPEG ends with

# Why an image file is skipped (the scan summary's names).
EMPTY_FILE = "empty file"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated"
BROKEN = "broken"
TOO_SMALL = "too small"
TOO_LARGE = "too large"
UNSUPPORTED = "unsupported format"
FILE_MISSING = "file missing"
SKIP_REASONS = (EMPTY_FILE, NOT_AN_IMAGE, TRUNCATED, BROKEN, TOO_SMALL, TOO_LARGE, UNSUPPORTED, FILE_MISSING)

# What OpenCV's colour decoding changes while it loads an image as 8-bit BGR (PIL mode -> the summary's name).
EXIF_ROTATION = "EXIF rotation"
_MODE_CONVERSIONS = {"1": "grayscale", "L": "grayscale", "I": "16-bit", "I;16": "16-bit", "I;16B": "16-bit",
                     "I;16L": "16-bit", "LA": "alpha channel", "PA": "alpha channel", "RGBA": "alpha channel",
                     "CMYK": "CMYK", "P": "palette"}
_PNG_BIT_DEPTH_AT = 24  # 8-byte signature, IHDR length and type, width and height


class ImageSkipped(Exception):
    """An image file that cannot be used; ``reason`` is one of :data:`SKIP_REASONS`, the message says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ImageInfo(NamedTuple):
    """A usable image: (w, h) as OpenCV loads it (after EXIF rotation) and what loading it converts."""

    size: tuple[int, int]
    conversions: tuple[str, ...]


def _png_bit_depth(path: str) -> int:
    """The bit depth in a PNG's header (PIL opens 16-bit colour PNGs as 8-bit ``RGB`` and does not say)."""
    with open(path, "rb") as f:
        header = f.read(_PNG_BIT_DEPTH_AT + 1)
    return header[_PNG_BIT_DEPTH_AT] if len(header) > _PNG_BIT_DEPTH_AT else 8


def conversions(mode: str, has_transparency: bool, orientation: int | None, bit_depth: int = 8) -> tuple[str, ...]:
    """What loading an image of PIL ``mode`` as 8-bit BGR changes: bit depth, alpha, colour model, rotation."""
    found = [_MODE_CONVERSIONS[mode]] if mode in _MODE_CONVERSIONS else []
    if bit_depth > 8 and "16-bit" not in found:
        found.append("16-bit")
    if mode == "P" and has_transparency:
        found.append("alpha channel")
    if orientation not in (None, 1):
        found.append(EXIF_ROTATION)
    return tuple(found)


def _jpeg_complete(path: str) -> bool:
    """Whether a JPEG decodes to its end: its last bytes are the end-of-image marker, or (data trailing the
    marker, as some cameras write) PIL decodes it without running out of data."""
    with open(path, "rb") as f:
        f.seek(-len(JPEG_END), os.SEEK_END)
        if f.read() == JPEG_END:
            return True
    try:
        with Image.open(path) as im:
            im.load()
    except OSError:
        return False
    return True


def inspect_image(path: str) -> ImageInfo:
    """Check one image file without decoding it (PNG: decoded for its EXIF); raises :class:`ImageSkipped`."""
    try:
        if os.path.getsize(path) == 0:
            raise ImageSkipped(EMPTY_FILE, "the file has 0 bytes")
        with Image.open(path) as im:  # verify() must come right after open(): nothing may load the image first
            im.verify()
        with Image.open(path) as im:
            image_format, (w, h), mode = im.format, im.size, im.mode
            transparency, orientation = "transparency" in im.info, im.getexif().get(EXIF_ORIENTATION)
    except FileNotFoundError as e:
        raise ImageSkipped(FILE_MISSING, str(e)) from None
    except UnidentifiedImageError:
        raise ImageSkipped(NOT_AN_IMAGE, "no image format recognises it") from None
    except Image.DecompressionBombError as e:
        raise ImageSkipped(TOO_LARGE, str(e)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # SyntaxError: PIL's "broken PNG file"
        raise ImageSkipped(BROKEN, f"{type(e).__name__}: {e}") from None
    if image_format is None or f".{image_format.lower()}" not in IMAGE_SUFFIXES:
        raise ImageSkipped(UNSUPPORTED, f"{image_format} images are not read")
    if image_format == "JPEG" and not _jpeg_complete(path):
        raise ImageSkipped(TRUNCATED, "the JPEG data ends before its end-of-image marker")
    if orientation in (5, 6, 7, 8):  # EXIF rotations by 90 degrees: OpenCV applies them while decoding
        w, h = h, w
    if w < MIN_IMAGE_SIDE or h < MIN_IMAGE_SIDE:
        raise ImageSkipped(TOO_SMALL, f"{w}x{h} < {MIN_IMAGE_SIDE} pixels")
    bit_depth = _png_bit_depth(path) if image_format == "PNG" else 8
    return ImageInfo((w, h), conversions(mode, transparency, orientation, bit_depth))


def read_image(path: str) -> np.ndarray:
    """An 8-bit BGR image (OpenCV's decoding) after :func:`inspect_image`'s checks: a truncated or broken file
    raises :class:`ImageSkipped` naming the reason instead of decoding with a bare library warning."""
    inspect_image(path)
    image = cv2.imread(path)
    if image is None:
        raise ImageSkipped(BROKEN, "OpenCV cannot decode it")
    return image
