"""Inference on image files: JSON keypoints and PNGs with the skeletons drawn (Pillow)."""
from __future__ import annotations

import json
import os
import sys

import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from posetr.data.collate import collate
from posetr.data.transforms import build_transforms


def draw_people(image: Image.Image, people: list[dict], *, skeleton, threshold: float) -> Image.Image:
    """A copy of ``image`` with each person scoring at least ``threshold`` drawn: limbs between
    keypoints of the ``skeleton`` and a dot per keypoint."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
    for i, person in enumerate(p for p in people if p["score"] >= threshold):
        colour = palette[i % len(palette)]
        pts = [(x, y) for x, y, _ in person["keypoints"]]
        for a, b in skeleton:
            draw.line([pts[a], pts[b]], fill=colour, width=width)
        for x, y in pts:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=(255, 255, 255), outline=colour)
    return image


def read_image(path: str) -> Image.Image:
    """The RGB image at ``path``.

    Raises:
        FileNotFoundError: no such file. RuntimeError: it cannot be decoded, or it is a decompression bomb
            (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise RuntimeError(f"cannot read image {path!r}: {exc}") from None


@torch.no_grad()
def predict_images(model, postprocessor, paths: list[str], *, data_cfg, info, output_dir: str, device,
                   threshold: float) -> list[dict]:
    """Runs the model on each image of ``paths`` (test-time resize); writes ``predictions.json`` and a
    drawing per image to ``output_dir`` (:func:`predict_each`: unreadable images skipped and reported);
    returns the JSON entries.

    Each entry: ``{"image": path, "drawing": "<stem>_pose.png", "people": [{"score", "keypoints":
    [[x, y, score] * K]}]}`` in pixels of the original image, best first.
    """
    transforms = build_transforms(train=False, augment="none", flip_index=info.flip_index(),
                                  test_size=data_cfg.test_size, max_size=data_cfg.max_size)
    k = info.num_keypoints
    empty = {"keypoints": torch.zeros(0, k, 3), "boxes": torch.zeros(0, 4), "area": torch.zeros(0),
             "labels": torch.zeros(0, dtype=torch.long)}
    model.eval()

    def predict_one(path: str, image: Image.Image) -> list[dict]:
        tensor, target = transforms(image, dict(empty, image_id=0,
                                                 orig_size=torch.tensor([image.height, image.width])))
        images, masks, _ = collate([(tensor, target)])
        outputs = model(images.to(device), masks.to(device))
        result = postprocessor(outputs, target["orig_size"][None].to(device))[0]
        order = result["scores"].argsort(descending=True)
        people = [{"score": round(float(result["scores"][i]), 4),
                   "keypoints": [[round(float(v), 2) for v in kp] for kp in result["keypoints"][i].tolist()]}
                  for i in order.tolist()]
        return people

    return predict_each(paths, predict_one, output_dir=output_dir, skeleton=info.skeleton, threshold=threshold)


def drawing_names(paths: list[str]) -> list[str]:
    """``<stem>_pose.png`` per path, unique: a stem seen before gets ``_2``, ``_3``, ... in input order
    (``a/x.jpg``, ``b/x.jpg`` -> ``x_pose.png``, ``x_2_pose.png``)."""
    names, seen = [], set()
    for path in paths:
        stem = base = os.path.splitext(os.path.basename(path))[0]
        n = 1
        while stem in seen:
            n += 1
            stem = f"{base}_{n}"
        seen.add(stem)
        names.append(f"{stem}_pose.png")
    return names


def predict_each(paths: list[str], predict_one, *, output_dir: str, skeleton, threshold: float) -> list[dict]:
    """The loop of every predict path: ``people = predict_one(path, image)`` per readable image of ``paths``,
    its drawing saved as ``output_dir/<name>`` (:func:`drawing_names`), then ``predictions.json``.

    An image that does not exist or cannot be decoded is skipped, reported on stderr and listed in
    ``predictions.json`` as ``{"image": path, "error": message}``: the other images' output is kept.

    Returns:
        The JSON entries, ``{"image": path, "drawing": file name, "people": [...]}`` (or the error entry).
    """
    os.makedirs(output_dir, exist_ok=True)
    entries = []
    for path, name in zip(paths, drawing_names(paths)):
        try:
            image = read_image(path)
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr, flush=True)
            entries.append({"image": path, "error": str(exc)})
            continue
        people = predict_one(path, image)
        draw_people(image, people, skeleton=skeleton, threshold=threshold).save(os.path.join(output_dir, name))
        entries.append({"image": path, "drawing": name, "people": people})
    write_predictions(output_dir, entries)
    return entries


def write_predictions(output_dir: str, entries: list[dict]) -> None:
    """``output_dir/predictions.json``."""
    with open(os.path.join(output_dir, "predictions.json"), "w") as f:
        json.dump(entries, f)
