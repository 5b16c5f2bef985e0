"""PETR's joint decoder: K joint queries per person refine that person's keypoints one by one.

opera ``PETRTransformer.forward_refine`` + ``refine_decoder``: a learned (content, position) embedding per
joint type; each layer runs self-attention among the K joints of one person, multi-scale deformable
cross-attention around the joint's current location (2-D reference, ``enc_points`` points per head and
level) and an FFN; a per-layer MLP predicts ``dP`` with ``P_d = sigmoid(inverse_sigmoid(P_{d-1}) + dP)``,
detached before anchoring the next layer.

All Q persons of an image attend to that image's memory in ONE deformable-attention call (Q * K
queries), so the memory is never replicated per person.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from posetr.models.common.deformable_encoder import FFN
from posetr.models.common.functional import inverse_sigmoid
from posetr.models.petr.pose_decoder import keypoint_mlp
from posetr.ops import MSDeformAttn


class JointDecoderLayer(nn.Module):
    """Forward: tgt Float[B, Q, K, C], query_pos Float[K, C], reference_points Float[B, Q*K, L, 2]
    (padded-map coordinates), memory Float[B, S, C], spatial_shapes, level_start_index, padding_mask
    -> Float[B, Q, K, C]."""

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int, dim_feedforward: int,
                 dropout: float, attn_fn: Callable):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points, attn_fn=attn_fn
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index, padding_mask):
        B, Q, K, C = tgt.shape
        flat = tgt.reshape(B * Q, K, C)
        q = flat + query_pos
        flat = self.norm1(flat + self.dropout1(self.self_attn(q, q, flat, need_weights=False)[0]))
        query = (flat + query_pos).view(B, Q * K, C)
        out = self.cross_attn(query, reference_points, memory, spatial_shapes, level_start_index, padding_mask)
        flat = self.norm2(flat.view(B, Q * K, C) + self.dropout2(out))
        return self.ffn(flat).view(B, Q, K, C)


class JointDecoder(nn.Module):
    """``num_layers`` joint decoder layers with per-layer refinement MLPs (opera ``refine_kpt_branches``).

    Forward: keypoints Float[B, Q, K, 2] (pose decoder output, normalised to the unpadded image; detached
    here), memory Float[B, S, C], spatial_shapes, level_start_index, valid_ratios Float[B, L, 2],
    padding_mask -> list (one per layer) of refined keypoints Float[B, Q, K, 2].
    """

    def __init__(self, *, layer: JointDecoderLayer, num_layers: int, d_model: int, num_keypoints: int,
                 num_kpt_fcs: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.query_embedding = nn.Embedding(num_keypoints, 2 * d_model)
        nn.init.normal_(self.query_embedding.weight)
        self.kpt_heads = nn.ModuleList(
            keypoint_mlp(d_model=d_model, hidden=d_model, num_hidden=num_kpt_fcs - 1, out=2)
            for _ in range(num_layers)
        )

    def forward(self, keypoints, memory, spatial_shapes, level_start_index, valid_ratios, padding_mask):
        B, Q, K, _ = keypoints.shape
        query_pos, content = self.query_embedding.weight.chunk(2, dim=-1)  # [K, C] each
        tgt = content.expand(B, Q, K, content.shape[-1])
        reference = keypoints.detach()
        outputs = []
        for layer, kpt_head in zip(self.layers, self.kpt_heads):
            ref_input = (reference[:, :, :, None] * valid_ratios[:, None, None]).view(B, Q * K, -1, 2)
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes, level_start_index, padding_mask)
            refined = (inverse_sigmoid(reference) + kpt_head(tgt)).sigmoid()
            outputs.append(refined)
            reference = refined.detach()
        return outputs


def build_joint_decoder(cfg, *, attn_fn: Callable) -> JointDecoder:
    """Joint decoder of ``cfg.joint_dec_layers`` layers (``cfg``: PETRConfig)."""
    layer = JointDecoderLayer(
        d_model=cfg.d_model, n_levels=cfg.num_feature_levels, n_heads=cfg.n_heads, n_points=cfg.enc_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn,
    )
    return JointDecoder(layer=layer, num_layers=cfg.joint_dec_layers, d_model=cfg.d_model,
                        num_keypoints=cfg.num_keypoints, num_kpt_fcs=cfg.num_kpt_fcs)
