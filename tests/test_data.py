"""Data pipeline: loaders on the real samples, transforms, collate, synthetic set, readable errors."""
import json
import os

import pytest
import torch
from PIL import Image

from posetr.data.build import build_dataset
from posetr.data.coco import CocoKeypoints, resolve_split
from posetr.data.collate import collate
from posetr.data.crowdpose import CrowdPoseKeypoints
from posetr.data.keypoints import keypoint_info
from posetr.data.synthetic import write_synthetic_coco
from posetr.data.transforms import RandomSizeCrop, ToTensorNormalize, build_transforms, hflip, resize
from posetr.config import DataConfig

COCO_FLIP = keypoint_info("coco").flip_index()


def _coco(shared_data, transforms=None):
    return CocoKeypoints(*resolve_split(os.path.join(shared_data, "coco_sample"), "val"), transforms=transforms)


def test_coco_sample_loads_raw(shared_data):
    ds = _coco(shared_data)
    assert len(ds) == 4
    persons = 0
    for i in range(len(ds)):
        image, t = ds[i]
        assert t["keypoints"].shape[1:] == (17, 3)
        assert tuple(t["orig_size"].tolist()) == (image.height, image.width)
        persons += len(t["keypoints"])
        ann = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=t["image_id"], iscrowd=False))
        assert torch.allclose(t["area"], torch.tensor([a["area"] for a in ann], dtype=torch.float32))
    assert persons == 14


def test_coco_sample_contract_form(shared_data):
    ds = _coco(shared_data, build_transforms(train=False, augment="none", flip_index=COCO_FLIP))
    labelled = 0
    for i in range(len(ds)):
        image, t = ds[i]
        h, w = t["size"].tolist()
        assert image.shape == (3, h, w) and min(h, w) == 800 or max(h, w) == 1333
        kpts = t["keypoints"]
        vis = kpts[..., 2] > 0
        assert vis.any(dim=1).all()  # persons without labelled keypoints are dropped
        assert (kpts[..., :2][vis] >= 0).all() and (kpts[..., :2][vis] <= 1).all()
        assert t["boxes"].shape == (len(kpts), 4) and t["labels"].eq(0).all()
        labelled += len(kpts)
        # areas scale with the image
        oh, ow = t["orig_size"].tolist()
        raw = [a["area"] for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=t["image_id"])) if a["num_keypoints"] > 0]
        assert torch.allclose(t["area"], torch.tensor(raw) * (h / oh) * (w / ow), rtol=1e-2)
    assert labelled == 12


def test_crowdpose_uses_box_area(shared_data):
    ds = CrowdPoseKeypoints(*resolve_split(os.path.join(shared_data, "crowdpose_sample"), "train"))
    image, t = ds[0]
    assert t["keypoints"].shape[1:] == (14, 3)
    ann = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=t["image_id"]))
    assert torch.allclose(t["area"], torch.tensor([a["bbox"][2] * a["bbox"][3] for a in ann], dtype=torch.float32))


def test_ochuman_loads_as_coco(shared_data):
    ds = CocoKeypoints(*resolve_split(os.path.join(shared_data, "ochuman_sample"), "val"))
    assert len(ds) == 3 and ds[0][1]["keypoints"].shape[1:] == (17, 3)


def _target():
    g = torch.Generator().manual_seed(0)
    kpts = torch.cat([torch.rand(3, 17, 2, generator=g) * torch.tensor([60.0, 40.0]),
                      torch.randint(0, 3, (3, 17, 1), generator=g).float()], dim=-1)
    kpts[kpts[..., 2] == 0] = 0
    boxes = torch.tensor([[1.0, 2.0, 30.0, 20.0], [10.0, 5.0, 50.0, 35.0], [0.0, 0.0, 60.0, 40.0]])
    return {"keypoints": kpts, "boxes": boxes, "area": torch.tensor([100.0, 200.0, 300.0]),
            "labels": torch.zeros(3, dtype=torch.long), "image_id": 1, "orig_size": torch.tensor([40, 60])}


def test_flip_twice_is_identity_and_swaps_sides():
    image, t = Image.new("RGB", (60, 40)), _target()
    t["keypoints"][0, 5] = torch.tensor([10.0, 7.0, 2.0])  # left shoulder
    t["keypoints"][0, 6] = torch.tensor([20.0, 8.0, 1.0])  # right shoulder
    im1, t1 = hflip(image, t, flip_index=COCO_FLIP)
    assert torch.equal(t1["keypoints"][0, 6], torch.tensor([50.0, 7.0, 2.0]))  # left moved to the right slot
    assert torch.equal(t1["keypoints"][0, 5], torch.tensor([40.0, 8.0, 1.0]))
    unlabelled = t["keypoints"][..., 2] == 0
    assert t1["keypoints"][:, COCO_FLIP][unlabelled].eq(0).all()  # unlabelled joints stay (0, 0, 0)
    _, t2 = hflip(im1, t1, flip_index=COCO_FLIP)
    for key in ("keypoints", "boxes", "area"):
        assert torch.allclose(t2[key], t[key])
    assert (t1["boxes"][:, 2] >= t1["boxes"][:, 0]).all()


