"""Models served by posetr's kernels: backbone, transformer parts, PETR, matcher and criterion."""
from __future__ import annotations

import torch

from posetr.models.config import ModelConfig


def build_model(cfg: ModelConfig):
    """PETR, its criterion and its postprocessor from ``cfg`` (see docs/petr_interfaces.md).

    Returns:
        (model, criterion, postprocessor).

    Raises:
        ValueError: ``cfg.ops`` not "posetr"/"reference", ``cfg.num_keypoints`` not the dataset's, or an
            invalid size.
    """
    from posetr.data.keypoints import keypoint_info
    from posetr.models.criterion import build_criterion
    from posetr.models.kernels import get_kernels
    from posetr.models.petr import build_petr
    from posetr.models.petr_matcher import build_petr_matcher
    from posetr.models.postprocess import build_postprocess

    info = keypoint_info(cfg.dataset)
    if info.num_keypoints != cfg.num_keypoints:
        raise ValueError(
            f"num_keypoints={cfg.num_keypoints} does not match dataset {cfg.dataset!r} ({info.num_keypoints})"
        )
    if cfg.num_feature_levels < 3:
        raise ValueError(f"num_feature_levels must be >= 3 (C3-C5 + extra levels), got {cfg.num_feature_levels}")
    kernels = get_kernels(cfg.ops)
    sigmas = torch.tensor(info.sigmas, dtype=torch.float32)
    model = build_petr(cfg)
    matcher = build_petr_matcher(cfg, sigmas=sigmas, kernels=kernels)
    criterion = build_criterion(cfg, matcher=matcher, kernels=kernels, sigmas=sigmas)
    return model, criterion, build_postprocess(cfg)


__all__ = ["ModelConfig", "build_model"]
