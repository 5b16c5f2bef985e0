"""ResNet backbone with torchvision's parameter names, frozen BatchNorm, selectable C2-C5 outputs and DC5.

Written here (no torchvision dependency) so that a torchvision ImageNet state dict loads from a path:
``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``/``bn{1,2,3}``/``downsample.{0,1}`` exactly as in
``torchvision.models.resnet``; the classifier ``fc`` is not built (its keys are ignored on loading).
FrozenBatchNorm2d is DETR's (``models/backbone.py``): BatchNorm with fixed statistics and affine terms.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.pretrained import load_backbone_state_dict

_LAYOUTS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are buffers (DETR). Loads torchvision BN keys;
    ``num_batches_tracked`` is dropped."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    raise ValueError(f"backbone_norm must be 'frozen_bn', 'batch' or 'group', got {kind!r}")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, *, in_channels: int, width: int, stride: int, dilation: int, norm: str):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn1 = _norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out, stride, norm)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, *, in_channels: int, width: int, stride: int, dilation: int, norm: str):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = _norm(norm, width)
        # torchvision: stride and dilation on the 3x3
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = _norm(norm, width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = _norm(norm, out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out, stride, norm)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(in_channels, out_channels, stride, norm):
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(norm, out_channels))


class ResNet(nn.Module):
    """ResNet-18/34/50 trunk returning the outputs of the stages in ``out_indices``.

    Args:
        depth (int): 18, 34 or 50.
        width (int): stem channels (64 = torchvision); stage widths are width * (1, 2, 4, 8).
        norm (str): "frozen_bn" | "batch" | "group".
        train_stem (bool): if False, ``conv1``, ``bn1`` and ``layer1`` are frozen (DETR with a pretrained
            backbone).
        out_indices (tuple[int, ...]): stages returned, 1..4 = C2..C5 (strides 4, 8, 16, 32), ascending;
            (2, 3, 4) = C3-C5 (PETR), (4,) = C5 (POET), (1, 2, 3, 4) = C2-C5 (Poseur).
        dilate_last (bool): DC5: ``layer4``'s stride replaced by dilation 2 (torchvision's
            ``replace_stride_with_dilation=[False, False, True]``), so C5 has stride 16; same parameters.

    Forward: Tensor[B, 3, H, W] -> list of Tensors [B, C_i, ceil(H / s_i), ceil(W / s_i)], one per stage of
    ``out_indices``; ``num_channels`` gives the C_i and ``strides`` the s_i.

    Raises:
        ValueError: unsupported ``depth``, ``norm`` or ``out_indices``.
    """

    def __init__(self, *, depth: int = 50, width: int = 64, norm: str = "frozen_bn", train_stem: bool = True,
                 out_indices: tuple[int, ...] = (2, 3, 4), dilate_last: bool = False):
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"backbone_depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        out_indices = tuple(out_indices)
        if not out_indices or list(out_indices) != sorted(set(out_indices)) or not set(out_indices) <= {1, 2, 3, 4}:
            raise ValueError(f"out_indices must be ascending stages among 1..4 (C2..C5), got {out_indices}")
        kind, blocks = _LAYOUTS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        for i, count in enumerate(blocks):
            stage_width = width * 2**i
            dilate = dilate_last and i == 3
            layers = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0 and not dilate) else 1
                dilation = 2 if (dilate and j > 0) else 1  # torchvision: the first block keeps the old dilation
                layers.append(block(in_channels=channels, width=stage_width, stride=stride, dilation=dilation,
                                    norm=norm))
                channels = stage_width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_indices = out_indices
        self.depth = depth
        self.num_channels = [width * 2 ** (i - 1) * block.expansion for i in out_indices]
        self.strides = [min(2 ** (i + 1), 16) if dilate_last else 2 ** (i + 1) for i in out_indices]
        self._init_weights(norm)
        if not train_stem:
            for module in (self.conv1, self.bn1, self.layer1):
                module.requires_grad_(False)

    def _init_weights(self, norm):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if norm != "frozen_bn":
            # Residual branches start at zero (torchvision's zero_init_residual): stable from scratch.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for i in range(1, self.out_indices[-1] + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_indices:
                outputs.append(x)
        return outputs


def load_torchvision_state_dict(model: ResNet, path: str) -> None:
    """Load ResNet weights into ``model``: torchvision's ImageNet state dict (``fc.*`` skipped) or an
    mmdet / mmpose / mmcls checkpoint (``state_dict`` wrapper, ``backbone.`` keys; mmdet's ResNet has
    torchvision's key names); see :func:`posetr.models.common.pretrained.load_backbone_state_dict`.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: unreadable file, or missing / unexpected backbone keys or shapes (names the first few).
    """
    load_backbone_state_dict(model, path, what=f"ResNet-{model.depth}", skip_prefixes=("fc.",))


def build_resnet(*, depth: int, width: int, norm: str, pretrained: str | None,
                 out_indices: tuple[int, ...] = (2, 3, 4), dilate_last: bool = False,
                 train_stem: bool | None = None) -> ResNet:
    """:class:`ResNet`, loaded from the torchvision state dict at ``pretrained`` when given.

    ``train_stem`` None: a pretrained backbone keeps ``conv1`` and ``layer1`` frozen (DETR) and one trained
    from scratch trains every stage; True trains every stage either way (mmpose's ``frozen_stages=-1``, the
    top-down models); False freezes the stem either way (POET: DETR's code freezes it by parameter name
    whether or not weights are loaded)."""
    if train_stem is None:
        train_stem = pretrained is None
    model = ResNet(depth=depth, width=width, norm=norm, train_stem=train_stem, out_indices=out_indices,
                   dilate_last=dilate_last)
    if pretrained is not None:
        load_torchvision_state_dict(model, pretrained)
    return model