def test_flip_moves_pixels_with_keypoints():
    image = Image.new("RGB", (60, 40))
    image.putpixel((10, 7), (255, 255, 255))
    flipped, _ = hflip(image, _target(), flip_index=COCO_FLIP)
    assert flipped.getpixel((60 - 10 - 1, 7)) == (255, 255, 255)


def test_resize_scales_keypoints_boxes_and_area():
    image, t = Image.new("RGB", (60, 40)), _target()
    out, t1 = resize(image, t, size=80, max_size=None)
    assert out.size == (120, 80)
    vis = t["keypoints"][..., 2] > 0
    assert torch.allclose(t1["keypoints"][..., :2][vis], t["keypoints"][..., :2][vis] * 2)
    assert torch.allclose(t1["area"], t["area"] * 4) and torch.allclose(t1["boxes"], t["boxes"] * 2)
    out, _ = resize(image, t, size=80, max_size=90)
    assert max(out.size) <= 90


def test_crop_unlabels_outside_joints_and_drops_empty_people():
    torch.manual_seed(0)
    image, t = Image.new("RGB", (60, 40)), _target()
    import random
    random.seed(3)
    out, t1 = RandomSizeCrop(10, 20)(image, t)
    w, h = out.size
    vis = t1["keypoints"][..., 2] > 0
    xy = t1["keypoints"][..., :2][vis]
    assert (xy[:, 0] < w).all() and (xy[:, 1] < h).all() and (xy >= 0).all()
    assert torch.equal(t1["area"], t["area"])
    _, t2 = ToTensorNormalize()(out, t1)
    assert len(t2["keypoints"]) == int(vis.any(dim=1).sum())


def test_train_transforms_stay_consistent(shared_data):
    import random
    random.seed(0)
    ds = _coco(shared_data, build_transforms(train=True, augment="full", flip_index=COCO_FLIP))
    for _ in range(3):
        for i in range(len(ds)):
            image, t = ds[i]
            h, w = t["size"].tolist()
            assert image.shape == (3, h, w) and max(h, w) <= 1333
            vis = t["keypoints"][..., 2] > 0
            assert (t["keypoints"][..., :2][vis] >= 0).all() and (t["keypoints"][..., :2][vis] <= 1).all()


def test_collate_pads_and_masks():
    a = (torch.ones(3, 4, 6), {"image_id": 1})
    b = (torch.ones(3, 5, 3), {"image_id": 2})
    images, masks, targets = collate([a, b])
    assert images.shape == (2, 3, 5, 6) and masks.shape == (2, 5, 6)
    assert not masks[0, :4, :].any() and masks[0, 4:, :].all()
    assert not masks[1, :, :3].any() and masks[1, :, 3:].all()
    assert images[0, :, 4:].eq(0).all() and images[1, :, :, 3:].eq(0).all()
    assert [t["image_id"] for t in targets] == [1, 2]
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_synthetic_round_trip_through_pycocotools(tmp_path):
    root = write_synthetic_coco(str(tmp_path), num_images=3, seed=1)
    ds = build_dataset(DataConfig(augment="none", test_size=256, max_size=320), root=root, split="train", train=False)
    assert len(ds) == 3
    assert len(ds.coco.getAnnIds()) >= 3
    image, t = ds[0]
    assert image.shape[0] == 3 and (t["keypoints"][..., 2] == 2).all()
    again = write_synthetic_coco(str(tmp_path / "b"), num_images=3, seed=1)
    with open(os.path.join(root, "annotations", "person_keypoints_synthetic.json")) as f1, \
            open(os.path.join(again, "annotations", "person_keypoints_synthetic.json")) as f2:
        assert json.load(f1) == json.load(f2)


def test_readable_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_split(str(tmp_path / "missing"), "train")
    with pytest.raises(FileNotFoundError, match="annotations"):
        resolve_split(str(tmp_path), "train")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CocoKeypoints(*resolve_split(str(tmp_path), "train"))
    (tmp_path / "annotations" / "x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="missing"):
        CocoKeypoints(*resolve_split(str(tmp_path), "train"))
    root = write_synthetic_coco(str(tmp_path / "s"), num_images=1)
    (tmp_path / "s" / "images" / "000001.png").write_bytes(b"not an image")
    ds = CocoKeypoints(*resolve_split(root, "train"))
    with pytest.raises(RuntimeError, match="cannot read image"):
        ds[0]
    with pytest.raises(ValueError, match="expects 14"):
        CocoKeypoints(*resolve_split(root, "train"), dataset="crowdpose")
