"""PETR (Shi et al., "End-to-End Multi-Person Pose Estimation with Transformers", CVPR 2022), as in
hikvision-research/opera: ``model.name: petr``."""
from __future__ import annotations

from posetr.models.petr.config import PETRConfig

CONFIG_CLASS = PETRConfig
DATA_KIND = "bottom_up"  # whole images (docs/model_interfaces.md)


def build(cfg: PETRConfig):
    """PETR, its criterion and its postprocessor from ``cfg`` (see docs/model_interfaces.md).

    Returns:
        (model, criterion, postprocessor).

    Raises:
        ValueError: ``cfg.ops`` not "posetr"/"reference", or an invalid size.
    """
    import torch

    from posetr.data.keypoints import keypoint_info
    from posetr.models.common.kernels import get_kernels
    from posetr.models.petr.criterion import build_criterion
    from posetr.models.petr.matcher import build_petr_matcher
    from posetr.models.petr.model import build_petr
    from posetr.models.petr.postprocess import build_postprocess

    if cfg.num_feature_levels < 3:
        raise ValueError(f"num_feature_levels must be >= 3 (C3-C5 + extra levels), got {cfg.num_feature_levels}")
    kernels = get_kernels(cfg.ops)
    sigmas = torch.tensor(keypoint_info(cfg.dataset).sigmas, dtype=torch.float32)
    model = build_petr(cfg)
    matcher = build_petr_matcher(cfg, sigmas=sigmas, kernels=kernels)
    criterion = build_criterion(cfg, matcher=matcher, kernels=kernels, sigmas=sigmas)
    return model, criterion, build_postprocess(cfg)


__all__ = ["CONFIG_CLASS", "DATA_KIND", "PETRConfig", "build"]
