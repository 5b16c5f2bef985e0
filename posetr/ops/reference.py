"""Pure-PyTorch reference implementations (the oracles every kernel is tested against).

They are written for clarity, not speed, and double as the fallback when the
compiled extension is absent.
"""
import torch
import torch.nn.functional as F


def ms_deform_attn_pytorch(
    value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step=64
):
    """Multi-scale deformable attention with ``F.grid_sample`` (Deformable DETR's
    ``ms_deform_attn_core_pytorch``).

    Args:
        value (Tensor[N, S, M, D]): per-head values of all levels, flattened level by level.
        value_spatial_shapes (Tensor[L, 2], int64): (H, W) of each level, S = sum(H * W).
        value_level_start_index (Tensor[L], int64): offset of each level in S (unused here).
        sampling_locations (Tensor[N, Lq, M, L, P, 2]): normalised (x, y) in [0, 1];
            pixel coordinate x * W - 0.5, outside samples read zeros.
        attention_weights (Tensor[N, Lq, M, L, P]): weights of the samples (already softmaxed).
        im2col_step (int): accepted for signature compatibility, unused.

    Returns:
        Tensor[N, Lq, M * D]: the attended values, in the dtype of ``value``. Mixed dtypes
        (a float16 value with float32 locations) are computed in the widest of the three, as
        the kernels keep float32 locations in float32.
    """
    del value_level_start_index, im2col_step
    out_dtype = value.dtype
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    value, sampling_locations, attention_weights = (t.to(dtype) for t in (value, sampling_locations, attention_weights))
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in value_spatial_shapes.tolist()]
    value_list = value.split([h * w for h, w in shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        value_l = value_list[level].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid_l = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(N, M * D, Lq)
    return output.transpose(1, 2).contiguous().to(out_dtype)


def emsda_pytorch(
    value,
    value_spatial_shapes,
    value_level_start_index,
    sampling_locations,
    attention_weights,
    value_proj_weight,
    value_proj_bias,
    im2col_step=64,
):
    """Poseur's efficient multi-scale deformable attention the way Poseur computes it
    (``MultiScaleDeformableAttention_post_value``): repeat the un-projected value once per
    head, run MSDA with D = C, then project each head's sampled C-vector with its own weight.

    Args:
        value (Tensor[N, S, C]): un-projected features of all levels, flattened level by level.
        value_spatial_shapes, value_level_start_index, sampling_locations (Tensor[N, Lq, M, L, P, 2]),
        attention_weights (Tensor[N, Lq, M, L, P]), im2col_step: as :func:`ms_deform_attn_pytorch`.
        value_proj_weight (Tensor[M, C, D]): per-head projection (D = C // M in Poseur).
        value_proj_bias (Tensor[M, D]): per-head bias.

    Returns:
        Tensor[N, Lq, M * D]: ``sampled[n, q, m] @ value_proj_weight[m] + value_proj_bias[m]``,
        heads concatenated.
    """
    N, S, C = value.shape
    _, Lq, M = sampling_locations.shape[:3]
    repeated = value[:, :, None, :].repeat(1, 1, M, 1)
    sampled = ms_deform_attn_pytorch(
        repeated, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    ).view(N, Lq, M, C)
    output = torch.einsum("nqmc,mcd->nqmd", sampled, value_proj_weight) + value_proj_bias
    return output.reshape(N, Lq, -1)


# pycocotools' eps in COCOeval.computeOks, np.spacing(1).
OKS_AREA_EPS = 2.220446049250313e-16


def pairwise_oks_pytorch(pred, gt, visible, area, sigmas):
    """OKS of every (prediction, person) pair with broadcast PyTorch ops (pycocotools ``computeOks``).

    Args:
        pred (Tensor[..., N, K, 2]): predicted keypoints, pixels.
        gt (Tensor[..., M, K, 2]): ground-truth keypoints, pixels.
        visible (Tensor[..., M, K], bool): True where the ground-truth keypoint is labelled (v > 0).
        area (Tensor[..., M]): person areas, pixels^2.
        sigmas (Tensor[K]): per-keypoint OKS sigmas.

    Returns:
        Tensor[..., N, M]: mean over labelled keypoints of ``exp(-d^2 / ((2 sigma)^2 (area + eps) 2))``;
        0 for a person with no labelled keypoint. As in pycocotools (``e[vg > 0]``) the other
        keypoints take no part: their coordinates, NaN included, change neither the OKS nor its gradient.
    """
    denom = (2 * sigmas).pow(2) * (area.unsqueeze(-1) + OKS_AREA_EPS) * 2  # [..., M, K]
    return _mean_labelled_terms(pred.unsqueeze(-3) - gt.unsqueeze(-4), denom.unsqueeze(-3), visible.unsqueeze(-3))


def _mean_labelled_terms(diff, denom, labelled):
    """OKS from keypoint offsets diff [..., K, 2] (pixels), denominators [..., K] and labels [..., K]:
    the mean of exp(-d^2 / denom) over labelled keypoints (0 without one). Unlabelled offsets are
    replaced before use, so that they reach neither the value nor the gradient."""
    d2 = torch.where(labelled.unsqueeze(-1), diff, 0.0).pow(2).sum(-1)
    total = torch.where(labelled, torch.exp(-d2 / denom), 0.0).sum(-1)
    count = labelled.sum(-1)
    return torch.where(count > 0, total / count.clamp(min=1), 0.0)


def oks_pytorch(pred, gt, visible, area, sigmas):
    """OKS of matched pairs (``pred[p]`` against ``gt[p]``): pred, gt Tensor[P, K, 2], visible Tensor[P, K],
    area Tensor[P] -> Tensor[P]. Same formula, zero-label rule and unlabelled keypoints as
    :func:`pairwise_oks_pytorch`; a NaN in a labelled keypoint makes its pair's OKS and gradient NaN."""
    denom = (2 * sigmas).pow(2) * (area.unsqueeze(-1) + OKS_AREA_EPS) * 2
    return _mean_labelled_terms(pred - gt, denom, visible)


def oks_loss_pytorch(pred, gt, visible, area, sigmas, mode="log", eps=1e-6, reduction="mean"):
    """OKS loss of matched pairs as opera (PETR) and ED-Pose write it: ``oks.clamp(min=eps)``,
    then ``-log`` (``mode="log"``) or ``1 -`` (``mode="linear"``), reduced by "none", "mean"
    (over pairs; 0 for no pairs) or "sum"."""
    oks = oks_pytorch(pred, gt, visible, area, sigmas).clamp(min=eps)
    loss = -oks.log() if mode == "log" else 1 - oks
    if reduction == "none":
        return loss
    total = loss.sum()
    return total / max(loss.numel(), 1) if reduction == "mean" else total
