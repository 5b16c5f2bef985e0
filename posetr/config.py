"""Top-level configuration: ``model`` / ``data`` / ``train`` / ``eval`` dataclasses and the YAML loader.

Every field has a default and a comment; a YAML file (``configs/*.yaml``) overrides any subset.
The defaults of ``data`` and ``train`` are the PETR-R50 COCO recipe (opera
``configs/petr/petr_r50_16x2_100e_coco.py``: 100 epochs, AdamW 2e-4, lr x0.1 at epoch 80).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import yaml

from posetr.models import DEFAULT_MODEL, BaseModelConfig, model_config_class


@dataclass
class DataConfig:
    dataset: str = "coco"  # keypoint layout and loader: "coco" (also OCHuman) | "crowdpose"
    root: str | None = None  # folder with images/ + annotations/*.json or the COCO 2017 layout; None: synthetic data
    train_split: str = "train"  # split name picking the training annotation file (see posetr.data.coco.resolve_split)
    val_split: str = "val"  # split name of the evaluation annotation file
    augment: str = "full"  # training augmentation: "full" (flip + multi-scale resize/crop) | "poet" (POET's:
    #   flip, rotation, coarse dropout, multi-scale resize/crop; keeps people without keypoints) | "flip" | "none"
    train_sizes: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))  # shorter sides of multi-scale
    test_size: int = 800  # shorter side at test time (and of the fixed resize when augment is "flip"/"none")
    max_size: int = 1333  # longest side after any resize
    batch_size: int = 2  # images per process and step (opera: 16 GPUs x 2)
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
    weight_decay: float = 1e-4  # AdamW weight decay
    clip_max_norm: float = 0.1  # gradient clipping by total norm (0 disables)
    lr_schedule: str = "step"  # "step": x lr_gamma every lr_drop epochs, or at each of lr_milestones | "cosine": cosine from lr to 0 over epochs
    lr_drop: int = 80  # epochs between learning-rate drops (StepLR step size; lr_schedule "step" without lr_milestones)
    lr_milestones: list[int] = field(default_factory=list)  # epochs of the lr drops (MultiStepLR), e.g. [200, 250]
    lr_gamma: float = 0.1  # learning-rate factor at each drop (lr_schedule "step")
    amp: bool = False  # bf16 autocast for the forward pass and losses
    seed: int = 42  # every epoch reseeds python/numpy/torch with seed + epoch (exact resume)
    device: str = "auto"  # "auto" (cuda if available, else cpu) | "cpu" | "cuda"
    output_dir: str = "outputs"  # checkpoints, results and metrics.json
    checkpoint_every: int = 1  # write checkpoint.pth every this many epochs (and always after the last)
    eval_every: int = 0  # evaluate every this many epochs (0: only after the last)


@dataclass
class EvalConfig:
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
    for name, value in values.items():
        where = f"{prefix}.{name}" if prefix else name
        current = getattr(obj, name)
        if where == "model":  # the model's name picks its config class
            value = value or {}
            model_name = value.get("name", DEFAULT_MODEL) if isinstance(value, dict) else DEFAULT_MODEL
            setattr(obj, name, _build(model_config_class(model_name), value, where))
        elif dataclasses.is_dataclass(current):
            setattr(obj, name, _build(type(current), value or {}, where))
        else:
            setattr(obj, name, _check_value(where, current, value))
    return obj


def config_from_dict(values: dict) -> Config:
    """Config with ``values`` (nested dicts by section) over the defaults.

    Raises:
        ValueError: unknown section or key, or a value of the wrong type.
    """
    return _build(Config, values or {}, "")


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def load_config(path: str | None) -> Config:
    """Config from a YAML file (``None``: the defaults).

    Raises:
        FileNotFoundError: no such file. ValueError: invalid YAML, unknown keys or wrong types.
    """
    if path is None:
        return Config()
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path!r} is not valid YAML: {exc}") from None
    try:
        return config_from_dict(values)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
