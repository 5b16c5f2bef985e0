"""``eval`` and ``predict`` entry points: model config and weights from a checkpoint (posetr checkpoints
carry their run's config), the rest of the config from the checkpoint or a given config."""
from __future__ import annotations

import dataclasses
import os

import torch
from torch.utils.data import DataLoader

from posetr.config import Config
from posetr.data.build import build_dataset, collate_for
from posetr.data.keypoints import keypoint_info
from posetr.engine.checkpoint import check_same_model, checkpoint_config, load_checkpoint, read_checkpoint
from posetr.engine.predict import predict_images
from posetr.engine.predict_top_down import load_boxes, predict_images_top_down
from posetr.engine.run_records import prepare_output_dir
from posetr.engine.train import (_default_build, _default_data_kind, check_keypoints, evaluate_kind,
                                 resolve_data_root, resolve_device)


def config_of_checkpoint(path: str) -> Config:
    """The run config stored in checkpoint ``path`` (its tensors are memory-mapped, not read).

    Raises:
        FileNotFoundError / posetr.errors.CheckpointError: see
        :func:`~posetr.engine.checkpoint.read_checkpoint` and :func:`~posetr.engine.checkpoint.checkpoint_config`.
    """
    return checkpoint_config(read_checkpoint(path, mmap=True), path)


def _load_model(cfg: Config | None, checkpoint: str, build_model) -> tuple[Config, torch.nn.Module, object, object]:
    """``(cfg, model, postprocessor, device)``: ``cfg`` None takes the checkpoint's config; a given ``cfg``
    must have the checkpoint's model section (ValueError naming the first differing key)."""
    state = read_checkpoint(checkpoint)
    saved = checkpoint_config(state, checkpoint) if cfg is None or state.get("config") is not None else None
    if cfg is None:
        cfg = saved
    elif saved is not None:
        check_same_model(cfg, saved, checkpoint)
    check_keypoints(cfg)
    device = resolve_device(cfg.train.device)
    # the checkpoint's weights replace any pretrained backbone: do not read that file
    model_cfg = dataclasses.replace(cfg.model, pretrained_backbone=None) \
        if hasattr(cfg.model, "pretrained_backbone") else cfg.model
    model, _, postprocessor = (build_model or _default_build)(model_cfg)
    load_checkpoint(checkpoint, model=model, state=state)
    return cfg, model.to(device), postprocessor, device


def eval_prefix(checkpoint: str) -> str:
    """How ``eval``'s files start: ``eval_<checkpoint file name without extension>_`` (so an evaluation
    never overwrites the training run's ``metrics.json`` / ``results.json``)."""
    return f"eval_{os.path.splitext(os.path.basename(checkpoint))[0]}_"


def run_eval(cfg: Config | None, *, checkpoint: str, output_dir: str, build_model=None,
             data_kind: str | None = None) -> dict:
    """COCOeval of ``checkpoint`` on ``cfg.data``'s validation split; writes
    ``output_dir/eval_<checkpoint stem>_metrics.json`` and ``..._results.json`` (:func:`eval_prefix`).

    ``cfg`` None: the config stored in the checkpoint; a given ``cfg`` must have the checkpoint's model
    section. Without ``cfg.data.root`` the synthetic set under ``output_dir`` is used (written if missing).
    ``data_kind`` ("bottom_up" | "top_down") defaults to the model's ``DATA_KIND``; top-down evaluates
    the crops of the ground-truth boxes or of ``cfg.data.det_file`` (``cfg.data.use_gt_bbox``).

    Raises:
        NotADirectoryError / PermissionError: ``output_dir`` cannot be written (checked first).
        ValueError: ``cfg``'s model differs from the checkpoint's. FileNotFoundError /
        posetr.errors.CheckpointError: see :func:`~posetr.engine.checkpoint.load_checkpoint`.
    """
    output_dir = prepare_output_dir(output_dir)
    cfg, model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    kind = data_kind or _default_data_kind(cfg.model)
    root = resolve_data_root(cfg, output_dir)
    dataset = build_dataset(cfg.data, root=root, split=cfg.data.val_split, train=False, kind=kind)
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate_for(kind),
                        num_workers=cfg.data.num_workers)
    return evaluate_kind(kind, model, postprocessor, loader, eval_cfg=cfg.eval, device=device, output_dir=output_dir,
                         amp=cfg.train.amp, prefix=eval_prefix(checkpoint), data_cfg=cfg.data)


def run_predict(cfg: Config | None, *, checkpoint: str, images: list[str], output_dir: str, build_model=None,
                boxes: str | None = None, data_kind: str | None = None, coco_json: str | None = None) -> list[dict]:
    """Keypoints of the people in ``images`` scoring at least ``cfg.eval.draw_threshold``:
    ``output_dir/predictions.json``, one PNG per image and, with ``coco_json``, COCO keypoint results
    (:func:`~posetr.engine.predict.predict_files`; unreadable images are skipped and reported there).

    ``cfg`` None: the config stored in the checkpoint; a given ``cfg`` must have the checkpoint's model
    section. Top-down models crop the person boxes of the JSON file ``boxes``
    (:data:`~posetr.engine.predict_top_down.BOXES_FORMAT`; images not in it: the whole image as one box).

    Raises:
        ValueError: ``boxes`` with a bottom-up model, or ``cfg``'s model differs from the checkpoint's; see
        also :func:`run_eval` and the predict functions.
    """
    def check_boxes(cfg):  # before reading the checkpoint where the config is given
        kind = data_kind or _default_data_kind(cfg.model)
        if boxes is not None and kind != "top_down":
            raise ValueError("--boxes is for top-down models (person crops); this model finds people itself")
        return kind, load_boxes(boxes) if boxes is not None else None

    if cfg is not None:
        check_boxes(cfg)
    cfg, model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    kind, person_boxes = check_boxes(cfg)
    info = keypoint_info(cfg.data.dataset)
    if kind == "top_down":
        return predict_images_top_down(model, postprocessor, images, boxes=person_boxes, data_cfg=cfg.data, info=info,
                                       output_dir=output_dir, device=device, threshold=cfg.eval.draw_threshold,
                                       flip_test=cfg.eval.flip_test, amp=cfg.train.amp, coco_json=coco_json)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.train.amp):
        return predict_images(model, postprocessor, images, data_cfg=cfg.data, info=info, output_dir=output_dir,
                              device=device, threshold=cfg.eval.draw_threshold, coco_json=coco_json)
