"""CrowdPose keypoint evaluation: the CrowdPose toolkit's protocol as xtcocotools implements it
(``COCOeval(iouType="keypoints_crowd", use_area=False)``, ``get_type_result(first=0.2, second=0.8)``),
run on pycocotools ``COCOeval`` (xtcocotools' wheels are built against numpy 1.x and fail to import
with numpy 2: "numpy.dtype size changed").

Protocol details (xtcocotools/cocoeval.py):

- OKS area = 0.53 * box w * h of the ground truth (``use_area=False``), CrowdPose sigmas;
- a ground truth with ``num_keypoints == 0`` (or ``iscrowd``) is ignored; at most 20 detections per image;
- detections whose keypoint scores are all <= 0 are dropped;
- AP_easy / AP_medium / AP_hard: AP on the images of each crowd level by their ``crowdIndex``.
  ``split="code"`` (default, the toolkit): easy < 0.2 <= medium < 0.8 <= hard;
  ``split="paper"`` (CrowdPose paper / issue #15): easy < 0.1 <= medium <= 0.8 < hard.
  A level without images (or without a non-ignored person) has no AP: ``None`` (null in metrics.json).
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

CROWDPOSE_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
CROWD_SPLITS = ("code", "paper")
BOX_AREA_FACTOR = 0.53  # xtcocotools use_area=False: OKS scale = 0.53 * w * h


def crowd_level(crowd_index: float, *, split: str = "code") -> str:
    """"easy" | "medium" | "hard" of an image's ``crowdIndex`` (see the module docstring).

    Raises:
        ValueError: unknown ``split``.
    """
    if split == "code":
        return "easy" if crowd_index < 0.2 else "medium" if crowd_index < 0.8 else "hard"
    if split == "paper":
        return "easy" if crowd_index < 0.1 else "medium" if crowd_index <= 0.8 else "hard"
    raise ValueError(f"eval.crowd_split must be one of {CROWD_SPLITS}, got {split!r}")


def _eval_gt(coco_gt) -> COCO:
    """Copy of ``coco_gt`` with ``area`` = 0.53 * w * h (the OKS scale of the protocol)."""
    dataset = copy.deepcopy(coco_gt.dataset)
    for ann in dataset["annotations"]:
        if "num_keypoints" not in ann:
            raise ValueError(f"CrowdPose evaluation: annotation {ann.get('id')} has no 'num_keypoints'")
        ann["area"] = BOX_AREA_FACTOR * float(ann["bbox"][2] * ann["bbox"][3])
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _run(gt, dt, sigmas, image_ids):
    evaluator = COCOeval(gt, dt, iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    evaluator.params.imgIds = sorted(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [None if v < 0 else float(v) for v in evaluator.stats]


def crowdpose_keypoint_eval(coco_gt, results: list[dict], *, sigmas, image_ids=None,
                            split: str = "code") -> tuple[dict, str]:
    """CrowdPose metrics ``CROWDPOSE_STAT_NAMES`` of ``results`` (COCO results format, original-image
    pixels) against ``coco_gt`` (pycocotools ``COCO``; images carry ``crowdIndex``).

    Returns:
        ``({"AP": ..., "AP_easy": ..., ...}, summary text)``; undefined values are ``None``.

    Raises:
        ValueError: an image without ``crowdIndex``, an annotation without ``num_keypoints``, or a bad ``split``.
    """
    image_ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(image_ids)
    levels = {"easy": [], "medium": [], "hard": []}
    for image_id in image_ids:
        image = coco_gt.imgs[image_id]
        if "crowdIndex" not in image:
            raise ValueError(f"CrowdPose evaluation: image {image_id} has no 'crowdIndex'")
        levels[crowd_level(float(image["crowdIndex"]), split=split)].append(image_id)
    kept = [r for r in results if any(v > 0 for v in r["keypoints"][2::3])]
    if not kept:
        return {name: None if name.startswith("AP_") else 0.0 for name in CROWDPOSE_STAT_NAMES}, "no detections"
    gt = _eval_gt(coco_gt)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        dt = gt.loadRes(copy.deepcopy(kept))
        stats = _run(gt, dt, sigmas, image_ids)
        per_level = {level: _run(gt, dt, sigmas, ids)[0] if ids else None for level, ids in levels.items()}
    metrics = dict(zip(CROWDPOSE_STAT_NAMES[:6], stats[:3] + stats[5:8]))
    metrics.update({f"AP_{level}": value for level, value in per_level.items()})
    summary = "\n".join(line for line in text.getvalue().splitlines() if "Average" in line)
    summary += "\n" + " ".join(f"AP_{k}={'n/a' if v is None else f'{v:.3f}'}" for k, v in per_level.items())
    return metrics, summary
