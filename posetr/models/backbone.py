"""ResNet backbone with torchvision's parameter names, frozen BatchNorm and C3-C5 outputs.

Written here (no torchvision dependency) so that a torchvision ImageNet state dict loads from a path:
``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``/``bn{1,2,3}``/``downsample.{0,1}`` exactly as in
``torchvision.models.resnet``; the classifier ``fc`` is not built (its keys are ignored on loading).
FrozenBatchNorm2d is DETR's (``models/backbone.py``): BatchNorm with fixed statistics and affine terms.
"""
from __future__ import annotations

import torch
from torch import nn

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

    def __init__(self, *, in_channels: int, width: int, stride: int, norm: str):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out, stride, norm)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, *, in_channels: int, width: int, stride: int, norm: str):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = _norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # torchvision: stride on the 3x3
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
    """ResNet-18/34/50 trunk returning C3, C4, C5 (strides 8, 16, 32).

    Args:
        depth (int): 18, 34 or 50.
        width (int): stem channels (64 = torchvision); stage widths are width * (1, 2, 4, 8).
        norm (str): "frozen_bn" | "batch" | "group".
        train_stem (bool): if False, ``conv1`` and ``layer1`` are frozen (DETR with a pretrained backbone).

    Forward: Tensor[B, 3, H, W] -> list of 3 Tensors [B, C_i, H / s_i, W / s_i]; ``num_channels`` gives C_i.

    Raises:
        ValueError: unsupported ``depth`` or ``norm``.
    """

    def __init__(self, *, depth: int = 50, width: int = 64, norm: str = "frozen_bn", train_stem: bool = True):
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"backbone_depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        kind, blocks = _LAYOUTS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = _norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        for i, count in enumerate(blocks):
            stage_width = width * 2**i
            layers = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(in_channels=channels, width=stage_width, stride=stride, norm=norm))
                channels = stage_width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.num_channels = [width * 2**i * block.expansion for i in (1, 2, 3)]
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
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def load_torchvision_state_dict(model: ResNet, path: str) -> None:
    """Load a torchvision ResNet state dict (a ``.pth`` file) into ``model``; ``fc.*`` is skipped.

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: missing or unexpected backbone keys (names the first few).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(
            f"pretrained_backbone {path!r} does not fit ResNet: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def build_backbone(cfg) -> ResNet:
    """ResNet from ``cfg`` (ModelConfig); loads ``cfg.pretrained_backbone`` when given."""
    pretrained = cfg.pretrained_backbone is not None
    model = ResNet(depth=cfg.backbone_depth, width=cfg.backbone_width, norm=cfg.backbone_norm, train_stem=not pretrained)
    if pretrained:
        load_torchvision_state_dict(model, cfg.pretrained_backbone)
    return model
