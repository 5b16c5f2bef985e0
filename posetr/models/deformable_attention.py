"""Deformable attention modules of PETR on a selectable kernel.

``DeformableAttention`` is Deformable DETR's MSDA module (the parameters and initialisation of
``posetr.ops.MSDeformAttn``) with the kernel passed in, so the same model runs on posetr's op or on the
PyTorch reference. ``PoseDeformableAttention`` is PETR's pose-deformable attention (opera
``MultiScaleDeformablePoseAttention``): P = K points per head and level, point k starting at keypoint k,
offsets scaled by half the extent (max - min) of the query's K keypoints.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posetr.ops import MSDeformAttn


class DeformableAttention(MSDeformAttn):
    """Multi-scale deformable attention on ``attn_fn`` (signature of ``posetr.ops.ms_deform_attn``).

    Args:
        d_model, n_levels, n_heads, n_points: as :class:`posetr.ops.MSDeformAttn`.
        attn_fn (callable): the MSDA kernel.

    Forward: query Float[N, Lq, C], reference_points Float[N, Lq, L, 2] (normalised to the padded map),
    value Float[N, S, C], spatial_shapes Long[L, 2], level_start_index Long[L], padding_mask Bool[N, S]
    -> Float[N, Lq, C].
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int, attn_fn: Callable):
        super().__init__(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
        self.attn_fn = attn_fn

    def _project(self, query, value, padding_mask):
        N, Lq, _ = query.shape
        value = self.value_proj(value)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(N, value.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(N, Lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(N, Lq, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(N, Lq, self.n_heads, self.n_levels, self.n_points)
        return value, offsets, weights

    def _attend(self, value, spatial_shapes, level_start_index, locations, weights):
        # Under bf16/fp16 autocast the projections are low precision but the locations (reference points +
        # offsets) are float32: run the kernel in the widest dtype so locations keep their precision.
        dtype = torch.promote_types(torch.promote_types(value.dtype, locations.dtype), weights.dtype)
        out = self.attn_fn(value.to(dtype), spatial_shapes, level_start_index, locations.to(dtype),
                           weights.to(dtype), self.im2col_step)
        return self.output_proj(out)

    def forward(self, query, reference_points, value, spatial_shapes, level_start_index, padding_mask=None):
        value, offsets, weights = self._project(query, value, padding_mask)
        normalizer = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(offsets.dtype)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return self._attend(value, spatial_shapes, level_start_index, locations, weights)


class PoseDeformableAttention(DeformableAttention):
    """PETR's pose-deformable attention: ``n_points`` = K, one sampling point per keypoint.

    Sampling location of head m, level l, point k: ``ref_k + offset_{m,l,k} * extent * 0.5`` where
    ``extent`` = (max - min) of the query's keypoints in x and y (clamped to >= 1e-4). Offsets start at
    zero, so every point starts at its keypoint.

    Forward: query Float[N, Lq, C], reference_points Float[N, Lq, L, K, 2] (keypoints normalised to the
    padded map, per level), value, spatial_shapes, level_start_index, padding_mask as above
    -> Float[N, Lq, C].
    """

    def _reset_parameters(self):
        super()._reset_parameters()
        nn.init.constant_(self.sampling_offsets.bias, 0.0)

    def forward(self, query, reference_points, value, spatial_shapes, level_start_index, padding_mask=None):
        value, offsets, weights = self._project(query, value, padding_mask)
        lo = reference_points.amin(dim=-2)
        hi = reference_points.amax(dim=-2)
        extent = (hi - lo).clamp(min=1e-4)  # [N, Lq, L, 2]
        locations = reference_points[:, :, None] + offsets * extent[:, :, None, :, None, :] * 0.5
        return self._attend(value, spatial_shapes, level_start_index, locations, weights)
