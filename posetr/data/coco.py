"""COCO-format multi-person keypoint dataset (COCO, OCHuman; CrowdPose in crowdpose.py) via pycocotools.

Folder layouts accepted under ``root`` (see :func:`resolve_split`):

- the standard COCO release: ``train2017/``, ``val2017/``,
  ``annotations/person_keypoints_{train,val}2017.json``;
- a sample / custom folder: ``images/`` plus ``annotations/*.json`` (a single file serves every
  split; with several, the one whose name contains the split name is used).

Each item is ``(image, target)`` after the transforms (see posetr/data/transforms.py); without
transforms, ``image`` is the RGB ``PIL.Image`` and ``target`` holds pixel coordinates.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random

import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from posetr.data.keypoints import keypoint_info
from posetr.data.validation import DataError, safe_image_path, validate_dataset

KEEP_IMAGES = ("all", "with_person", "with_labelled_person")
MAX_REDRAWS = 100  # rejected samples redrawn in a row before giving up (mmdet retries forever)


def resolve_split(root: str, split: str) -> tuple[str, str]:
    """``(image_dir, annotation_file)`` of ``split`` (e.g. ``"train"``, ``"val"``) under ``root``.

    Raises:
        FileNotFoundError: ``root`` or the expected sub-folders / annotation files are missing.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root!r} is not a directory")
    ann_dir = os.path.join(root, "annotations")
    standard = os.path.join(ann_dir, f"person_keypoints_{split}2017.json")
    if os.path.isfile(standard) and os.path.isdir(os.path.join(root, f"{split}2017")):
        return os.path.join(root, f"{split}2017"), standard
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(
            f"data root {root!r} has no 'annotations/' folder; expected 'images/' + 'annotations/*.json' "
            "or the COCO layout 'train2017/', 'val2017/', 'annotations/person_keypoints_{train,val}2017.json'"
        )
    files = sorted(f for f in os.listdir(ann_dir) if f.endswith(".json"))
    named = [f for f in files if split in f]
    if len(named) == 1:
        ann_file = named[0]
    elif len(files) == 1:
        ann_file = files[0]
    else:
        raise FileNotFoundError(
            f"cannot pick the {split!r} annotation file in {ann_dir!r}: found {files or 'no .json files'}; "
            f"keep one file, or exactly one whose name contains {split!r}"
        )
    for image_dir in (os.path.join(root, "images"), os.path.join(root, f"{split}2017")):
        if os.path.isdir(image_dir):
            return image_dir, os.path.join(ann_dir, ann_file)
    raise FileNotFoundError(f"data root {root!r} has no 'images/' (or '{split}2017/') folder")


