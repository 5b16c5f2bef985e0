"""PETR (Shi et al., "End-to-End Multi-Person Pose Estimation with Transformers", CVPR 2022).

Assembled as in opera's ``PETR`` detector and ``PETRHead``: ResNet C3-C5 mapped to d_model channels plus
one extra stride-64 level; sine + level embeddings; a deformable encoder; two-stage proposals whose top
``num_queries`` seed the pose decoder; a joint decoder refining every person's keypoints; an auxiliary
stride-8 heatmap branch in training. Every deformable attention runs on the kernel chosen by
``PETRConfig.ops``.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.backbone import build_resnet
from posetr.models.common.deformable_encoder import DeformableEncoder, DeformableEncoderLayer, flatten_levels
from posetr.models.common.kernels import get_kernels
from posetr.models.common.position_encoding import LevelEmbedding, level_masks_and_embeddings, sine_position_encoding
from posetr.models.petr.heatmap import build_heatmap_head
from posetr.models.petr.joint_decoder import build_joint_decoder
from posetr.models.petr.pose_decoder import build_pose_decoder
from posetr.models.petr.proposals import build_proposal_head
from posetr.ops import MSDeformAttn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class PETR(nn.Module):
    """PETR on images and padding masks.

    Forward:
        images Float[B, 3, H, W] (normalised RGB, zero-padded bottom/right), masks Bool[B, H, W] (True at
        padding) -> dict:

        - ``pred_logits`` Float[B, Q, 1]: person logits of the last pose decoder layer.
        - ``pred_keypoints`` Float[B, Q, K, 2]: its keypoints, (x, y) normalised to the unpadded image.
        - ``aux_outputs``: list (earlier pose decoder layers) of dicts with the two keys above.
        - ``enc_outputs``: the same two keys for every encoder token (S instead of Q): the proposals.
        - ``joint_outputs``: list (joint decoder layers) of dicts ``{"pred_keypoints": Float[B, Q, K, 2]}``.
        - ``pred_keypoints_refined`` Float[B, Q, K, 2]: the last joint decoder layer's keypoints.
        - training with ``heatmap``: ``pred_heatmap`` Float[B, K, H/8, W/8] logits and ``heatmap_mask``
          Bool[B, H/8, W/8].

        Q = min(num_queries, S) where S is the number of encoder tokens.
    """

    def __init__(self, *, backbone, encoder, proposal_head, pose_decoder, joint_decoder, heatmap_head,
                 position_encoding, d_model: int, num_feature_levels: int, num_queries: int,
                 heatmap_pos_embed: bool = False):
        super().__init__()
        self.heatmap_pos_embed = heatmap_pos_embed
        self.backbone = backbone
        self.position_encoding = position_encoding
        channels = backbone.num_channels
        projections = [nn.Sequential(nn.Conv2d(c, d_model, 1), _group_norm(d_model)) for c in channels]
        in_channels = channels[-1]
        for _ in range(num_feature_levels - len(channels)):
            projections.append(nn.Sequential(nn.Conv2d(in_channels, d_model, 3, 2, 1), _group_norm(d_model)))
            in_channels = d_model
        self.input_proj = nn.ModuleList(projections)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.level_embed = LevelEmbedding(num_levels=num_feature_levels, d_model=d_model)
        self.encoder = encoder
        self.proposal_head = proposal_head
        self.query_embedding = nn.Embedding(num_queries, 2 * d_model)
        self.pose_decoder = pose_decoder
        self.joint_decoder = joint_decoder
        self.heatmap_head = heatmap_head

    def _levels(self, images, masks):
        features = self.backbone(images)
        srcs = [proj(f) for proj, f in zip(self.input_proj, features)]
        for proj in self.input_proj[len(features):]:
            srcs.append(proj(features[-1] if len(srcs) == len(features) else srcs[-1]))
        level_masks, pos = level_masks_and_embeddings(srcs, masks, position_encoding=self.position_encoding,
                                                      level_embed=self.level_embed)
        return srcs, level_masks, pos

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        srcs, level_masks, pos_maps = self._levels(images, masks)
        src, mask, pos, shapes, starts, ratios = flatten_levels(srcs, level_masks, pos_maps)
        memory = self.encoder(src, pos, shapes, starts, ratios, mask)
        enc = self.proposal_head(memory, mask, shapes)
        init = enc["init_keypoints"]
        B, Q = init.shape[:2]
        query_pos, tgt = self.query_embedding.weight[:Q].chunk(2, dim=-1)
        logits, keypoints = self.pose_decoder(
            tgt.expand(B, Q, -1), query_pos.expand(B, Q, -1), init, memory, shapes, starts, ratios, mask
        )
        refined = self.joint_decoder(keypoints[-1], memory, shapes, starts, ratios, mask)
        out = {
            "pred_logits": logits[-1],
            "pred_keypoints": keypoints[-1],
            "aux_outputs": [{"pred_logits": c, "pred_keypoints": k} for c, k in zip(logits[:-1], keypoints[:-1])],
            "enc_outputs": {"pred_logits": enc["pred_logits"], "pred_keypoints": enc["pred_keypoints"]},
            "joint_outputs": [{"pred_keypoints": k} for k in refined],
            "pred_keypoints_refined": refined[-1] if refined else keypoints[-1],
        }
        if self.training and self.heatmap_head is not None:
            H0, W0 = srcs[0].shape[-2:]
            level0 = memory[:, : H0 * W0]
            # opera passes the positional embedding as ``query_pose=`` (a typo the layer ignores): none
            hm_pos = pos[:, : H0 * W0] if self.heatmap_pos_embed else torch.zeros_like(level0)
            out["pred_heatmap"] = self.heatmap_head(level0, hm_pos, level_masks[0])
            out["heatmap_mask"] = level_masks[0]
        return out


TRANSFORMER_INITS = ("xavier", "pytorch")


def xavier_transformer_init(model: PETR) -> None:
    """opera's ``PETRTransformer.init_weights``: Xavier-uniform on every matrix of the transformer (encoder,
    the proposals' Linear, pose decoder layers, joint decoder layers, heatmap encoder layer: FFNs, MHA in/out
    projections, ...), then every deformable attention re-initialised as its own (Deformable DETR / mmcv;
    pose attention with zero offsets). Biases, LayerNorms, the backbone, the neck, the embeddings and the
    heads (class / keypoint branches, heatmap Linear) keep their own initialisation, as in opera."""
    parts = [model.encoder, model.proposal_head.output, model.pose_decoder.layers, model.joint_decoder.layers]
    if model.heatmap_head is not None:
        parts.append(model.heatmap_head.encoder)
    for part in parts:
        for p in part.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
    for part in parts:
        for m in part.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()


def build_petr(cfg) -> PETR:
    """PETR from ``cfg`` (PETRConfig), every deformable attention on ``get_kernels(cfg.ops)``, initialised as
    ``cfg.transformer_init`` (:func:`xavier_transformer_init` or PyTorch's defaults).

    Raises:
        ValueError: unknown ``cfg.transformer_init``.
    """
    if cfg.transformer_init not in TRANSFORMER_INITS:
        raise ValueError(f"transformer_init must be one of {TRANSFORMER_INITS}, got {cfg.transformer_init!r}")
    attn_fn = get_kernels(cfg.ops).ms_deform_attn
    # built in this order (the order of the random initialisation)
    backbone = build_resnet(depth=cfg.backbone_depth, width=cfg.backbone_width, norm=cfg.backbone_norm,
                            pretrained=cfg.pretrained_backbone)
    encoder_layer = DeformableEncoderLayer(
        d_model=cfg.d_model, n_levels=cfg.num_feature_levels, n_heads=cfg.n_heads, n_points=cfg.enc_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn,
    )
    model = PETR(
        backbone=backbone,
        encoder=DeformableEncoder(layer=encoder_layer, num_layers=cfg.enc_layers),
        proposal_head=build_proposal_head(cfg),
        pose_decoder=build_pose_decoder(cfg, attn_fn=attn_fn),
        joint_decoder=build_joint_decoder(cfg, attn_fn=attn_fn),
        heatmap_head=build_heatmap_head(cfg, attn_fn=attn_fn) if cfg.heatmap else None,
        position_encoding=sine_position_encoding(d_model=cfg.d_model, offset=-0.5),
        d_model=cfg.d_model,
        num_feature_levels=cfg.num_feature_levels,
        num_queries=cfg.num_queries,
        heatmap_pos_embed=cfg.heatmap_pos_embed,
    )
    if cfg.transformer_init == "xavier":
        xavier_transformer_init(model)
    return model
