"""Image + pose-target transforms for multi-person keypoint training (PETR / opera recipe).

A transform is a callable ``(image, target) -> (image, target)``. Until :class:`ToTensorNormalize`
runs, ``image`` is a ``PIL.Image`` (RGB) and ``target`` holds pixel coordinates of that image:

- ``keypoints``: Float[G, K, 3] (x, y, v) in pixels; unlabelled joints (v = 0) are (0, 0, 0).
- ``boxes``: Float[G, 4] (x0, y0, x1, y1) in pixels.
- ``area``: Float[G] in pixels^2.
- ``labels``: Long[G]; ``image_id``; ``orig_size``: Long[2] (h, w) of the original image.

:class:`ToTensorNormalize` ends every pipeline: it normalises the image with ImageNet mean/std,
drops persons without a labelled keypoint and converts coordinates to the form documented in
docs/model_interfaces.md (keypoints normalised by the unpadded image size, boxes (cx, cy, w, h)).

``augment="full"`` is DETR's training pipeline (the PETR paper's text): horizontal flip, then either a
multi-scale resize (shorter side 480..800 in steps of 32, longer side <= 1333) or resize to
400/500/600, random crop of 384..600 pixels, multi-scale resize. opera's official PETR pipeline is
``augment="official"`` (posetr/data/transforms_petr.py: photometric distortion, rotation, flip, two scale
policies). POET's pipeline (``augment="poet"``, posetr/data/transforms_poet.py) adds a rotation and coarse
dropout to DETR's.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_SCALES = tuple(range(480, 801, 32))


class Compose:
    """Applies the transforms in order; a transform returning ``None`` rejects the sample (mmdet's
    ``Compose``): the rest is skipped and ``None`` returned, and the dataset draws another image."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            sample = t(image, target)
            if sample is None:
                return None
            image, target = sample
        return image, target


def has_labelled_person(target) -> bool:
    """Whether any person of ``target`` has a labelled joint (v > 0)."""
    return bool((target["keypoints"][..., 2] > 0).any())


class RandomSelect:
    """Applies ``first`` with probability ``p``, else ``second``."""

    def __init__(self, first, second, *, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target):
        return (self.first if random.random() < self.p else self.second)(image, target)


class RandomHorizontalFlip:
    """Mirrors the image with probability ``p``: ``x -> w - x`` and left/right joints swapped.

    ``flip_index`` is the permutation from ``KeypointInfo.flip_index()``; flipping twice is the identity.
    """

    def __init__(self, *, flip_index: Sequence[int], p: float = 0.5):
        self.flip_index = torch.as_tensor(list(flip_index), dtype=torch.long)
        self.p = p

    def __call__(self, image, target):
        if random.random() >= self.p:
            return image, target
        return hflip(image, target, flip_index=self.flip_index)


def hflip(image, target, *, flip_index):
    """Deterministic horizontal flip (see :class:`RandomHorizontalFlip`)."""
    w = image.width
    target = dict(target)
    kpts = target["keypoints"][:, flip_index].clone()
    labelled = kpts[..., 2] > 0
    kpts[..., 0] = torch.where(labelled, w - kpts[..., 0], kpts[..., 0])
    target["keypoints"] = kpts
    boxes = target["boxes"]
    target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), target


