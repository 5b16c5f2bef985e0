"""POET's training augmentation (amathislab/poet ``datasets/coco.py`` ``make_coco_transforms('train')`` and
``datasets/transforms.py``), on torch, numpy and Pillow (the official code uses imgaug).

In order, on the pixel-space target of posetr/data/transforms.py (keypoints (x, y, v) per person):

1. horizontal flip, p = 0.5 (left/right joints swapped; x -> w - x, so POET's centre-relative x offsets
   change sign);
2. rotation, p = 0.5, angle ~ U(-25, 25) degrees about the image centre, image size kept; joints leaving
   the image become unlabelled (POET then recomputes the centre of mass from the joints that remain);
3. coarse dropout, p = 0.5 (imgaug ``CoarseDropout(p=U(0.05, 0.2), size_percent=U(0.015, 0.03),
   per_channel=0.5)``); keypoints unchanged;
4. DETR's scale augmentation (p = 0.5 each branch): multi-scale resize, or resize to 400/500/600 ->
   random crop 384..600 -> drop the people without a visible (v = 2) joint in the crop -> multi-scale
   resize; the longer side is at most ``max_size`` (1333; 512 for the paper's Table 2);
5. ImageNet normalisation; people without a labelled joint are KEPT (the official pipeline keeps every
   non-crowd annotation outside the crop branch; POET's official head calls them class 0).

POET's target encoding (centre, offsets, visibility remap) is the model's: posetr/models/poet/codec.py.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from posetr.data.transforms import (Compose, DropPeopleWithoutVisible, RandomHorizontalFlip, RandomRotation,
                                    ToTensorNormalize, detr_scale_augment)


def coarse_dropout(image: Image.Image, *, drop_rate: float, size_percent: float, per_channel: bool,
                   min_size: int = 3) -> Image.Image:
    """Sets coarse rectangles of the image to black (imgaug ``CoarseDropout``).

    A keep-mask of max(int(h * size_percent), ``min_size``) x max(int(w * size_percent), ``min_size``) cells
    is drawn with P(drop) = ``drop_rate`` (one mask per channel if ``per_channel``, else one for all) and
    upscaled to the image with nearest-neighbour (cell of pixel i = floor(i * cells / size)).
    """
    pixels = np.asarray(image)
    h, w, c = pixels.shape
    rows, cols = max(int(h * size_percent), min_size), max(int(w * size_percent), min_size)
    keep = torch.rand(rows, cols, c if per_channel else 1) >= drop_rate
    keep = keep[torch.arange(h) * rows // h][:, torch.arange(w) * cols // w].numpy()
    return Image.fromarray(pixels * keep.astype(pixels.dtype))


class RandomCoarseDropout:
    """With probability ``p``, :func:`coarse_dropout` with drop rate ~ U(``drop_rate``), size ~
    U(``size_percent``) and per-channel masks with probability ``per_channel`` (POET's values)."""

    def __init__(self, *, drop_rate=(0.05, 0.2), size_percent=(0.015, 0.03), per_channel: float = 0.5,
                 p: float = 0.5):
        self.drop_rate, self.size_percent, self.per_channel, self.p = drop_rate, size_percent, per_channel, p

    def __call__(self, image, target):
        if random.random() >= self.p:
            return image, target
        return coarse_dropout(image, drop_rate=random.uniform(*self.drop_rate),
                              size_percent=random.uniform(*self.size_percent),
                              per_channel=random.random() < self.per_channel), target


def poet_train_transforms(*, flip_index: Sequence[int], max_size: int, train_sizes: Sequence[int]) -> Compose:
    """POET's training pipeline (see the module docstring); ``train_sizes`` = DETR's 480..800 step 32."""
    return Compose([
        RandomHorizontalFlip(flip_index=flip_index),
        RandomRotation(25.0),
        RandomCoarseDropout(),
        detr_scale_augment(train_sizes=train_sizes, max_size=max_size,
                           after_crop=[DropPeopleWithoutVisible(min_visibility=2)]),
        ToTensorNormalize(keep_unlabelled=True),
    ])
