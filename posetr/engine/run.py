"""``eval`` and ``predict`` entry points: model from the config, weights from a checkpoint."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from posetr.config import Config
from posetr.data.build import build_dataset, collate_for
from posetr.data.keypoints import keypoint_info
from posetr.engine.checkpoint import load_checkpoint
from posetr.engine.predict import predict_images
from posetr.engine.predict_top_down import load_boxes, predict_images_top_down
from posetr.engine.train import (_default_build, _default_data_kind, check_keypoints, evaluate_kind,
                                 resolve_data_root, resolve_device)


def _load_model(cfg: Config, checkpoint: str, build_model):
    check_keypoints(cfg)
    device = resolve_device(cfg.train.device)
    model, _, postprocessor = (build_model or _default_build)(cfg.model)
    load_checkpoint(checkpoint, model=model)
    return model.to(device), postprocessor, device


def run_eval(cfg: Config, *, checkpoint: str, output_dir: str, build_model=None, data_kind: str | None = None) -> dict:
    """COCOeval of ``checkpoint`` on ``cfg.data``'s validation split; writes ``output_dir/metrics.json``.

    Without ``cfg.data.root`` the synthetic set under ``output_dir`` is used (written if missing).
    ``data_kind`` ("bottom_up" | "top_down") defaults to the model's ``DATA_KIND``; top-down evaluates
    the crops of the ground-truth boxes or of ``cfg.data.det_file`` (``cfg.data.use_gt_bbox``).
    """
    kind = data_kind or _default_data_kind(cfg.model)
    model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    root = resolve_data_root(cfg, output_dir)
    dataset = build_dataset(cfg.data, root=root, split=cfg.data.val_split, train=False, kind=kind)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, collate_fn=collate_for(kind),
                        num_workers=cfg.data.num_workers)
    return evaluate_kind(kind, model, postprocessor, loader, eval_cfg=cfg.eval, device=device, output_dir=output_dir,
                         amp=cfg.train.amp)


def run_predict(cfg: Config, *, checkpoint: str, images: list[str], output_dir: str, build_model=None,
                boxes: str | None = None, data_kind: str | None = None, coco_json: str | None = None) -> list[dict]:
    """Keypoints of the people in ``images`` scoring at least ``cfg.eval.draw_threshold``:
    ``output_dir/predictions.json``, one PNG per image and, with ``coco_json``, COCO keypoint results
    (:func:`~posetr.engine.predict.predict_files`; unreadable images are skipped and reported there).

    Top-down models crop the person boxes of the JSON file ``boxes``
    (:data:`~posetr.engine.predict_top_down.BOXES_FORMAT`; images not in it: the whole image as one box).

    Raises:
        ValueError: ``boxes`` with a bottom-up model; see also the predict functions.
    """
    kind = data_kind or _default_data_kind(cfg.model)
    if boxes is not None and kind != "top_down":
        raise ValueError("--boxes is for top-down models (person crops); this model finds people itself")
    person_boxes = load_boxes(boxes) if boxes is not None else None
    model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    info = keypoint_info(cfg.data.dataset)
    if kind == "top_down":
        return predict_images_top_down(model, postprocessor, images, boxes=person_boxes, data_cfg=cfg.data, info=info,
                                       output_dir=output_dir, device=device, threshold=cfg.eval.draw_threshold,
                                       flip_test=cfg.eval.flip_test, amp=cfg.train.amp, coco_json=coco_json)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.train.amp):
        return predict_images(model, postprocessor, images, data_cfg=cfg.data, info=info, output_dir=output_dir,
                              device=device, threshold=cfg.eval.draw_threshold, coco_json=coco_json)
