"""Training loop: AdamW with lower lr for backbone and sampling offsets, gradient clipping, step
schedule, optional bf16 autocast, tqdm progress, atomic checkpoints with exact resume, DDP via torchrun,
and a COCOeval at the end (``metrics.json``)."""
from __future__ import annotations

import math
import os
import random
import time

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from posetr.config import Config, config_to_dict
from posetr.data.build import build_dataset, collate_for
from posetr.data.keypoints import keypoint_info
from posetr.data.synthetic import write_synthetic_coco
from posetr.engine.checkpoint import load_checkpoint, save_checkpoint
from posetr.engine.distributed import barrier, init_distributed, is_main_process
from posetr.engine.evaluate import evaluate
from posetr.engine.evaluate_top_down import evaluate_top_down


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_data_root(cfg: Config, output_dir: str) -> str:
    """``cfg.data.root``, or the synthetic stick-figure set (written once under ``output_dir``)."""
    if cfg.data.root is not None:
        return cfg.data.root
    root = os.path.join(output_dir, "synthetic_data")
    if is_main_process() and not os.path.isdir(os.path.join(root, "annotations")):
        write_synthetic_coco(root, num_images=cfg.data.synthetic_images)
    barrier()
    return root


def check_keypoints(cfg: Config) -> None:
    """The model's keypoint count must match the dataset's."""
    expected = keypoint_info(cfg.data.dataset).num_keypoints
    if cfg.model.num_keypoints != expected:
        raise ValueError(
            f"model.num_keypoints is {cfg.model.num_keypoints} but data.dataset {cfg.data.dataset!r} "
            f"has {expected} keypoints"
        )


def build_optimizer(model: torch.nn.Module, train_cfg) -> torch.optim.AdamW:
    """AdamW with three groups: backbone (lr x ``lr_backbone_mult``), deformable sampling offsets /
    reference points (lr x ``lr_linear_proj_mult``) and the rest (Deformable DETR / opera PETR)."""
    groups = {"backbone": [], "linear_proj": [], "other": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "backbone" in name:
            groups["backbone"].append(param)
        elif any(key in name for key in train_cfg.lr_linear_proj_names):
            groups["linear_proj"].append(param)
        else:
            groups["other"].append(param)
    lrs = {"backbone": train_cfg.lr * train_cfg.lr_backbone_mult,
           "linear_proj": train_cfg.lr * train_cfg.lr_linear_proj_mult, "other": train_cfg.lr}
    param_groups = [{"params": p, "lr": lrs[k], "name": k} for k, p in groups.items() if p]
    return torch.optim.AdamW(param_groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg):
    """The per-epoch learning-rate schedule of ``train_cfg.lr_schedule``: "step" (x ``lr_gamma`` at each
    epoch of ``lr_milestones`` (MultiStepLR; POET's paper recipe) or, without milestones, every ``lr_drop``
    epochs (StepLR; Deformable DETR, PETR)) or "cosine" (CosineAnnealingLR from each group's lr to 0 over
    ``epochs``; TFPose).

    Raises:
        ValueError: any other ``lr_schedule``, or ``lr_milestones`` not ascending positive epochs.
    """
    if train_cfg.lr_schedule == "step":
        milestones = train_cfg.lr_milestones
        if not milestones:
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=train_cfg.lr_drop, gamma=train_cfg.lr_gamma)
        if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones) or \
                list(milestones) != sorted(set(milestones)):
            raise ValueError(f"train.lr_milestones must be ascending positive epochs, got {milestones!r}")
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=train_cfg.lr_gamma)
    if train_cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(train_cfg.epochs, 1))
    raise ValueError(f"train.lr_schedule must be 'step' or 'cosine', got {train_cfg.lr_schedule!r}")


def train_one_epoch(model, criterion, loader, optimizer, *, device, epoch: int, clip_max_norm: float,
                    amp: bool = False) -> dict:
    """One pass over ``loader``; returns the mean weighted total loss and the mean of each loss."""
    model.train()
    criterion.train()
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not is_main_process(), dynamic_ncols=True)
    for images, masks, targets in bar:
        images, masks = images.to(device), masks.to(device)
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(images, masks)
            losses = criterion(outputs, targets)
        weights = criterion.weight_dict
        total = sum(weights[k] * losses[k].float() for k in losses if k in weights)
        if not math.isfinite(total.item()):
            raise RuntimeError(f"loss is {total.item()} at epoch {epoch}: "
                               f"{ {k: round(v.item(), 4) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm)
        optimizer.step()
        steps += 1
        sums["loss"] = sums.get("loss", 0.0) + total.item()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.1e}")
    return {k: v / max(steps, 1) for k, v in sums.items()}


def _default_build(model_cfg):
    from posetr.models import build_model

    return build_model(model_cfg)