def _resized_size(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(new_w, new_h) with the shorter side ``size`` and the longer side at most ``max_size`` (DETR rule)."""
    if max_size is not None:
        short, long = min(w, h), max(w, h)
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def resize(image, target, *, size: int, max_size: int | None):
    """Resizes so the shorter side is ``size`` (longer <= ``max_size``); coordinates and areas follow."""
    new_w, new_h = _resized_size(image.width, image.height, size, max_size)
    sx, sy = new_w / image.width, new_h / image.height
    target = dict(target)
    kpts = target["keypoints"].clone()
    kpts[..., 0] *= sx
    kpts[..., 1] *= sy
    target["keypoints"] = kpts
    target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy])
    target["area"] = target["area"] * (sx * sy)
    return image.resize((new_w, new_h), Image.Resampling.BILINEAR), target


class RandomResize:
    """Resizes the shorter side to a size drawn from ``sizes`` (longer side <= ``max_size``)."""

    def __init__(self, sizes: Sequence[int], *, max_size: int | None = None):
        self.sizes, self.max_size = list(sizes), max_size

    def __call__(self, image, target):
        return resize(image, target, size=random.choice(self.sizes), max_size=self.max_size)


def crop(image, target, *, top: int, left: int, height: int, width: int):
    """Crops the region; joints falling outside become unlabelled, boxes are clipped. Areas are kept
    (the person's scale is unchanged by a crop)."""
    target = dict(target)
    kpts = target["keypoints"].clone()
    kpts[..., 0] -= left
    kpts[..., 1] -= top
    inside = (kpts[..., 0] >= 0) & (kpts[..., 0] < width) & (kpts[..., 1] >= 0) & (kpts[..., 1] < height)
    kpts[~(inside & (kpts[..., 2] > 0))] = 0.0
    target["keypoints"] = kpts
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=target["boxes"].dtype)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    target["boxes"] = boxes
    return image.crop((left, top, left + width, top + height)), target


def rotate(image, target, *, angle: float, fill=(0, 0, 0)):
    """Rotates the image by ``angle`` degrees counter-clockwise (as seen on screen) about its centre
    (w / 2, h / 2), keeping its size (corners cut, uncovered pixels ``fill``, RGB 0-255: black as imgaug's
    ``Affine(rotate=...)`` in POET, the ImageNet mean in opera's PETR), bilinear: POET's rotation up to the
    sign of the angle, opera's ``KeypointRandomAffine`` without translation, scaling or shear. Joints
    follow; labelled joints leaving the image become unlabelled (0, 0, 0); boxes become the box around
    their rotated corners, clipped to the image; areas are kept (a rotation keeps a person's size)."""
    w, h = image.size
    cx, cy = w / 2.0, h / 2.0
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def forward(x, y):  # y points down: counter-clockwise on screen
        dx, dy = x - cx, y - cy
        return cx + cos * dx + sin * dy, cy - sin * dx + cos * dy

    target = dict(target)
    kpts = target["keypoints"].clone()
    x, y = forward(kpts[..., 0], kpts[..., 1])
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h) & (kpts[..., 2] > 0)
    kpts[..., 0], kpts[..., 1] = x, y
    kpts[~inside] = 0.0
    target["keypoints"] = kpts
    boxes = target["boxes"]
    corners_x = boxes[:, [0, 2, 2, 0]]
    corners_y = boxes[:, [1, 1, 3, 3]]
    rx, ry = forward(corners_x, corners_y)
    target["boxes"] = torch.stack([rx.amin(1).clamp(0, w), ry.amin(1).clamp(0, h),
                                   rx.amax(1).clamp(0, w), ry.amax(1).clamp(0, h)], dim=1)
    # PIL maps each output pixel centre back to the input: the inverse rotation
    inverse = (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    rotated = image.transform((w, h), Image.Transform.AFFINE, inverse, resample=Image.Resampling.BILINEAR,
                              fillcolor=tuple(int(round(c)) for c in fill))
    return rotated, target


class RandomRotation:
    """With probability ``p`` rotates by an angle drawn from U(-max_degrees, max_degrees) (see :func:`rotate`).

    ``reject_empty``: return ``None`` (reject the sample) when people with labelled joints went in and none
    came out (opera's ``KeypointRandomAffine``).
    """

    def __init__(self, max_degrees: float, *, p: float = 0.5, fill=(0, 0, 0), reject_empty: bool = False):
        self.max_degrees, self.p, self.fill, self.reject_empty = max_degrees, p, tuple(fill), reject_empty

    def __call__(self, image, target):
        if random.random() >= self.p:
            return image, target
        had_people = has_labelled_person(target)
        image, target = rotate(image, target, angle=random.uniform(-self.max_degrees, self.max_degrees),
                               fill=self.fill)
        if self.reject_empty and had_people and not has_labelled_person(target):
            return None
        return image, target


def select_people(target, keep: torch.Tensor):
    """The target with only the people where ``keep`` (Bool[G]) is True (every per-person field)."""
    out = dict(target)
    for key in ("keypoints", "boxes", "area", "labels"):
        out[key] = target[key][keep]
    return out


class DropPeopleWithoutVisible:
    """Removes the people without a joint of visibility >= ``min_visibility`` (POET's crop drops the
    people without a v = 2 joint left in the crop: ``min_visibility=2``)."""

    def __init__(self, min_visibility: int):
        self.min_visibility = min_visibility

    def __call__(self, image, target):
        return image, select_people(target, (target["keypoints"][..., 2] >= self.min_visibility).any(dim=1))


class RandomSizeCrop:
    """Crops a random region with sides drawn from [min_size, max_size] (clamped to the image).

    ``reject_empty``: return ``None`` (reject the sample) when a person's box overlaps the crop but no
    labelled joint is left in it (opera's ``RandomCrop`` with ``allow_negative_crop=True``: a crop that
    misses every box is kept as a people-free sample, one that cuts people down to no joint is redrawn).
    """

    def __init__(self, min_size: int, max_size: int, *, reject_empty: bool = False):
        self.min_size, self.max_size, self.reject_empty = min_size, max_size, reject_empty

    def __call__(self, image, target):
        w = random.randint(min(image.width, self.min_size), min(image.width, self.max_size))
        h = random.randint(min(image.height, self.min_size), min(image.height, self.max_size))
        top = random.randint(0, image.height - h)
        left = random.randint(0, image.width - w)
        image, target = crop(image, target, top=top, left=left, height=h, width=w)
        boxes = target["boxes"]
        overlaps = bool(((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).any())
        if self.reject_empty and overlaps and not has_labelled_person(target):
            return None
        return image, target


class ToTensorNormalize:
    """PIL image -> normalised Float[3, H, W]; target -> the contract form (see the module docstring).

    Persons with no labelled keypoint are removed (they carry no pose supervision), unless
    ``keep_unlabelled`` (POET's pipeline keeps them, as its "person without keypoints" class).
    """

    def __init__(self, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, keep_unlabelled: bool = False):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.keep_unlabelled = keep_unlabelled

    def __call__(self, image, target):
        w, h = image.size
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        tensor = pixels.view(h, w, 3).permute(2, 0, 1).float().div_(255.0)
        tensor = (tensor - self.mean) / self.std
        if not self.keep_unlabelled:
            target = select_people(target, (target["keypoints"][..., 2] > 0).any(dim=1))
        scale = torch.tensor([w, h], dtype=torch.float32)
        kpts = target["keypoints"].clone()
        kpts[..., :2] /= scale
        boxes = target["boxes"]
        cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
        out = dict(target)
        out.update(keypoints=kpts, boxes=cxcywh / scale.repeat(2), size=torch.tensor([h, w], dtype=torch.long))
        return tensor, out


def detr_scale_augment(*, train_sizes: Sequence[int], max_size: int, after_crop=()):
    """DETR's scale augmentation: with p = 0.5 a multi-scale resize (shorter side from ``train_sizes``,
    longer <= ``max_size``), else resize to 400/500/600, random crop of 384..600 pixels, the transforms
    ``after_crop``, then the multi-scale resize."""
    multi = RandomResize(train_sizes, max_size=max_size)
    return RandomSelect(multi, Compose([RandomResize([400, 500, 600]), RandomSizeCrop(384, 600), *after_crop, multi]))


def build_transforms(*, train: bool, augment: str, flip_index: Sequence[int], test_size: int = 800,
                     max_size: int = 1333, train_sizes: Sequence[int] = TRAIN_SCALES):
    """The pipeline for one split.

    Args:
        train: training split (random augmentation) or test split (fixed resize to ``test_size``).
        augment: ``"official"`` (opera's PETR pipeline: photometric, rotation, flip, two scale policies;
            posetr/data/transforms_petr.py), ``"full"`` (DETR's: flip + multi-scale resize / crop), ``"poet"`` (POET: flip,
            rotation, coarse dropout, multi-scale resize / crop; posetr/data/transforms_poet.py),
            ``"flip"`` (flip and a fixed resize) or ``"none"`` (fixed resize only). Ignored when ``train``
            is False.
        flip_index: left/right permutation of the dataset's keypoints.
        test_size, max_size: shorter / longer side limits of the fixed resize (800 / 1333 in PETR).
        train_sizes: shorter-side choices of the multi-scale resize.

    Raises:
        ValueError: unknown ``augment``.
    """
    if augment not in ("official", "full", "poet", "flip", "none"):
        raise ValueError(f"build_transforms: augment must be 'official', 'full', 'poet', 'flip' or 'none', "
                         f"got {augment!r}")
    if train and augment == "official":
        from posetr.data.transforms_petr import petr_official_train_transforms

        return petr_official_train_transforms(flip_index=flip_index)
    if train and augment == "poet":
        from posetr.data.transforms_poet import poet_train_transforms

        return poet_train_transforms(flip_index=flip_index, max_size=max_size, train_sizes=train_sizes)
    fixed = RandomResize([test_size], max_size=max_size)
    if not train or augment == "none":
        steps = [fixed]
    elif augment == "flip":
        steps = [RandomHorizontalFlip(flip_index=flip_index), fixed]
    else:
        steps = [RandomHorizontalFlip(flip_index=flip_index),
                 detr_scale_augment(train_sizes=train_sizes, max_size=max_size)]
    return Compose(steps + [ToTensorNormalize()])
