"""PETR's Hungarian matcher (opera ``PoseHungarianAssigner``): one assignment call for the whole batch.

cost[b, q, g] = cost_class * focal(q) + cost_kpt * L1(q, g) + cost_oks * (-OKS(q, g)) with
- focal: DETR's sigmoid focal cost ``alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))``;
- L1: sum of |pred - gt| over the labelled keypoints of g (normalised coordinates), divided by twice their
  count (opera ``KptL1Cost``);
- OKS: COCO's OKS in pixels of the unpadded transformed image (``pairwise_oks``), sigmas of the dataset.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.kernels import Kernels
from posetr.models.common.targets import pad_targets


def focal_cost(logits: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Per-query focal matching cost of the positive class: logits Float[...] -> Float[...]."""
    p = logits.sigmoid()
    neg = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    return pos - neg


def keypoint_l1_cost(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred Float[B, N, K, 2], gt Float[B, G, K, 3] -> Float[B, N, G]: L1 over labelled keypoints / (2 * count)."""
    visible = (gt[..., 2] > 0).to(pred.dtype)  # [B, G, K]
    diff = (pred[:, :, None] - gt[:, None, :, :, :2]).abs().sum(-1)  # [B, N, G, K]
    cost = (diff * visible[:, None]).sum(-1)
    return cost / (2 * visible.sum(-1)).clamp(min=1)[:, None]


class PoseHungarianMatcher(nn.Module):
    """Matches the queries of every image to its people.

    Args:
        cost_class, cost_kpt, cost_oks (float): weights of the three costs.
        focal_alpha, focal_gamma (float): focal cost parameters.
        sigmas (Tensor[K]): OKS sigmas of the dataset.
        kernels (Kernels): ``pairwise_oks`` and ``match`` used (posetr ops or references).

    Forward (no grad): outputs with ``pred_logits`` Float[B, N, 1] and ``pred_keypoints`` Float[B, N, K, 2],
    targets (list of B dicts of the data contract) -> list of B (index_i Long[n], index_j Long[n]) with
    n = min(N, G_b): query index_i[k] matched to person index_j[k], index_j a permutation for N >= G.
    """

    def __init__(self, *, cost_class: float, cost_kpt: float, cost_oks: float, focal_alpha: float,
                 focal_gamma: float, sigmas: torch.Tensor, kernels: Kernels):
        super().__init__()
        self.cost_class = cost_class
        self.cost_kpt = cost_kpt
        self.cost_oks = cost_oks
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.kernels = kernels

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list) -> list:
        logits = outputs["pred_logits"][..., 0]
        pred = outputs["pred_keypoints"]
        if pred.dtype not in (torch.float32, torch.float64):  # bf16/fp16 autocast: match in float32
            logits, pred = logits.float(), pred.float()
        B, N, K, _ = pred.shape
        gt, area, scale, sizes = pad_targets(targets, K, pred.device, pred.dtype)
        if max(sizes, default=0) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in range(B)]
        cost = self.cost_class * focal_cost(logits, self.focal_alpha, self.focal_gamma)[:, :, None]
        cost = cost + self.cost_kpt * keypoint_l1_cost(pred, gt)
        px = scale[:, None, None, :]
        oks = self.kernels.pairwise_oks(pred * px, gt[..., :2] * px, gt[..., 2] > 0, area,
                                        self.sigmas.to(pred.dtype))
        cost = cost + self.cost_oks * -oks
        return self.kernels.match(cost, sizes)


def build_petr_matcher(cfg, *, sigmas: torch.Tensor, kernels: Kernels) -> PoseHungarianMatcher:
    """Matcher with ``cfg``'s (PETRConfig) cost weights."""
    return PoseHungarianMatcher(cost_class=cfg.cost_class, cost_kpt=cfg.cost_kpt, cost_oks=cfg.cost_oks,
                                focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma, sigmas=sigmas,
                                kernels=kernels)
