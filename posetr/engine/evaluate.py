"""Keypoint evaluation: model -> COCO results JSON -> pycocotools ``COCOeval(iouType="keypoints")``
with the dataset's OKS sigmas -> ``metrics.json``."""
from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posetr.engine.crowdpose_eval import crowdpose_keypoint_eval
from posetr.engine.distributed import all_gather_object, is_main_process
from posetr.engine.run_records import progress
from posetr.files import write_json

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def coco_keypoint_eval(coco_gt, results: list[dict], *, sigmas, image_ids=None) -> tuple[dict, str]:
    """COCOeval keypoint metrics of ``results`` (COCO results format) against ``coco_gt``.

    Args:
        coco_gt: pycocotools ``COCO`` with the ground truth (every annotation has ``area``).
        results: ``[{"image_id", "category_id", "keypoints": [x, y, s] * K, "score"}]``, pixels of
            the original image.
        sigmas: per-keypoint OKS sigmas (length K).
        image_ids: images to evaluate (default: every image of ``coco_gt``).

    Returns:
        ``({"AP": ..., "AP50": ..., ..., "ARl": ...}, summary text)``; a metric COCOeval cannot define
        (its -1: no ground truth in that area range) is None (null in metrics.json), never 0.
    """
    image_ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(image_ids)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        coco_dt = coco_gt.loadRes(results) if results else _no_detections(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) if value >= 0 else None for name, value in zip(STAT_NAMES, evaluator.stats)}
    summary = "\n".join(line for line in text.getvalue().splitlines() if "Average" in line)
    return stats, summary if results else "no detections\n" + summary


def _no_detections(coco_gt):
    """An empty pycocotools results set on ``coco_gt``'s images (``loadRes`` refuses an empty list)."""
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                       "annotations": []}
    coco_dt.createIndex()
    return coco_dt


def format_metric(value) -> str:
    """A metric for the console: ``0.1234``, or ``undefined`` for None (COCOeval's -1)."""
    return "undefined" if value is None else f"{value:.4f}"


def to_coco_results(image_ids, results, *, category_id: int = 1) -> list[dict]:
    """Postprocessor output (``{"scores": [Q], "keypoints": [Q, K, 3]}`` per image) -> COCO results."""
    out = []
    for image_id, res in zip(image_ids, results):
        for score, kpts in zip(res["scores"].tolist(), res["keypoints"].float().tolist()):
            flat = [round(float(v), 2) for xys in kpts for v in xys]
            out.append({"image_id": int(image_id), "category_id": category_id, "keypoints": flat,
                        "score": float(score)})
    return out


@torch.no_grad()
def predict_dataset(model, postprocessor, loader, *, device, amp: bool = False) -> list[dict]:
    """COCO results of every image in ``loader`` (this process's share)."""
    model.eval()
    out = []
    for images, masks, targets in progress(loader, desc="eval", enabled=is_main_process()):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(images.to(device), masks.to(device))
        orig_sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
        results = postprocessor(outputs, orig_sizes)
        out += to_coco_results([t["image_id"] for t in targets], results,
                               category_id=loader.dataset.category_id)
    return out


def evaluate(model, postprocessor, loader, *, device, output_dir: str | None = None,
             amp: bool = False, prefix: str = "", crowd_split: str = "code") -> dict:
    """Runs the model on ``loader`` (a loader of a :class:`~posetr.data.coco.CocoKeypoints`), gathers
    the results of every process and evaluates them on the main process.

    Writes ``<prefix>results.json`` (COCO results) and ``<prefix>metrics.json`` (``STAT_NAMES``; null where
    COCOeval gives -1) to ``output_dir`` when given. Returns the metrics on the main process, ``{}`` on the
    others.
    """
    dataset = loader.dataset
    local = predict_dataset(model, postprocessor, loader, device=device, amp=amp)
    gathered = all_gather_object(local)
    if not is_main_process():
        return {}
    seen, results = set(), []
    for part in gathered:  # a DistributedSampler pads with repeated images: keep each image once
        for image_id in sorted({r["image_id"] for r in part} - seen):
            results += [r for r in part if r["image_id"] == image_id]
            seen.add(image_id)
    return score_results(dataset, results, output_dir=output_dir, prefix=prefix, crowd_split=crowd_split)


def score_results(dataset, results: list[dict], *, output_dir: str | None = None, prefix: str = "",
                  crowd_split: str = "code") -> dict:
    """COCOeval of ``results`` (COCO results format) on every image of ``dataset`` (a
    :class:`~posetr.data.coco.CocoKeypoints` or a subclass) with its sigmas; prints the summary and writes
    ``<prefix>results.json`` and ``<prefix>metrics.json`` (``STAT_NAMES``, null where undefined) to
    ``output_dir`` when given. CrowdPose (``dataset.dataset_name == "crowdpose"``) uses its own protocol and
    metric names (:func:`~posetr.engine.crowdpose_eval.crowdpose_keypoint_eval`, levels by ``crowd_split``)."""
    if dataset.dataset_name == "crowdpose":
        metrics, summary = crowdpose_keypoint_eval(dataset.coco, results, sigmas=dataset.info.sigmas,
                                                   image_ids=dataset.ids, split=crowd_split)
    else:
        metrics, summary = coco_keypoint_eval(dataset.coco, results, sigmas=dataset.info.sigmas,
                                              image_ids=dataset.ids)
    print(summary)
    if output_dir is not None:
        write_json(os.path.join(output_dir, f"{prefix}results.json"), results)
        write_json(os.path.join(output_dir, f"{prefix}metrics.json"), metrics, indent=2)
    return metrics
