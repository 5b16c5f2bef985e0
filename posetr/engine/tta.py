"""PETR test-time augmentation (opera ``PETR.aug_test``): every (scale, flip) view of an image runs the
model, the people of all views are mapped back to the original image (mirrored x -> W - x with the
left/right joints swapped), concatenated, and merged by linear soft-NMS on their keypoint boxes (opera
CrowdPose flip-test config: ``soft_nms``, IoU 0.5, sigma 0.5, min score 1e-3, at most 100 people).
Enabled by ``eval.flip`` and/or several ``eval.scales``; the default (no flip, one scale) is plain eval."""
from __future__ import annotations

import numpy as np
import torch

from posetr.data.keypoints import mirror_keypoints
from posetr.data.transforms import ToTensorNormalize, hflip, resize
from posetr.engine.distributed import all_gather_object, get_rank, is_main_process
from posetr.engine.evaluate import score_results, to_coco_results


def unflip_keypoints(keypoints: torch.Tensor, *, width: float, flip_index) -> torch.Tensor:
    """Keypoints Float[D, K, C] found on the mirrored image -> the original image (x -> width - x,
    joints permuted by ``flip_index``); applying it twice is the identity."""
    return mirror_keypoints(keypoints, flip_index, mirror_sum=width)


def soft_nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float = 0.5, sigma: float = 0.5,
             min_score: float = 1e-3, method: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (mmcv ``soft_nms``, offset 0): repeatedly keep the best remaining box and decay the others,
    by ``1 - IoU`` above ``iou_threshold`` ("linear") or ``exp(-IoU^2 / sigma)`` ("gaussian"); boxes
    decayed below ``min_score`` are dropped. Returns (kept indices, their decayed scores), best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).copy()
    remaining, keep, kept_scores = list(range(len(scores))), [], []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while remaining:
        best = max(remaining, key=lambda i: scores[i])
        remaining.remove(best)
        keep.append(best)
        kept_scores.append(scores[best])
        for i in list(remaining):
            w = max(0.0, min(boxes[best, 2], boxes[i, 2]) - max(boxes[best, 0], boxes[i, 0]))
            h = max(0.0, min(boxes[best, 3], boxes[i, 3]) - max(boxes[best, 1], boxes[i, 1]))
            union = areas[best] + areas[i] - w * h
            iou = w * h / union if union > 0 else 0.0
            if method == "linear":
                scores[i] *= (1.0 - iou) if iou > iou_threshold else 1.0
            elif method == "gaussian":
                scores[i] *= np.exp(-iou * iou / sigma)
            else:
                raise ValueError(f"soft_nms: method must be 'linear' or 'gaussian', got {method!r}")
            if scores[i] < min_score:
                remaining.remove(i)
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores)


def merge_views(views: list[dict], *, max_detections: int = 100) -> dict:
    """People of several views (``{"scores": [D], "keypoints": [D, K, C]}`` in original pixels) -> one
    result: concatenation, soft-NMS on the keypoint boxes (scores > 0 only), the best ``max_detections``."""
    scores = torch.cat([v["scores"] for v in views]).float()
    kpts = torch.cat([v["keypoints"] for v in views]).float()
    valid = torch.nonzero(scores > 0)[:, 0]
    scores, kpts = scores[valid], kpts[valid]
    boxes = torch.cat([kpts[..., :2].amin(1), kpts[..., :2].amax(1)], 1).numpy()
    keep, new_scores = soft_nms(boxes, scores.numpy())
    keep, new_scores = keep[:max_detections], torch.as_tensor(new_scores[:max_detections], dtype=torch.float32)
    out = kpts[torch.as_tensor(keep, dtype=torch.long)].clone()
    out[..., 2:] = 1.0  # opera: keypoint scores of merged people are 1
    return {"scores": new_scores, "keypoints": out}


@torch.no_grad()
def predict_image(model, postprocessor, dataset, image_id, *, scales, max_sizes, flip: bool, device) -> dict:
    """The merged people of one image of ``dataset`` over (scale, flip) views, batch 1 (no padding)."""
    image = dataset.load_image(image_id)
    target = dataset.load_target(image_id, width=image.width, height=image.height)
    to_tensor, views = ToTensorNormalize(), []
    for scale, max_size in zip(scales, max_sizes):
        resized, resized_target = resize(image, target, size=scale, max_size=max_size)
        for mirrored in ([False, True] if flip else [False]):
            view, view_target = (hflip(resized, resized_target, flip_index=dataset.info.flip_index())
                                 if mirrored else (resized, resized_target))
            tensor, _ = to_tensor(view, view_target)
            masks = torch.zeros(1, tensor.shape[1], tensor.shape[2], dtype=torch.bool, device=device)
            outputs = model(tensor[None].to(device), masks)
            result = postprocessor(outputs, target["orig_size"][None].to(device))[0]
            result = {k: v.cpu() for k, v in result.items()}
            if mirrored:
                result["keypoints"] = unflip_keypoints(result["keypoints"], width=image.width,
                                                       flip_index=dataset.info.flip_index())
            views.append(result)
    return views[0] if len(views) == 1 else merge_views(views)


def evaluate_tta(model, postprocessor, dataset, *, eval_cfg, data_cfg, device, output_dir=None,
                 prefix: str = "") -> dict:
    """COCO/CrowdPose metrics of ``dataset`` with test-time augmentation (``eval_cfg.flip``,
    ``eval_cfg.scales``: shorter sides; the longer-side limit scales with them,
    ``data_cfg.max_size * scale / data_cfg.test_size``, mmdet's (1333, 800) aspect)."""
    scales = list(eval_cfg.scales) or [data_cfg.test_size]
    max_sizes = [int(round(data_cfg.max_size * s / data_cfg.test_size)) for s in scales]
    model.eval()
    world = len(all_gather_object(0))
    local = []
    for image_id in dataset.ids[get_rank()::world]:
        res = predict_image(model, postprocessor, dataset, image_id, scales=scales, max_sizes=max_sizes,
                            flip=eval_cfg.flip, device=device)
        local += to_coco_results([image_id], [res], category_id=dataset.category_id)
    gathered = all_gather_object(local)
    if not is_main_process():
        return {}
    return score_results(dataset, [r for part in gathered for r in part], output_dir=output_dir,
                         prefix=prefix, crowd_split=eval_cfg.crowd_split)