def _default_data_kind(model_cfg) -> str:
    from posetr.models import model_data_kind

    return model_data_kind(model_cfg.name)


def evaluate_kind(kind: str, model, postprocessor, loader, *, eval_cfg, device, output_dir, amp: bool,
                  data_cfg=None) -> dict:
    """:func:`~posetr.engine.evaluate.evaluate` (bottom-up) or
    :func:`~posetr.engine.evaluate_top_down.evaluate_top_down` (top-down, with ``eval_cfg.flip_test`` and
    ``eval_cfg.oks_nms_threshold``)."""
    if kind == "top_down":
        return evaluate_top_down(model, postprocessor, loader, device=device, output_dir=output_dir, amp=amp,
                                 flip_test=eval_cfg.flip_test, nms_threshold=eval_cfg.oks_nms_threshold)
    if eval_cfg.flip or eval_cfg.scales:
        from posetr.engine.tta import evaluate_tta

        return evaluate_tta(model, postprocessor, loader.dataset, eval_cfg=eval_cfg, data_cfg=data_cfg,
                            device=device, output_dir=output_dir)
    return evaluate(model, postprocessor, loader, device=device, output_dir=output_dir, amp=amp,
                    crowd_split=eval_cfg.crowd_split)


def train(cfg: Config, *, output_dir: str | None = None, resume: str | None = None,
          build_model=None, data_kind: str | None = None) -> dict:
    """Trains ``cfg`` and returns the final COCOeval metrics (also ``output_dir/metrics.json``).

    Args:
        cfg: the configuration (``cfg.data.root`` None: synthetic data).
        output_dir: overrides ``cfg.train.output_dir``.
        resume: checkpoint to continue from (model, optimizer, scheduler, epoch).
        build_model: ``model config -> (model, criterion, postprocessor)``; default
            ``posetr.models.build_model``.
        data_kind: "bottom_up" (whole images) or "top_down" (person crops); default the ``DATA_KIND`` of
            model ``cfg.model.name`` (``posetr.models.model_data_kind``).

    Every epoch starts by seeding python/numpy/torch with ``seed + epoch``, so a run resumed from a
    checkpoint continues exactly as the uninterrupted run would have (same device and process count).
    """
    build_model = build_model or _default_build
    kind = data_kind or _default_data_kind(cfg.model)
    collate = collate_for(kind)
    output_dir = output_dir or cfg.train.output_dir
    check_keypoints(cfg)
    device = resolve_device(cfg.train.device)
    rank, world_size = init_distributed(device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    if is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    seed_everything(cfg.train.seed)
    root = resolve_data_root(cfg, output_dir)
    train_set = build_dataset(cfg.data, root=root, split=cfg.data.train_split, train=True, kind=kind)
    val_set = build_dataset(cfg.data, root=root, split=cfg.data.val_split, train=False, kind=kind)
    model, criterion, postprocessor = build_model(cfg.model)
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    start_epoch = 0
    if resume is not None:
        start_epoch = load_checkpoint(resume, model=model, optimizer=optimizer, scheduler=scheduler)["epoch"]
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    repeated = ConcatDataset([train_set] * cfg.train.repeats) if cfg.train.repeats > 1 else train_set
    train_sampler = DistributedSampler(repeated, seed=cfg.train.seed) if world_size > 1 else None
    val_sampler = DistributedSampler(val_set, shuffle=False) if world_size > 1 else None
    workers = cfg.data.num_workers
    val_loader = DataLoader(val_set, batch_size=cfg.data.batch_size, sampler=val_sampler, collate_fn=collate,
                            num_workers=workers)

    metrics: dict = {}
    ckpt_path = os.path.join(output_dir, "checkpoint.pth")
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        seed_everything(cfg.train.seed + epoch)
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        loader = DataLoader(repeated, batch_size=cfg.data.batch_size, collate_fn=collate, num_workers=workers,
                            sampler=train_sampler or RandomSampler(repeated), drop_last=False)
        stats = train_one_epoch(model, criterion, loader, optimizer, device=device, epoch=epoch,
                                clip_max_norm=cfg.train.clip_max_norm, amp=cfg.train.amp)
        scheduler.step()
        last = epoch + 1 == cfg.train.epochs
        if is_main_process() and (last or (epoch + 1) % max(cfg.train.checkpoint_every, 1) == 0):
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1,
                            config=config_to_dict(cfg))
        if is_main_process():
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items())
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        if last or (cfg.train.eval_every > 0 and (epoch + 1) % cfg.train.eval_every == 0):
            metrics = evaluate_kind(kind, model, postprocessor, val_loader, eval_cfg=cfg.eval, device=device,
                                    output_dir=output_dir, amp=cfg.train.amp, data_cfg=cfg.data)
            if is_main_process():
                print(f"epoch {epoch}: AP {metrics['AP']:.4f}", flush=True)
        barrier()
    return metrics
