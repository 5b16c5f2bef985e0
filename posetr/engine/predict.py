"""Inference on image files, shared by bottom-up and top-down models: ``predictions.json``, optional COCO
results, one PNG per image with the skeletons drawn (Pillow).

:func:`predict_files` runs the loop: it skips (and reports in ``predictions.json``) an image that does not
exist or cannot be decoded, and writes ``predictions.json`` with everything finished even when an error
stops it. Each input gets its own PNG, also for inputs with the same base name (:func:`output_names`).
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from posetr.data.collate import collate
from posetr.data.transforms import build_transforms
from posetr.files import write_json

# limb / keypoint colours by side (the convention of mmpose's and Detectron2's drawings)
SIDE_COLOURS = {"left": (0, 200, 80), "right": (255, 140, 0), "centre": (50, 130, 255)}
# person box colours, one per person in turn
BOX_PALETTE = ((230, 25, 75), (145, 30, 180), (0, 130, 200), (245, 130, 48), (70, 200, 200), (240, 50, 230))


def _side(*names: str) -> str:
    """"left" / "right" when every keypoint named is on that side of the body, else "centre"."""
    for side in ("left", "right"):
        if all(name.startswith(side) for name in names):
            return side
    return "centre"


def _person_box(person: dict) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the person's ``box`` ([x, y, w, h]) or, without one, its keypoints' extent."""
    if "box" in person:
        x, y, w, h = person["box"]
        return x, y, x + w, y + h
    xs, ys = [kp[0] for kp in person["keypoints"]], [kp[1] for kp in person["keypoints"]]
    return min(xs), min(ys), max(xs), max(ys)


def draw_people(image: Image.Image, people: list[dict], *, info) -> Image.Image:
    """A copy of ``image`` with every person of ``people`` drawn: the limbs of ``info.skeleton`` and a dot
    per keypoint, coloured by side (left green, right orange, centre blue, from ``info.names``), and the
    person's box (``box`` [x, y, w, h] in pixels, else the keypoints' extent) labelled with its score.
    Line width, dots and text scale with the image (readable from 100 to 4000+ pixels)."""
    image = image.convert("RGB")  # a copy
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 250))
    font = ImageFont.load_default(size=max(10, 5 * width))
    for i, person in enumerate(people):
        pts = [(x, y) for x, y, _ in person["keypoints"]]
        for a, b in info.skeleton:
            draw.line([pts[a], pts[b]], fill=SIDE_COLOURS[_side(info.names[a], info.names[b])], width=width)
        for name, (x, y) in zip(info.names, pts):
            r = width + 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=SIDE_COLOURS[_side(name)], outline=(255, 255, 255))
        colour = BOX_PALETTE[i % len(BOX_PALETTE)]
        x0, y0, x1, y1 = _person_box(person)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(1, width // 2))
        label = f"{person['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), label, font=font, anchor="lb")
        draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=colour)
        draw.text((x0, y0), label, fill=(255, 255, 255), font=font, anchor="lb")
    return image


def read_image(path: str) -> Image.Image:
    """The RGB image at ``path``.

    Raises:
        FileNotFoundError: no such file. RuntimeError: it cannot be decoded (or is a decompression bomb).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise RuntimeError(f"cannot read image {path!r}: {exc}") from None


def output_names(paths: list[str]) -> list[str]:
    """A distinct output stem per input: the file's stem, or for inputs sharing one the shortest tail of
    their paths that tells them apart joined by ``_`` (``a/x.jpg``, ``b/x.jpg`` -> ``a_x``, ``b_x``); the
    same file given twice is numbered (``x``, ``x-2``)."""
    parts = [os.path.splitext(os.path.abspath(p))[0].split(os.sep) for p in paths]
    names = []
    for i, mine in enumerate(parts):
        others = [other for j, other in enumerate(parts) if j != i and other[-1] == mine[-1] and other != mine]
        k = 1
        while k < len(mine) and any(other[-k:] == mine[-k:] for other in others):
            k += 1
        names.append("_".join(part for part in mine[-k:] if part))
    used, unique = set(), []
    for name in names:
        candidate, n = name, 1
        while candidate in used:
            n += 1
            candidate = f"{name}-{n}"
        used.add(candidate)
        unique.append(candidate)
    return unique


def image_ids(paths: list[str]) -> list[int]:
    """COCO ``image_id`` per input: the file stems as integers when all are distinct integers (COCO's
    ``000000000785.jpg`` -> 785), else the inputs' positions 1, 2, ..."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(paths) + 1))


