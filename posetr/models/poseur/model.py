"""Poseur (Mao et al., "Poseur: Direct Human Pose Regression with Transformers", ECCV 2022): a top-down
regressor, as the official ``Poseur`` detector with ``Poseur_noise_sample`` head and ``PoseurTransformer``
(aim-uofa/Poseur; spec ../shared/specs/poseur.md section 1).

Person crop -> backbone (4 levels, strides 4-32) -> neck (1x1 conv without bias + GroupNorm(32) to C per
level, no activation) -> memory = flattened features + sine PE (offset -0.5, [y, x]) + learned level
embedding (zero encoder layers) -> coarse branch on the pooled stride-32 level (mu_f = W g / |g| + b without
sigmoid, sigma_f = sigmoid(W' g + b')) -> keypoint encoder (query content = LayerNorm(Linear(2C -> C)
[PE(r), PE(clip(r, 0, 1))]) of the references r = mu_f detached, plus the noisy groups in training; query
position = a learned per-keypoint embedding) -> query decoder with EMSDA (``decoder.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from posetr.models.common.backbone import build_resnet
from posetr.models.common.deformable_decoder import DeformableDecoderLayer
from posetr.models.common.deformable_encoder import flatten_levels
from posetr.models.common.hrnet import build_hrnet
from posetr.models.common.kernels import get_kernels
from posetr.models.common.mobilenet_v2 import build_mobilenet_v2
from posetr.models.common.position_encoding import (LevelEmbedding, level_masks_and_embeddings,
                                                    proposal_position_encoding, sine_position_encoding)
from posetr.models.poseur.config import LEVEL_SETS
from posetr.models.poseur.decoder import PoseurDecoder, emsda_attention
from posetr.models.poseur.noisy_queries import noisy_references
from posetr.ops import EMSDeformAttn

class NormLinear(nn.Module):
    """The official ``Linear_with_norm``: ``x @ W.T / |x|_2 (+ b)`` (``norm``), parameters ``linear.*``.

    Forward: Float[B, in_features] -> Float[B, out_features].
    """

    def __init__(self, in_features: int, out_features: int, *, norm: bool = True):
        super().__init__()
        self.norm = norm
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.linear.weight.t()
        if self.norm:
            y = y / x.norm(dim=-1, keepdim=True)
        return y + self.linear.bias


class Neck(nn.Module):
    """mmdet's ``ChannelMapper(kernel_size=1, norm=GN(32), act=None)``: per level Conv2d 1x1 without bias
    (``convs.{i}.conv``, Xavier-uniform) and GroupNorm(32) (``convs.{i}.gn``)."""

    def __init__(self, *, in_channels: list[int], out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList()
        for c in in_channels:
            level = nn.Module()
            level.conv = nn.Conv2d(c, out_channels, 1, bias=False)
            level.gn = nn.GroupNorm(32, out_channels)
            nn.init.xavier_uniform_(level.conv.weight)
            self.convs.append(level)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [level.gn(level.conv(f)) for level, f in zip(self.convs, features)]


class Poseur(nn.Module):
    """Poseur on person crops.

    Forward:
        images Float[B, 3, H, W] (normalised RGB crops), masks Bool[B, H, W] (True at padding; all False for
        crops) -> dict, coordinates (x, y) normalised to the crop ([0, 1] inside it), sigmas in (0, 1):

        - ``pred_keypoints`` Float[B, K, 2], ``pred_sigma`` Float[B, K, 2]: the last decoder layer's
          clean queries (the prediction; keypoint score mean(1 - sigma)).
        - ``coarse_keypoints`` Float[B, K, 2], ``coarse_sigma`` Float[B, K, 2]: the coarse FC's mu_f, sigma_f.
        - ``dec_keypoints`` Float[N_d, B, G K, 2], ``dec_sigma`` Float[N_d, B, G K, 2]: every decoder
          layer's queries, the clean group first (G = 1 in eval mode, 1 + num_noise_groups in training).
        - ``input_size`` (H, W): the crop size in pixels.
    """

    def __init__(self, *, backbone, decoder: PoseurDecoder, num_keypoints: int, d_model: int,
                 num_noise_groups: int, num_noise_points: int, noise_sigma: float):
        super().__init__()
        self.backbone = backbone
        self.neck = Neck(in_channels=list(backbone.num_channels), out_channels=d_model)
        self.position_encoding = sine_position_encoding(d_model=d_model, offset=-0.5)
        self.level_embed = LevelEmbedding(num_levels=len(backbone.num_channels), d_model=d_model)
        self.fc_coord = NormLinear(d_model, 2 * num_keypoints)
        self.fc_sigma = NormLinear(d_model, 2 * num_keypoints, norm=False)
        self.query_proj = nn.Linear(2 * d_model, d_model)  # the official pos_trans
        self.query_norm = nn.LayerNorm(d_model)  # pos_trans_norm
        self.query_pos = nn.Embedding(num_keypoints, d_model)  # the class embedding Q_c
        self.decoder = decoder
        self.num_keypoints = num_keypoints
        self.d_model = d_model
        self.num_noise_groups = num_noise_groups
        self.num_noise_points = num_noise_points
        self.noise_sigma = noise_sigma

    def encode(self, images: torch.Tensor, masks: torch.Tensor):
        """Memory Float[B, S, C], spatial_shapes Long[L, 2], level_start_index Long[L] and the pooled
        stride-32 neck features Float[B, C]."""
        srcs = self.neck(self.backbone(images))
        level_masks, pos_maps = level_masks_and_embeddings(srcs, masks, position_encoding=self.position_encoding,
                                                           level_embed=self.level_embed)
        src, _, pos, shapes, starts, _ = flatten_levels(srcs, level_masks, pos_maps)
        return src + pos, shapes, starts, srcs[-1].mean(dim=(2, 3))

    def queries(self, reference: torch.Tensor) -> torch.Tensor:
        """Query content Float[B, Q, C] of references Float[B, Q, 2] (the keypoint encoder)."""
        num_feats = self.d_model // 2
        embedded = torch.cat([proposal_position_encoding(reference, num_feats=num_feats),
                              proposal_position_encoding(reference.clamp(0, 1), num_feats=num_feats)], dim=-1)
        return self.query_norm(self.query_proj(embedded))

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        B, K, C = images.shape[0], self.num_keypoints, self.d_model
        memory, shapes, starts, pooled = self.encode(images, masks)
        coarse = self.fc_coord(pooled).view(B, K, 2)
        coarse_sigma = self.fc_sigma(pooled).sigmoid().view(B, K, 2)
        reference = coarse.detach()
        if self.training and self.num_noise_groups > 0:
            reference = noisy_references(reference, num_groups=self.num_noise_groups,
                                         num_points=self.num_noise_points, sigma=self.noise_sigma)
        groups = reference.shape[1] // K
        query = self.queries(reference).view(B, groups, K, C)
        mu, sigma = self.decoder(query, self.query_pos.weight, reference, memory, shapes, starts)
        return {"pred_keypoints": mu[-1][:, :K], "pred_sigma": sigma[-1][:, :K], "coarse_keypoints": coarse,
                "coarse_sigma": coarse_sigma, "dec_keypoints": mu, "dec_sigma": sigma,
                "input_size": tuple(images.shape[-2:])}


def _xavier_matrices(modules) -> None:
    """Xavier-uniform (gain 1) on every >= 2-D parameter of ``modules`` (``PoseurTransformer.init_weights``)."""
    for module in modules:
        for p in module.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)


def _uniform_xavier_(tensor: torch.Tensor, *, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(tensor, -bound, bound)


def init_official(model: Poseur) -> None:
    """The official initial state (spec section 2.3): ``PoseurTransformer.init_weights`` applies
    Xavier-uniform (gain 1) to every >= 2-D parameter of the transformer (decoder layers, keypoint encoder,
    class embedding, the coarse linears) and misses EMSDA's own re-initialisation, so EMSDA keeps only its
    offset-bias direction grid and zero attention / output biases; its value projection, stored officially as
    a (M C, C / M) table and an (M, C / M) bias table, gets Xavier bounds of those shapes; the level
    embedding is N(0, 1). Then the head's coordinate and output branches get Xavier gain 0.01 on their
    Linear weights, the sigma branches' last Linear gain 0.01 (the others PyTorch's default)."""
    _xavier_matrices([model.query_proj, model.query_pos, model.fc_coord, model.fc_sigma, *model.decoder.layers])
    for m in model.decoder.layers.modules():
        if isinstance(m, EMSDeformAttn):
            heads, channels = m.num_heads, m.embed_dims
            with torch.no_grad():
                _uniform_xavier_(m.value_proj.weight, fan_in=channels // heads, fan_out=heads * channels)
                _uniform_xavier_(m.value_proj.bias, fan_in=channels // heads, fan_out=heads)
    _init_branches(model)


def init_deformable_detr(model: Poseur) -> None:
    """The intended initialisation (``init="deformable_detr"``): Xavier-uniform on the transformer's >= 2-D
    parameters except EMSDA, which keeps Deformable DETR's (zero offset and attention weights, Xavier
    projections, zero biases); the coarse linears at gain 0.01 (``Linear_with_norm``'s own init); the branches
    as :func:`init_official`."""
    _xavier_matrices([model.query_proj, model.query_pos, *model.decoder.layers])
    for m in model.decoder.layers.modules():
        if isinstance(m, EMSDeformAttn):
            m.init_weights()
    for linear in (model.fc_coord.linear, model.fc_sigma.linear):
        nn.init.xavier_uniform_(linear.weight, gain=0.01)
    _init_branches(model)


def _init_branches(model: Poseur) -> None:
    for branches in (model.decoder.coord_branches, model.decoder.coord_output_branches):
        for m in branches.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)
    for sigma_branch in model.decoder.sigma_branches:
        nn.init.xavier_uniform_(sigma_branch[-1].weight, gain=0.01)


def build_backbone(cfg):
    """ResNet (the stages of ``cfg.levels``), HRNet (4 branches) or MobileNetV2 (4 outputs) of ``cfg``
    (PoseurConfig), every stage trained (mmpose ``frozen_stages=-1``)."""
    if cfg.backbone == "hrnet":
        return build_hrnet(width=cfg.backbone_width, pretrained=cfg.pretrained_backbone, norm=cfg.backbone_norm)
    if cfg.backbone == "mobilenetv2":
        return build_mobilenet_v2(pretrained=cfg.pretrained_backbone, norm=cfg.backbone_norm)
    return build_resnet(depth=cfg.backbone_depth, width=cfg.backbone_width, norm=cfg.backbone_norm,
                        pretrained=cfg.pretrained_backbone, out_indices=LEVEL_SETS[cfg.levels], train_stem=True)


def build_poseur(cfg) -> Poseur:
    """Poseur from ``cfg`` (PoseurConfig), EMSDA on ``get_kernels(cfg.ops).emsda``, initialised by
    ``cfg.init``."""
    backbone = build_backbone(cfg)
    layer = DeformableDecoderLayer(
        d_model=cfg.d_model, n_levels=len(backbone.num_channels), n_heads=cfg.n_heads, n_points=cfg.n_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=get_kernels(cfg.ops).emsda,
        attention=emsda_attention,
    )
    decoder = PoseurDecoder(layer=layer, num_layers=cfg.dec_layers, d_model=cfg.d_model, num_reg_fcs=cfg.num_reg_fcs)
    model = Poseur(backbone=backbone, decoder=decoder, num_keypoints=cfg.num_keypoints, d_model=cfg.d_model,
                   num_noise_groups=cfg.num_noise_groups, num_noise_points=cfg.num_noise_points,
                   noise_sigma=cfg.noise_sigma)
    (init_official if cfg.init == "official" else init_deformable_detr)(model)
    return model
