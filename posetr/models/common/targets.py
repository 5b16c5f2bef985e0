"""Batching of the per-image targets of the data contract (docs/model_interfaces.md) for vectorised
matching: every image's people padded to the batch's largest count."""
from __future__ import annotations

import torch


def pad_targets(targets, num_keypoints: int, device, dtype=torch.float32):
    """Stack per-image targets, padded to the largest person count G.

    Args:
        targets: list of B dicts with ``keypoints`` Float[G_b, K, 3] (normalised x, y and COCO v),
            ``area`` Float[G_b] (pixels^2) and ``size`` (h, w) of the unpadded transformed image.
        num_keypoints: K.
        device, dtype: of the returned tensors.

    Returns:
        keypoints Float[B, G, K, 3] (normalised x, y, v; padding rows zero), area Float[B, G]
        (pixels^2; padding 1), scale Float[B, 2] (w, h of the unpadded image: normalised -> pixels),
        sizes list[int] (people per image).
    """
    sizes = [int(t["keypoints"].shape[0]) for t in targets]
    B, G = len(targets), max(sizes, default=0)
    keypoints = torch.zeros(B, G, num_keypoints, 3, device=device, dtype=dtype)
    area = torch.ones(B, G, device=device, dtype=dtype)
    scale = torch.zeros(B, 2, device=device, dtype=dtype)
    for b, t in enumerate(targets):
        g = sizes[b]
        keypoints[b, :g] = t["keypoints"].to(device=device, dtype=dtype)
        area[b, :g] = t["area"].to(device=device, dtype=dtype)
        h, w = (float(v) for v in t["size"])
        scale[b, 0], scale[b, 1] = w, h
    return keypoints, area, scale, sizes
