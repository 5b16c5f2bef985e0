"""Helpers the top-down models share (TFPose, Poseur): the flip test's un-flip of crop-normalised keypoints,
crop coordinates back to image pixels, and the stacked targets of the top-down contract."""
from __future__ import annotations

import torch

from posetr.data.keypoints import mirror_keypoints

FLIP_CONVENTIONS = ("pixel", "unit")


def unflip_keypoints(keypoints: torch.Tensor, flip_index, *, width: int, convention: str) -> torch.Tensor:
    """Keypoints predicted on a horizontally flipped crop, in the unflipped crop's frame.

    Args:
        keypoints (Float[B, K, 2]): normalised to the flipped crop.
        flip_index (list[int]): ``KeypointInfo.flip_index()`` (joint k of the result is joint
            flip_index[k] of the input).
        width (int): W, the crop width in pixels. convention (str): "pixel": x -> (W - 1) / W - x, exact for
            the engine's ``images.flip(-1)`` (crop pixel i sits at x = i / W); "unit": x -> 1 - x (mmpose's
            ``fliplr_regression(center_x=0.5)``, Poseur's ``fliplr_rle_regression``).

    Returns:
        Float[B, K, 2].

    Raises:
        ValueError: ``convention`` not in :data:`FLIP_CONVENTIONS`.
    """
    if convention not in FLIP_CONVENTIONS:
        raise ValueError(f"flip convention must be one of {list(FLIP_CONVENTIONS)}, got {convention!r}")
    return mirror_keypoints(keypoints, flip_index, mirror_sum=(width - 1) / width if convention == "pixel" else 1.0)


def keypoints_to_image(keypoints: torch.Tensor, targets: list[dict]) -> torch.Tensor:
    """Crop-normalised keypoints Float[B, K, 2] back to original-image pixels (CPU float32) with each crop's
    ``center`` and ``scale`` (Float[2], pixels; mmpose ``transform_preds`` via
    :func:`posetr.data.crop_geometry.crop_to_image`)."""
    from posetr.data.crop_geometry import crop_to_image

    center = torch.stack([torch.as_tensor(t["center"], dtype=torch.float32).cpu() for t in targets])
    scale = torch.stack([torch.as_tensor(t["scale"], dtype=torch.float32).cpu() for t in targets])
    return crop_to_image(keypoints.float().cpu(), center, scale)


def stack_targets(targets: list[dict], *, num_keypoints: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The crops' ``keypoints`` (x, y) Float[B, K, 2] (normalised to the crop) and ``target_weight``
    Float[B, K] of the top-down contract, on ``like``'s device and dtype.

    Raises:
        ValueError: a target whose ``keypoints`` is not [K, 3] or ``target_weight`` not [K] (names the crop and
            its image_id).
    """
    K = num_keypoints
    for i, t in enumerate(targets):
        if tuple(t["keypoints"].shape) != (K, 3) or tuple(t["target_weight"].shape) != (K,):
            raise ValueError(
                f"target {i} (image_id {t.get('image_id')}): expected keypoints [{K}, 3] and target_weight "
                f"[{K}], got {tuple(t['keypoints'].shape)} and {tuple(t['target_weight'].shape)}"
            )
    gt = torch.stack([t["keypoints"][:, :2] for t in targets]).to(like)
    weight = torch.stack([t["target_weight"] for t in targets]).to(like)
    return gt, weight
