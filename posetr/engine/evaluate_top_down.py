"""Top-down evaluation (mmpose 0.x ``TopDownCocoDataset.evaluate``): person crops -> model (and, with
the flip test, the mirrored crops) -> the model's postprocessor (keypoints in image pixels, keypoint and
instance scores) -> OKS-NMS per image -> COCO results -> pycocotools COCOeval with the dataset's
sigmas -> ``metrics.json`` (the bottom-up keys, posetr/engine/evaluate.py)."""
from __future__ import annotations

import torch

from posetr.engine.distributed import all_gather_object, is_main_process
from posetr.engine.evaluate import score_results
from posetr.engine.pose_nms import oks_nms
from posetr.engine.run_records import progress


def targets_to(targets: list[dict], device) -> list[dict]:
    """The tensors of each target dict on ``device`` (other values as they are)."""
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


@torch.no_grad()
def infer_crops(model, postprocessor, images, masks, targets, *, device, amp: bool = False,
                flip_test: bool = False) -> list[dict]:
    """``postprocessor(model(images, masks), targets, flipped_outputs=model(images.flip(-1), masks))``
    (``flipped_outputs=None`` without ``flip_test``); the model's forward runs under bf16 autocast with
    ``amp``. Returns the postprocessor's list of ``{"keypoints": Float[K, 3], "score"}`` (image pixels)."""
    images, masks = images.to(device), masks.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        outputs = model(images, masks)
        flipped = model(images.flip(-1), masks) if flip_test else None
    return postprocessor(outputs, targets_to(targets, device), flipped_outputs=flipped)


@torch.no_grad()
def predict_crops(model, postprocessor, loader, *, device, amp: bool = False, flip_test: bool = False) -> list[dict]:
    """One record per crop of ``loader`` (this process's share): ``{"bbox_id", "image_id", "keypoints":
    [[x, y, score]] * K (image pixels), "score", "area"}``, ``area`` = the crop box's
    ``scale_w * scale_h`` (pixels^2, mmpose's area for OKS-NMS)."""
    model.eval()
    records = []
    for images, masks, targets in progress(loader, desc="eval", enabled=is_main_process()):
        results = infer_crops(model, postprocessor, images, masks, targets, device=device, amp=amp,
                              flip_test=flip_test)
        for target, result in zip(targets, results):
            records.append({"bbox_id": target["bbox_id"], "image_id": target["image_id"],
                            "keypoints": result["keypoints"].float().cpu().tolist(), "score": float(result["score"]),
                            "area": float(target["scale"].prod())})
    return records


def nms_to_coco_results(records: list[dict], *, sigmas, threshold: float, category_id: int = 1) -> list[dict]:
    """COCO results of the crop ``records`` (:func:`predict_crops`) kept by OKS-NMS within each image
    (:func:`~posetr.engine.pose_nms.oks_nms` with ``threshold``), by image id, best score first."""
    by_image: dict[int, list[dict]] = {}
    for record in records:
        by_image.setdefault(record["image_id"], []).append(record)
    out = []
    for image_id in sorted(by_image):
        people = by_image[image_id]
        keep = oks_nms([p["keypoints"] for p in people], [p["score"] for p in people],
                       [p["area"] for p in people], sigmas=sigmas, threshold=threshold)
        for i in keep:
            flat = [round(float(v), 2) for xys in people[i]["keypoints"] for v in xys]
            out.append({"image_id": int(image_id), "category_id": category_id, "keypoints": flat,
                        "score": people[i]["score"]})
    return out


def evaluate_top_down(model, postprocessor, loader, *, device, output_dir: str | None = None, amp: bool = False,
                      flip_test: bool = False, nms_threshold: float = 0.9, prefix: str = "") -> dict:
    """Runs the model on the crops of ``loader`` (a loader of a
    :class:`~posetr.data.top_down.TopDownKeypoints` with :func:`~posetr.data.collate.collate_crops`),
    gathers every process's records, keeps each crop once, applies OKS-NMS per image and evaluates on the
    main process.

    Writes ``<prefix>results.json`` and ``<prefix>metrics.json`` (null where COCOeval gives -1) to
    ``output_dir`` when given. Returns the metrics on the main process, ``{}`` on the others.
    """
    dataset = loader.dataset
    local = predict_crops(model, postprocessor, loader, device=device, amp=amp, flip_test=flip_test)
    gathered = all_gather_object(local)
    if not is_main_process():
        return {}
    unique = {}  # a DistributedSampler pads with repeated crops: keep each crop once
    for part in gathered:
        for record in part:
            unique.setdefault(record["bbox_id"], record)
    records = [unique[i] for i in sorted(unique)]
    results = nms_to_coco_results(records, sigmas=dataset.info.sigmas, threshold=nms_threshold,
                                  category_id=dataset.category_id)
    return score_results(dataset, results, output_dir=output_dir, prefix=prefix)
