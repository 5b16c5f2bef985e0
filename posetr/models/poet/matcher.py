"""POET's Hungarian matcher (amathislab/poet ``models/matcher.py``), vectorised over the batch.

For query q and person g of image b (all coordinates normalised, codec.py), with v'_g the person's joint
visibilities and c_v its centre visibility:

    cost = cost_class  * -softmax(logits_q)[label_g]
         + cost_kpts   * sum_k v'_gk |joint_qk - joint_gk|_1          (absolute joints, 2K values)
         + cost_ctrs   * c_v |centre_q - centre_g|_2                   (Euclidean, not squared)
         + cost_deltas * sum_k v'_gk |d'_qk - d'_gk|_1                  (remapped offsets)
         + cost_vis    * c_v |vis_q - v'_g|_2                           (the K visibility scores)

which is the official cost with its masking (masked entries of prediction and target zeroed before the
distance). One deliberate difference: when a batch has a person with c_v = 0, the official code zeroes
``src_kpts_ids[where(target_cv == 0)]``, i.e. it indexes the PREDICTION rows (queries of the flattened
batch) with TARGET indices, wiping the visibility scores of arbitrary queries for every target. The intent
is to drop the visibility cost of people without a visible joint, which is what the c_v factor above does
(for batches where every person has c_v = 1, the official branch without the bug, the costs are equal).

The official matcher allocates its costs with ``.cuda()``, loops over target people in Python and calls
scipy once per image; here the [B, N, G] cost is computed in a few broadcast operations on the
predictions' device and every image is solved in one call of ``kernels.match``
(:func:`posetr.models.common.matching.match`: ``batched_linear_sum_assignment``, scipy's answers).
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.poet.codec import TargetBatch, decode_keypoints, split_prediction


def pose_costs(pred_kpts: torch.Tensor, batch: TargetBatch):
    """The four geometric costs, unweighted: pred_kpts Float[B, N, 2 + 3K] -> (kpts, ctrs, deltas, vis),
    each Float[B, N, G] (see the module docstring)."""
    center, offsets, vis = split_prediction(pred_kpts)
    joints = decode_keypoints(center, offsets)
    t = batch.poses
    # (x, y) of every joint side by side, so that each distance is one reduction over a contiguous last
    # dim (reducing [..., K, 2] over its pairs first is ~50x slower on the CPU)
    visible = t.visible[..., None].expand(*t.visible.shape, 2).flatten(-2)[:, None]  # [B, 1, G, 2K]
    cv = t.center_visible[:, None]  # [B, 1, G]

    def masked_l1(pred, target):  # pred Float[B, N, K, 2], target Float[B, G, K, 2] -> Float[B, N, G]
        return ((pred.flatten(-2)[:, :, None] - target.flatten(-2)[:, None]).abs_() * visible).sum(-1)

    kpts = masked_l1(joints, t.keypoints)
    deltas = masked_l1(offsets, t.offsets)
    ctrs = (center[:, :, None] - t.center[:, None]).square_().sum(-1).sqrt_() * cv
    vis_cost = (vis[:, :, None] - t.visible[:, None]).square_().sum(-1).sqrt_() * cv
    return kpts, ctrs, deltas, vis_cost


class POETMatcher(nn.Module):
    """Matches the N queries of every image to its people.

    Args:
        cost_class, cost_kpts, cost_ctrs, cost_deltas, cost_vis (float): weights (README: 1, 4, 0.5, 0.5, 0.2).
        match: ``(cost Float[B, N, G], sizes list[int]) -> list of (index_i, index_j)``
            (``Kernels.match``: posetr's batched solver, or scipy per image).

    Forward (no grad): outputs with ``pred_logits`` Float[B, N, C + 1] and ``pred_kpts`` Float[B, N, 2 + 3K],
    batch (:class:`~posetr.models.poet.codec.TargetBatch`) -> list of B (index_i Long[n], index_j Long[n]),
    n = min(N, G_b): query index_i[k] matched to person index_j[k], index_i ascending.
    """

    def __init__(self, *, cost_class: float, cost_kpts: float, cost_ctrs: float, cost_deltas: float,
                 cost_vis: float, match):
        super().__init__()
        self.cost_class = cost_class
        self.cost_kpts = cost_kpts
        self.cost_ctrs = cost_ctrs
        self.cost_deltas = cost_deltas
        self.cost_vis = cost_vis
        self.match = match

    @torch.no_grad()
    def cost(self, outputs: dict, batch: TargetBatch) -> torch.Tensor:
        """The weighted cost Float[B, N, G] (float32, or float64 for float64 predictions)."""
        logits, pred = outputs["pred_logits"], outputs["pred_kpts"]
        if pred.dtype != torch.float64:  # bf16/fp16 autocast: match in float32
            logits, pred = logits.float(), pred.float()
        B, N, _ = logits.shape
        labels = batch.labels.to(logits.device)[:, None, :].expand(B, N, -1)
        cost = self.cost_class * -logits.softmax(-1).gather(2, labels)
        kpts, ctrs, deltas, vis = pose_costs(pred, batch)
        return cost + self.cost_kpts * kpts + self.cost_ctrs * ctrs + self.cost_deltas * deltas + self.cost_vis * vis

    @torch.no_grad()
    def forward(self, outputs: dict, batch: TargetBatch) -> list:
        if max(batch.sizes, default=0) == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=outputs["pred_logits"].device)
            return [(empty, empty) for _ in batch.sizes]
        return self.match(self.cost(outputs, batch), batch.sizes)


def build_poet_matcher(cfg, *, match) -> POETMatcher:
    """Matcher with ``cfg``'s (POETConfig) cost weights."""
    return POETMatcher(cost_class=cfg.cost_class, cost_kpts=cfg.cost_kpts, cost_ctrs=cfg.cost_ctrs,
                       cost_deltas=cfg.cost_deltas, cost_vis=cfg.cost_vis, match=match)
