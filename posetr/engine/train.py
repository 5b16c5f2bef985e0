"""Training loop: AdamW with lower lr for backbone and sampling offsets, gradient clipping, step
schedule, optional bf16 autocast, progress (tqdm on a terminal, plain lines otherwise), atomic checkpoints
(``last.pth``, ``best.pth`` by AP) with exact resume, run records (config.yaml, train.log, epochs.jsonl),
DDP via torchrun, and a COCOeval at the end (``metrics.json``)."""
from __future__ import annotations

import math
import os
import random
import sys
import time

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler, RandomSampler

from posetr.config import Config, config_to_dict
from posetr.data.build import build_dataset, collate_for
from posetr.data.keypoints import keypoint_info
from posetr.data.sampler import AspectRatioGroupSampler
from posetr.data.synthetic import write_synthetic_coco
from posetr.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from posetr.engine.distributed import barrier, get_rank, init_distributed, is_main_process, unwrap
from posetr.engine.evaluate import evaluate, format_metric
from posetr.engine.evaluate_top_down import evaluate_top_down
from posetr.engine.run_records import RunRecords, prepare_output_dir, progress
from posetr.errors import RunStateError
from posetr.models.common.pretrained import check_backbone_init


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


def scaled_lr(train_cfg, *, total_batch: int | None) -> float:
    """``train_cfg.lr``, times ``total_batch / train_cfg.lr_base_batch`` with ``train_cfg.lr_scale_batch``
    (the linear scaling rule; ``total_batch`` = images per step over all processes).

    Raises:
        ValueError: ``lr_scale_batch`` without a positive ``total_batch`` and ``lr_base_batch``.
    """
    if not train_cfg.lr_scale_batch:
        return train_cfg.lr
    if not (total_batch and total_batch > 0 and train_cfg.lr_base_batch > 0):
        raise ValueError(f"train.lr_scale_batch needs a positive total batch and train.lr_base_batch, got "
                         f"{total_batch} and {train_cfg.lr_base_batch}")
    return train_cfg.lr * total_batch / train_cfg.lr_base_batch


def trainable_parameters(model: torch.nn.Module, criterion: torch.nn.Module | None = None):
    """(name, parameter) of ``model`` and, prefixed ``criterion.``, of ``criterion`` (Poseur's RealNVP
    flows, trained with the model; most criteria have none)."""
    yield from model.named_parameters()
    if criterion is not None:
        for name, param in criterion.named_parameters():
            yield f"criterion.{name}", param


def build_optimizer(model: torch.nn.Module, train_cfg, *, total_batch: int | None = None,
                    criterion: torch.nn.Module | None = None) -> torch.optim.AdamW:
    """AdamW with three groups: backbone (lr x ``lr_backbone_mult``), deformable sampling offsets /
    reference points (lr x ``lr_linear_proj_mult``) and the rest (Deformable DETR / opera PETR), over the
    parameters of ``model`` and ``criterion``; the base lr is :func:`scaled_lr` of ``total_batch`` (images
    per step, all processes)."""
    lr = scaled_lr(train_cfg, total_batch=total_batch)
    groups = {"backbone": [], "linear_proj": [], "other": []}
    for name, param in trainable_parameters(model, criterion):
        if not param.requires_grad:
            continue
        if "backbone" in name:
            groups["backbone"].append(param)
        elif any(key in name for key in train_cfg.lr_linear_proj_names):
            groups["linear_proj"].append(param)
        else:
            groups["other"].append(param)
    lrs = {"backbone": lr * train_cfg.lr_backbone_mult, "linear_proj": lr * train_cfg.lr_linear_proj_mult, "other": lr}
    param_groups = [{"params": p, "lr": lrs[k], "name": k} for k, p in groups.items() if p]
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=train_cfg.weight_decay)


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


def warmup_factor(iteration: int, *, warmup_iters: int, warmup_ratio: float) -> float:
    """mmcv's linear warm-up: the factor ``1 - (1 - iteration / warmup_iters) * (1 - warmup_ratio)`` of
    the scheduled lr at step ``iteration`` (0-based, counted over the whole run) before ``warmup_iters``,
    1 after (``LrUpdaterHook(warmup="linear")``; Poseur: 500 iterations from ratio 0.001)."""
    if iteration >= warmup_iters:
        return 1.0
    return 1 - (1 - iteration / warmup_iters) * (1 - warmup_ratio)


