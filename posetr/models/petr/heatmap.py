"""PETR's auxiliary keypoint heatmap branch (training only) and its CornerNet focal loss.

opera ``PETRTransformer`` (``hm_encoder``) + ``PETRHead.loss_heatmap``: the encoder memory of the first
level (stride 8) goes through one more single-level deformable encoder layer and a Linear to K heatmap
logits. Targets are CenterNet Gaussians (``draw_umich_gaussian``) at every labelled keypoint, radius
``gaussian_radius((h, w), 0.9)`` of the person's box at stride 8, floored and clamped to [0, 3]; the loss is
CornerNet's penalty-reduced focal loss (``weighted_neg_loss``) over unpadded pixels.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from posetr.models.common.deformable_encoder import DeformableEncoderLayer, encoder_reference_points


class HeatmapHead(nn.Module):
    """Forward: level-0 memory Float[B, H*W, C], its pos Float[B, H*W, C], mask Bool[B, H, W]
    -> logits Float[B, K, H, W]."""

    def __init__(self, *, d_model: int, n_heads: int, n_points: int, dim_feedforward: int, dropout: float,
                 num_keypoints: int, attn_fn: Callable):
        super().__init__()
        self.encoder = DeformableEncoderLayer(
            d_model=d_model, n_levels=1, n_heads=n_heads, n_points=n_points, dim_feedforward=dim_feedforward,
            dropout=dropout, attn_fn=attn_fn,
        )
        self.fc = nn.Linear(d_model, num_keypoints)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.constant_(self.fc.bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, memory, pos, mask):
        B, H, W = mask.shape
        shapes = torch.tensor([[H, W]], dtype=torch.long, device=memory.device)
        starts = shapes.new_zeros(1)
        ratios = torch.stack([(~mask[:, 0, :]).sum(1) / W, (~mask[:, :, 0]).sum(1) / H], -1).float()[:, None]
        ref = encoder_reference_points(shapes, ratios)
        out = self.encoder(memory, pos, ref, shapes, starts, mask.flatten(1))
        return self.fc(out).transpose(1, 2).reshape(B, -1, H, W)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.9) -> float:
    """CornerNet/CenterNet radius: the smallest of the three quadratic roots for ``min_overlap``."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(max(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(max(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def render_heatmaps(targets, shape, stride: int = 8) -> torch.Tensor:
    """Gaussian targets Float[B, K, H, W] for a heatmap of ``shape`` (B, K, H, W) at ``stride`` pixels.

    Uses each target's ``keypoints`` (normalised), ``boxes`` (cx, cy, w, h normalised) and ``size`` (h, w).
    Overlapping Gaussians take the maximum (CenterNet ``draw_umich_gaussian``).
    """
    B, K, H, W = shape
    heat = torch.zeros(shape)
    for b, t in enumerate(targets):
        h_img, w_img = (float(v) for v in t["size"])
        kpts = t["keypoints"].detach().cpu().float()
        boxes = t["boxes"].detach().cpu().float()
        for g in range(kpts.shape[0]):
            bw, bh = boxes[g, 2].item() * w_img / stride, boxes[g, 3].item() * h_img / stride
            radius = int(min(max(math.floor(gaussian_radius(bh, bw)), 0), 3))
            sigma = (2 * radius + 1) / 6
            ys, xs = torch.meshgrid(torch.arange(-radius, radius + 1.0), torch.arange(-radius, radius + 1.0),
                                    indexing="ij")
            blob = torch.exp(-(xs**2 + ys**2) / (2 * sigma**2))
            for k in range(K):
                if kpts[g, k, 2] <= 0:
                    continue
                x = int(kpts[g, k, 0] * w_img / stride)
                y = int(kpts[g, k, 1] * h_img / stride)
                if not (0 <= x < W and 0 <= y < H):
                    continue
                x0, x1 = max(x - radius, 0), min(x + radius + 1, W)
                y0, y1 = max(y - radius, 0), min(y + radius + 1, H)
                patch = blob[y0 - y + radius:y1 - y + radius, x0 - x + radius:x1 - x + radius]
                heat[b, k, y0:y1, x0:x1] = torch.maximum(heat[b, k, y0:y1, x0:x1], patch)
    return heat


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CornerNet focal loss (alpha 2, beta 4) over unpadded pixels, normalised by the number of peaks.

    Args:
        logits (Float[B, K, H, W]); target (Float[B, K, H, W] in [0, 1], 1 at peaks); mask (Bool[B, H, W],
        True = padding).
    """
    pred = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    valid = (~mask)[:, None].to(pred.dtype)
    pos = target.eq(1).to(pred.dtype) * valid
    neg = (1 - pos) * valid
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * neg).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def build_heatmap_head(cfg, *, attn_fn: Callable) -> HeatmapHead:
    """Heatmap branch of ``cfg`` (PETRConfig)."""
    return HeatmapHead(d_model=cfg.d_model, n_heads=cfg.n_heads, n_points=cfg.enc_points,
                       dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout,
                       num_keypoints=cfg.num_keypoints, attn_fn=attn_fn)
