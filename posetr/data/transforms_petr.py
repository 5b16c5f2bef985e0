"""PETR's official training augmentation (``data.augment: official``), opera's
``configs/petr/petr_r50_16x2_100e_coco.py`` train pipeline (../shared/specs/petr_review.md):

1. photometric distortion (mmdet's ``PhotoMetricDistortion``: brightness +-32, contrast and saturation
   0.5-1.5, hue +-18; posetr/data/photometric.py, style "mmdet");
2. random affine rotation U(-30, 30) degrees, always applied (``KeypointRandomAffine``), filled with the
   ImageNet mean; a sample whose people all leave the image is rejected and the dataset draws another;
3. horizontal flip, p = 0.5, with the flip pairs;
4. mmdet ``AutoAugment`` of two scale policies, p = 0.5 each: (a) shorter side U{400..1400}, longer side
   <= 1400; (b) shorter side from {400, 500, 600} (longer <= 4200), a random crop of 384..600 pixels
   (rejected when it cuts people down to no joint), then (a).

Deviation: mmdet keeps the distorted image in float32 (values may leave 0..255 until normalisation);
here it is clipped to 0..255 and rounded to uint8 for the PIL steps that follow (at most half a grey
level; values outside 0..255 are clipped).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
from PIL import Image

from posetr.data.photometric import PhotometricDistortion
from posetr.data.transforms import (IMAGENET_MEAN, Compose, RandomHorizontalFlip, RandomResize, RandomRotation,
                                    RandomSelect, RandomSizeCrop, ToTensorNormalize, resize)

ROTATION_DEGREES = 30.0
SHORT_SIDE_RANGE = (400, 1400)  # policy (a): shorter side drawn uniformly (integers), longer side <= 1400
LONG_SIDE_MAX = 1400
CROP_PRE_SIZES = (400, 500, 600)  # policy (b): resize before the crop, longer side <= 4200
CROP_PRE_MAX = 4200
CROP_RANGE = (384, 600)


class RandomShorterSide:
    """Resizes so the shorter side is an integer drawn from U{low..high} and the longer side is at most
    ``max_size`` (mmdet ``Resize(img_scale=[(long, low), (long, high)], multiscale_mode="range",
    keep_ratio=True)``: coordinates follow, :func:`posetr.data.transforms.resize`)."""

    def __init__(self, low: int, high: int, *, max_size: int):
        self.low, self.high, self.max_size = low, high, max_size

    def __call__(self, image, target):
        return resize(image, target, size=random.randint(self.low, self.high), max_size=self.max_size)


class PhotometricPIL:
    """:class:`~posetr.data.photometric.PhotometricDistortion` (style "mmdet") on a PIL image; keypoints
    are unchanged."""

    def __init__(self):
        self.distort = PhotometricDistortion(style="mmdet")

    def __call__(self, image: Image.Image, target):
        pixels = self.distort(np.asarray(image, dtype=np.float32))
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), target


def petr_official_train_transforms(*, flip_index: Sequence[int]) -> Compose:
    """opera's PETR training pipeline (module docstring); ends with
    :class:`~posetr.data.transforms.ToTensorNormalize`."""
    fill = tuple(round(255 * m) for m in IMAGENET_MEAN)
    short_side = RandomShorterSide(*SHORT_SIDE_RANGE, max_size=LONG_SIDE_MAX)
    crop_policy = Compose([RandomResize(CROP_PRE_SIZES, max_size=CROP_PRE_MAX),
                           RandomSizeCrop(*CROP_RANGE, reject_empty=True), short_side])
    return Compose([
        PhotometricPIL(),
        RandomRotation(ROTATION_DEGREES, p=1.0, fill=fill, reject_empty=True),
        RandomHorizontalFlip(flip_index=flip_index),
        RandomSelect(short_side, crop_policy),
        ToTensorNormalize(),
    ])
