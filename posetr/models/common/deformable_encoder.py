"""Deformable DETR's encoder: post-norm layers of multi-scale deformable self-attention and an FFN.

Also the helpers the decoders share: flattening multi-scale maps, per-level valid ratios (unpadded
fraction of each map) and the encoder's reference points (pixel centres of every level).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posetr.ops import MSDeformAttn


class FFN(nn.Module):
    """Linear-ReLU-dropout-Linear-dropout with a residual and LayerNorm (post-norm)."""

    def __init__(self, *, d_model: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x):
        return self.norm(x + self.dropout2(self.linear2(self.dropout1(F.relu(self.linear1(x))))))


class DeformableEncoderLayer(nn.Module):
    """Self-attention with MSDA over all levels, then an FFN (Deformable DETR encoder layer).

    Forward: src Float[B, S, C], pos Float[B, S, C], reference_points Float[B, S, L, 2], spatial_shapes,
    level_start_index, padding_mask Bool[B, S] -> Float[B, S, C].
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int, dim_feedforward: int,
                 dropout: float, attn_fn: Callable):
        super().__init__()
        self.self_attn = MSDeformAttn(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points, attn_fn=attn_fn
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask):
        out = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        return self.ffn(self.norm(src + self.dropout(out)))


class DeformableEncoder(nn.Module):
    """``num_layers`` copies of :class:`DeformableEncoderLayer`; forward as the layer's, with
    ``valid_ratios`` Float[B, L, 2] instead of reference points (computed here)."""

    def __init__(self, *, layer: DeformableEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src, pos, spatial_shapes, level_start_index, valid_ratios, padding_mask):
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return src


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """Unpadded fraction (w, h) of a map: mask Bool[B, H, W] (True = padding) -> Float[B, 2]."""
    _, H, W = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float() / H
    valid_w = (~mask[:, 0, :]).sum(1).float() / W
    return torch.stack([valid_w, valid_h], -1)


def encoder_reference_points(spatial_shapes: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Pixel centres of every level, normalised to the valid region and mapped onto every level:
    spatial_shapes Long[L, 2], ratios Float[B, L, 2] -> Float[B, S, L, 2] (padded-map coordinates)."""
    points = []
    for level, (H, W) in enumerate(spatial_shapes.tolist()):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, H - 0.5, H, dtype=torch.float32, device=ratios.device),
            torch.linspace(0.5, W - 0.5, W, dtype=torch.float32, device=ratios.device),
            indexing="ij",
        )
        ys = ys.reshape(-1)[None] / (ratios[:, None, level, 1] * H)
        xs = xs.reshape(-1)[None] / (ratios[:, None, level, 0] * W)
        points.append(torch.stack((xs, ys), -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


def flatten_levels(features, masks, pos_embeds):
    """Flatten lists of per-level maps Float[B, C, H, W], Bool[B, H, W] and Float[B, C, H, W] into
    src Float[B, S, C], mask Bool[B, S], pos Float[B, S, C], spatial_shapes Long[L, 2],
    level_start_index Long[L] and valid_ratios Float[B, L, 2]."""
    shapes = [f.shape[-2:] for f in features]
    src = torch.cat([f.flatten(2).transpose(1, 2) for f in features], 1)
    mask = torch.cat([m.flatten(1) for m in masks], 1)
    pos = torch.cat([p.flatten(2).transpose(1, 2) for p in pos_embeds], 1)
    spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src.device)
    level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
    ratios = torch.stack([valid_ratios(m) for m in masks], 1)
    return src, mask, pos, spatial_shapes, level_start_index, ratios
