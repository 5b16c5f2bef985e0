"""POET's augmentation (data.augment: poet): rotation, coarse dropout, the crop's people filter, the
kept keypoint-less people, and paint-a-dot checks that pixels and joints move together."""
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from posetr.config import DataConfig
from posetr.data.build import build_dataset
from posetr.data.keypoints import keypoint_info
from posetr.data.transforms import (Compose, DropPeopleWithoutVisible, ToTensorNormalize, crop,
                                    detr_scale_augment, hflip, resize, rotate)
from posetr.data.transforms_poet import coarse_dropout

COCO_FLIP = keypoint_info("coco").flip_index()
W, H = 120, 80


def _target(x, y):
    """One person whose left wrist (joint 9) is at (x, y), v = 2; every other joint unlabelled."""
    kpts = torch.zeros(1, 17, 3)
    kpts[0, 9] = torch.tensor([x, y, 2.0])
    return {"keypoints": kpts, "boxes": torch.tensor([[x - 5, y - 5, x + 5, y + 5]]), "area": torch.tensor([100.0]),
            "labels": torch.zeros(1, dtype=torch.long), "image_id": 1, "orig_size": torch.tensor([H, W])}


def _dot(x, y):
    """A black W x H image with a white 3 x 3 dot centred on the pixel containing (x, y)."""
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
    return Image.fromarray(pixels)


def _find_dot(image):
    """Intensity-weighted centre of the image's bright pixels, in pixel coordinates (centre of pixel i is
    i + 0.5, as for COCO keypoints)."""
    pixels = np.asarray(image)[..., 0].astype(np.float64)
    ys, xs = np.nonzero(pixels > 0)
    weights = pixels[ys, xs]
    return (xs * weights).sum() / weights.sum() + 0.5, (ys * weights).sum() / weights.sum() + 0.5


GEOMETRIC = {
    "rotate 17": lambda im, t: rotate(im, t, angle=17.0),
    "rotate -25": lambda im, t: rotate(im, t, angle=-25.0),
    "rotate 90": lambda im, t: rotate(im, t, angle=90.0),
    "flip": lambda im, t: hflip(im, t, flip_index=COCO_FLIP),
    "resize": lambda im, t: resize(im, t, size=57, max_size=None),
    "crop": lambda im, t: crop(im, t, top=7, left=11, height=50, width=70),
    "flip+rotate+resize": lambda im, t: resize(*rotate(*hflip(im, t, flip_index=COCO_FLIP), angle=-9.0),
                                                size=100, max_size=None),
}


@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_paint_a_dot_lands_where_the_keypoint_says(name):
    x, y = 41.5, 33.5
    image, target = GEOMETRIC[name](_dot(x, y), _target(x, y))
    joint = 10 if "flip" in name else 9  # a flip turns the left wrist into the right one
    kx, ky, v = target["keypoints"][0, joint].tolist()
    assert v == 2
    dx, dy = _find_dot(image)
    assert abs(dx - kx) < 0.6 and abs(dy - ky) < 0.6, (dx, dy, kx, ky)


def test_rotation_by_zero_is_the_identity():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))
    target = _target(41.5, 33.5)
    out, t = rotate(image, target, angle=0.0)
    assert np.array_equal(np.asarray(out), np.asarray(image))
    for key in ("keypoints", "boxes", "area"):
        torch.testing.assert_close(t[key], target[key])


def test_rotation_unlabels_joints_that_leave_the_image_and_boxes_follow():
    target = _target(3.0, 3.0)  # near the corner: leaves the image when rotated by 45 degrees
    target["keypoints"][0, 0] = torch.tensor([60.0, 40.0, 1.0])  # the centre stays
    _, t = rotate(Image.new("RGB", (W, H)), target, angle=45.0)
    assert t["keypoints"][0, 9].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(t["keypoints"][0, 0], torch.tensor([60.0, 40.0, 1.0]))
    back_and_forth = rotate(*rotate(Image.new("RGB", (W, H)), _target(50.0, 30.0), angle=20.0), angle=-20.0)[1]
    torch.testing.assert_close(back_and_forth["keypoints"], _target(50.0, 30.0)["keypoints"], atol=1e-4, rtol=0)
    box = t["boxes"][0]
    assert box[0] >= 0 and box[1] >= 0 and box[2] <= W and box[3] <= H and torch.equal(t["area"], target["area"])


def test_coarse_dropout_blacks_out_blocks_and_keeps_keypoints():
    torch.manual_seed(0)
    white = Image.new("RGB", (200, 100), (255, 255, 255))
    out = np.asarray(coarse_dropout(white, drop_rate=0.5, size_percent=0.05, per_channel=False))
    black = out[..., 0] == 0
    assert np.array_equal(black, (out == 0).all(-1))  # one mask for all channels
    assert 0.2 < black.mean() < 0.8
    cells = black[:: 100 // 5, :: 200 // 10]  # 5 x 10 cells (int(100 * 0.05), int(200 * 0.05))
    assert np.array_equal(np.repeat(np.repeat(cells, 20, 0), 20, 1), black)
    per_channel = np.asarray(coarse_dropout(white, drop_rate=0.5, size_percent=0.05, per_channel=True))
    assert not np.array_equal(per_channel[..., 0], per_channel[..., 1])


def test_crop_filter_and_keypoint_less_people():
    target = _target(41.5, 33.5)
    target = {k: torch.cat([v, v]) if torch.is_tensor(v) and k != "orig_size" else v for k, v in target.items()}
    target["keypoints"][1, 9, 2] = 1  # the second person has only an occluded joint
    _, kept = DropPeopleWithoutVisible(min_visibility=2)(None, target)
    assert len(kept["keypoints"]) == 1 and len(kept["boxes"]) == len(kept["area"]) == len(kept["labels"]) == 1
    target["keypoints"][1, 9] = 0  # ... now none at all
    image = Image.new("RGB", (W, H))
    assert len(ToTensorNormalize()(image, target)[1]["keypoints"]) == 1
    _, out = ToTensorNormalize(keep_unlabelled=True)(image, target)
    assert len(out["keypoints"]) == 2 and out["keypoints"][1].abs().sum() == 0


def test_scale_augment_with_the_crop_filter():
    random.seed(1)
    pipeline = Compose([detr_scale_augment(train_sizes=[60, 80], max_size=100,
                                           after_crop=[DropPeopleWithoutVisible(min_visibility=2)])])
    for _ in range(10):
        image, t = pipeline(_dot(41.5, 33.5), _target(41.5, 33.5))
        assert max(image.size) <= 100
        assert len(t["keypoints"]) in (0, 1)


def test_poet_pipeline_on_the_coco_sample(shared_data):
    random.seed(0)
    torch.manual_seed(0)
    cfg = DataConfig(augment="poet", max_size=512, train_sizes=[320, 352])
    ds = build_dataset(cfg, root=os.path.join(shared_data, "coco_sample"), split="train", train=True)
    unlabelled = 0
    for _ in range(3):
        for i in range(len(ds)):
            image, t = ds[i]
            h, w = t["size"].tolist()
            assert image.shape == (3, h, w) and max(h, w) <= 512
            vis = t["keypoints"][..., 2] > 0
            assert (t["keypoints"][..., :2][vis] >= 0).all() and (t["keypoints"][..., :2][vis] <= 1).all()
            assert len(t["area"]) == len(t["boxes"]) == len(t["labels"]) == len(t["keypoints"])
            unlabelled += int((~vis.any(-1)).sum())
    assert unlabelled > 0  # the sample's two keypoint-less people are kept outside the crop branch
