"""Photometric distortion (random brightness, contrast, saturation, hue and channel order) in the two
OpenMMLab flavours posetr's recipes use:

- ``style="mmpose"``: mmpose 0.x ``PhotometricDistortion`` (``mmpose/datasets/pipelines/shared_transform.py``),
  run by Poseur's HRNet-W48 / HRFormer-B recipes on the uint8 crop after the affine warp. Every step
  works on uint8 with clipping to [0, 255]; ``randint(4)`` picks none / saturation / hue / both; the hue
  shift is an integer in ``[-hue_delta, hue_delta - 1]`` (numpy's exclusive upper bound) on OpenCV's
  uint8 hue range [0, 180). Two quirks are kept on purpose: the image is RGB (mmpose loads RGB) but is
  converted with ``BGR2HSV``, as mmpose does, and the channel swap is a no-op (its result is discarded;
  the random draws still happen, so the RNG sequence matches).
- ``style="mmdet"``: mmdet 2.x ``PhotoMetricDistortion`` (``mmdet/datasets/pipelines/transforms.py``), run
  by opera's PETR recipe on the float32 image before any geometry: no clipping, each of saturation and
  hue has its own coin, the hue shift is uniform in degrees on [0, 360), and the channel swap is applied.
  mmdet works on BGR images; posetr's are RGB, so the HSV conversion is ``RGB2HSV`` and the permutation
  is mirrored (``2 - perm[::-1]``): the same pixels come out as mmdet's, in RGB order.

Both draw from numpy's global RNG (``numpy.random``, as the originals), in the originals' order, so the
engine's per-epoch seeding (and DataLoader's per-worker numpy seeding) governs them.
"""
from __future__ import annotations

import cv2
import numpy as np

STYLES = ("mmpose", "mmdet")


class PhotometricDistortion:
    """Random brightness, contrast (before or after the HSV step), saturation, hue and channel swap.

    Args:
        style: "mmpose" (uint8, Poseur) or "mmdet" (float32, PETR); see the module docstring.
        brightness_delta: brightness offset drawn in [-delta, delta] (pixel values 0..255).
        contrast_range: (low, high) of the contrast factor.
        saturation_range: (low, high) of the saturation factor.
        hue_delta: hue offset bound (OpenCV uint8 hue units of 2 degrees for "mmpose", degrees for "mmdet").
        rng: source of randomness with numpy's legacy ``randint`` / ``uniform`` / ``permutation``
            (default the global ``numpy.random``).

    Call with an RGB image Float/Uint8[H, W, 3]; returns uint8 ("mmpose", input must be uint8) or float32
    ("mmdet").

    Raises:
        ValueError: unknown ``style``; an image that is not [H, W, 3] (or not uint8 for "mmpose").
    """

    def __init__(self, *, style: str = "mmpose", brightness_delta: float = 32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta: float = 18, rng=None):
        if style not in STYLES:
            raise ValueError(f"PhotometricDistortion: style must be one of {STYLES}, got {style!r}")
        self.style = style
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta
        self.rng = np.random if rng is None else rng

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"PhotometricDistortion: image must be [H, W, 3], got shape {image.shape}")
        if self.style == "mmpose":
            if image.dtype != np.uint8:
                raise ValueError(f"PhotometricDistortion(style='mmpose'): image must be uint8, got {image.dtype}")
            return self._mmpose(image)
        return self._mmdet(image.astype(np.float32))

    @staticmethod
    def _convert(values, *, alpha=1.0, beta=0.0):
        """``values * alpha + beta`` clipped to [0, 255], as uint8 (mmpose's ``convert``)."""
        return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _contrast_mmpose(self, image):
        if self.rng.randint(2):
            return self._convert(image, alpha=self.rng.uniform(self.contrast_lower, self.contrast_upper))
        return image

    def _mmpose(self, image):
        rng = self.rng
        if rng.randint(2):
            image = self._convert(image, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        mode = rng.randint(2)
        if mode == 1:
            image = self._contrast_mmpose(image)
        hsv_mode = rng.randint(4)
        if hsv_mode:
            hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)  # mmpose's bgr2hsv on an RGB image (kept)
            if hsv_mode in (1, 3):
                hsv[:, :, 1] = self._convert(
                    hsv[:, :, 1], alpha=rng.uniform(self.saturation_lower, self.saturation_upper))
            if hsv_mode in (2, 3):
                hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + rng.randint(-self.hue_delta, self.hue_delta)) % 180
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if mode == 0:
            image = self._contrast_mmpose(image)
        if rng.randint(2):  # mmpose's channel swap: drawn, result discarded (a no-op)
            rng.permutation(3)
        return image

    def _contrast_mmdet(self, image):
        if self.rng.randint(2):
            image *= self.rng.uniform(self.contrast_lower, self.contrast_upper)
        return image

    def _mmdet(self, image):
        rng = self.rng
        if rng.randint(2):
            image += rng.uniform(-self.brightness_delta, self.brightness_delta)
        mode = rng.randint(2)
        if mode == 1:
            image = self._contrast_mmdet(image)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # = mmdet's BGR2HSV of the BGR image
        if rng.randint(2):
            hsv[..., 1] *= rng.uniform(self.saturation_lower, self.saturation_upper)
        if rng.randint(2):
            hue = hsv[..., 0]
            hue += rng.uniform(-self.hue_delta, self.hue_delta)
            hue[hue > 360] -= 360
            hue[hue < 0] += 360
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if mode == 0:
            image = self._contrast_mmdet(image)
        if rng.randint(2):
            perm = np.asarray(rng.permutation(3))  # mmdet's permutation of BGR channels, in RGB terms
            image = image[..., 2 - perm[::-1]]
        return image
