"""TFPose (Mao et al., "TFPose: Direct Human Pose Estimation with Transformers", 2021), a top-down keypoint
regressor with a deformable encoder and keypoint-query decoder: ``model.name: tfpose``. No official code
exists; every unstated choice is documented in ``config.py`` (spec: ../shared/specs/tfpose.md)."""
from __future__ import annotations

from posetr.models.tfpose.config import LEVEL_SETS, TFPoseConfig

CONFIG_CLASS = TFPoseConfig
DATA_KIND = "top_down"  # person crops (docs/model_interfaces.md)


def _check(cfg: TFPoseConfig) -> None:
    from posetr.models.common.top_down import FLIP_CONVENTIONS
    from posetr.models.tfpose.postprocess import INSTANCE_SCORES

    choices = {"levels": (cfg.levels, tuple(LEVEL_SETS)), "flip_convention": (cfg.flip_convention, FLIP_CONVENTIONS),
               "instance_score": (cfg.instance_score, INSTANCE_SCORES)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"model.{key} must be one of {list(allowed)}, got {value!r}")
    if cfg.d_model % cfg.n_heads != 0 or cfg.d_model % 2 != 0:
        raise ValueError(f"model.d_model must be even and divisible by n_heads={cfg.n_heads}, got {cfg.d_model}")
    if cfg.d_model % 32 != 0:
        raise ValueError(f"model.d_model must be a multiple of 32 (GroupNorm(32) projections), got {cfg.d_model}")
    minimum = {"enc_layers": 0, "dec_layers": 1, "coord_head_layers": 2, "n_points": 1, "heatmap_channels": 1}
    for key, low in minimum.items():
        if getattr(cfg, key) < low:
            raise ValueError(f"model.{key} must be >= {low}, got {getattr(cfg, key)}")
    if not cfg.heatmap_sigma > 0:
        raise ValueError(f"model.heatmap_sigma must be positive, got {cfg.heatmap_sigma}")


def build(cfg: TFPoseConfig):
    """TFPose, its criterion and its postprocessor from ``cfg`` (see docs/model_interfaces.md, top-down).

    Returns:
        (model, criterion, postprocessor).

    Raises:
        ValueError: ``cfg.ops`` not "posetr"/"reference", or an invalid field (named).
    """
    from posetr.models.tfpose.criterion import build_criterion
    from posetr.models.tfpose.model import build_tfpose
    from posetr.models.tfpose.postprocess import build_postprocess

    _check(cfg)
    return build_tfpose(cfg), build_criterion(cfg), build_postprocess(cfg)


__all__ = ["CONFIG_CLASS", "DATA_KIND", "TFPoseConfig", "build"]
