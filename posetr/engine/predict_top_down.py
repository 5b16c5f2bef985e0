"""Top-down inference on image files: person boxes from a JSON file (or the whole image as one box) ->
crops -> model (+ flip test) -> postprocessor -> ``predictions.json`` and PNGs with the skeletons."""
from __future__ import annotations

import os

import numpy as np
import torch

from posetr.data.build import crop_output_size
from posetr.data.collate import collate_crops
from posetr.data.top_down import instance_target, is_box, is_finite_number, read_json_file
from posetr.data.top_down_transforms import build_top_down_transforms
from posetr.engine.evaluate_top_down import infer_crops
from posetr.engine.predict import predict_files

BOXES_FORMAT = '{"<image file name or path>": [[x, y, w, h] or [x, y, w, h, score], ...]}'


def load_boxes(path: str) -> dict[str, list[tuple[list[float], float]]]:
    """Person boxes per image from the JSON file ``path`` (``BOXES_FORMAT``; pixels, score 1 when absent).

    Raises:
        FileNotFoundError: no such file. ValueError: not JSON, or an entry (named by image and index) that
            is not 4 or 5 finite numbers with positive width and height.
    """
    data = read_json_file(path, what="boxes file")
    if not isinstance(data, dict):
        raise ValueError(f"boxes file {path!r} must be a JSON object {BOXES_FORMAT}")
    boxes = {}
    for name, entries in data.items():
        if not isinstance(entries, list):
            raise ValueError(f"boxes file {path!r}: {name!r} must map to a list of boxes, got {entries!r:.80}")
        boxes[name] = []
        for i, box in enumerate(entries):
            score_ok = isinstance(box, list) and (len(box) == 4 or len(box) == 5 and is_finite_number(box[4]))
            if not (score_ok and is_box(box[:4])):
                raise ValueError(f"boxes file {path!r}: box {i} of {name!r} must be [x, y, w, h] or "
                                 f"[x, y, w, h, score] with finite numbers and w, h > 0, got {box!r}")
            boxes[name].append(([float(v) for v in box[:4]], float(box[4]) if len(box) == 5 else 1.0))
    return boxes


@torch.no_grad()
def predict_images_top_down(model, postprocessor, paths: list[str], *, boxes: dict | None, data_cfg, info,
                            output_dir: str, device, threshold: float, flip_test: bool, amp: bool = False,
                            coco_json: str | None = None) -> list[dict]:
    """Runs a top-down model on the person boxes of each image of ``paths``: ``boxes[path]`` or
    ``boxes[basename(path)]`` (:func:`load_boxes`), the whole image as one box (score 1) for an image
    not listed. No NMS: one person per box. Outputs and entries as
    :func:`~posetr.engine.predict.predict_files` (people: ``{"score", "box": [x, y, w, h], "keypoints"}``,
    original-image pixels).
    """
    output_size = crop_output_size(data_cfg)
    transforms = build_top_down_transforms(train=False, augment="none", output_size=output_size,
                                           flip_index=info.flip_index(), upper_body_ids=info.upper_body_ids)
    boxes = boxes or {}
    model.eval()

    def infer(image, path):
        pixels = np.asarray(image)
        listed = boxes.get(path, boxes.get(os.path.basename(path)))
        image_boxes = [([0.0, 0.0, float(image.width), float(image.height)], 1.0)] if listed is None else listed
        if not image_boxes:
            return []
        crops = [transforms(pixels, instance_target(
            {"image_id": 0, "bbox": box, "bbox_score": score}, num_keypoints=info.num_keypoints,
            output_size=output_size, padding=data_cfg.bbox_padding, orig_size=pixels.shape[:2], bbox_id=i))
            for i, (box, score) in enumerate(image_boxes)]
        results = infer_crops(model, postprocessor, *collate_crops(crops), device=device, amp=amp,
                              flip_test=flip_test)
        return [{"score": round(float(r["score"]), 4), "box": box,
                 "keypoints": [[round(float(v), 2) for v in kp] for kp in r["keypoints"].tolist()]}
                for r, (box, _) in zip(results, image_boxes)]

    return predict_files(paths, infer, output_dir=output_dir, info=info, threshold=threshold, coco_json=coco_json)
