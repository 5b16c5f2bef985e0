"""Batched Hungarian matching of predictions to ground truth (DETR's matcher core).

A model's matcher builds its cost matrix (e.g. PETR: focal classification + L1
keypoints + OKS) and hands it here: :func:`match` solves every image's assignment
in one call of :func:`posetr.ops.batched_linear_sum_assignment`, on the cost's
device, with exactly ``scipy.optimize.linear_sum_assignment``'s answers.
"""
import torch
from torch import nn

from posetr.ops.lap import assignment_to_pairs, batched_linear_sum_assignment

__all__ = ["match", "BatchedHungarianMatcher"]


@torch.no_grad()
def match(cost, num_targets):
    """Minimum-cost matching of Q queries to each image's targets, all images at once.

    Args:
        cost (Tensor[B, Q, G_max]): float32 or float64 cost of assigning query q of
            image b to target g; only ``cost[b, :, :num_targets[b]]`` is read (pad the
            rest with anything). ``+inf`` forbids a pair.
        num_targets (list[int] | Tensor[B] int64): targets (people) per image. A list
            or CPU tensor keeps CUDA matching free of host synchronisation.

    Returns:
        list of B ``(index_i, index_j)`` int64 tensors on ``cost``'s device (DETR's
        convention): query ``index_i[k]`` is matched to target ``index_j[k]``;
        ``len(index_i) == min(Q, num_targets[b])``; ``index_i`` ascending.

    Raises:
        ValueError: on the CPU, for NaN/-inf costs or when forbidden pairs leave no
            complete matching (see :func:`posetr.ops.batched_linear_sum_assignment`).
    """
    if cost.dim() != 3:
        raise ValueError(f"cost must be a 3-D tensor [B, Q, G_max], got shape {tuple(cost.shape)}")
    counts = num_targets.tolist() if isinstance(num_targets, torch.Tensor) else [int(n) for n in num_targets]
    if len(counts) != cost.shape[0]:
        raise ValueError(f"num_targets must have one count per image ({cost.shape[0]}), got {len(counts)}")
    num_queries = cost.shape[1]
    num_cols = torch.tensor(counts, dtype=torch.int64).to(cost.device, non_blocking=True)
    row_ind, col_ind = batched_linear_sum_assignment(cost, num_cols=num_cols)
    return assignment_to_pairs(row_ind, col_ind, [min(num_queries, n) for n in counts])


class BatchedHungarianMatcher(nn.Module):
    """``nn.Module`` form of :func:`match`: ``forward(cost, num_targets)``, no parameters."""

    def forward(self, cost, num_targets):
        return match(cost, num_targets)
