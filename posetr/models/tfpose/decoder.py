"""TFPose's coarse-to-fine keypoint decoder (paper Sec. 3.3, Fig. 4, Eq. 4).

K learned keypoint queries (one per joint type, so no matching) pass through ND decoder layers
(``DeformableDecoderLayer``: q2q self-attention, p2q deformable cross-attention into the memory around
the current keypoint estimate, FFN). After layer d an MLP on each query predicts the refinement
Delta_d and y_d = sigmoid(inverse_sigmoid(y_{d-1}) + Delta_d) (Eq. 4), from a learned y_0 [P].

Unstated details, from Deformable DETR (``deformable_transformer.py``, iterative box refinement):
the query positional embedding and the query content are the two halves of one learned
``nn.Embedding(K, 2c)`` (N(0, 1)); one unshared 3-layer MLP (c-c-2, last layer zero) per layer; layer d
samples around y_{d-1}, detached between layers (``detach_reference``). y_0 is stored as its inverse
sigmoid, initialised from U(0, 1) coordinates (DAB-DETR's learned anchors), so it stays in (0, 1).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from posetr.models.common.deformable_decoder import DeformableDecoderLayer, keypoint_mlp
from posetr.models.common.functional import inverse_sigmoid


class KeypointDecoder(nn.Module):
    """ND decoder layers with per-layer coordinate MLPs, the learned queries and y_0.

    Forward: memory Float[B, S, C], spatial_shapes Long[L, 2], level_start_index Long[L], valid_ratios
    Float[B, L, 2], padding_mask Bool[B, S] -> Float[ND, B, K, 2]: every layer's keypoints, (x, y)
    normalised to the crop, in (0, 1).
    """

    def __init__(self, *, layer: DeformableDecoderLayer, num_layers: int, d_model: int, num_keypoints: int,
                 coord_head_layers: int, detach_reference: bool):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.query_embedding = nn.Embedding(num_keypoints, 2 * d_model)
        self.initial_logits = nn.Parameter(inverse_sigmoid(torch.rand(num_keypoints, 2)))  # inverse_sigmoid(y_0)
        self.coord_heads = nn.ModuleList(
            keypoint_mlp(d_model=d_model, hidden=d_model, num_hidden=coord_head_layers - 2, out=2)
            for _ in range(num_layers)
        )
        self.detach_reference = detach_reference

    def forward(self, memory, spatial_shapes, level_start_index, valid_ratios, padding_mask):
        B = memory.shape[0]
        query_pos, content = self.query_embedding.weight.chunk(2, dim=-1)  # [K, C] each (Deformable DETR order)
        tgt = content.expand(B, *content.shape)
        reference = self.initial_logits.sigmoid().expand(B, -1, -1)  # y_0
        outputs = []
        for layer, coord_head in zip(self.layers, self.coord_heads):
            ref_input = reference[:, :, None] * valid_ratios[:, None]  # [B, K, L, 2]
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes, level_start_index, padding_mask)
            keypoints = (inverse_sigmoid(reference) + coord_head(tgt)).sigmoid()
            outputs.append(keypoints)
            reference = keypoints.detach() if self.detach_reference else keypoints
        return torch.stack(outputs)
