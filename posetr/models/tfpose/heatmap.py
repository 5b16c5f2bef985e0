"""TFPose's auxiliary heatmap branch (training only): deconvolution head, UDP Gaussian targets, MSE.

Paper (Sec. 3.4, Eq. 6): the memory tokens of C5 are reshaped to M_C5 [c, h/32, w/32], upsampled x8 by 3
deconvolutions "similar to SimpleBaseline" to K heatmaps at stride 4, and compared by MSE with Gaussian
heatmaps made with UDP. The unstated details follow mmpose 0.x:

- head: ``TopdownHeatmapSimpleHead`` (3 x [ConvTranspose2d(4x4, stride 2, padding 1, no bias) -> BN -> ReLU],
  then a 1x1 conv to K; deconv weights N(0, 0.001), BN 1/0, final conv N(0, 0.001) with bias 0);
- targets: ``TopDownGenerateTarget(encoding='UDP', target_type='GaussianHeatMap')`` (``_udp_generate_target``):
  a joint at crop pixel q lands at heatmap pixel mu = q / ((W - 1) / (w - 1)); the Gaussian
  exp(-|p - mu|^2 / (2 sigma^2)) is written in the window |p - round(mu)| <= 3 sigma (round = int(mu + 0.5))
  and zero elsewhere; a joint whose window lies wholly outside the map gets weight 0;
- loss: ``JointsMSELoss(use_target_weight=True)``: mean over batch, joints and pixels of
  (w_k * (pred - target))^2.

Crop pixels come from the contract's normalised keypoints as q = x * (W, H) (posetr/data/crop_geometry.py).
"""
from __future__ import annotations

import torch
from torch import nn


class DeconvHeatmapHead(nn.Module):
    """SimpleBaseline's deconvolution head.

    Args:
        in_channels (int): c of M_C5; channels (int): channels of every deconvolution; num_deconv (int): x2
        upsamplings; num_keypoints (int): K.

    Forward: Float[B, in_channels, h, w] -> Float[B, K, h * 2**num_deconv, w * 2**num_deconv].
    """

    def __init__(self, *, in_channels: int, channels: int, num_keypoints: int, num_deconv: int = 3):
        super().__init__()
        layers = []
        for i in range(num_deconv):
            layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.final_layer(self.deconv_layers(x))


def render_udp_heatmaps(keypoints: torch.Tensor, target_weight: torch.Tensor, *, input_size, heatmap_size,
                        sigma: float):
    """UDP Gaussian heatmaps of normalised crop keypoints (mmpose ``_udp_generate_target``).

    Args:
        keypoints (Float[B, K, 2]): (x, y) normalised to the crop (crop pixel / (W, H)).
        target_weight (Float[B, K]): 1 for a labelled joint inside the crop, else 0.
        input_size ((H, W)): crop size in pixels; heatmap_size ((h, w)): heatmap size.
        sigma (float): Gaussian sigma in heatmap pixels.

    Returns:
        (heatmaps Float[B, K, h, w] in [0, 1], weight Float[B, K]: ``target_weight`` with 0 where the 3-sigma
        window misses the map), both on ``keypoints``' device.
    """
    H, W = input_size
    h, w = heatmap_size
    kpts = keypoints.detach().float()
    size = kpts.new_tensor([W, H])
    stride = (size - 1) / kpts.new_tensor([w - 1, h - 1])
    mu = kpts * size / stride  # [B, K, 2] heatmap pixels
    centre = torch.trunc(mu + 0.5)  # mmpose: int(mu + 0.5)
    radius = 3 * sigma
    lo, hi = centre - radius, centre + radius + 1  # the window [lo, hi)
    inside = (lo[..., 0] < w) & (lo[..., 1] < h) & (hi[..., 0] >= 0) & (hi[..., 1] >= 0)
    weight = target_weight.float() * inside
    xs = torch.arange(w, dtype=kpts.dtype, device=kpts.device)
    ys = torch.arange(h, dtype=kpts.dtype, device=kpts.device)
    gx = torch.exp(-(xs - mu[..., 0, None]) ** 2 / (2 * sigma**2))  # [B, K, w]
    gy = torch.exp(-(ys - mu[..., 1, None]) ** 2 / (2 * sigma**2))  # [B, K, h]
    gx = gx * ((xs >= lo[..., 0, None]) & (xs < hi[..., 0, None]))
    gy = gy * ((ys >= lo[..., 1, None]) & (ys < hi[..., 1, None]))
    heatmaps = gy[..., :, None] * gx[..., None, :] * (weight > 0.5)[..., None, None]
    return heatmaps, weight


def heatmap_mse_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose ``JointsMSELoss(use_target_weight=True)``: mean of (w * (pred - target))^2 over B, K, h, w.

    Args: pred, target Float[B, K, h, w]; weight Float[B, K].
    """
    return ((pred - target) * weight[..., None, None]).pow(2).mean()
