"""The kernels a model runs on, picked by the model config's ``ops``: posetr's ops or the PyTorch references.

``get_kernels("posetr")`` uses ``posetr.ops`` (C++/CUDA kernels, batched matching in one call);
``get_kernels("reference")`` uses the oracles in ``posetr.ops.reference`` and scipy's
``linear_sum_assignment`` once per image, so the same weights give the same outputs and losses on both.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Kernels(NamedTuple):
    """Functions with the signatures of their ``posetr.ops`` namesakes.

    - ``ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step)``
    - ``pairwise_oks(pred, gt, visible, area, sigmas)`` -> OKS of every (prediction, person) pair (pixels)
    - ``oks_loss(pred, gt, visible, area, sigmas, mode, eps, reduction)`` -> loss of matched pairs (pixels)
    - ``match(cost Tensor[B, Q, G_max], sizes list[int])`` -> list of B (index_i, index_j) int64 pairs
    - ``emsda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
      value_proj_weight, value_proj_bias, im2col_step)``: Poseur's EMSDA (posetr's fused op, or Poseur's
      own formulation: the value repeated per head, MSDA, per-head projection)
    """

    ms_deform_attn: Callable
    pairwise_oks: Callable
    oks_loss: Callable
    match: Callable
    emsda: Callable


def _match_scipy(cost: torch.Tensor, sizes: list[int]):
    from scipy.optimize import linear_sum_assignment

    cost = cost.detach().cpu()
    out = []
    for b, g in enumerate(sizes):
        rows, cols = linear_sum_assignment(cost[b, :, :g].numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out


def get_kernels(ops: str) -> Kernels:
    """Kernels for ``ops`` = "posetr" or "reference".

    Raises:
        ValueError: any other ``ops``.
    """
    if ops == "posetr":
        import posetr.ops as P
        from posetr.models.common.matching import match

        return Kernels(P.ms_deform_attn, P.pairwise_oks, P.oks_loss, match, P.emsda)
    if ops == "reference":
        from posetr.ops import reference as R

        return Kernels(R.ms_deform_attn_pytorch, R.pairwise_oks_pytorch, R.oks_loss_pytorch, _match_scipy,
                       R.emsda_pytorch)
    raise ValueError(f"ops must be 'posetr' or 'reference', got {ops!r}")
