"""POET (Stoffl, Vidal, Mathis, "End-to-End Trainable Multi-Instance Pose Estimation with Transformers",
arXiv 2103.12115), as in amathislab/poet: ``model.name: poet``."""
from __future__ import annotations

from posetr.models.poet.config import POETConfig

CONFIG_CLASS = POETConfig
DATA_KIND = "bottom_up"  # whole images (docs/model_interfaces.md)


def build(cfg: POETConfig):
    """POET, its criterion and its postprocessor from ``cfg`` (see docs/model_interfaces.md).

    ``cfg.ops`` picks the matcher's solver: "posetr" solves the batch in one
    ``batched_linear_sum_assignment`` call, "reference" calls scipy once per image (same indices).

    Returns:
        (model, criterion, postprocessor).

    Raises:
        ValueError: ``cfg.ops`` not "posetr"/"reference", unknown ``class_head`` / ``visible_threshold``, or
            an invalid size.
    """
    from posetr.models.common.kernels import get_kernels
    from posetr.models.poet.criterion import build_criterion
    from posetr.models.poet.matcher import build_poet_matcher
    from posetr.models.poet.model import build_poet
    from posetr.models.poet.postprocess import build_postprocess

    if cfg.visible_threshold not in (1, 2):
        raise ValueError(f"visible_threshold must be 1 or 2, got {cfg.visible_threshold}")
    kernels = get_kernels(cfg.ops)
    model = build_poet(cfg)
    matcher = build_poet_matcher(cfg, match=kernels.match)
    return model, build_criterion(cfg, matcher=matcher), build_postprocess(cfg)


__all__ = ["CONFIG_CLASS", "DATA_KIND", "POETConfig", "build"]
