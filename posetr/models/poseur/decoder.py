"""Poseur's query decoder (``DetrTransformerDecoderLayer_grouped`` and the head's per-layer branches,
spec sections 1.6-1.7).

Each layer is post-norm: self-attention within each group of K queries (q = k = x + class embedding,
dropout on the probabilities and the residual) -> LayerNorm -> EMSDA cross-attention into the memory
around each query's reference (the fused op, ``posetr.ops.EMSDeformAttn``) -> LayerNorm -> FFN -> LayerNorm
(``DeformableDecoderLayer`` with EMSDA as its cross-attention). After layer l, with state h_l and input
reference r_l:

    r_{l+1} = sigmoid(F_l(h_l) + inverse_sigmoid(r_l))     (not detached between layers [C])
    mu_l    = r_{l+1} + D_l(h_l)                            (``fc_coord_output_branches``)
    sigma_l = sigmoid(S_l(h_l))                             (no non-linearity inside S_l [C])

F_l, D_l: Linear(C, C)-ReLU-Linear(C, C)-ReLU-Linear(C, 2); S_l: Linear(C, C)-Linear(C, C)-Linear(C, 2);
unshared per layer. The paper's "a linear layer" update is the code's 3-layer MLP.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from posetr.models.common.deformable_decoder import DeformableDecoderLayer
from posetr.models.common.functional import inverse_sigmoid
from posetr.ops import EMSDeformAttn


def emsda_attention(*, d_model: int, n_levels: int, n_heads: int, n_points: int, attn_fn: Callable) -> EMSDeformAttn:
    """EMSDA built with ``DeformableDecoderLayer``'s cross-attention arguments (``attn_fn``: the EMSDA
    function, ``posetr.models.common.kernels.Kernels.emsda``)."""
    return EMSDeformAttn(embed_dims=d_model, num_heads=n_heads, num_levels=n_levels, num_points=n_points,
                         attn_fn=attn_fn)


def branch(*, d_model: int, num_hidden: int, relu: bool) -> nn.Sequential:
    """``num_hidden`` x Linear(d_model, d_model) (each followed by ReLU when ``relu``), then Linear(d_model, 2)."""
    layers: list[nn.Module] = []
    for _ in range(num_hidden):
        layers.append(nn.Linear(d_model, d_model))
        if relu:
            layers.append(nn.ReLU())
    layers.append(nn.Linear(d_model, 2))
    return nn.Sequential(*layers)


class PoseurDecoder(nn.Module):
    """N_d decoder layers with their coordinate, output and sigma branches.

    Forward: query Float[B, G, K, C] (content), query_pos Float[K, C] (class embedding), reference Float[B,
    G K, 2] (layer 0's reference, normalised, possibly outside [0, 1]), memory Float[B, S, C],
    spatial_shapes Long[L, 2], level_start_index Long[L] -> (mu Float[N_d, B, G K, 2], sigma Float[N_d, B,
    G K, 2]): every layer's keypoints (normalised crop coordinates) and scales in (0, 1).
    """

    def __init__(self, *, layer: DeformableDecoderLayer, num_layers: int, d_model: int, num_reg_fcs: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.coord_branches = nn.ModuleList(branch(d_model=d_model, num_hidden=num_reg_fcs, relu=True)
                                            for _ in range(num_layers))
        self.coord_output_branches = nn.ModuleList(branch(d_model=d_model, num_hidden=num_reg_fcs, relu=True)
                                                   for _ in range(num_layers))
        self.sigma_branches = nn.ModuleList(branch(d_model=d_model, num_hidden=num_reg_fcs, relu=False)
                                            for _ in range(num_layers))

    def forward(self, query, query_pos, reference, memory, spatial_shapes, level_start_index):
        mus, sigmas = [], []
        for l, layer in enumerate(self.layers):
            # one reference for every level (valid ratios are 1): EMSDeformAttn takes [B, Q, 2]
            query = layer(query, query_pos, reference, memory, spatial_shapes, level_start_index, None)
            state = query.flatten(1, 2)  # [B, G K, C]
            reference = (self.coord_branches[l](state) + inverse_sigmoid(reference)).sigmoid()
            mus.append(reference + self.coord_output_branches[l](state))
            sigmas.append(self.sigma_branches[l](state).sigmoid())
        return torch.stack(mus), torch.stack(sigmas)