def load_coco(ann_file: str, *, box_area: bool = False) -> COCO:
    """pycocotools ``COCO`` of ``ann_file``; ``box_area`` sets each missing ``area`` to the box w*h.

    Raises:
        ValueError: the file is not valid JSON or lacks ``images`` / ``annotations`` / ``categories``;
            DataError (a ValueError): an annotation without ``image_id`` / ``keypoints`` / ``bbox`` /
            ``area`` (the message says that ``data.dataset: crowdpose`` supplies box areas).
    """
    try:
        with open(ann_file) as f:
            dataset = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation file {ann_file!r} is not valid JSON: {exc}") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in dataset] if isinstance(
        dataset, dict) else ["images", "annotations", "categories"]
    if missing:
        raise ValueError(f"annotation file {ann_file!r} is not in COCO format: missing {missing}")
    for ann in dataset["annotations"]:
        for key in ("image_id", "keypoints", "bbox"):
            if key not in ann:
                raise ValueError(f"annotation file {ann_file!r}: annotation {ann.get('id')} has no {key!r}")
        if "area" not in ann:
            if not box_area:
                raise DataError(f"annotation file {ann_file!r}: annotation {ann.get('id')} (image "
                                f"{ann.get('image_id')}) has no 'area'; CrowdPose files have none: set "
                                "'data.dataset: crowdpose', which uses the box w*h as the area")
            bbox = ann["bbox"]
            if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
                ann["area"] = float(bbox[2] * bbox[3])  # else validate_dataset names the bad bbox
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoKeypoints(torch.utils.data.Dataset):
    """Multi-person keypoint dataset in COCO format.

    Args:
        image_dir: folder of the images named by ``file_name``.
        ann_file: COCO keypoint annotation JSON.
        dataset: keypoint metadata name for :func:`posetr.data.keypoints.keypoint_info` (``"coco"``,
            ``"crowdpose"``); its keypoint count must match the file's person category.
        transforms: ``(PIL image, target) -> (image, target)`` or None.
        box_area: use the box w*h for annotations without ``area`` (CrowdPose).
        keep_images: which images the dataset holds (:data:`KEEP_IMAGES`):

            - ``"all"``: every image (evaluation; DETR / POET training keep people-free images as negatives);
            - ``"with_person"``: images with at least one annotation of the person category, crowd or
              without keypoints included: mmdet's ``filter_empty_gt`` (``CocoDataset._filter_imgs``,
              default True outside test mode), which opera's PETR training relies on (about 64K COCO
              train2017 images);
            - ``"with_labelled_person"``: images with a non-crowd person with a labelled keypoint (the
              paper's "57K images").

    Crowd annotations (``iscrowd``) are skipped. When the transforms reject a sample (return ``None``: the
    official PETR pipeline does so when a crop or a rotation leaves no person), ``__getitem__`` draws
    another image of the same aspect-ratio group (mmdet's ``CustomDataset._rand_another``), at most
    :data:`MAX_REDRAWS` times.

    Raises:
        FileNotFoundError: missing folder or file. ValueError: malformed annotations (DataError, by the
        rules of posetr/data/validation.py: also evaluation's ground truth), keypoint count mismatch,
        unknown ``keep_images`` or no image left by it. RuntimeError (from ``__getitem__``): an image that
        cannot be read or decoded, a decompression bomb (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``
        allows), or :data:`MAX_REDRAWS` rejected samples in a row.
    """

    def __init__(self, image_dir: str, ann_file: str, *, dataset: str = "coco", transforms=None,
                 box_area: bool = False, keep_images: str = "all"):
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"image folder {image_dir!r} does not exist")
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"annotation file {ann_file!r} does not exist")
        self.image_dir, self.ann_file, self.transforms = image_dir, ann_file, transforms
        self.info = keypoint_info(dataset)
        self.dataset_name = dataset
        self.coco = load_coco(ann_file, box_area=box_area)
        person = [c for c in self.coco.dataset["categories"] if "keypoints" in c]
        if not person:
            raise ValueError(f"annotation file {ann_file!r} has no category with 'keypoints'")
        self.category_id = person[0]["id"]
        if len(person[0]["keypoints"]) != self.info.num_keypoints:
            raise ValueError(
                f"annotation file {ann_file!r} has {len(person[0]['keypoints'])} keypoints per person but "
                f"dataset {dataset!r} expects {self.info.num_keypoints}"
            )
        validate_dataset(self.coco.dataset, num_keypoints=self.info.num_keypoints, ann_file=ann_file)
        for image_id, image in self.coco.imgs.items():
            safe_image_path(image_dir, image["file_name"], ann_file=ann_file, image_id=image_id)
        self.ids = self._kept_ids(keep_images)
        if not self.ids:
            raise ValueError(f"annotation file {ann_file!r}: no image left with keep_images={keep_images!r}")

    def _kept_ids(self, keep_images: str) -> list[int]:
        if keep_images not in KEEP_IMAGES:
            raise ValueError(f"keep_images must be one of {KEEP_IMAGES}, got {keep_images!r}")
        ids = sorted(self.coco.imgs)
        if keep_images == "all":
            return ids
        anns = self.coco.imgToAnns
        if keep_images == "with_person":
            return [i for i in ids if any(a["category_id"] == self.category_id for a in anns.get(i, []))]
        return [i for i in ids if any(a["category_id"] == self.category_id and not a.get("iscrowd", 0)
                                      and any(v > 0 for v in a["keypoints"][2::3]) for a in anns.get(i, []))]

    def aspect_groups(self) -> list[int]:
        """Per item: 1 if the image is wider than tall (w / h > 1), else 0 (mmdet's ``flag``).

        Raises:
            ValueError: an image entry without a positive ``width`` and ``height``.
        """
        groups = []
        for i in self.ids:
            info = self.coco.imgs[i]
            if not (info.get("width", 0) > 0 and info.get("height", 0) > 0):
                raise ValueError(f"annotation file {self.ann_file!r}: image {i} has no positive 'width' and "
                                 f"'height' (needed to group images by aspect ratio)")
            groups.append(int(info["width"] / info["height"] > 1))
        return groups

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> Image.Image:
        path = safe_image_path(self.image_dir, self.coco.imgs[image_id]["file_name"], ann_file=self.ann_file,
                               image_id=image_id)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise RuntimeError(f"cannot read image {path!r} (image id {image_id}): {exc}") from None

    def load_target(self, image_id: int, *, width: int, height: int) -> dict:
        """Pixel-space target of one image (see posetr/data/transforms.py)."""
        k = self.info.num_keypoints
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        kpts = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float32).reshape(-1, k, 3)
        kpts[kpts[..., 2] <= 0] = 0.0
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return {
            "keypoints": kpts,
            "boxes": boxes,
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "labels": torch.zeros(len(anns), dtype=torch.long),
            "image_id": image_id,
            "orig_size": torch.tensor([height, width], dtype=torch.long),
        }

    def _prepare(self, index: int):
        image_id = self.ids[index]
        image = self.load_image(image_id)
        target = self.load_target(image_id, width=image.width, height=image.height)
        if self.transforms is None:
            return image, target
        return self.transforms(image, target)

    def __getitem__(self, index: int):
        sample = self._prepare(index)
        redraws = 0
        while sample is None:  # rejected by the transforms: another image of the same aspect-ratio group
            if redraws == MAX_REDRAWS:
                raise RuntimeError(f"{self.ann_file}: the transforms rejected {MAX_REDRAWS + 1} samples in a row "
                                   f"(last image id {self.ids[index]}): no crop / rotation keeps a person")
            redraws += 1
            index = self._another(index)
            sample = self._prepare(index)
        return sample

    @functools.cached_property
    def _group_pools(self) -> tuple[list[int], dict[int, list[int]]]:
        groups = self.aspect_groups()
        return groups, {g: [i for i, f in enumerate(groups) if f == g] for g in set(groups)}

    def _another(self, index: int) -> int:
        groups, pools = self._group_pools
        return random.choice(pools[groups[index]])
