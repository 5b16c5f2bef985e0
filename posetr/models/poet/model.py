"""POET (Stoffl, Vidal, Mathis, "End-to-End Trainable Multi-Instance Pose Estimation with Transformers",
arXiv 2103.12115), as in amathislab/poet ``models/poet.py`` and ``models/backbone.py``.

ResNet C5 (FrozenBatchNorm, conv1 + layer1 frozen, optional DC5) -> 1x1 projection to d_model -> DETR's
transformer with the sine position encoding (normalised, 2 pi, no offset) and N learned queries -> on every
decoder layer a class head Linear(d_model, C + 1) and a pose MLP d_model-d_model-d_model-(2 + 3K) with a
sigmoid (centre, then (dx', dy', visibility) per joint; see codec.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posetr.models.common.backbone import build_resnet
from posetr.models.common.position_encoding import sine_position_encoding
from posetr.models.poet.codec import CLASS_HEADS, decode_keypoints, split_prediction
from posetr.models.poet.transformer import Transformer


class MLP(nn.Module):
    """DETR's ``MLP``: ``num_layers`` Linear layers with a ReLU after all but the last."""

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class POET(nn.Module):
    """POET on images and padding masks.

    Forward:
        images Float[B, 3, H, W] (normalised RGB, zero-padded bottom/right), masks Bool[B, H, W] (True at
        padding) -> dict:

        - ``pred_logits`` Float[B, N, C + 1]: class logits of the last decoder layer (the last class is
          no-object; C + 1 = 3 for ``class_head="official"``, 2 for "binary").
        - ``pred_kpts`` Float[B, N, 2 + 3K]: the sigmoid pose vector (official layout, codec.py).
        - ``pred_keypoints`` Float[B, N, K, 2]: its decoded joints, (x, y) normalised to the unpadded image.
        - ``aux_outputs`` (with ``aux_loss``): list of dec_layers - 1 dicts with ``pred_logits`` and
          ``pred_kpts`` of the earlier decoder layers.

        The C5 map has ceil(H / 32) x ceil(W / 32) tokens (ceil(H / 16) x ceil(W / 16) with DC5); the padding
        mask is resized to it with nearest interpolation (DETR).
    """

    def __init__(self, *, backbone, transformer: Transformer, num_queries: int, num_logits: int,
                 num_keypoints: int, aux_loss: bool):
        super().__init__()
        d_model = transformer.d_model
        self.transformer = transformer
        self.class_embed = nn.Linear(d_model, num_logits)
        self.kpt_embed = MLP(input_dim=d_model, hidden_dim=d_model, output_dim=2 + 3 * num_keypoints, num_layers=3)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.input_proj = nn.Conv2d(backbone.num_channels[-1], d_model, kernel_size=1)
        self.backbone = backbone
        self.position_encoding = sine_position_encoding(d_model=d_model, offset=0.0)
        self.aux_loss = aux_loss

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        feature = self.backbone(images)[-1]
        mask = F.interpolate(masks[None].float(), size=feature.shape[-2:]).to(torch.bool)[0]
        pos = self.position_encoding(mask).to(feature.dtype)
        hs = self.transformer(self.input_proj(feature), mask, self.query_embed.weight, pos)
        logits = self.class_embed(hs)
        kpts = self.kpt_embed(hs).sigmoid()
        center, offsets, _ = split_prediction(kpts[-1])
        out = {"pred_logits": logits[-1], "pred_kpts": kpts[-1], "pred_keypoints": decode_keypoints(center, offsets)}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": c, "pred_kpts": k} for c, k in zip(logits[:-1], kpts[:-1])]
        return out


def build_poet(cfg) -> POET:
    """POET from ``cfg`` (POETConfig).

    Raises:
        ValueError: unknown ``class_head``, or invalid transformer sizes.
    """
    if cfg.class_head not in CLASS_HEADS:
        raise ValueError(f"class_head must be one of {sorted(CLASS_HEADS)}, got {cfg.class_head!r}")
    if cfg.num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {cfg.num_queries}")
    # built in the official order: backbone, transformer, then the heads (the order of the random init)
    backbone = build_resnet(depth=cfg.backbone_depth, width=cfg.backbone_width, norm=cfg.backbone_norm,
                            pretrained=cfg.pretrained_backbone, out_indices=(4,), dilate_last=cfg.dilation,
                            train_stem=cfg.train_stem)
    transformer = Transformer(d_model=cfg.d_model, n_heads=cfg.n_heads, enc_layers=cfg.enc_layers,
                              dec_layers=cfg.dec_layers, dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout)
    return POET(backbone=backbone, transformer=transformer, num_queries=cfg.num_queries,
                num_logits=CLASS_HEADS[cfg.class_head], num_keypoints=cfg.num_keypoints, aux_loss=cfg.aux_loss)
