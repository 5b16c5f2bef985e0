"""Top-down person-instance datasets: one item per person box of a COCO-format keypoint file (COCO,
CrowdPose, OCHuman), as mmpose 0.x ``TopDownCocoDataset``.

- Ground-truth boxes (training, and evaluation with ``use_gt_bbox``): every annotation that is not a
  crowd, whose box clipped to the image (mmpose's sanitising: ``x1 = max(0, x)``,
  ``x2 = min(width - 1, x1 + max(0, w))``, the same in y) is not empty, whose ``area`` is positive and
  that has a labelled keypoint (``max(keypoints) > 0`` and ``num_keypoints != 0``); box score 1.
- Detections (evaluation without ``use_gt_bbox``): a person-detection file in COCO results format
  ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` (e.g. the standard
  ``COCO_val2017_detections_AP_H_56_person.json``), entries of the person category on the annotation
  file's images with ``score >= det_score_threshold`` (mmpose ``det_bbox_thr``), boxes used as given.

Each box becomes ``center``/``scale`` at the crop's aspect ratio with the padding (1.25), the image is
warped by the transforms (posetr/data/top_down_transforms.py) and the item is ``(crop, target)`` in the
form of docs/model_interfaces.md (top-down).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from posetr.data.coco import CocoKeypoints
from posetr.data.crop_geometry import box_to_center_scale


def is_finite_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_box(values) -> bool:
    """A list ``[x, y, w, h]`` of finite numbers with ``w, h > 0`` (pixels)."""
    return (isinstance(values, list) and len(values) == 4 and all(is_finite_number(v) for v in values)
            and values[2] > 0 and values[3] > 0)


def read_json_file(path: str, *, what: str):
    """The JSON content of ``path`` (``what``: "detection file", "boxes file", for the messages).

    Raises:
        FileNotFoundError: no such file. ValueError: not valid JSON.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path!r} is not valid JSON: {exc}") from None


def ground_truth_instances(coco, *, num_keypoints: int, ann_file: str) -> list[dict]:
    """Person instances with ground-truth boxes (mmpose ``_load_coco_keypoint_annotation_kernel``), in
    image-id then annotation order: ``{"image_id", "bbox" [x, y, w, h] (clipped), "keypoints"
    Float[K, 3] (unlabelled joints zeroed), "area", "bbox_score": 1.0}``.

    Raises:
        ValueError: an image entry without ``width``/``height`` (needed to clip the boxes).
    """
    instances = []
    for image_id in sorted(coco.imgs):
        image = coco.imgs[image_id]
        if not (is_finite_number(image.get("width")) and is_finite_number(image.get("height"))):
            raise ValueError(f"annotation file {ann_file!r}: image {image_id} has no numeric 'width'/'height'")
        width, height = image["width"], image["height"]
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2, y2 = min(width - 1, x1 + max(0, w)), min(height - 1, y1 + max(0, h))
            if not (ann["area"] > 0 and x2 > x1 and y2 > y1):
                continue
            if max(ann["keypoints"]) == 0 or ann.get("num_keypoints", 1) == 0:
                continue
            kpts = np.asarray(ann["keypoints"], dtype=np.float32).reshape(num_keypoints, 3)
            kpts[kpts[:, 2] <= 0] = 0.0
            instances.append({"image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "keypoints": kpts,
                              "area": float(ann["area"]), "bbox_score": 1.0})
    return instances


