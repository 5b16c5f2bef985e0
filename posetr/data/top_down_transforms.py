"""Person-crop transforms for top-down training and testing (Poseur's / mmpose 0.x's pipeline).

A transform is a callable ``(image, target) -> (image, target)`` (composed with
:class:`posetr.data.transforms.Compose`). Until :class:`ToCropTarget` runs, ``image`` is the RGB
uint8 array [H, W, 3] of the whole image (after :class:`AffineCrop`: the crop [h, w, 3]) and ``target``
holds, in pixels of that image (numpy):

- ``keypoints``: Float[K, 3] (x, y, v); unlabelled joints (v = 0) are (0, 0, 0); pixel centres at
  integer coordinates (OpenCV's and mmpose's convention: a horizontal flip maps x to ``width - 1 - x``).
- ``center``, ``scale``: Float[2]: the crop's centre and (w, h) in pixels
  (:func:`~posetr.data.crop_geometry.box_to_center_scale`; mmpose 0.x stores ``scale / 200``).
- ``rotation``: degrees; ``flipped``: whether the image is to be mirrored before the crop;
  ``image_id``, ``bbox_score``, ``area``, ``bbox_id``: carried to the output.

Training pipeline (mmpose 0.x ``TopDownRandomFlip`` -> ``TopDownHalfBodyTransform`` ->
``TopDownGetRandomScaleRotation`` -> ``TopDownAffine`` [-> ``PhotometricDistortion`` -> ``Cutout``],
with their random draws in their order from numpy's global RNG): flip p = 0.5, half-body p = 0.3 for
persons with more than 8 labelled joints, scale x clip(1 + 0.5 N(0, 1), 0.5, 1.5), rotation
clip(40 N(0, 1), -80, 80) degrees applied with p = 0.6, affine warp (OpenCV ``warpAffine``, bilinear,
zero border). The flip is folded into the warp's matrix instead of mirroring the whole image first:
the same pixels, without a full-image copy.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from posetr.data.crop_geometry import box_to_center_scale, crop_affine_matrix
from posetr.data.photometric import PhotometricDistortion
from posetr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Compose


class TopDownRandomFlip:
    """Mirrors with probability ``p`` (mmpose ``TopDownRandomFlip``, draw ``rand() <= p``): labelled
    joints ``x -> width - 1 - x`` with left/right swapped by ``flip_index``, the centre likewise; the
    pixels are mirrored by :class:`AffineCrop`."""

    def __init__(self, *, flip_index: Sequence[int], p: float = 0.5):
        self.flip_index = np.asarray(list(flip_index), dtype=np.int64)
        self.p = p

    def __call__(self, image, target):
        if np.random.rand() > self.p:
            return image, target
        width = image.shape[1]
        target = dict(target)
        kpts = target["keypoints"][self.flip_index].copy()
        labelled = kpts[:, 2] > 0
        kpts[:, 0] = np.where(labelled, width - 1 - kpts[:, 0], 0.0)
        center = target["center"].copy()
        center[0] = width - 1 - center[0]
        target.update(keypoints=kpts, center=center, flipped=not target.get("flipped", False))
        return image, target


class HalfBodyTransform:
    """With probability ``p``, for a person with more than ``min_joints`` labelled joints, crops the
    upper or the lower body (mmpose ``TopDownHalfBodyTransform``): the upper body when
    ``randn() < 0.5`` (sic: a normal draw, so about 69%) and it has more than 2 labelled joints, else the
    lower body if it has more than 2, else the upper body; with at least 2 joints, the crop is their
    mean and 1.5 x their extent grown to ``aspect_ratio`` (W / H)."""

    def __init__(self, *, upper_body_ids: Sequence[int], aspect_ratio: float, p: float = 0.3,
                 min_joints: int = 8):
        self.upper_body_ids = frozenset(upper_body_ids)
        self.aspect_ratio, self.p, self.min_joints = aspect_ratio, p, min_joints

    def __call__(self, image, target):
        kpts = target["keypoints"]
        labelled = kpts[:, 2] > 0
        if not (labelled.sum() > self.min_joints and np.random.rand() < self.p):
            return image, target
        upper = [k for k in np.flatnonzero(labelled) if k in self.upper_body_ids]
        lower = [k for k in np.flatnonzero(labelled) if k not in self.upper_body_ids]
        if np.random.randn() < 0.5 and len(upper) > 2:
            selected = upper
        elif len(lower) > 2:
            selected = lower
        else:
            selected = upper
        if len(selected) < 2:
            return image, target
        pts = kpts[selected, :2]
        low, high = pts.min(axis=0), pts.max(axis=0)
        _, scale = box_to_center_scale([*low, *(high - low)], aspect_ratio=self.aspect_ratio, padding=1.5)
        if not scale[0] > 0:  # all selected joints at one point: no crop to take
            return image, target
        return image, dict(target, center=pts.mean(axis=0).astype(np.float32), scale=scale)


class RandomScaleRotation:
    """mmpose ``TopDownGetRandomScaleRotation``: ``scale *= clip(1 + scale_factor randn(), 1 -
    scale_factor, 1 + scale_factor)``; ``rotation = clip(rotation_factor randn(), -2 rotation_factor,
    2 rotation_factor)`` if ``rand() <= rotation_prob``, else 0 (draws in that order)."""

    def __init__(self, *, scale_factor: float = 0.5, rotation_factor: float = 40.0, rotation_prob: float = 0.6):
        self.scale_factor, self.rotation_factor, self.rotation_prob = scale_factor, rotation_factor, rotation_prob

    def __call__(self, image, target):
        sf, rf = self.scale_factor, self.rotation_factor
        factor = np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)
        rotation = np.clip(np.random.randn() * rf, -rf * 2, rf * 2)
        rotation = float(rotation) if np.random.rand() <= self.rotation_prob else 0.0
        return image, dict(target, scale=(target["scale"] * factor).astype(np.float32), rotation=rotation)


def mirror_matrix(width: int) -> np.ndarray:
    """Float64[3, 3] of the horizontal flip ``x -> width - 1 - x`` (pixel centres at integers)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