def predict_files(paths: list[str], infer: Callable[[Image.Image, str], list[dict]], *, output_dir: str, info,
                  threshold: float, coco_json: str | None = None) -> list[dict]:
    """For each image of ``paths``: ``infer(image, path)`` -> people ``{"score", "keypoints": [[x, y, score]]
    * K, optional "box": [x, y, w, h]}`` (original-image pixels); people scoring below ``threshold`` are
    dropped, the rest sorted best first, drawn to ``output_dir/<name>_pose.png`` (:func:`output_names`).

    Writes ``output_dir/predictions.json``: one entry per input, ``{"image", "image_id", "drawing",
    "people"}``, or ``{"image", "image_id", "error"}`` for an image that does not exist or cannot be decoded
    (skipped, the others go on). ``coco_json``: also the COCO keypoint results format ``[{"image_id",
    "category_id": 1, "keypoints": [x, y, v] * K, "score"}]`` (:func:`image_ids`). Both files are written
    even when an error stops the loop (with the images finished by then). Returns the entries.
    """
    os.makedirs(output_dir, exist_ok=True)
    entries = []
    try:
        for path, name, image_id in zip(paths, output_names(paths), image_ids(paths)):
            try:
                image = read_image(path)
            except (FileNotFoundError, RuntimeError) as exc:
                entries.append({"image": path, "image_id": image_id, "error": str(exc)})
                continue
            people = sorted((p for p in infer(image, path) if p["score"] >= threshold), key=lambda p: -p["score"])
            drawing = f"{name}_pose.png"
            draw_people(image, people, info=info).save(os.path.join(output_dir, drawing))
            entries.append({"image": path, "image_id": image_id, "drawing": drawing, "people": people})
    finally:
        write_json(os.path.join(output_dir, "predictions.json"), entries)
        if coco_json is not None:
            write_json(coco_json, coco_results(entries))
    return entries


def coco_results(entries: list[dict]) -> list[dict]:
    """The people of ``entries`` (:func:`predict_files`) in COCO's keypoint results format."""
    return [{"image_id": entry["image_id"], "category_id": 1, "score": person["score"],
             "keypoints": [v for kp in person["keypoints"] for v in kp]}
            for entry in entries for person in entry.get("people", ())]


@torch.no_grad()
def predict_images(model, postprocessor, paths: list[str], *, data_cfg, info, output_dir: str, device,
                   threshold: float, coco_json: str | None = None) -> list[dict]:
    """A bottom-up model on each image of ``paths`` (test-time resize); outputs and entries as
    :func:`predict_files` (people: ``{"score", "keypoints"}``)."""
    transforms = build_transforms(train=False, augment="none", flip_index=info.flip_index(),
                                  test_size=data_cfg.test_size, max_size=data_cfg.max_size)
    k = info.num_keypoints
    empty = {"keypoints": torch.zeros(0, k, 3), "boxes": torch.zeros(0, 4), "area": torch.zeros(0),
             "labels": torch.zeros(0, dtype=torch.long)}
    model.eval()

    def infer(image, path):
        tensor, target = transforms(image, dict(empty, image_id=0,
                                                 orig_size=torch.tensor([image.height, image.width])))
        images, masks, _ = collate([(tensor, target)])
        outputs = model(images.to(device), masks.to(device))
        result = postprocessor(outputs, target["orig_size"][None].to(device))[0]
        return [{"score": round(float(score), 4), "keypoints": [[round(float(v), 2) for v in kp] for kp in kpts]}
                for score, kpts in zip(result["scores"].tolist(), result["keypoints"].tolist())]

    return predict_files(paths, infer, output_dir=output_dir, info=info, threshold=threshold, coco_json=coco_json)
