"""Checks of a COCO-format keypoint annotation file, shared by the bottom-up (coco.py) and top-down
(top_down.py) datasets, for training and evaluation alike (evaluation uses the dataset's ``coco``).

Rules (each error names the file and the image / annotation id):

- image ids unique; every image has a ``file_name`` that is relative and stays inside the image folder;
- the file has at least one image;
- every annotation's ``image_id`` is an image of the file;
- ``keypoints`` is a list of ``3 * K`` finite numbers, ``bbox`` 4 finite numbers, ``area`` a finite
  number >= 0;
- a labelled keypoint (visibility > 0) lies within ``FAR_OUTSIDE`` image sizes of the image:
  ``-FAR_OUTSIDE * width <= x <= (1 + FAR_OUTSIDE) * width`` (same in y with the height); images without
  a numeric width/height skip this rule.
"""
from __future__ import annotations

import math
import os

FAR_OUTSIDE = 1.0
"""How many image widths (heights) a labelled keypoint may lie outside the image."""


class DataError(ValueError):
    """Malformed dataset content (annotation file, image file); the message names the file and id."""


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def safe_image_path(image_dir: str, file_name, *, ann_file: str, image_id) -> str:
    """``image_dir/file_name``, refusing absolute names and names escaping ``image_dir``.

    Raises:
        DataError: ``file_name`` not a non-empty string, absolute, or outside ``image_dir``.
    """
    where = f"annotation file {ann_file!r}: image {image_id}"
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"{where} has no 'file_name' string, got {file_name!r}")
    if os.path.isabs(file_name):
        raise DataError(f"{where}: file_name {file_name!r} is absolute; it must be relative to the image folder")
    root = os.path.realpath(image_dir)
    path = os.path.realpath(os.path.join(root, file_name))
    if os.path.commonpath([root, path]) != root:
        raise DataError(f"{where}: file_name {file_name!r} points outside the image folder {image_dir!r}")
    return os.path.join(image_dir, file_name)


def validate_images(images, *, ann_file: str) -> dict:
    """``{image id: image}`` of the file's image list.

    Raises:
        DataError: empty list, an entry without integer ``id``, a duplicate id, a missing ``file_name``.
    """
    if not isinstance(images, list) or not images:
        raise DataError(f"annotation file {ann_file!r} has no images (its 'images' list is empty)")
    by_id = {}
    for i, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DataError(f"annotation file {ann_file!r}: images[{i}] has no integer 'id' (got {image_id!r})")
        if image_id in by_id:
            raise DataError(f"annotation file {ann_file!r}: image id {image_id} appears more than once")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            raise DataError(f"annotation file {ann_file!r}: image {image_id} has no 'file_name'")
        by_id[image_id] = image
    return by_id


def validate_annotation(ann, *, images: dict, num_keypoints: int | None, ann_file: str) -> None:
    """Check one annotation (see the module rules); ``num_keypoints`` None skips the length check.

    Raises:
        DataError: naming the file, annotation id and image id.
    """
    where = f"annotation file {ann_file!r}: annotation {ann.get('id')} (image {ann.get('image_id')})"
    if ann.get("image_id") not in images:
        raise DataError(f"{where} refers to an image id that is not in the file's 'images'")
    kpts = ann["keypoints"]
    if not isinstance(kpts, list) or not all(_finite(v) for v in kpts):
        raise DataError(f"{where}: 'keypoints' must be a list of finite numbers (no strings, NaN or inf)")
    if num_keypoints is not None and len(kpts) != 3 * num_keypoints:
        raise DataError(f"{where}: 'keypoints' has {len(kpts)} values, expected 3 * {num_keypoints} = "
                        f"{3 * num_keypoints} (x, y, visibility per keypoint)")
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
        raise DataError(f"{where}: 'bbox' must be [x, y, w, h] of finite numbers, got {bbox!r:.80}")
    if not _finite(ann.get("area")) or ann["area"] < 0:
        raise DataError(f"{where}: 'area' must be a finite number >= 0, got {ann.get('area')!r}")
    image = images[ann["image_id"]]
    width, height = image.get("width"), image.get("height")
    if not (_finite(width) and _finite(height)):
        return
    for j in range(0, len(kpts) - 2, 3):
        x, y, v = kpts[j:j + 3]
        if v > 0 and not (-FAR_OUTSIDE * width <= x <= (1 + FAR_OUTSIDE) * width
                          and -FAR_OUTSIDE * height <= y <= (1 + FAR_OUTSIDE) * height):
            raise DataError(f"{where}: keypoint {j // 3} at ({x}, {y}) is far outside the {width}x{height} "
                            f"image (more than {FAR_OUTSIDE:g} image size away)")


def validate_dataset(dataset: dict, *, num_keypoints: int | None, ann_file: str) -> None:
    """Check a loaded COCO keypoint file (``{"images", "annotations", ...}``) by the module rules.

    Raises:
        DataError: the first problem, naming ``ann_file`` and the image / annotation id.
    """
    images = validate_images(dataset["images"], ann_file=ann_file)
    for ann in dataset["annotations"]:
        validate_annotation(ann, images=images, num_keypoints=num_keypoints, ann_file=ann_file)
