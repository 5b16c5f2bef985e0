"""Pretrained backbone weights: whether a config needs them, and loading them from a local file.

Every model config with a backbone has two fields:

- ``backbone_init``: ``"imagenet"`` (the official recipes: opera PETR ``torchvision://resnet50``, POET and
  TFPose ImageNet ResNets) or ``"scratch"`` (random initialisation; the small memorisation configs).
- ``pretrained_backbone``: path of the weights file. posetr never downloads weights.

:func:`check_backbone_init` (called when a training run starts) refuses ``"imagenet"`` without a path, so
a recipe never trains a random ResNet-50 by accident; evaluation and prediction load a checkpoint and do not
need the ImageNet file.

:func:`read_backbone_state_dict` reads the file formats in use: a plain state dict (torchvision's
``resnet50-0676ba61.pth`` / ``resnet50-11ad3fa6.pth``), a dict holding one under ``"state_dict"`` (mmcv /
mmdet / mmpose / mmcls checkpoints), ``module.`` prefixes (DataParallel, stripped as mmcv does) and whole
detector / pose-model checkpoints whose backbone keys start with ``backbone.`` (only those are used, without
the prefix). :func:`load_backbone_state_dict` loads the result into a module and names every missing or
unexpected key: unlike mmcv's ``strict=False`` a wrong file is an error, not a silently random backbone.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

BACKBONE_INITS = ("imagenet", "scratch")
# torchvision's ImageNet ResNet files (V1 and V2 weights of ResNet-50)
TORCHVISION_RESNET_FILES = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth or resnet50-11ad3fa6.pth",
}


# ImageNet files of the other backbones (Poseur's), by the model config's ``backbone``
OTHER_BACKBONE_FILES = {
    "hrnet": "openmmlab's hrnet_w32-36af842e.pth / hrnet_w48-8ef0771d.pth, or an mmpose HRNet checkpoint "
             "('backbone.' keys)",
    "mobilenetv2": "mmcls's mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth, or an mmpose MobileNetV2 "
                   "checkpoint ('backbone.' keys)",
}


def expected_weight_files(model_cfg) -> str:
    """Words naming the weights files that fit ``model_cfg``'s backbone (for error messages)."""
    other = OTHER_BACKBONE_FILES.get(getattr(model_cfg, "backbone", "resnet"))
    if other is not None:
        return other
    depth = getattr(model_cfg, "backbone_depth", None)
    torchvision = TORCHVISION_RESNET_FILES.get(depth)
    if torchvision is None:
        return "a state dict of the backbone (or a checkpoint with 'backbone.' keys)"
    return f"torchvision's {torchvision}, or an mmdet/mmpose ResNet-{depth} checkpoint ('backbone.' keys)"


def check_backbone_init(model_cfg) -> None:
    """Raise unless ``model_cfg.backbone_init`` and ``model_cfg.pretrained_backbone`` agree.

    A config without a ``backbone_init`` field (a model without a ResNet/HRNet backbone) passes.

    Raises:
        ValueError: ``backbone_init`` not in :data:`BACKBONE_INITS`; ``"imagenet"`` without a path (one line
            naming ``model.pretrained_backbone``, the expected files and the ``scratch`` switch); or
            ``"scratch"`` with a path.
    """
    init = getattr(model_cfg, "backbone_init", None)
    if init is None:
        return
    path = getattr(model_cfg, "pretrained_backbone", None)
    if init not in BACKBONE_INITS:
        raise ValueError(f"model.backbone_init must be one of {BACKBONE_INITS}, got {init!r}")
    if init == "imagenet" and path is None:
        raise ValueError(
            "model.backbone_init is 'imagenet' (the official recipe) but model.pretrained_backbone is not set: "
            f"give the path of {expected_weight_files(model_cfg)} (never downloaded), "
            "or set model.backbone_init: scratch to train the backbone from random weights")
    if init == "scratch" and path is not None:
        raise ValueError(f"model.backbone_init is 'scratch' but model.pretrained_backbone is {path!r}: "
                         "set backbone_init: imagenet to load it, or pretrained_backbone: null")


def read_backbone_state_dict(path: str, *, what: str, skip_prefixes: Sequence[str] = ()) -> dict:
    """The backbone's tensors stored in the file ``path`` (see the module docstring for the formats).

    Args:
        path: ``.pth`` file, read with ``torch.load(weights_only=True)`` on the CPU.
        what: the backbone's name in error messages (e.g. ``"ResNet-50"``).
        skip_prefixes: key prefixes of classifier heads to drop from a plain (ImageNet) state dict
            (torchvision ResNet: ``("fc.",)``).

    Raises:
        FileNotFoundError: no file at ``path``.
        RuntimeError: not a readable weights-only torch file, or no state dict (a dict of tensors, possibly
            under ``"state_dict"``) in it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained {what} {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or unsafe file
        raise RuntimeError(f"pretrained {what} {path!r} is not a readable torch checkpoint: {exc}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(f"pretrained {what} {path!r} holds no state dict (a dict of tensors, possibly under "
                           f"'state_dict')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith(tuple(skip_prefixes))}


def load_backbone_state_dict(module: nn.Module, path: str, *, what: str, skip_prefixes: Sequence[str] = ()) -> None:
    """Load the weights file ``path`` into ``module`` (:func:`read_backbone_state_dict`), every key matched.

    ``num_batches_tracked`` (BatchNorm bookkeeping, absent in FrozenBatchNorm2d) may be missing or extra.

    Raises:
        FileNotFoundError, RuntimeError: as :func:`read_backbone_state_dict`; RuntimeError also for missing or
            unexpected keys or mismatched shapes (names the file and the first few keys).
    """
    state = read_backbone_state_dict(path, what=what, skip_prefixes=skip_prefixes)
    own = module.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if shapes:
        raise RuntimeError(f"pretrained {what} {path!r} does not fit {what}: shape mismatch {shapes[:5]}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"pretrained {what} {path!r} does not fit {what}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]} ({len(missing)} missing, {len(unexpected)} unexpected)")
