"""Poseur's noisy reference points (training only), as ``PoseurTransformer`` builds them (spec section 1.5).

The coarse keypoints r_0 (B, K, 2) are copied into ``num_groups`` extra query groups (B, G' K, 2); one
random choice of ``num_groups * num_points`` of the G' K slots, the same for the whole batch, is perturbed
by Gaussian offsets of covariance ``sigma`` I (drawn per crop, clipped to [-1, 1]) and the perturbed points
are clipped to [-0.7, 1.7]; the other slots stay exact copies. The paper describes the extra queries as
"initialised with normalised random coordinates"; the code's reading is the default and only one.
"""
from __future__ import annotations

import math

import torch

OFFSET_CLIP = 1.0
POINT_RANGE = (-0.7, 1.7)


def noisy_references(reference: torch.Tensor, *, num_groups: int, num_points: int, sigma: float) -> torch.Tensor:
    """r_0 followed by its noisy groups.

    Args:
        reference (Float[B, K, 2]): the coarse keypoints, normalised (detached by the caller).
        num_groups (int): G' extra groups. num_points (int): perturbed slots per group (on average: the
            ``num_groups * num_points`` slots are drawn over all groups). sigma (float): offset covariance.

    Returns:
        Float[B, (1 + G') K, 2]: the clean group first (unchanged), then the noisy groups.
    """
    B, K, _ = reference.shape
    copies = reference[:, None].expand(B, num_groups, K, 2).reshape(B, num_groups * K, 2).clone()
    count = min(num_groups * num_points, num_groups * K)
    slots = torch.randperm(num_groups * K, device=reference.device)[:count]
    offsets = torch.randn(B, count, 2, device=reference.device, dtype=reference.dtype) * math.sqrt(sigma)
    offsets = offsets.clamp(-OFFSET_CLIP, OFFSET_CLIP)
    copies[:, slots] = (copies[:, slots] + offsets).clamp(*POINT_RANGE)
    return torch.cat([reference, copies], dim=1)
