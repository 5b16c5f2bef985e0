"""Datasets from the ``data`` section of the config, for whole images (bottom-up) or person crops
(top-down; the model package's ``DATA_KIND`` picks, docs/model_interfaces.md)."""
from __future__ import annotations

from posetr.data.coco import CocoKeypoints, resolve_split
from posetr.data.collate import collate, collate_crops
from posetr.data.crowdpose import CrowdPoseKeypoints
from posetr.data.keypoints import keypoint_info
from posetr.data.top_down import TopDownKeypoints
from posetr.data.top_down_transforms import build_top_down_transforms
from posetr.data.transforms import build_transforms

DATA_KINDS = ("bottom_up", "top_down")
_DATASETS = {"coco": CocoKeypoints, "crowdpose": CrowdPoseKeypoints}
_COLLATE = {"bottom_up": collate, "top_down": collate_crops}


def _check_kind(kind: str) -> None:
    if kind not in DATA_KINDS:
        raise ValueError(f"data kind must be one of {DATA_KINDS}, got {kind!r}")


def collate_for(kind: str):
    """The batching function of ``kind``: :func:`~posetr.data.collate.collate` (bottom-up) or
    :func:`~posetr.data.collate.collate_crops` (top-down)."""
    _check_kind(kind)
    return _COLLATE[kind]


def crop_output_size(data_cfg) -> tuple[int, int]:
    """(W, H) of the top-down crop from ``data_cfg.input_size`` = (height, width).

    Raises:
        ValueError: not two positive integers.
    """
    size = data_cfg.input_size
    if not (len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"data.input_size must be [height, width] in pixels (e.g. [256, 192]), got {size!r}")
    return size[1], size[0]


def build_dataset(data_cfg, *, root: str, split: str, train: bool, kind: str = "bottom_up"):
    """The ``split`` of the dataset under ``root`` with training (``train``) or test transforms.

    Args:
        data_cfg: ``posetr.config.DataConfig``.
        root: data folder (``data_cfg.root`` or the synthetic set's folder).
        split: split name, e.g. ``data_cfg.train_split``.
        train: random augmentation (``data_cfg.augment``) and, bottom-up, only the images of
            ``data_cfg.train_images``; or the fixed test transform on every image.
        kind: "bottom_up" (whole images) or "top_down" (person crops: ground-truth boxes for training and
            with ``data_cfg.use_gt_bbox``, else ``data_cfg.det_file``).

    Raises:
        ValueError: unknown ``data_cfg.dataset`` or ``kind``, a bad ``input_size``, or top-down evaluation
            without ground-truth boxes and without a detection file; see also
            :class:`~posetr.data.coco.CocoKeypoints` and :class:`~posetr.data.top_down.TopDownKeypoints`.
    """
    if data_cfg.dataset not in _DATASETS:
        raise ValueError(f"data.dataset must be one of {sorted(_DATASETS)}, got {data_cfg.dataset!r}")
    _check_kind(kind)
    info = keypoint_info(data_cfg.dataset)
    image_dir, ann_file = resolve_split(root, split)
    if kind == "bottom_up":
        transforms = build_transforms(
            train=train, augment=data_cfg.augment, flip_index=info.flip_index(),
            test_size=data_cfg.test_size, max_size=data_cfg.max_size, train_sizes=data_cfg.train_sizes,
        )
        return _DATASETS[data_cfg.dataset](image_dir, ann_file, transforms=transforms,
                                           keep_images=data_cfg.train_images if train else "all")
    output_size = crop_output_size(data_cfg)
    use_detections = not train and not data_cfg.use_gt_bbox
    if use_detections and data_cfg.det_file is None:
        raise ValueError("data.use_gt_bbox is false but data.det_file is not set (a person-detection file in "
                         "COCO results format)")
    det_file = data_cfg.det_file if use_detections else None
    transforms = build_top_down_transforms(
        train=train, augment=data_cfg.augment, output_size=output_size, flip_index=info.flip_index(),
        upper_body_ids=info.upper_body_ids, half_body_prob=data_cfg.half_body_prob,
        half_body_min_joints=data_cfg.half_body_min_joints, scale_factor=data_cfg.scale_factor,
        rotation_factor=data_cfg.rotation_factor, rotation_prob=data_cfg.rotation_prob,
        photometric=data_cfg.photometric, cutout=data_cfg.cutout,
    )
    return TopDownKeypoints(
        image_dir, ann_file, dataset=data_cfg.dataset, transforms=transforms,
        box_area=data_cfg.dataset == "crowdpose",  # CrowdPose has no area: the box w*h (as CrowdPoseKeypoints)
        output_size=output_size, padding=data_cfg.bbox_padding, det_file=det_file,
        det_score_threshold=data_cfg.det_score_threshold,
    )
