"""#15 item 2: PETR's official training augmentation (data.augment: official, opera's pipeline): every step
moves pixels and joints together (paint-a-dot), the photometric step leaves geometry alone, and the option
builds real training samples."""
import os
import random

import numpy as np
import pytest
import torch

from posetr.config import DataConfig
from posetr.data.build import build_dataset
from posetr.data.transforms import Compose, RandomRotation, RandomSelect, ToTensorNormalize, build_transforms
from posetr.data.transforms_petr import PhotometricPIL, RandomShorterSide, petr_official_train_transforms
from test_data_poet import COCO_FLIP, W, _dot, _find_dot, _target


def test_official_pipeline_order_and_settings():
    steps = petr_official_train_transforms(flip_index=COCO_FLIP).transforms
    assert [type(s).__name__ for s in steps] == ["PhotometricPIL", "RandomRotation", "RandomHorizontalFlip",
                                                 "RandomSelect", "ToTensorNormalize"]
    rotation = steps[1]
    assert (rotation.max_degrees, rotation.p, rotation.reject_empty) == (30.0, 1.0, True)
    assert rotation.fill == (124, 116, 104)  # the ImageNet mean in 0..255
    short_side = steps[3].first
    assert (short_side.low, short_side.high, short_side.max_size) == (400, 1400, 1400)
    crop_policy = steps[3].second.transforms
    assert crop_policy[0].sizes == [400, 500, 600] and crop_policy[0].max_size == 4200
    assert (crop_policy[1].min_size, crop_policy[1].max_size, crop_policy[1].reject_empty) == (384, 600, True)
    assert crop_policy[2] is short_side
    assert isinstance(build_transforms(train=True, augment="official", flip_index=COCO_FLIP).transforms[0],
                      PhotometricPIL)


@pytest.mark.parametrize("seed", range(12))
def test_paint_a_dot_lands_where_the_keypoint_says(seed):
    """The geometric steps of the official pipeline (rotation filled black here, so the dot stands out),
    under random draws: the painted dot's centre is where the transformed keypoint says."""
    steps = petr_official_train_transforms(flip_index=COCO_FLIP).transforms
    rotation = steps[1]
    geometric = Compose([RandomRotation(rotation.max_degrees, p=1.0, reject_empty=True), *steps[2:4]])
    random.seed(seed)
    x, y = 61.5, 41.5  # the centre: a rotation keeps it inside
    sample = geometric(_dot(x, y), _target(x, y))
    if sample is None:  # rejected (a crop cut the person to no joint): the dataset would redraw
        return
    image, target = sample
    labelled = target["keypoints"][0, :, 2] == 2
    if not labelled.any():  # the crop missed the person: a people-free sample
        return
    kx, ky, _ = target["keypoints"][0, labelled.nonzero()[0, 0]].tolist()
    scale = image.width / W
    dx, dy = _find_dot(image)
    assert abs(dx - kx) < 0.6 * max(1.0, scale) and abs(dy - ky) < 0.6 * max(1.0, scale), (dx, dy, kx, ky, scale)


def test_photometric_step_changes_colours_not_geometry():
    image, target = _dot(61.5, 41.5), _target(61.5, 41.5)
    np.random.seed(0)
    out, out_target = PhotometricPIL()(image, target)
    assert out.size == image.size and out.mode == "RGB"
    assert out_target is target


def test_shorter_side_range_resize():
    random.seed(0)
    for _ in range(5):
        image, target = RandomShorterSide(400, 1400, max_size=1400)(_dot(61.5, 41.5), _target(61.5, 41.5))
        assert max(image.size) <= 1400 and (min(image.size) >= 400 or max(image.size) == 1400)
        torch.testing.assert_close(target["keypoints"][0, 9, 0], torch.tensor(61.5 * image.width / W))


def test_official_augment_gives_valid_training_samples(shared_data):
    cfg = DataConfig(augment="official", dataset="coco")
    dataset = build_dataset(cfg, root=os.path.join(shared_data, "coco_sample"), split=cfg.train_split, train=True,
                            kind="bottom_up")
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    for i in range(len(dataset)):
        image, target = dataset[i]
        h, w = target["size"].tolist()
        assert image.shape[0] == 3 and (image.shape[1], image.shape[2]) == (h, w) and max(h, w) <= 1400
        kpts = target["keypoints"]
        visible = kpts[..., 2] > 0
        assert visible.any(dim=1).all()  # every person kept has a labelled joint
        assert ((kpts[..., :2][visible] >= 0) & (kpts[..., :2][visible] <= 1)).all()
