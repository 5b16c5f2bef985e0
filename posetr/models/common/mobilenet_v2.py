"""MobileNetV2 x1.0 (Sandler et al., CVPR 2018) with mmpose 0.x / mmcls parameter names, as Poseur's
``configs/poseur/coco/poseur_mobilenetv2_coco_256x192.py`` builds it (``MobileNetV2(widen_factor=1.,
out_indices=(1, 2, 4, 7))``, ``mmpose/models/backbones/mobilenet_v2.py``).

Stem ``conv1`` (3x3 stride 2 to 32 channels), ``layer1..layer7`` of InvertedResidual blocks (expand ratio,
channels, blocks, stride: (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
(6, 160, 3, 2), (6, 320, 1, 1)), ``conv2`` (1x1 to 1280); every conv is mmcv's ``ConvModule`` (``.conv``,
``.bn``, ReLU6 except each block's last 1x1). ``out_indices`` (1, 2, 4, 7) of [layer1..layer7, conv2] are
layer2, layer3, layer5 and conv2: 24, 32, 96 and 1280 channels at strides 4, 8, 16, 32. mmcls's ImageNet
checkpoint (``mmcls://mobilenet_v2``, keys under ``backbone.``; its ``head.`` is skipped) loads from a path.
Initialisation without weights: mmcv ``kaiming_init`` (normal, fan_out, bias 0) on convs, norms at 1 / 0.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.backbone import _norm
from posetr.models.common.pretrained import load_backbone_state_dict

# (expand ratio, channels, blocks, stride of the first block)
ARCH = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
OUT_INDICES = (1, 2, 4, 7)  # of [layer1..layer7, conv2]
LAST_CHANNELS = 1280


class ConvModule(nn.Module):
    """mmcv's ``ConvModule``: conv without bias (``conv``), norm (``bn``), optional ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, stride: int = 1, groups: int = 1,
                 norm: str, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=False)
        self.bn = _norm(norm, out_channels)
        self.act = nn.ReLU6(inplace=True) if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class InvertedResidual(nn.Module):
    """1x1 expansion (when ``expand_ratio`` != 1), 3x3 depthwise, 1x1 linear projection (``conv.{i}``); a
    residual when the stride is 1 and the channels stay."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int, norm: str):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = [] if expand_ratio == 1 else [ConvModule(in_channels, hidden, kernel_size=1, norm=norm)]
        layers += [ConvModule(hidden, hidden, kernel_size=3, stride=stride, groups=hidden, norm=norm),
                   ConvModule(hidden, out_channels, kernel_size=1, norm=norm, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 x1.0 returning the outputs of ``OUT_INDICES``.

    Forward: Float[B, 3, H, W] -> 4 Tensors [B, C_i, ceil(H / s_i), ceil(W / s_i)]; ``num_channels`` (24, 32,
    96, 1280) and ``strides`` (4, 8, 16, 32) give C_i and s_i.
    """

    def __init__(self, *, norm: str = "batch"):
        super().__init__()
        self.conv1 = ConvModule(3, 32, kernel_size=3, stride=2, norm=norm)
        channels = 32
        for i, (expand, out, blocks, stride) in enumerate(ARCH):
            layer = []
            for j in range(blocks):
                layer.append(InvertedResidual(channels, out, stride=stride if j == 0 else 1, expand_ratio=expand,
                                              norm=norm))
                channels = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.conv2 = ConvModule(channels, LAST_CHANNELS, kernel_size=1, norm=norm)
        self.stages = [f"layer{i + 1}" for i in range(len(ARCH))] + ["conv2"]
        widths = [a[1] for a in ARCH] + [LAST_CHANNELS]
        self.num_channels = [widths[i] for i in OUT_INDICES]
        self.strides = [4, 8, 16, 32]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv1(images)
        outputs = []
        for i, name in enumerate(self.stages):
            x = getattr(self, name)(x)
            if i in OUT_INDICES:
                outputs.append(x)
        return outputs


def build_mobilenet_v2(*, pretrained: str | None, norm: str = "batch") -> MobileNetV2:
    """:class:`MobileNetV2`, loaded from mmcls's ImageNet checkpoint (or an mmpose Poseur checkpoint's
    ``backbone.`` keys) at ``pretrained`` when given.

    Raises:
        FileNotFoundError, RuntimeError: as :func:`posetr.models.common.pretrained.load_backbone_state_dict`.
    """
    model = MobileNetV2(norm=norm)
    if pretrained is not None:
        load_backbone_state_dict(model, pretrained, what="MobileNetV2", skip_prefixes=("head.",))
    return model
