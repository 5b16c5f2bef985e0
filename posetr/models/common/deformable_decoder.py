"""Deformable DETR's decoder layer and the refinement MLP of its iterative refinement.

``DeformableDecoderLayer`` is Deformable DETR's ``DeformableTransformerDecoderLayer`` (post-norm:
self-attention among queries, multi-scale deformable cross-attention around each query's reference
point, FFN), with the self-attention optional (TFPose's q2q ablation), run within groups of queries
(PETR's joint decoder: the K joints of one person; TFPose: the K keypoints of one crop; PETR's pose
decoder: all queries of an image) and the cross-attention's class a choice (PETR's pose decoder: its
pose-deformable attention). ``keypoint_mlp`` is the
coordinate MLP whose output is added to ``inverse_sigmoid`` of the reference (Deformable DETR's
``bbox_embed`` with its last layer zeroed).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from posetr.models.common.deformable_encoder import FFN
from posetr.ops import MSDeformAttn


def keypoint_mlp(*, d_model: int, hidden: int, num_hidden: int, out: int) -> nn.Sequential:
    """Linear(d_model, hidden)-ReLU, ``num_hidden`` x (Linear(hidden, hidden)-ReLU), Linear(hidden, out);
    the last layer starts at zero so the first prediction equals the reference."""
    layers = [nn.Linear(d_model, hidden), nn.ReLU()]
    for _ in range(num_hidden):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, out))
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class DeformableDecoderLayer(nn.Module):
    """Self-attention within each group of K queries (optional), MSDA cross-attention into the memory
    around each query's reference point, FFN; each followed by dropout, residual and LayerNorm.

    Args:
        d_model, n_levels, n_heads, n_points, dim_feedforward, dropout: sizes as in Deformable DETR.
        attn_fn: the MSDA kernel (``posetr.models.common.kernels.Kernels.ms_deform_attn``).
        self_attention (bool): False drops the self-attention (and its norm): TFPose's "w/o q2q".
        attention (type): the cross-attention, :class:`posetr.ops.MSDeformAttn` or a subclass (built with
            d_model, n_levels, n_heads, n_points, attn_fn).

    Forward: tgt Float[B, ..., K, C] (groups of K queries), query_pos Float[K, C] (or broadcastable to
    tgt), reference_points Float[B, N, L, 2] with N = the number of queries of one image (normalised,
    padded-map coordinates; ``attention``'s layout, e.g. Float[B, N, L, K, 2] for PETR's pose
    attention), memory Float[B, S, C], spatial_shapes Long[L, 2], level_start_index Long[L],
    padding_mask Bool[B, S] -> Float shaped like tgt.
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int, dim_feedforward: int,
                 dropout: float, attn_fn: Callable, self_attention: bool = True, attention: type = MSDeformAttn):
        super().__init__()
        if self_attention:
            self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
            self.dropout1 = nn.Dropout(dropout)
            self.norm1 = nn.LayerNorm(d_model)
        else:
            self.self_attn = None
        self.cross_attn = attention(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points, attn_fn=attn_fn
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index, padding_mask):
        shape = tgt.shape
        B, K, C = shape[0], shape[-2], shape[-1]
        flat = tgt.reshape(-1, K, C)
        if self.self_attn is not None:
            q = flat + query_pos
            flat = self.norm1(flat + self.dropout1(self.self_attn(q, q, flat, need_weights=False)[0]))
        query = (flat + query_pos).view(B, -1, C)
        out = self.cross_attn(query, reference_points, memory, spatial_shapes, level_start_index, padding_mask)
        flat = self.norm2(flat.view(B, -1, C) + self.dropout2(out))
        return self.ffn(flat).view(shape)