class AffineCrop:
    """Warps the image to the ``output_size`` = (W, H) crop of ``center``/``scale``/``rotation`` (mmpose
    ``TopDownAffine`` without UDP: OpenCV ``warpAffine``, bilinear, zero border) and moves the labelled
    keypoints with it; a ``flipped`` target mirrors the pixels first (one composed matrix)."""

    def __init__(self, *, output_size: tuple[int, int]):
        self.output_size = tuple(int(v) for v in output_size)

    def __call__(self, image, target):
        affine = crop_affine_matrix(target["center"], target["scale"], rotation=target.get("rotation", 0.0),
                                    output_size=self.output_size)
        warp = affine @ mirror_matrix(image.shape[1]) if target.get("flipped", False) else affine
        crop = cv2.warpAffine(image, warp, self.output_size, flags=cv2.INTER_LINEAR)
        kpts = target["keypoints"].copy()
        labelled = kpts[:, 2] > 0
        kpts[labelled, :2] = kpts[labelled, :2] @ affine[:, :2].T.astype(np.float32) + affine[:, 2].astype(np.float32)
        return crop, dict(target, keypoints=kpts)


class Cutout:
    """mmpose ``Cutout`` (AID, Huang et al. 2020) on the uint8 crop: with probability ``prob``, zeroes
    ``num_patch`` elliptical patches centred at a uniform point, with radii ``radius_factor (1 + U(0, 1))
    width`` on each axis (both from the crop's width, as mmpose)."""

    def __init__(self, *, prob: float = 1.0, radius_factor: float = 0.2, num_patch: int = 1):
        self.prob, self.radius_factor, self.num_patch = prob, radius_factor, num_patch

    def __call__(self, image, target):
        if not np.random.rand() < self.prob:
            return image, target
        height, width = image.shape[:2]
        ys, xs = np.mgrid[:height, :width]
        image = image.copy()
        for _ in range(self.num_patch):
            center = [np.random.rand() * width, np.random.rand() * height]
            radius = self.radius_factor * (1 + np.random.rand(2)) * width
            inside = ((center[0] - xs) / radius[0]) ** 2 + ((center[1] - ys) / radius[1]) ** 2 <= 1
            image[inside] = 0
        return image, target


