"""Sine positional embedding of feature maps (DETR / mmdet ``SinePositionalEncoding``) and
learned per-level embeddings (Deformable DETR)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """2-D sine embedding from the padding mask, normalised to the unpadded extent.

    Matches mmdet's ``SinePositionalEncoding(num_feats, normalize=True, offset=-0.5)`` used by opera's PETR:
    cumulative (y, x) counts over valid pixels, shifted by ``offset``, divided by the valid extent, times
    2*pi; channels interleave sin and cos of (pos / temperature ** (2 * (i // 2) / num_feats)).

    Args:
        num_feats (int): channels per axis; the output has 2 * num_feats channels (y first, then x).
        temperature (float): frequency base.
        offset (float): added to the cumulative count before normalising.

    Forward: mask Bool[B, H, W] (True = padding) -> Float[B, 2 * num_feats, H, W].
    """

    def __init__(self, *, num_feats: int = 128, temperature: float = 10000.0, offset: float = -0.5):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.offset = offset
        self.scale = 2 * math.pi
        self.eps = 1e-6

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        not_mask = (~mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
        x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class LevelEmbedding(nn.Module):
    """One learned d_model vector per feature level, added to that level's positional embedding.

    Forward: (pos Float[B, C, H, W] of level ``level``, level int) -> Float[B, C, H, W].
    """

    def __init__(self, *, num_levels: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_levels, d_model))
        nn.init.normal_(self.weight)

    def forward(self, pos: torch.Tensor, level: int) -> torch.Tensor:
        return pos + self.weight[level].view(1, -1, 1, 1)


def sine_position_encoding(*, d_model: int, offset: float) -> PositionEmbeddingSine:
    """Sine embedding with d_model / 2 features per axis (``offset``: -0.5 mmdet/opera, 0.0 DETR).

    Raises:
        ValueError: odd ``d_model``.
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even for the sine position embedding, got {d_model}")
    return PositionEmbeddingSine(num_feats=d_model // 2, offset=offset)


def proposal_position_encoding(points: torch.Tensor, *, num_feats: int = 128,
                               temperature: float = 10000.0) -> torch.Tensor:
    """Sine embedding of normalised points (Deformable DETR's ``get_proposal_pos_embed`` without its
    sigmoid, as Poseur's keypoint encoder uses it on the coarse keypoints).

    Each coordinate v becomes ``v * 2 pi / temperature ** (2 * (j // 2) / num_feats)`` for j < num_feats,
    sine at even j and cosine at odd j; x's channels come first, then y's.

    Args:
        points (Float[..., 2]): (x, y), normalised ([0, 1] inside the crop; other values are embedded as given).

    Returns:
        Float[..., 2 * num_feats].
    """
    dim_t = torch.arange(num_feats, dtype=points.dtype, device=points.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    angles = points[..., None] * (2 * math.pi) / dim_t  # [..., 2, num_feats]
    embedded = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
    return embedded.flatten(-2)


def level_masks_and_embeddings(srcs: list[torch.Tensor], masks: torch.Tensor, *, position_encoding: nn.Module,
                               level_embed: LevelEmbedding) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per feature level: the image padding mask resized to the level (nearest) and its positional embedding
    (``position_encoding`` of that mask plus the level's learned vector), as Deformable DETR builds them.

    Args:
        srcs (list of Float[B, C, H_l, W_l]): the projected levels. masks (Bool[B, H, W]): True at padding.

    Returns:
        (level masks, list of Bool[B, H_l, W_l]; embeddings, list of Float[B, C, H_l, W_l] in each level's dtype).
    """
    level_masks = [F.interpolate(masks[None].float(), size=s.shape[-2:])[0].bool() for s in srcs]
    embeddings = [level_embed(position_encoding(m).to(s.dtype), i) for i, (m, s) in enumerate(zip(level_masks, srcs))]
    return level_masks, embeddings
