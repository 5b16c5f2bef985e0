"""Models served by posetr's kernels, one package per model (``posetr/models/<name>/``: model, matcher,
criterion, postprocess, config) and the parts they share (``posetr/models/common/``).

A model package exposes ``CONFIG_CLASS`` (a dataclass subclassing
:class:`~posetr.models.common.config.BaseModelConfig`, whose ``name`` is the package's),
``DATA_KIND`` ("bottom_up": whole images, or "top_down": person crops; docs/model_interfaces.md) and
``build(cfg) -> (model, criterion, postprocessor)``. The YAML key ``model.name`` picks the package.
"""
from __future__ import annotations

import importlib

from posetr.models.common.config import BaseModelConfig

MODEL_NAMES = ("petr", "poet", "poseur", "tfpose")  # packages under posetr/models/, the values of model.name
DEFAULT_MODEL = "petr"


def _package(name: str):
    if name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {list(MODEL_NAMES)}, got {name!r}")
    return importlib.import_module(f"posetr.models.{name}")


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (e.g. ``"petr"`` -> PETRConfig).

    Raises:
        ValueError: unknown ``name``.
    """
    return _package(name).CONFIG_CLASS


def model_data_kind(name: str) -> str:
    """How model ``name`` is fed: ``"bottom_up"`` (whole images) or ``"top_down"`` (person crops), its
    package's ``DATA_KIND`` (docs/model_interfaces.md).

    Raises:
        ValueError: unknown ``name``, or a package whose ``DATA_KIND`` is neither.
    """
    kind = _package(name).DATA_KIND
    if kind not in ("bottom_up", "top_down"):
        raise ValueError(f"posetr.models.{name}.DATA_KIND must be 'bottom_up' or 'top_down', got {kind!r}")
    return kind


def build_model(cfg: BaseModelConfig):
    """Model, criterion and postprocessor of ``cfg`` (the config dataclass of model ``cfg.name``).

    Returns:
        (model, criterion, postprocessor) (interfaces: docs/model_interfaces.md).

    Raises:
        ValueError: unknown ``cfg.name``, ``cfg`` not that model's config class, ``cfg.num_keypoints`` not
            the dataset's, or an invalid size (see the model package's ``build``).
    """
    from posetr.data.keypoints import keypoint_info

    package = _package(cfg.name)
    if not isinstance(cfg, package.CONFIG_CLASS):
        raise ValueError(f"model.name {cfg.name!r} needs a {package.CONFIG_CLASS.__name__}, got {type(cfg).__name__}")
    info = keypoint_info(cfg.dataset)
    if info.num_keypoints != cfg.num_keypoints:
        raise ValueError(
            f"num_keypoints={cfg.num_keypoints} does not match dataset {cfg.dataset!r} ({info.num_keypoints})"
        )
    return package.build(cfg)


__all__ = ["BaseModelConfig", "DEFAULT_MODEL", "MODEL_NAMES", "build_model", "model_config_class", "model_data_kind"]
