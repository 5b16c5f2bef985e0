"""HRNet-W32 / W48 backbones (Sun et al., "Deep High-Resolution Representation Learning for Human Pose
Estimation", CVPR 2019) with mmpose 0.x's parameter names.

Matches ``mmpose/models/backbones/hrnet.py`` of open-mmlab/mmpose 0.x (the copy in aim-uofa/Poseur is the
same) configured as Poseur's ``configs/poseur/coco/poseur_hrnet_w{32,48}_*.py``: stem ``conv1``/``bn1``/
``conv2``/``bn2`` (two 3x3 stride-2 convs to 64 channels), ``layer1`` = 4 Bottlenecks to 256 channels,
``transition1..3``, ``stage2`` (1 module, 2 branches), ``stage3`` (4 modules, 3 branches), ``stage4``
(3 modules, 4 branches) of HRModules with 4 BasicBlocks per branch (``branches.{b}.{k}``) and
``fuse_layers.{i}.{j}``; branch widths (w, 2w, 4w, 8w). Poseur sets ``multiscale_output=True`` in stage 4, so
the last module fuses into all 4 branches and all 4 are returned. The same names are used by the ImageNet
checkpoints (``hrnet_w32-36af842e.pth``, ``hrnet_w48-8ef0771d.pth``; their classification head is skipped on
loading), by mmpose pose checkpoints and by mmcls' HRNet (both under a ``backbone.`` prefix).

Differences from the official code: the official configs use SyncBN (trainable); ``norm="batch"`` is
``nn.BatchNorm2d`` (synchronise it with ``nn.SyncBatchNorm.convert_sync_batchnorm`` under DDP if wanted).
The residual blocks are :mod:`posetr.models.common.backbone`'s, whose names and computation equal mmpose's
``BasicBlock``/``Bottleneck`` (style ``pytorch``: stride on the 3x3).
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.backbone import BasicBlock, Bottleneck, _norm
from posetr.models.common.pretrained import load_backbone_state_dict

# (num_modules, num_branches) of stage2..stage4; every branch has 4 BasicBlocks (mmpose's HRNet-W32/W48).
_STAGES = ((1, 2), (4, 3), (3, 4))
_BLOCKS_PER_BRANCH = 4
_STRIDES = (4, 8, 16, 32)
# Keys of the ImageNet classification HRNet (HRNet-W*-C) that the pose backbone does not have.
_CLASSIFIER_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def _conv_norm(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, norm: str,
               relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
              _norm(norm, out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """One high-resolution module (mmpose ``HRModule``): per branch 4 BasicBlocks, then every output branch i
    sums all branches j, brought to branch i's resolution and width, followed by ReLU.

    For j > i: ``fuse_layers.{i}.{j}`` = 1x1 conv, norm, nearest upsampling x2^(j-i). For j < i: i-j stacked
    3x3 stride-2 conv + norm (ReLU between them, the width changes at the last). ``multiscale_output=False``
    keeps only output branch 0.

    Forward: list of Tensors [B, C_b, H_b, W_b] (one per branch, H_b = 2 H_{b+1}) -> list of the same shapes
    (only the first when ``multiscale_output`` is False).
    """

    def __init__(self, *, channels: list[int], multiscale_output: bool, norm: str):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(in_channels=c, width=c, stride=1, dilation=1, norm=norm)
                            for _ in range(_BLOCKS_PER_BRANCH)))
            for c in channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_layer(channels, i, j, norm) for j in range(len(channels)))
            for i in range(len(channels) if multiscale_output else 1))
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(channels: list[int], i: int, j: int, norm: str) -> nn.Module | None:
        if j == i:
            return None
        if j > i:
            return nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False), _norm(norm, channels[i]),
                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
        steps = i - j
        return nn.Sequential(*(
            _conv_norm(channels[j], channels[i] if k == steps - 1 else channels[j], kernel_size=3, stride=2,
                       norm=norm, relu=k < steps - 1)
            for k in range(steps)))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        features = [branch(x) for branch, x in zip(self.branches, features)]
        fused = []
        for layers in self.fuse_layers:
            y = None
            for x, layer in zip(features, layers):
                x = x if layer is None else layer(x)
                y = x if y is None else y + x
            fused.append(self.relu(y))
        return fused


def _transition(pre_channels: list[int], channels: list[int], norm: str) -> nn.ModuleList:
    """mmpose ``_make_transition_layer``: a kept branch gets a 3x3 conv only if its width changes (else None);
    a new branch is made from the last old one by stacked 3x3 stride-2 convs (width changes at the last)."""
    layers = []
    for i, c in enumerate(channels):
        if i < len(pre_channels):
            layers.append(None if c == pre_channels[i] else
                          _conv_norm(pre_channels[i], c, kernel_size=3, stride=1, norm=norm, relu=True))
        else:
            last = pre_channels[-1]
            steps = i + 1 - len(pre_channels)
            layers.append(nn.Sequential(*(
                _conv_norm(last, c if k == steps - 1 else last, kernel_size=3, stride=2, norm=norm, relu=True)
                for k in range(steps))))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet backbone returning the 4 branch outputs of stage 4 (Poseur's ``multiscale_output=True``).

    Args:
        width (int): branch width w of HRNet-Ww; branches have (w, 2w, 4w, 8w) channels. 32 = HRNet-W32
            (29,305,536 parameters), 48 = HRNet-W48 (65,325,120).
        norm (str): "batch" (trainable BatchNorm2d, the official SyncBN's local form) | "frozen_bn" | "group".
        multiscale_output (bool): False builds the usual single-output pose HRNet (the last stage-4 module
            fuses into branch 0 only; 28,535,552 / 63,594,912 parameters) and returns the stride-4 map alone.

    Attributes:
        num_channels (list[int]): channels of the returned maps, [w, 2w, 4w, 8w] (or [w]).
        strides (list[int]): their strides in pixels, [4, 8, 16, 32] (or [4]).

    Forward: images Float[B, 3, H, W] with H and W multiples of 32 -> list of Tensors
    [B, num_channels[i], H / strides[i], W / strides[i]].

    Initialisation as mmpose's ``init_weights(pretrained=None)``: conv weights N(0, 0.001), norm weight 1 and
    bias 0.

    Raises:
        ValueError: ``width`` not a positive int, unknown ``norm``; in forward, an input that is not
            [B, 3, H, W] with H and W multiples of 32 (the fuse layers' upsampled maps would not align).
    """

    def __init__(self, *, width: int = 32, norm: str = "batch", multiscale_output: bool = True):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ValueError(f"HRNet width must be a positive int (32 or 48 for HRNet-W32/W48), got {width!r}")
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = _norm(norm, 64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*(
            Bottleneck(in_channels=64 if k == 0 else 64 * Bottleneck.expansion, width=64, stride=1, dilation=1,
                       norm=norm)
            for k in range(4)))
        channels = [width * 2**b for b in range(4)]
        pre_channels = [64 * Bottleneck.expansion]
        for stage, (num_modules, num_branches) in enumerate(_STAGES, start=2):
            stage_channels = channels[:num_branches]
            setattr(self, f"transition{stage - 1}", _transition(pre_channels, stage_channels, norm))
            setattr(self, f"stage{stage}", nn.Sequential(*(
                HRModule(channels=stage_channels, norm=norm,
                         multiscale_output=multiscale_output or stage < 4 or m < num_modules - 1)
                for m in range(num_modules))))
            pre_channels = stage_channels
        outputs = 4 if multiscale_output else 1
        self.num_channels = channels[:outputs]
        self.strides = list(_STRIDES[:outputs])
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] % 32 or images.shape[3] % 32:
            raise ValueError(f"HRNet expects images [B, 3, H, W] with H and W multiples of 32, got "
                             f"{list(images.shape)}")
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for stage in range(2, 5):
            transition = getattr(self, f"transition{stage - 1}")
            # a new branch grows from the lowest-resolution one (mmpose feeds y_list[-1])
            inputs = [features[min(b, len(features) - 1)] for b in range(len(transition))]
            inputs = [x if layer is None else layer(x) for x, layer in zip(inputs, transition)]
            features = getattr(self, f"stage{stage}")(inputs)
        return features


