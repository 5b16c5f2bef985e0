"""Top-level configuration: ``model`` / ``data`` / ``train`` / ``eval`` dataclasses and the YAML loader.

Every field has a default and a comment; a YAML file (``configs/*.yaml``) overrides any subset.
The defaults of ``data`` and ``train`` are the PETR-R50 COCO recipe (opera
``configs/petr/petr_r50_16x2_100e_coco.py``: 100 epochs, AdamW 2e-4, lr x0.1 at epoch 80).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import yaml

from posetr.models import DEFAULT_MODEL, BaseModelConfig, model_config_class


@dataclass
class DataConfig:
    dataset: str = "coco"  # keypoint layout and loader: "coco" (also OCHuman) | "crowdpose"
    root: str | None = None  # folder with images/ + annotations/*.json or the COCO 2017 layout; None: synthetic data
    train_split: str = "train"  # split name picking the training annotation file (see posetr.data.coco.resolve_split)
    val_split: str = "val"  # split name of the evaluation annotation file
    augment: str = "full"  # training augmentation: "official" (opera's PETR pipeline: photometric, rotation
    #   +-30, flip, two scale policies; posetr/data/transforms_petr.py) | "full" (DETR's, the PETR paper's text:
    #   flip + multi-scale resize/crop) | "poet" (POET's:
    #   flip, rotation, coarse dropout, multi-scale resize/crop; keeps people without keypoints) | "flip" | "none"
    train_images: str = "with_person"  # training images kept: "with_person" (mmdet's filter_empty_gt, opera:
    #   any person annotation) | "with_labelled_person" (a person with a labelled joint: the paper's 57K) | "all"
    train_sizes: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))  # shorter sides of multi-scale
    test_size: int = 800  # shorter side at test time (and of the fixed resize when augment is "flip"/"none")
    max_size: int = 1333  # longest side after any resize
    batch_size: int = 2  # training images per process and step (opera: 16 GPUs x 2 = 32 in all)
    aspect_ratio_groups: bool = True  # bottom-up training: each batch holds only images wider than tall, or
    #   only the others (mmdet GroupSampler, opera PETR); false: plain random batches (DETR, POET)
    num_workers: int = 2  # DataLoader worker processes
    synthetic_images: int = 8  # images of the synthetic stick-figure set used when root is None
    # top-down (person crops; models whose package has DATA_KIND "top_down"; bottom-up models ignore these).
    # augment: "full" = flip + half-body + random scale/rotation, "flip" = flip only, "none" (mmpose 0.x / Poseur)
    input_size: list[int] = field(default_factory=lambda: [256, 192])  # crop [height, width]: 256x192 or 384x288
    bbox_padding: float = 1.25  # box -> crop: grown to the crop's aspect ratio, then by this factor
    half_body_prob: float = 0.3  # probability of cropping the upper or lower body only
    half_body_min_joints: int = 8  # half-body only for persons with more labelled joints than this
    scale_factor: float = 0.5  # crop scale x clip(1 + scale_factor N(0,1), 1 - scale_factor, 1 + scale_factor)
    rotation_factor: float = 40.0  # rotation clip(rotation_factor N(0,1), +-2 rotation_factor) degrees ...
    rotation_prob: float = 0.6  # ... applied with this probability
    photometric: bool = False  # mmpose PhotometricDistortion on the crop (Poseur's HRNet-W48 recipe)
    cutout: bool = False  # one elliptical Cutout patch on the crop (Poseur's HRNet-W48 recipe)
    use_gt_bbox: bool = True  # evaluation crops from ground-truth boxes; false: from det_file
    det_file: str | None = None  # person detections, COCO results format (COCO_val2017_detections_AP_H_56_person)
    det_score_threshold: float = 0.0  # detections scoring below this are dropped (mmpose det_bbox_thr)


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the training set (times repeats)
    repeats: int = 1  # the training set is repeated this many times per epoch (tiny sets: fewer epoch boundaries)
    lr: float = 2e-4  # AdamW learning rate
    lr_backbone_mult: float = 0.1  # lr multiplier of parameters whose name contains "backbone"
    lr_linear_proj_mult: float = 0.1  # lr multiplier of the deformable sampling offsets / reference points
    lr_linear_proj_names: list[str] = field(default_factory=lambda: ["sampling_offsets", "reference_points"])
    lr_scale_batch: bool = False  # scale lr linearly by (data.batch_size x processes) / lr_base_batch
    lr_base_batch: int = 32  # total batch the lr is given for (opera PETR: 16 x 2 = 32)
    weight_decay: float = 1e-4  # AdamW weight decay
    clip_max_norm: float = 0.1  # gradient clipping by total norm (0 disables)
    lr_schedule: str = "step"  # "step": x lr_gamma every lr_drop epochs, or at each of lr_milestones | "cosine": cosine from lr to 0 over epochs
    lr_drop: int = 80  # epochs between learning-rate drops (StepLR step size; lr_schedule "step" without lr_milestones)
    lr_milestones: list[int] = field(default_factory=list)  # epochs of the lr drops (MultiStepLR), e.g. [200, 250]
    lr_gamma: float = 0.1  # learning-rate factor at each drop (lr_schedule "step")
    warmup_iters: int = 0  # linear warm-up over the first steps (mmcv warmup="linear"; Poseur: 500); 0: none
    warmup_ratio: float = 0.001  # lr factor at step 0 of the warm-up (mmcv warmup_ratio)
    amp: bool = False  # bf16 autocast for the forward pass and losses
    seed: int = 42  # every epoch reseeds python/numpy/torch with seed + epoch (exact resume)
    device: str = "auto"  # "auto" (cuda if available, else cpu) | "cpu" | "cuda"
    output_dir: str = "outputs"  # checkpoints, results and metrics.json
    checkpoint_every: int = 1  # write checkpoint.pth every this many epochs (and always after the last)
    eval_every: int = 0  # evaluate every this many epochs (0: only after the last)


@dataclass
class EvalConfig:
    batch_size: int = 1  # images (top-down: crops) per evaluation step; 1 = opera's test: no padding, so an
    #   image's result does not depend on the others (zero padding reaches the backbone and the GroupNorm)
    draw_threshold: float = 0.3  # predict: people with a score below this are left out of the PNG
    flip_test: bool = True  # top-down: also run the mirrored crop; the model's postprocessor fuses the two
    flip: bool = False  # bottom-up (PETR) test-time flip: mirrored image too, people merged by soft-NMS (opera aug_test)
    scales: list[int] = field(default_factory=list)  # bottom-up multi-scale test shorter sides, e.g. [800, 1000, 1200]; [] = data.test_size
    crowd_split: str = "code"  # CrowdPose AP_easy/medium/hard by crowdIndex: "code" (xtcocotools / CrowdPose
    #   toolkit: easy < 0.2 <= medium < 0.8 <= hard) | "paper" (easy < 0.1 <= medium <= 0.8 < hard)
    oks_nms_threshold: float = 0.9  # top-down: per image, drop a person whose OKS to a better-scoring one is above this


@dataclass
class Config:
    # the config dataclass of model.name (posetr/models/<name>/config.py; default PETR's)
    model: BaseModelConfig = field(default_factory=lambda: model_config_class(DEFAULT_MODEL)())
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _at_least(low):
    return lambda v: v >= low, f">= {low}"


def _fraction(v) -> bool:
    return 0 <= v <= 1


_POSITIVE = (lambda v: v > 0, "> 0")
_FRACTION = (_fraction, "in [0, 1]")
# Ranges of values (list fields: of each element) by "section.key"; the types come from the defaults and
# the dataclass annotations. train.epochs may be 0 (the trainer says that nothing is trained).
_RANGES = {
    "train.epochs": _at_least(0), "train.repeats": _at_least(1), "train.lr": _POSITIVE,
    "train.lr_drop": _at_least(1), "train.lr_milestones": _at_least(1), "train.lr_gamma": _POSITIVE,
    "train.weight_decay": _at_least(0), "train.clip_max_norm": _at_least(0), "train.lr_backbone_mult": _at_least(0),
    "train.lr_linear_proj_mult": _at_least(0), "train.checkpoint_every": _at_least(1),
    "train.eval_every": _at_least(0), "train.warmup_iters": _at_least(0), "train.warmup_ratio": _FRACTION,
    "data.batch_size": _at_least(1), "data.num_workers": _at_least(0), "data.synthetic_images": _at_least(1),
    "data.train_sizes": _at_least(1), "data.test_size": _at_least(1), "data.max_size": _at_least(1),
    "data.input_size": _at_least(1), "data.bbox_padding": _POSITIVE, "data.half_body_prob": _FRACTION,
    "data.half_body_min_joints": _at_least(0), "data.scale_factor": _at_least(0),
    "data.rotation_factor": _at_least(0), "data.rotation_prob": _FRACTION, "data.det_score_threshold": _FRACTION,
    "eval.draw_threshold": _FRACTION, "eval.oks_nms_threshold": _FRACTION,
    "model.num_queries": _at_least(1), "model.num_keypoints": _at_least(1), "model.d_model": _at_least(1),
    "model.n_heads": _at_least(1), "model.dim_feedforward": _at_least(1), "model.num_detections": _at_least(1),
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"), "model.enc_layers": _at_least(0),
    "model.dec_layers": _at_least(1),
}
_NON_EMPTY = {"data.train_sizes", "data.input_size", "train.lr_linear_proj_names"}


def _check_range(where: str, value) -> None:
    """ValueError naming ``where`` when ``value`` (each element of a list) breaks its rule in ``_RANGES``."""
    if isinstance(value, list) and where in _NON_EMPTY and not value:
        raise ValueError(f"config: {where} must be a non-empty list")
    if where not in _RANGES or value is None:
        return
    ok, rule = _RANGES[where]
    for v in value if isinstance(value, list) else [value]:
        if not ok(v):
            raise ValueError(f"config: {where} must be {rule}, got {value!r}")


def _check_list(where: str, hint, value):
    """``value`` as a list of the element type of ``hint`` (``list[int]`` ...); ValueError otherwise."""
    if not isinstance(value, list):
        raise ValueError(f"config: {where} must be a list, got {value!r}")
    (element,) = typing.get_args(hint) or (None,)
    if element in (int, float, str, bool):
        default = {int: 0, float: 0.0, str: "", bool: False}[element]
        value = [_check_value(f"{where}[{i}]", default, v) for i, v in enumerate(value)]
    return value


def _check_value(where: str, default, value):
    """``value`` converted to the kind of ``default``; ValueError naming ``where`` otherwise."""
    if default is None or value is None:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"config: {where} must be a string or null, got {value!r}")
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"config: {where} must be {type(default).__name__}, got {value!r}")
    return value


def _build(cls, values, prefix: str):
    if not isinstance(values, dict):
        raise ValueError(f"config: section {prefix or '<top level>'!r} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"section {prefix!r}" if prefix else "the top level"
        raise ValueError(f"config: unknown key(s) {unknown} in {where}; known keys: {sorted(fields)}")
    obj = cls()
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        where = f"{prefix}.{name}" if prefix else name
        current = getattr(obj, name)
        if where == "model":  # the model's name picks its config class
            value = value or {}
            model_name = value.get("name", DEFAULT_MODEL) if isinstance(value, dict) else DEFAULT_MODEL
            setattr(obj, name, _build(model_config_class(model_name), value, where))
        elif dataclasses.is_dataclass(current):
            setattr(obj, name, _build(type(current), value or {}, where))
        elif isinstance(current, list):
            setattr(obj, name, _check_list(where, hints.get(name), value))
        else:
            setattr(obj, name, _check_value(where, current, value))
        if not dataclasses.is_dataclass(getattr(obj, name)):
            section = "model" if where.startswith("model.") else where.rsplit(".", 1)[0]
            _check_range(f"{section}.{name}", getattr(obj, name))
    return obj


def config_from_dict(values: dict) -> Config:
    """Config with ``values`` (nested dicts by section) over the defaults.

    Raises:
        ValueError: unknown section or key (its path named), a value of the wrong type (also a list
            element), or out of its range (``_RANGES``: e.g. ``train.lr > 0``, ``model.num_queries >= 1``).
    """
    return _build(Config, values or {}, "")


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(values: dict | None, overrides) -> dict:
    """``values`` (nested dicts, as read from YAML) with each ``"section.key=value"`` of ``overrides`` set,
    the value parsed as YAML (``train.epochs=5``, ``data.train_sizes=[480, 512]``, ``data.root=null``).

    Raises:
        ValueError: an override without ``=`` or a dotted key, a value that is not valid YAML, or a key path
            through a value that is not a section.
    """
    values = dict(values or {})
    for item in overrides or ():
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ValueError(f"config override {item!r} must be section.key=value (e.g. train.epochs=5)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"config override {item!r}: the value is not valid YAML: {exc}") from None
        section = values
        for i, part in enumerate(parts[:-1]):
            child = section.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ValueError(f"config override {item!r}: {'.'.join(parts[:i + 1])} is not a section")
            section[part] = child = dict(child)
            section = child
        section[parts[-1]] = value
    return values


def load_config(path: str | None, overrides=None) -> Config:
    """Config from a YAML file (``None``: the defaults) with ``overrides`` (``["train.epochs=5", ...]``,
    see :func:`apply_overrides`) on top, validated as a whole.

    Raises:
        FileNotFoundError: no such file. ValueError: invalid YAML, unknown keys, wrong types or values out
            of range (the message names the key path and the file, or "--set" for an override).
    """
    values = None
    if path is not None:
        try:
            with open(path) as f:
                values = yaml.safe_load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path!r} does not exist") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path!r} is not valid YAML: {exc}") from None
    if overrides:
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"{path}: config: the top level must be a mapping, got {values!r:.80}")
        values = apply_overrides(values, overrides)
    try:
        return config_from_dict(values)
    except ValueError as exc:
        source = ", ".join(x for x in (path, "--set" if overrides else None) if x)
        raise ValueError(f"{source}: {exc}" if source else str(exc)) from None
