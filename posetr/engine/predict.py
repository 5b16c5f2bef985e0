"""Inference on image files: JSON keypoints and PNGs with the skeletons drawn (Pillow)."""
from __future__ import annotations

import json
import os

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
        FileNotFoundError: no such file. RuntimeError: it cannot be decoded.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise RuntimeError(f"cannot read image {path!r}: {exc}") from None


@torch.no_grad()
def predict_images(model, postprocessor, paths: list[str], *, data_cfg, info, output_dir: str, device,
                   threshold: float) -> list[dict]:
    """Runs the model on each image of ``paths`` (test-time resize); writes ``predictions.json`` and
    ``<stem>_pose.png`` per image to ``output_dir``; returns the JSON entries.

    Each entry: ``{"image": path, "people": [{"score", "keypoints": [[x, y, score] * K]}]}`` in pixels
    of the original image, best first.

    Raises:
        FileNotFoundError / RuntimeError: an image that does not exist or cannot be decoded.
    """
    transforms = build_transforms(train=False, augment="none", flip_index=info.flip_index(),
                                  test_size=data_cfg.test_size, max_size=data_cfg.max_size)
    k = info.num_keypoints
    empty = {"keypoints": torch.zeros(0, k, 3), "boxes": torch.zeros(0, 4), "area": torch.zeros(0),
             "labels": torch.zeros(0, dtype=torch.long)}
    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    entries = []
    for path in paths:
        image = read_image(path)
        tensor, target = transforms(image, dict(empty, image_id=0,
                                                 orig_size=torch.tensor([image.height, image.width])))
        images, masks, _ = collate([(tensor, target)])
        outputs = model(images.to(device), masks.to(device))
        result = postprocessor(outputs, target["orig_size"][None].to(device))[0]
        order = result["scores"].argsort(descending=True)
        people = [{"score": round(float(result["scores"][i]), 4),
                   "keypoints": [[round(float(v), 2) for v in kp] for kp in result["keypoints"][i].tolist()]}
                  for i in order.tolist()]
        save_drawing(image, people, path=path, output_dir=output_dir, skeleton=info.skeleton, threshold=threshold)
        entries.append({"image": path, "people": people})
    write_predictions(output_dir, entries)
    return entries


def save_drawing(image: Image.Image, people: list[dict], *, path: str, output_dir: str, skeleton,
                 threshold: float) -> None:
    """``output_dir/<stem of path>_pose.png``: ``image`` with ``people`` drawn (:func:`draw_people`)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    drawn = draw_people(image, people, skeleton=skeleton, threshold=threshold)
    drawn.save(os.path.join(output_dir, f"{stem}_pose.png"))


def write_predictions(output_dir: str, entries: list[dict]) -> None:
    """``output_dir/predictions.json``."""
    with open(os.path.join(output_dir, "predictions.json"), "w") as f:
        json.dump(entries, f)
