"""OKS non-maximum suppression of the poses of one image (mmpose 0.x ``oks_nms``), on
``posetr.ops.pairwise_oks``: top-down evaluation (person crops whose boxes overlap) and test-time
augmentation merge duplicate people with it."""
from __future__ import annotations

import numpy as np
import torch

from posetr.ops import pairwise_oks


def oks_matrix(keypoints, areas, *, sigmas) -> torch.Tensor:
    """OKS of every pair of poses of one image, mmpose's ``oks_iou``: every keypoint counts (no
    visibility threshold) and the pair's area is the mean of the two areas.

    Args:
        keypoints: Float[N, K, 2] (or [N, K, 3], the third column ignored), pixels.
        areas: Float[N], pixels^2 (for a crop, mmpose uses the crop box area ``scale_w * scale_h``).
        sigmas: K per-keypoint OKS sigmas.

    Returns:
        Float64[N, N], symmetric, ones on the diagonal (for N > 0).
    """
    kpts = torch.as_tensor(keypoints, dtype=torch.float64)[..., :2]
    areas = torch.as_tensor(areas, dtype=torch.float64)
    n, k = kpts.shape[:2]
    if n == 0:
        return torch.zeros(0, 0, dtype=torch.float64)
    pair_area = (areas[:, None] + areas[None, :]) / 2  # [N (pred), N (gt)]
    # batch b = pose b against every pose: pred [N, 1, K, 2], gt [N, N, K, 2], area [N, N]
    gt = kpts[None].expand(n, n, k, 2).contiguous()
    visible = torch.ones(n, n, k, dtype=torch.bool)
    return pairwise_oks(kpts[:, None].contiguous(), gt, visible, pair_area, sigmas)[:, 0]


def oks_nms(keypoints, scores, areas, *, sigmas, threshold: float = 0.9) -> list[int]:
    """Greedy OKS-NMS (mmpose 0.x ``oks_nms``, ``vis_thr=None``): take the best-scoring pose, drop every
    remaining pose whose OKS with it is above ``threshold``, repeat.

    Args:
        keypoints: Float[N, K, 2 or 3] pixels; scores: Float[N]; areas: Float[N] pixels^2;
        sigmas: K OKS sigmas; threshold: poses with OKS > threshold are suppressed (kept if <=).

    Returns:
        Indices of the kept poses, best score first. Equal scores keep mmpose's order on small inputs
        (``scores.argsort()[::-1]``: the later pose first).

    Raises:
        ValueError: mismatched lengths.
    """
    scores = np.asarray(torch.as_tensor(scores, dtype=torch.float64))
    if not len(keypoints) == len(scores) == len(areas):
        raise ValueError(f"oks_nms: {len(keypoints)} poses, {len(scores)} scores and {len(areas)} areas")
    oks = oks_matrix(keypoints, areas, sigmas=sigmas).numpy()
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while len(order) > 0:
        best = int(order[0])
        keep.append(best)
        order = order[1:][oks[best, order[1:]] <= threshold]
    return keep
