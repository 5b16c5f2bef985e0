"""The fields every model's configuration has: which model, which kernels, which keypoint layout.

Each model package (``posetr/models/<name>/config.py``) subclasses :class:`BaseModelConfig`; the YAML
``model.name`` picks the subclass (``posetr.models.model_config_class``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class BaseModelConfig:
    # Fields that neither shape nor fill the weights a checkpoint holds (kernels, initialisation, losses,
    # inference rules): evaluation and prediction may set them differently from the training run's config.
    WEIGHT_FREE_FIELDS: ClassVar[tuple[str, ...]] = ("ops", "backbone_init")
    name: str = ""  # model package under posetr/models/: "petr" | ... (each subclass sets its own)
    ops: str = "posetr"  # "posetr": posetr's C++/CUDA kernels; "reference": the same model on PyTorch reference ops
    dataset: str = "coco"  # source of the OKS sigmas (posetr.data.keypoints.keypoint_info): "coco" | "crowdpose"
    num_keypoints: int = 17  # K: keypoints per person (must match the dataset: 17 COCO, 14 CrowdPose)