class OnImage:
    """Applies ``fn`` (uint8 [H, W, 3] -> uint8 [H, W, 3], e.g. a
    :class:`~posetr.data.photometric.PhotometricDistortion`) to the image only."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, image, target):
        return self.fn(image), target


class ToCropTarget:
    """uint8 crop -> Float[3, H, W] (/255, ImageNet mean/std); target -> the contract form
    (docs/model_interfaces.md, top-down): ``keypoints`` Float[K, 3] with x, y / (W, H), ``target_weight``
    Float[K] = labelled and inside the crop (``0 <= x <= W - 1``, ``0 <= y <= H - 1`` in crop pixels, as
    mmpose's ``TopDownGenerateTargetRegression``), ``center``/``scale`` Float[2], ``orig_size``."""

    def __init__(self, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, image, target):
        height, width = image.shape[:2]
        # numpy, not torch: a crop is small and torch's intra-op threads only add overhead here
        normalised = (image.astype(np.float32) / np.float32(255.0) - self.mean) / self.std
        tensor = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
        kpts = torch.from_numpy(target["keypoints"]).float()
        x, y = kpts[:, 0], kpts[:, 1]
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        weight = ((kpts[:, 2] > 0) & inside).float()
        kpts = kpts.clone()
        kpts[:, :2] /= torch.tensor([width, height], dtype=torch.float32)
        out = {
            "keypoints": kpts,
            "target_weight": weight,
            "center": torch.as_tensor(target["center"], dtype=torch.float32),
            "scale": torch.as_tensor(target["scale"], dtype=torch.float32),
            "rotation": float(target.get("rotation", 0.0)),
            "bbox_score": float(target["bbox_score"]),
            "image_id": target["image_id"],
            "area": float(target["area"]),
            "orig_size": torch.as_tensor(target["orig_size"], dtype=torch.long),
            "bbox_id": int(target["bbox_id"]),
        }
        return tensor, out


def build_top_down_transforms(*, train: bool, augment: str, output_size: tuple[int, int], flip_index: Sequence[int],
                              upper_body_ids: Sequence[int], half_body_prob: float = 0.3,
                              half_body_min_joints: int = 8, scale_factor: float = 0.5,
                              rotation_factor: float = 40.0, rotation_prob: float = 0.6,
                              photometric: bool = False, cutout: bool = False):
    """The crop pipeline of one split.

    Args:
        train: random augmentation or the plain test crop.
        augment: "full" (flip, half-body, scale/rotation), "flip" (flip only) or "none"; training only.
        output_size: (W, H) of the crop, e.g. (192, 256).
        flip_index: left/right permutation of the dataset's keypoints.
        upper_body_ids: the half-body augmentation's upper-body joints.
        half_body_prob, half_body_min_joints, scale_factor, rotation_factor, rotation_prob: see the classes.
        photometric: mmpose's :class:`~posetr.data.photometric.PhotometricDistortion` after the warp.
        cutout: one :class:`Cutout` patch (prob 1) after the warp (and after ``photometric``).

    Raises:
        ValueError: unknown ``augment``.
    """
    if augment not in ("full", "flip", "none"):
        raise ValueError(f"build_top_down_transforms: augment must be 'full', 'flip' or 'none', got {augment!r}")
    steps = []
    if train and augment != "none":
        steps.append(TopDownRandomFlip(flip_index=flip_index))
    if train and augment == "full":
        W, H = output_size
        steps += [HalfBodyTransform(upper_body_ids=upper_body_ids, aspect_ratio=W / H, p=half_body_prob,
                                    min_joints=half_body_min_joints),
                  RandomScaleRotation(scale_factor=scale_factor, rotation_factor=rotation_factor,
                                      rotation_prob=rotation_prob)]
    steps.append(AffineCrop(output_size=output_size))
    if train and photometric:
        steps.append(OnImage(PhotometricDistortion(style="mmpose")))
    if train and cutout:
        steps.append(Cutout())
    return Compose(steps + [ToCropTarget()])