def load_mmpose_state_dict(model: HRNet, path: str) -> None:
    """Load HRNet weights saved by mmpose / mmcls / the HRNet ImageNet release into ``model``
    (:func:`posetr.models.common.pretrained.load_backbone_state_dict`: a state dict, possibly under
    ``"state_dict"``, ``module.`` stripped, only the ``backbone.`` keys of a whole mmpose / mmcls / Poseur
    model; otherwise the ImageNet classifier's keys (``incre_modules``, ``downsamp_modules``,
    ``final_layer``, ``classifier``) are skipped). Every remaining key must match.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: the file is not a readable weights-only torch checkpoint, holds no state dict, or has
            missing or unexpected backbone keys or mismatched shapes (names the file and the first few keys).
    """
    load_backbone_state_dict(model, path, what=f"HRNet-W{model.num_channels[0]}", skip_prefixes=_CLASSIFIER_PREFIXES)


def build_hrnet(*, width: int, pretrained: str | None, norm: str = "batch") -> HRNet:
    """:class:`HRNet` with Poseur's multi-scale stage-4 output (all stages trainable, as mmpose's
    ``frozen_stages=-1``), loaded with :func:`load_mmpose_state_dict` from ``pretrained`` when given."""
    model = HRNet(width=width, norm=norm)
    if pretrained is not None:
        load_mmpose_state_dict(model, pretrained)
    return model