def train_one_epoch(model, criterion, loader, optimizer, *, device, epoch: int, clip_max_norm: float,
                    amp: bool = False, warmup_iters: int = 0, warmup_ratio: float = 1.0) -> dict:
    """One pass over ``loader``; returns the mean weighted total loss and the mean of each loss.

    The first ``warmup_iters`` steps of the run (counted as ``epoch * len(loader) + step``, so a resumed
    run continues the ramp) scale each group's lr by :func:`warmup_factor`; the epoch's scheduled lr is
    restored at the end of the epoch."""
    model.train()
    criterion.train()
    weights = unwrap(criterion).weight_dict
    params = [p for group in optimizer.param_groups for p in group["params"]]
    scheduled = [group["lr"] for group in optimizer.param_groups]
    first_iter = epoch * len(loader)
    sums: dict[str, float] = {}
    steps = 0
    bar = progress(loader, desc=f"epoch {epoch}", enabled=is_main_process())
    for images, masks, targets in bar:
        factor = warmup_factor(first_iter + steps, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr * factor
        images, masks = images.to(device), masks.to(device)
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(images, masks)
            losses = criterion(outputs, targets)
        total = sum(weights[k] * losses[k].float() for k in losses if k in weights)
        if not math.isfinite(total.item()):
            raise RuntimeError(f"loss is {total.item()} at epoch {epoch}: "
                               f"{ {k: round(v.item(), 4) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_max_norm)
        optimizer.step()
        steps += 1
        sums["loss"] = sums.get("loss", 0.0) + total.item()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.1e}")
    for group, lr in zip(optimizer.param_groups, scheduled):
        group["lr"] = lr
    return {k: v / max(steps, 1) for k, v in sums.items()}


def _default_build(model_cfg):
    from posetr.models import build_model

    return build_model(model_cfg)


def _default_data_kind(model_cfg) -> str:
    from posetr.models import model_data_kind

    return model_data_kind(model_cfg.name)


def evaluate_kind(kind: str, model, postprocessor, loader, *, eval_cfg, device, output_dir, amp: bool,
                  prefix: str = "", data_cfg=None) -> dict:
    """:func:`~posetr.engine.evaluate.evaluate` (bottom-up) or
    :func:`~posetr.engine.evaluate_top_down.evaluate_top_down` (top-down, with ``eval_cfg.flip_test`` and
    ``eval_cfg.oks_nms_threshold``); ``prefix`` starts the names of the files written to ``output_dir``."""
    if kind == "top_down":
        return evaluate_top_down(model, postprocessor, loader, device=device, output_dir=output_dir, amp=amp,
                                 flip_test=eval_cfg.flip_test, nms_threshold=eval_cfg.oks_nms_threshold,
                                 prefix=prefix)
    if eval_cfg.flip or eval_cfg.scales:
        from posetr.engine.tta import evaluate_tta

        return evaluate_tta(model, postprocessor, loader.dataset, eval_cfg=eval_cfg, data_cfg=data_cfg,
                            device=device, output_dir=output_dir, prefix=prefix)
    return evaluate(model, postprocessor, loader, device=device, output_dir=output_dir, amp=amp, prefix=prefix,
                    crowd_split=eval_cfg.crowd_split)


LAST_CHECKPOINT = "last.pth"  # the state after the latest saved epoch (train --resume auto continues it)
BEST_CHECKPOINT = "best.pth"  # the state after the epoch with the best AP so far


def _resume_state(resume: str | None, output_dir: str, cfg: Config) -> tuple[str | None, dict | None]:
    """``(path, contents)`` of the checkpoint to resume from (``(None, None)``: a new run); ``"auto"``
    means ``output_dir/last.pth`` if it exists. Prints a one-line warning when the config's ``train.lr``
    differs from the checkpoint's: the checkpoint's optimizer and schedule continue (its lr is used).

    Raises:
        RunStateError: a checkpoint holding weights only (no epoch / optimizer state).
    """
    if resume == "auto":
        resume = os.path.join(output_dir, LAST_CHECKPOINT)
        if not os.path.isfile(resume):
            print(f"--resume auto: no {LAST_CHECKPOINT} in {output_dir}: starting a new run", flush=True)
            return None, None
    if resume is None:
        return None, None
    state = read_checkpoint(resume)
    if not isinstance(state.get("epoch"), int) or state.get("optimizer") is None:
        raise RunStateError(f"checkpoint {resume!r} holds weights only (no 'epoch' and optimizer state): it cannot "
                            "be resumed")
    saved_lr = (state.get("config") or {}).get("train", {}).get("lr")
    if saved_lr is not None and saved_lr != cfg.train.lr:
        print(f"warning: train.lr is {cfg.train.lr:g} in the config but {saved_lr:g} in {resume!r}: resuming keeps "
              "the checkpoint's learning rate and schedule (start a new run to change them)", file=sys.stderr,
              flush=True)
    return resume, state


def _ap(metrics: dict) -> float:
    ap = metrics.get("AP")
    return -math.inf if ap is None else ap


def train(cfg: Config, *, output_dir: str | None = None, resume: str | None = None,
          build_model=None, data_kind: str | None = None) -> dict:
    """Trains ``cfg`` and returns the final COCOeval metrics (also ``output_dir/metrics.json``).

    Args:
        cfg: the configuration (``cfg.data.root`` None: synthetic data).
        output_dir: overrides ``cfg.train.output_dir``; gets ``last.pth`` (every ``checkpoint_every`` epochs
            and after the last), ``best.pth`` (the evaluated epoch with the best AP), ``metrics.json`` /
            ``results.json`` (the latest evaluation) and the run records of
            :class:`~posetr.engine.run_records.RunRecords` (config.yaml, train.log, epochs.jsonl).
        resume: checkpoint to continue from (model, optimizer, scheduler, epoch, best AP), or ``"auto"``:
            ``output_dir/last.pth`` when it exists. The checkpoint's learning rate and schedule continue;
            a different ``train.lr`` in ``cfg`` only prints a warning. A checkpoint that already completed
            ``train.epochs`` epochs trains nothing: that is printed and ``{}`` returned.
        build_model: ``model config -> (model, criterion, postprocessor)``; default
            ``posetr.models.build_model``, after
            :func:`~posetr.models.common.pretrained.check_backbone_init` (``model.backbone_init``).
        data_kind: "bottom_up" (whole images) or "top_down" (person crops); default the ``DATA_KIND`` of
            model ``cfg.model.name`` (``posetr.models.model_data_kind``).

    Raises:
        ValueError: ``train.epochs`` below 1, ``model.backbone_init: imagenet`` without
            ``model.pretrained_backbone``, or other invalid settings. NotADirectoryError /
            PermissionError: ``output_dir`` cannot be created or written. posetr.errors.CheckpointError /
            RunStateError: a ``resume`` checkpoint that cannot be read or continued (see ``_resume_state``).

    Every epoch starts by seeding python/numpy/torch with ``seed + epoch``, so a run resumed from a
    checkpoint continues exactly as the uninterrupted run would have (same device and process count).
    """
    if build_model is None:  # the configured model: its backbone weights must be given (or scratch said)
        check_backbone_init(cfg.model)
    build_model = build_model or _default_build
    kind = data_kind or _default_data_kind(cfg.model)
    collate = collate_for(kind)
    output_dir = output_dir or cfg.train.output_dir
    if cfg.train.epochs < 1:
        raise ValueError(f"train.epochs must be at least 1, got {cfg.train.epochs}: nothing to train")
    check_keypoints(cfg)
    device = resolve_device(cfg.train.device)
    _, world_size = init_distributed(device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    if is_main_process():
        output_dir = prepare_output_dir(output_dir)
    barrier()
    with RunRecords(output_dir, cfg, enabled=is_main_process()) as records:
        return _train(cfg, output_dir=output_dir, resume=resume, build_model=build_model, kind=kind,
                      collate=collate, device=device, world_size=world_size, records=records)


def _train(cfg: Config, *, output_dir, resume, build_model, kind, collate, device, world_size, records) -> dict:
    resume, state = _resume_state(resume, output_dir, cfg)
    if state is not None and state["epoch"] >= cfg.train.epochs:
        print(f"nothing to train: {resume} already completed {state['epoch']} epochs and train.epochs is "
              f"{cfg.train.epochs} (raise train.epochs to train further)", flush=True)
        return {}
    seed_everything(cfg.train.seed)
    root = resolve_data_root(cfg, output_dir)
    train_set = build_dataset(cfg.data, root=root, split=cfg.data.train_split, train=True, kind=kind)
    val_set = build_dataset(cfg.data, root=root, split=cfg.data.val_split, train=False, kind=kind)
    model, criterion, postprocessor = build_model(cfg.model)
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(model, cfg.train, total_batch=cfg.data.batch_size * world_size,
                                criterion=criterion)
    scheduler = build_scheduler(optimizer, cfg.train)
    start_epoch, best_ap = 0, None
    if state is not None:
        load_checkpoint(resume, model=model, optimizer=optimizer, scheduler=scheduler, state=state,
                        criterion=criterion)
        start_epoch, best_ap = state["epoch"], state.get("best_ap")
        print(f"resuming {resume} after epoch {start_epoch - 1} (best AP so far: {format_metric(best_ap)})",
              flush=True)
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        if any(p.requires_grad for p in criterion.parameters()):  # its gradients averaged like the model's
            criterion = torch.nn.parallel.DistributedDataParallel(criterion, find_unused_parameters=True)

    repeated = ConcatDataset([train_set] * cfg.train.repeats) if cfg.train.repeats > 1 else train_set
    if kind == "bottom_up" and cfg.data.aspect_ratio_groups:
        train_sampler = AspectRatioGroupSampler(train_set.aspect_groups() * cfg.train.repeats,
                                                batch_size=cfg.data.batch_size, num_replicas=world_size,
                                                rank=get_rank(), seed=cfg.train.seed)
    else:
        train_sampler = DistributedSampler(repeated, seed=cfg.train.seed) if world_size > 1 else None
    val_sampler = DistributedSampler(val_set, shuffle=False) if world_size > 1 else None
    workers = cfg.data.num_workers
    val_loader = DataLoader(val_set, batch_size=cfg.eval.batch_size, sampler=val_sampler, collate_fn=collate,
                            num_workers=workers)

    metrics: dict = {}
    config = config_to_dict(cfg)
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        seed_everything(cfg.train.seed + epoch)
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        loader = DataLoader(repeated, batch_size=cfg.data.batch_size, collate_fn=collate, num_workers=workers,
                            sampler=train_sampler or RandomSampler(repeated), drop_last=False)
        lr = optimizer.param_groups[-1]["lr"]
        stats = train_one_epoch(model, criterion, loader, optimizer, device=device, epoch=epoch,
                                clip_max_norm=cfg.train.clip_max_norm, amp=cfg.train.amp,
                                warmup_iters=cfg.train.warmup_iters, warmup_ratio=cfg.train.warmup_ratio)
        scheduler.step()
        if is_main_process():
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items())
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        last = epoch + 1 == cfg.train.epochs
        evaluated = {}
        if last or (cfg.train.eval_every > 0 and (epoch + 1) % cfg.train.eval_every == 0):
            metrics = evaluated = evaluate_kind(kind, model, postprocessor, val_loader, eval_cfg=cfg.eval,
                                                device=device, output_dir=output_dir, amp=cfg.train.amp,
                                                data_cfg=cfg.data)
        if is_main_process():
            improved = bool(evaluated) and _ap(evaluated) > _ap({"AP": best_ap})
            if improved:
                best_ap = evaluated["AP"]
            if evaluated:
                print(f"epoch {epoch}: AP {format_metric(evaluated['AP'])}"
                      + (f" (best so far: {BEST_CHECKPOINT})" if improved else ""), flush=True)
            saved = dict(model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1, config=config,
                         best_ap=best_ap, criterion=criterion)
            if last or (epoch + 1) % max(cfg.train.checkpoint_every, 1) == 0:
                save_checkpoint(os.path.join(output_dir, LAST_CHECKPOINT), **saved)
            if improved:
                save_checkpoint(os.path.join(output_dir, BEST_CHECKPOINT), **saved)
            records.epoch(epoch, losses=stats, lr=lr, seconds=time.perf_counter() - start, metrics=evaluated)
        barrier()
    return metrics
