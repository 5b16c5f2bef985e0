"""Top-down crop geometry: person box -> (center, scale) -> affine crop, and crop coordinates back to
image pixels, as mmpose 0.x (``TopDownCocoDataset._xywh2cs``, ``get_affine_transform``,
``transform_preds`` without UDP) with ``scale`` kept in pixels (mmpose 0.x stores ``scale / 200``).

Conventions (docs/model_interfaces.md, top-down): ``output_size`` is (W, H) of the network input (192 x 256
for a 256x192 model); a crop pixel ``q`` normalises to ``q / (W, H)``; the affine maps the box centre to
the crop centre (W / 2, H / 2) and the box width ``scale[0]`` to W, rotating by ``rotation`` degrees about
the centre.
"""
from __future__ import annotations

import math

import numpy as np


def box_to_center_scale(box, *, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """``box`` (x, y, w, h) in pixels -> ``center`` Float[2] (pixels) and ``scale`` Float[2] (w, h in
    pixels): the box grown to ``aspect_ratio`` = W / H of the input, then by ``padding`` (mmpose
    ``_xywh2cs``; its ``scale`` is this one / 200).

    Raises:
        ValueError: a non-finite box, or a non-positive aspect ratio or padding.
    """
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box must be finite (x, y, w, h), got {tuple(box)}")
    if aspect_ratio <= 0 or padding <= 0:
        raise ValueError(f"aspect_ratio and padding must be positive, got {aspect_ratio}, {padding}")
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding], dtype=np.float32)


def crop_affine_matrix(center, scale, *, rotation: float, output_size: tuple[int, int]) -> np.ndarray:
    """Float64[2, 3] affine mapping image pixels to crop pixels (mmpose ``get_affine_transform(center,
    scale / 200, rotation, output_size)``, written in closed form): ``q = (W / scale[0]) R(-rotation)
    (p - center) + (W / 2, H / 2)``, ``rotation`` in degrees (positive: the person turns counter-clockwise
    in the crop, mmpose's sign).

    Raises:
        ValueError: a non-positive ``scale[0]``.
    """
    W, H = output_size
    if not float(scale[0]) > 0:
        raise ValueError(f"scale must be positive (pixels), got {tuple(scale)}")
    s = W / float(scale[0])
    r = math.radians(rotation)
    cos, sin = math.cos(r) * s, math.sin(r) * s
    # R(-rotation) scaled: [[cos, sin], [-sin, cos]] * s, in image (x right, y down) coordinates
    linear = np.array([[cos, sin], [-sin, cos]])
    shift = np.array([W * 0.5, H * 0.5]) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, shift[:, None]], axis=1)


def crop_to_image(coords, center, scale):
    """Normalised crop coordinates -> image pixels, for an unrotated crop (mmpose ``transform_preds``).

    Args:
        coords: Float[..., K, 2] (x, y) in [0, 1] of the crop (numpy or torch).
        center, scale: Float[..., 2] (pixels) of the same crops, broadcast against ``coords[..., 0, :]``.

    Returns:
        Float[..., K, 2] pixels of the original image: ``center + (coords - 0.5) * scale``.
    """
    return center[..., None, :] + (coords - 0.5) * scale[..., None, :]
