"""Datasets from the ``data`` section of the config."""
from __future__ import annotations

from posetr.data.coco import CocoKeypoints, resolve_split
from posetr.data.crowdpose import CrowdPoseKeypoints
from posetr.data.keypoints import keypoint_info
from posetr.data.transforms import build_transforms

_DATASETS = {"coco": CocoKeypoints, "crowdpose": CrowdPoseKeypoints}


def build_dataset(data_cfg, *, root: str, split: str, train: bool):
    """The ``split`` of the dataset under ``root`` with training (``train``) or test transforms.

    Args:
        data_cfg: ``posetr.config.DataConfig``.
        root: data folder (``data_cfg.root`` or the synthetic set's folder).
        split: split name, e.g. ``data_cfg.train_split``.
        train: random augmentation (``data_cfg.augment``) or the fixed test resize.

    Raises:
        ValueError: unknown ``data_cfg.dataset``; see also :class:`~posetr.data.coco.CocoKeypoints`.
    """
    if data_cfg.dataset not in _DATASETS:
        raise ValueError(f"data.dataset must be one of {sorted(_DATASETS)}, got {data_cfg.dataset!r}")
    transforms = build_transforms(
        train=train, augment=data_cfg.augment, flip_index=keypoint_info(data_cfg.dataset).flip_index(),
        test_size=data_cfg.test_size, max_size=data_cfg.max_size, train_sizes=data_cfg.train_sizes,
    )
    image_dir, ann_file = resolve_split(root, split)
    return _DATASETS[data_cfg.dataset](image_dir, ann_file, transforms=transforms)
