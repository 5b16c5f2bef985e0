"""POET's pose parametrisation: a centre plus centre-relative joint offsets and joint visibilities.

Official sources: ``datasets/coco.py`` (``ConvertCocoPolysToMask``: visibility remap, centre of mass,
``build_SPR`` offsets, class labels), ``datasets/transforms.py`` (``Normalize``: division by the transformed
image size, offsets remapped to [0, 1]) and ``models/poet.py`` (``PostProcess``: decoding).

Target (per person, from the data contract's normalised keypoints, docs/model_interfaces.md):

- visibility v' = 1 where COCO v >= ``visible_threshold`` (official: 2, so occluded v = 1 joints count as
  invisible), else 0;
- centre c = mean of the visible joints (the visibility-weighted centre of mass), with c_v = 1; a person
  without a visible joint has c = (0, 0) and c_v = 0;
- offsets d' = 0.5 * (joint - c) + 0.5 for every joint (invisible ones too; they are masked out), where
  joint and c are normalised by the width and height of the unpadded transformed image, so that
  d' lies in [0, 1] like the sigmoid outputs (0.5 = no offset).

Prediction (``pred_kpts``, the pose MLP's sigmoid outputs, the official layout of 2 + 3K values):
``[cx, cy, dx'_1, dy'_1, v_1, ..., dx'_K, dy'_K, v_K]``; decoded joint = c + 2 * (d' - 0.5).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from posetr.models.common.targets import pad_targets

CLASS_HEADS = {"official": 3, "binary": 2}  # class_head -> logits (the last one is no-object)


class PoseTargets(NamedTuple):
    """Encoded targets; leading dims ``...`` are those of the keypoints given to :func:`encode_targets`.

    - ``center`` Float[..., 2]: normalised centre of mass of the visible joints ((0, 0) without any);
    - ``center_visible`` Float[...]: c_v, 1 if the person has a visible joint, else 0;
    - ``offsets`` Float[..., K, 2]: remapped offsets d' in [0, 1];
    - ``visible`` Float[..., K]: v' (0 or 1);
    - ``keypoints`` Float[..., K, 2]: absolute normalised joints (clamped to [0, 1]).
    """

    center: torch.Tensor
    center_visible: torch.Tensor
    offsets: torch.Tensor
    visible: torch.Tensor
    keypoints: torch.Tensor


def encode_targets(keypoints: torch.Tensor, *, visible_threshold: int = 2) -> PoseTargets:
    """Encodes people in POET's target form (see the module docstring).

    Args:
        keypoints: Float[..., K, 3]: x, y normalised by the unpadded transformed image's (w, h); COCO v.
        visible_threshold: COCO v >= this is a visible joint (2: official; 1: every labelled joint).

    Returns:
        :class:`PoseTargets`, same dtype and device as ``keypoints``.

    Raises:
        ValueError: ``keypoints`` not of shape [..., K, 3], or ``visible_threshold`` not 1 or 2.
    """
    if keypoints.dim() < 2 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be Float[..., K, 3], got shape {tuple(keypoints.shape)}")
    if visible_threshold not in (1, 2):
        raise ValueError(f"visible_threshold must be 1 or 2, got {visible_threshold}")
    xy = keypoints[..., :2].clamp(0.0, 1.0)
    visible = (keypoints[..., 2] >= visible_threshold).to(keypoints.dtype)
    count = visible.sum(-1)
    center = (xy * visible[..., None]).sum(-2) / count.clamp(min=1)[..., None]
    center_visible = (count > 0).to(keypoints.dtype)
    offsets = 0.5 * (xy - center[..., None, :]) + 0.5
    return PoseTargets(center, center_visible, offsets, visible, xy)


def class_labels(center_visible: torch.Tensor, *, class_head: str) -> torch.Tensor:
    """Class index of each person: Float[...] (c_v) -> Long[...].

    ``class_head="official"``: 1 for a person with a visible joint, 0 for one without. The official code
    sets class 0 where the nose offset sums to zero when the annotation is loaded (in practice, a person
    annotated without keypoints) and never updates it; here it follows the augmented target, so a person
    whose joints the augmentation pushed out (or who has only occluded joints) is class 0 as well.
    ``class_head="binary"``: 0 (person) for everyone; :func:`batch_targets` removes those without a visible
    joint first.
    """
    if class_head == "official":
        return (center_visible > 0).long()
    return torch.zeros_like(center_visible, dtype=torch.long)


class TargetBatch(NamedTuple):
    """The targets of a batch, encoded and padded to the largest person count G.

    ``poses``: :class:`PoseTargets` with leading dims [B, G] (padding rows: c_v = 0, v' = 0);
    ``labels`` Long[B, G] (padding: 0); ``sizes`` list[int]: people per image (their total is the number
    of people the losses are divided by).
    """

    poses: PoseTargets
    labels: torch.Tensor
    sizes: list


def batch_targets(targets: list, *, num_keypoints: int, visible_threshold: int, class_head: str, device,
                  dtype=torch.float32) -> TargetBatch:
    """Encodes the targets of the data contract (list of B dicts with ``keypoints`` Float[G_b, K, 3],
    ``area``, ``size``) for matching and losses; ``class_head="binary"`` drops people without a visible
    joint (they carry no supervision in a person / no-object head).

    Raises:
        ValueError: unknown ``class_head`` or ``visible_threshold`` (see :func:`encode_targets`).
    """
    if class_head not in CLASS_HEADS:
        raise ValueError(f"class_head must be one of {sorted(CLASS_HEADS)}, got {class_head!r}")
    if class_head == "binary":
        kept = []
        for t in targets:
            keep = (t["keypoints"][..., 2] >= visible_threshold).any(-1)
            kept.append({"keypoints": t["keypoints"][keep], "area": t["area"][keep], "size": t["size"]})
        targets = kept
    keypoints, _, _, sizes = pad_targets(targets, num_keypoints, device, dtype)
    poses = encode_targets(keypoints, visible_threshold=visible_threshold)
    return TargetBatch(poses, class_labels(poses.center_visible, class_head=class_head), sizes)


def split_prediction(pred_kpts: torch.Tensor):
    """The official 2 + 3K layout -> (center Float[..., 2], offsets Float[..., K, 2], visibility Float[..., K]).

    Raises:
        ValueError: the last dimension is not 2 + 3K.
    """
    n = pred_kpts.shape[-1] - 2
    if n <= 0 or n % 3:
        raise ValueError(f"pred_kpts must have 2 + 3K values in its last dim, got {pred_kpts.shape[-1]}")
    joints = pred_kpts[..., 2:].unflatten(-1, (n // 3, 3))
    return pred_kpts[..., :2], joints[..., :2], joints[..., 2]


def decode_keypoints(center: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Absolute normalised joints c + 2 (d' - 0.5): center Float[..., 2], offsets Float[..., K, 2] ->
    Float[..., K, 2] (multiply by the image's (w, h) for pixels)."""
    return center[..., None, :] + 2.0 * (offsets - 0.5)
