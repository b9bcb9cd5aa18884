"""PNG / JPEG images through PIL: every mode read with its full value range, within a size limit.

Why not ``converter=lambda im: im.convert('L')`` (what the bundles used): Pillow converts 16-bit
grey (mode ``I;16``, common for ultrasound and film scans) to 8 bits by *clipping*, so every
value above 255 becomes white and the network sees a blank image without any error. MONAI's
``PILReader`` has no conversion of its own, so these converters are given to it
(``PILReader(converter=...)``) and check the image before its pixels are decoded:

* :func:`grey` (what the bundles read): one grey channel. 8-bit modes (``1``, ``L``, ``P``,
  ``LA``, ``RGB``, ``RGBA``, ``CMYK``, ``YCbCr`` ...) become ``L`` with Pillow's ITU-R 601-2 luma
  (as before, so trained weights see the same values); 16- and 32-bit grey (``I;16``,
  ``I;16B``, ``I``, ``F``) become float ``F`` with their values kept (the bundles then scale
  intensities by percentiles, so a 16-bit copy of an 8-bit image gives the same input);
* :func:`expanded` (what ``sum_monai`` validation reads): the stored channels, with palettes
  expanded to RGB(A) and 16-bit grey kept as integers, so masks can be checked value by value;
* both refuse, with :class:`ImageRefused` (a ``ValueError``: ``"<file>: <problem>"``), images smaller than :data:`MIN_SIDE`
  pixels on a side, larger than :data:`MAX_PIXELS` pixels (decompression bombs: a few kB of
  PNG that decode to gigabytes) and modes without a grey meaning (``LAB``, ``La``).

The size is read from the header, so an oversized file is refused before it is decoded.

:class:`GreyReader` is the ``PILReader`` the bundles use: ``converter=grey``, and a refused image
raises from ``get_data``, outside ``LoadImage``'s reader fallback. (``LoadImage`` swallows an error
raised while a reader *reads* and tries its other readers, among them a plain ``PILReader`` that
would decode the refused image after all: a decompression bomb would still be decoded.)

This file is synced from ``sum_monai/bundle/bundle_scripts/pil.py``; edit it there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.data import PILReader

#: Smallest width and height accepted (a 1-pixel row or column cannot be written back as PNG).
MIN_SIDE = 2
#: Largest image accepted, in pixels (8192 x 8192); full-field mammograms are below 40 M.
MAX_PIXELS = 8192 * 8192

_HIGH_DEPTH_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_UNSUPPORTED = ("LAB", "La")


class ImageRefused(ValueError):
    """An image outside the size limits or of a mode without grey meaning: ``"<file>: <problem>"``."""


def _name(image: Any) -> str:
    return str(getattr(image, "filename", "") or "<image>")


def check_size(image: Any) -> None:
    """Refuse an image outside ``MIN_SIDE`` .. ``MAX_PIXELS`` (from its header, before decoding).

    Raises:
        ImageRefused: ``"<file>: <problem>"`` (a ``ValueError``).
    """
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageRefused(
            f"{_name(image)}: image of {width}x{height} pixels ({width * height / 1e6:.0f} M) exceeds the limit of "
            f"{MAX_PIXELS / 1e6:.0f} M pixels (sum_monai reads images up to 8192x8192; a larger one may be a "
            "decompression bomb): downsample it first"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageRefused(
            f"{_name(image)}: image of {width}x{height} pixels is too small: at least {MIN_SIDE} pixels per side are needed"
        )


def _check_mode(image: Any) -> str:
    mode = str(image.mode)
    if mode in _UNSUPPORTED:
        raise ImageRefused(
            f"{_name(image)}: PIL image mode {mode} has no grey meaning; save it as grey, RGB or 16-bit grey"
        )
    return mode


def grey(image: Any) -> Any:
    """One grey channel with the image's full value range (see the module doc).

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> im16 = Image.fromarray(np.array([[0, 1000], [40000, 65535]], dtype=np.uint16))
        >>> np.asarray(grey(im16)).max(), np.asarray(im16.convert("L")).max()
        (65535.0, 255)
    """
    check_size(image)
    mode = _check_mode(image)
    if mode == "L":
        return image
    if mode in _HIGH_DEPTH_GREY:
        return image.convert("F")
    return image.convert("L")


def expanded(image: Any) -> Any:
    """The stored channels, palettes expanded and 16-bit grey as 32-bit integers (see the module doc)."""
    check_size(image)
    mode = _check_mode(image)
    if mode in ("1", "L", "I", "F", "RGB", "RGBA"):
        return image
    if mode.startswith("I;16"):
        return image.convert("I")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if mode == "LA":
        return image.convert("L")
    return image.convert("RGB")


class _Refused:
    """An image a converter refused; raised from ``get_data`` (see the module doc)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class GreyReader(PILReader):
    """MONAI ``PILReader`` reading one grey channel at full bit depth (:func:`grey`), sizes checked.

    Use it as ``LoadImaged(keys, reader="$scripts.pil.GreyReader()")`` or ``{"_target_":
    "scripts.pil.GreyReader"}`` in a reader list. Errors of :func:`check_size` and of the mode
    check raise from :meth:`get_data` with the file named (``ValueError("<file>: <problem>")``).

    Args:
        converter: the PIL converter, :func:`grey` by default (:func:`expanded` keeps channels).
        kwargs: as for ``PILReader``.
    """

    def __init__(self, converter: Callable | None = grey, **kwargs: Any) -> None:
        super().__init__(converter=converter, **kwargs)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        try:
            return super().read(data, **kwargs)
        except ImageRefused as err:
            return _Refused(str(err))

    def get_data(self, img: Any) -> Any:
        for item in img if isinstance(img, (list, tuple)) else [img]:
            if isinstance(item, _Refused):
                raise ValueError(item.message)
        return super().get_data(img)
