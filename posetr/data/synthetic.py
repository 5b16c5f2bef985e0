"""A small synthetic multi-person keypoint dataset: stick figures drawn with Pillow, COCO-17 keypoints.

:func:`write_synthetic_coco` writes ``images/*.png`` and ``annotations/person_keypoints_synthetic.json``
(COCO keypoint format) to a folder, so the ordinary :class:`~posetr.data.coco.CocoKeypoints` loader
and COCOeval read it. ``python -m posetr train`` uses it when no data root is given. It is a smoke
test of the whole pipeline, not a benchmark.
"""
from __future__ import annotations

import json
import os
import random

from PIL import Image, ImageDraw

from posetr.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON

# A standing person in a unit-height frame, (x, y) per COCO-17 keypoint; x is relative to the centre.
_TEMPLATE = (
    (0.0, 0.06), (0.025, 0.04), (-0.025, 0.04), (0.055, 0.05), (-0.055, 0.05),
    (0.12, 0.2), (-0.12, 0.2), (0.17, 0.36), (-0.17, 0.36), (0.2, 0.5), (-0.2, 0.5),
    (0.08, 0.53), (-0.08, 0.53), (0.09, 0.76), (-0.09, 0.76), (0.1, 0.98), (-0.1, 0.98),
)
ANNOTATION_FILE = "person_keypoints_synthetic.json"


def _person(rng: random.Random, width: int, height: int) -> list[tuple[float, float]]:
    """Keypoints of one jittered, scaled, placed figure, inside the image."""
    size = rng.uniform(0.35, 0.8) * height
    jitter = 0.03
    pts = [(x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter)) for x, y in _TEMPLATE]
    xs = [x * size for x, _ in pts]
    cx = rng.uniform(-min(xs) + 2, width - max(xs) - 2)
    top = rng.uniform(2, height - size - 2)
    return [(cx + x * size, top + y * size) for x, y in pts]


def _draw(draw: ImageDraw.ImageDraw, pts, rng: random.Random, line: int) -> None:
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    for a, b in COCO_SKELETON:
        draw.line([pts[a], pts[b]], fill=colour, width=line)
    r = line * 2
    for x, y in pts:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))


def write_synthetic_coco(root: str, *, num_images: int = 8, width: int = 320, height: int = 256,
                         max_people: int = 3, seed: int = 0) -> str:
    """Writes the dataset under ``root`` (created if needed) and returns ``root``.

    Each image holds 1..``max_people`` figures on a random background; every keypoint is visible
    (v = 2); ``area`` is half the box area (a stick figure covers part of its box); ``bbox`` is the
    keypoints' extent padded by 4 pixels. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        background = tuple(rng.randint(0, 255) for _ in range(3))
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        file_name = f"{image_id:06d}.png"
        for _ in range(rng.randint(1, max_people)):
            pts = _person(rng, width, height)
            _draw(draw, pts, rng, line=max(2, height // 80))
            xs, ys = [x for x, _ in pts], [y for _, y in pts]
            x0, y0 = max(min(xs) - 4, 0), max(min(ys) - 4, 0)
            x1, y1 = min(max(xs) + 4, width), min(max(ys) + 4, height)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": [round(v, 2) for x, y in pts for v in (x, y, 2)],
                "num_keypoints": len(pts), "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": 0.5 * (x1 - x0) * (y1 - y0),
            })
        image.save(os.path.join(root, "images", file_name))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": list(COCO_KEYPOINT_NAMES),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]
    with open(os.path.join(root, "annotations", ANNOTATION_FILE), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return root
