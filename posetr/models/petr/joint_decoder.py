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

from torch import nn

from posetr.models.common.deformable_decoder import DeformableDecoderLayer, keypoint_mlp
from posetr.models.common.functional import inverse_sigmoid


class JointDecoder(nn.Module):
    """``num_layers`` joint decoder layers with per-layer refinement MLPs (opera ``refine_kpt_branches``).

    Forward: keypoints Float[B, Q, K, 2] (pose decoder output, normalised to the unpadded image; detached
    here), memory Float[B, S, C], spatial_shapes, level_start_index, valid_ratios Float[B, L, 2],
    padding_mask -> list (one per layer) of refined keypoints Float[B, Q, K, 2].
    """

    def __init__(self, *, layer: DeformableDecoderLayer, num_layers: int, d_model: int, num_keypoints: int,
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
    layer = DeformableDecoderLayer(
        d_model=cfg.d_model, n_levels=cfg.num_feature_levels, n_heads=cfg.n_heads, n_points=cfg.enc_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn,
    )
    return JointDecoder(layer=layer, num_layers=cfg.joint_dec_layers, d_model=cfg.d_model,
                        num_keypoints=cfg.num_keypoints, num_kpt_fcs=cfg.num_kpt_fcs)