def load_detections(det_file: str, *, image_ids, category_id: int, score_threshold: float) -> list[dict]:
    """Person detections of ``det_file`` (COCO results format) on the images ``image_ids`` with
    ``score >= score_threshold`` and ``category_id`` (the annotation file's person category, 1 for COCO), in
    file order: ``{"image_id", "bbox" [x, y, w, h], "bbox_score"}``. Detections on other images are skipped
    (a file for the whole val2017 set serves an annotation file of a subset).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, not a non-empty list, an entry (named by its index) that is not a dict with an
            integer ``image_id``, a ``category_id``, a ``bbox`` of 4 finite numbers with positive width and
            height and a finite ``score``, or no entry on any of ``image_ids`` (the wrong file).
    """
    entries = read_json_file(det_file, what="detection file")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"detection file {det_file!r} must be a non-empty JSON list of "
                         '{"image_id", "category_id", "bbox": [x, y, w, h], "score"} (COCO results format)')
    known = set(image_ids)
    detections, on_images = [], 0
    for i, entry in enumerate(entries):
        where = f"detection file {det_file!r}: entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {entry!r:.80}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in entry]
        if missing:
            raise ValueError(f"{where} has no {missing} (keys: {sorted(entry)})")
        if not isinstance(entry["image_id"], int) or isinstance(entry["image_id"], bool):
            raise ValueError(f"{where}: image_id must be an integer, got {entry['image_id']!r}")
        if not is_box(entry["bbox"]):
            raise ValueError(f"{where}: bbox must be [x, y, w, h] with finite numbers and w, h > 0, "
                             f"got {entry['bbox']!r}")
        if not is_finite_number(entry["score"]):
            raise ValueError(f"{where}: score must be a finite number, got {entry['score']!r}")
        on_images += entry["image_id"] in known
        if entry["image_id"] not in known or entry["category_id"] != category_id or entry["score"] < score_threshold:
            continue
        detections.append({"image_id": entry["image_id"], "bbox": [float(v) for v in entry["bbox"]],
                           "bbox_score": float(entry["score"])})
    if not on_images:
        raise ValueError(f"detection file {det_file!r}: none of its {len(entries)} detections is on an image of the "
                         f"annotation file (image ids such as {sorted(known)[:3]}; the file has e.g. "
                         f"{entries[0]['image_id']})")
    return detections


def instance_target(instance: dict, *, num_keypoints: int, output_size: tuple[int, int], padding: float,
                    orig_size, bbox_id: int) -> dict:
    """The pixel-space target (posetr/data/top_down_transforms.py) of one box: ``center``/``scale`` at the
    crop's aspect ratio ``W / H`` of ``output_size`` with ``padding``; detections get unlabelled keypoints
    and area 0."""
    W, H = output_size
    center, scale = box_to_center_scale(instance["bbox"], aspect_ratio=W / H, padding=padding)
    kpts = instance.get("keypoints")
    return {
        "keypoints": np.zeros((num_keypoints, 3), np.float32) if kpts is None else kpts,
        "center": center, "scale": scale, "rotation": 0.0, "flipped": False,
        "bbox_score": instance["bbox_score"], "image_id": instance["image_id"],
        "area": instance.get("area", 0.0), "orig_size": orig_size, "bbox_id": bbox_id,
    }


class TopDownKeypoints(CocoKeypoints):
    """Person crops of a COCO-format keypoint file: :class:`~posetr.data.coco.CocoKeypoints` (file
    checks, ``coco``, ``info``, ``ids`` = every image, for COCOeval) with one item per person box.

    Args:
        image_dir, ann_file, dataset, box_area: as :class:`~posetr.data.coco.CocoKeypoints`.
        transforms: ``(uint8 image, pixel target) -> (crop, target)``
            (:func:`~posetr.data.top_down_transforms.build_top_down_transforms`).
        output_size: (W, H) of the crop (192, 256 for a 256x192 model).
        padding: box padding (1.25).
        det_file: person detections (COCO results format) instead of the ground-truth boxes.
        det_score_threshold: detections below this score are dropped.

    Raises:
        FileNotFoundError / ValueError: as :class:`~posetr.data.coco.CocoKeypoints` and
            :func:`load_detections`; RuntimeError (from ``__getitem__``): an unreadable image.
    """

    def __init__(self, image_dir: str, ann_file: str, *, dataset: str = "coco", transforms=None,
                 box_area: bool = False, output_size: tuple[int, int] = (192, 256), padding: float = 1.25,
                 det_file: str | None = None, det_score_threshold: float = 0.0):
        super().__init__(image_dir, ann_file, dataset=dataset, transforms=transforms, box_area=box_area)
        self.output_size, self.padding = tuple(output_size), padding
        if det_file is None:
            self.instances = ground_truth_instances(self.coco, num_keypoints=self.info.num_keypoints,
                                                    ann_file=ann_file)
        else:
            self.instances = load_detections(det_file, image_ids=self.ids, category_id=self.category_id,
                                             score_threshold=det_score_threshold)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int):
        instance = self.instances[index]
        image = np.asarray(self.load_image(instance["image_id"]))
        target = instance_target(instance, num_keypoints=self.info.num_keypoints, output_size=self.output_size,
                                 padding=self.padding, orig_size=image.shape[:2], bbox_id=index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
