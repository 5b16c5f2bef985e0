"""Poseur (Mao et al., "Poseur: Direct Human Pose Regression with Transformers", ECCV 2022), the top-down
regressor the EMSDA op exists for: ``model.name: poseur``. Matches the official code (aim-uofa/Poseur);
``config.py`` says where it and the paper disagree (spec: ../shared/specs/poseur.md)."""
from __future__ import annotations

from posetr.models.poseur.config import BACKBONES, FLIP_FUSIONS, INITS, LEVEL_SETS, RLE_NORMALIZATIONS, PoseurConfig

CONFIG_CLASS = PoseurConfig
DATA_KIND = "top_down"  # person crops (docs/model_interfaces.md)


def _check(cfg: PoseurConfig) -> None:
    from posetr.models.common.top_down import FLIP_CONVENTIONS

    choices = {"backbone": (cfg.backbone, BACKBONES), "init": (cfg.init, INITS),
               "levels": (cfg.levels, tuple(LEVEL_SETS)),
               "rle_normalize": (cfg.rle_normalize, RLE_NORMALIZATIONS), "flip_fuse": (cfg.flip_fuse, FLIP_FUSIONS),
               "flip_convention": (cfg.flip_convention, FLIP_CONVENTIONS)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"model.{key} must be one of {list(allowed)}, got {value!r}")
    if cfg.backbone != "resnet" and cfg.levels != "C2-C5":
        raise ValueError(f"model.levels must be 'C2-C5' with backbone {cfg.backbone} (its 4 outputs), "
                         f"got {cfg.levels!r}")
    if cfg.d_model % 32 != 0 or cfg.d_model % cfg.n_heads != 0:
        raise ValueError(f"model.d_model must be a multiple of 32 (GroupNorm(32) neck) and of n_heads={cfg.n_heads}, "
                         f"got {cfg.d_model}")
    minimum = {"dec_layers": 1, "num_reg_fcs": 0, "n_points": 1, "num_noise_groups": 0, "num_noise_points": 0}
    for key, low in minimum.items():
        if getattr(cfg, key) < low:
            raise ValueError(f"model.{key} must be >= {low}, got {getattr(cfg, key)}")
    if not cfg.noise_sigma >= 0:
        raise ValueError(f"model.noise_sigma must be >= 0, got {cfg.noise_sigma}")


def build(cfg: PoseurConfig):
    """Poseur, its criterion (the RLE losses and their two RealNVP flows) and its postprocessor from ``cfg``
    (see docs/model_interfaces.md, top-down).

    Returns:
        (model, criterion, postprocessor).

    Raises:
        ValueError: ``cfg.ops`` not "posetr"/"reference", or an invalid field (named).
    """
    from posetr.models.poseur.criterion import build_criterion
    from posetr.models.poseur.model import build_poseur
    from posetr.models.poseur.postprocess import build_postprocess

    _check(cfg)
    return build_poseur(cfg), build_criterion(cfg), build_postprocess(cfg)


__all__ = ["CONFIG_CLASS", "DATA_KIND", "PoseurConfig", "build"]
