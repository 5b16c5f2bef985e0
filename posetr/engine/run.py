"""``eval`` and ``predict`` entry points: model from the config, weights from a checkpoint."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from posetr.config import Config
from posetr.data.build import build_dataset
from posetr.data.collate import collate
from posetr.data.keypoints import keypoint_info
from posetr.engine.checkpoint import load_checkpoint
from posetr.engine.evaluate import evaluate
from posetr.engine.predict import predict_images
from posetr.engine.train import _default_build, check_keypoints, resolve_data_root, resolve_device


def _load_model(cfg: Config, checkpoint: str, build_model):
    check_keypoints(cfg)
    device = resolve_device(cfg.train.device)
    model, _, postprocessor = (build_model or _default_build)(cfg.model)
    load_checkpoint(checkpoint, model=model)
    return model.to(device), postprocessor, device


def run_eval(cfg: Config, *, checkpoint: str, output_dir: str, build_model=None) -> dict:
    """COCOeval of ``checkpoint`` on ``cfg.data``'s validation split; writes ``output_dir/metrics.json``.

    Without ``cfg.data.root`` the synthetic set under ``output_dir`` is used (written if missing).
    """
    model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    root = resolve_data_root(cfg, output_dir)
    dataset = build_dataset(cfg.data, root=root, split=cfg.data.val_split, train=False)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, collate_fn=collate,
                        num_workers=cfg.data.num_workers)
    return evaluate(model, postprocessor, loader, device=device, output_dir=output_dir, amp=cfg.train.amp)


def run_predict(cfg: Config, *, checkpoint: str, images: list[str], output_dir: str,
                build_model=None) -> list[dict]:
    """Keypoints of the people in ``images``: ``output_dir/predictions.json`` and one PNG per image."""
    model, postprocessor, device = _load_model(cfg, checkpoint, build_model)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.train.amp):
        return predict_images(model, postprocessor, images, data_cfg=cfg.data,
                              info=keypoint_info(cfg.data.dataset), output_dir=output_dir, device=device,
                              threshold=cfg.eval.draw_threshold)
