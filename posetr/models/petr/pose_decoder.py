"""PETR's pose decoder: pose queries refined layer by layer with pose-deformable cross-attention.

Each layer (opera ``PetrTransformerDecoder`` + ``DetrTransformerDecoderLayer``, post-norm):
query self-attention, pose-deformable cross-attention sampling P = K points per head and level around
the query's current keypoints, FFN. After layer d a class head gives the person logit and a keypoint MLP
the update ``P_d = sigmoid(inverse_sigmoid(P_{d-1}) + dP_d)``; ``P_d`` is detached before it anchors
layer d + 1 (Deformable DETR's iterative refinement).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

from torch import nn

from posetr.models.common.deformable_decoder import DeformableDecoderLayer, keypoint_mlp
from posetr.models.common.functional import inverse_sigmoid
from posetr.models.petr.pose_attention import PoseDeformableAttention


def class_head(d_model: int, prior_prob: float = 0.01) -> nn.Linear:
    """Person logit with the focal-loss prior bias -log((1 - p) / p)."""
    head = nn.Linear(d_model, 1)
    nn.init.constant_(head.bias, -math.log((1 - prior_prob) / prior_prob))
    return head


class PoseDecoder(nn.Module):
    """``num_layers`` pose decoder layers, each with its own class head and keypoint MLP.

    Forward: tgt, query_pos Float[B, Q, C], init_keypoints Float[B, Q, K, 2] (normalised to the unpadded
    image, detached), memory Float[B, S, C], spatial_shapes, level_start_index, valid_ratios Float[B, L, 2],
    padding_mask -> (logits list of Float[B, Q, 1], keypoints list of Float[B, Q, K, 2]), one per layer.
    """

    def __init__(self, *, layer: DeformableDecoderLayer, num_layers: int, d_model: int, num_keypoints: int,
                 kpt_hidden: int, num_kpt_fcs: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.class_heads = nn.ModuleList(class_head(d_model) for _ in range(num_layers))
        self.kpt_heads = nn.ModuleList(
            keypoint_mlp(d_model=d_model, hidden=kpt_hidden, num_hidden=num_kpt_fcs, out=2 * num_keypoints)
            for _ in range(num_layers)
        )

    def forward(self, tgt, query_pos, init_keypoints, memory, spatial_shapes, level_start_index, valid_ratios,
                padding_mask):
        B, Q, K, _ = init_keypoints.shape
        reference = init_keypoints
        all_logits, all_keypoints = [], []
        for layer, cls_head, kpt_head in zip(self.layers, self.class_heads, self.kpt_heads):
            ref_input = reference[:, :, None] * valid_ratios[:, None, :, None, :]  # [B, Q, L, K, 2]
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes, level_start_index, padding_mask)
            delta = kpt_head(tgt).view(B, Q, K, 2)
            keypoints = (inverse_sigmoid(reference) + delta).sigmoid()
            all_logits.append(cls_head(tgt))
            all_keypoints.append(keypoints)
            reference = keypoints.detach()
        return all_logits, all_keypoints


def build_pose_decoder(cfg, *, attn_fn: Callable) -> PoseDecoder:
    """Pose decoder of ``cfg.dec_layers`` layers (``cfg``: PETRConfig)."""
    layer = DeformableDecoderLayer(  # self-attention among all queries of an image (tgt [B, Q, C])
        d_model=cfg.d_model, n_levels=cfg.num_feature_levels, n_heads=cfg.n_heads, n_points=cfg.num_keypoints,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn, attention=PoseDeformableAttention,
    )
    return PoseDecoder(layer=layer, num_layers=cfg.dec_layers, d_model=cfg.d_model, num_keypoints=cfg.num_keypoints,
                       kpt_hidden=cfg.kpt_branch_hidden, num_kpt_fcs=cfg.num_kpt_fcs)
