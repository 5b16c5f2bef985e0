"""PETR's official training data (opera / mmdet): which images are kept, samples rejected by a crop or a
rotation that leaves no person are redrawn from the same aspect-ratio group, batches of one aspect-ratio
group (also across processes), evaluation one image at a time, and the optional linear lr scaling."""
import json
import os
import random

import pytest
import torch
from PIL import Image

from posetr.config import Config, DataConfig
from posetr.data.build import build_dataset
from posetr.data.coco import CocoKeypoints
from posetr.data.sampler import AspectRatioGroupSampler
from posetr.data.transforms import RandomRotation, RandomSizeCrop, rotate
from posetr.engine import train as train_module
from posetr.engine.train import build_optimizer, train
from standin_petr import build_tiny


def _person(image_id, ann_id, *, joints=((20.0, 20.0),), crowd=0, bbox=(10, 10, 30, 30)):
    kpts = [0.0] * 51
    for j, (x, y) in enumerate(joints):
        kpts[3 * j: 3 * j + 3] = [x, y, 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd, "keypoints": kpts,
            "num_keypoints": len(joints), "bbox": list(bbox), "area": 400.0}


def write_coco(root, images, annotations):
    """A COCO keypoint folder (images/ + annotations/) with grey images of the given (id, w, h)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    entries = []
    for image_id, w, h in images:
        name = f"{image_id:03d}.png"
        Image.new("RGB", (w, h), (image_id * 20 % 256,) * 3).save(os.path.join(root, "images", name))
        entries.append({"id": image_id, "file_name": name, "width": w, "height": h})
    categories = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}]
    with open(os.path.join(root, "annotations", "person_keypoints_x.json"), "w") as f:
        json.dump({"images": entries, "annotations": annotations, "categories": categories}, f)
    return str(root)


@pytest.fixture
def mixed(tmp_path):
    """1: a labelled person; 2: a crowd region only; 3: a person without keypoints; 4: nothing; 5 (portrait):
    a labelled person."""
    images = [(1, 80, 60), (2, 80, 60), (3, 80, 60), (4, 80, 60), (5, 60, 80)]
    anns = [_person(1, 1), _person(2, 2, crowd=1), _person(3, 3, joints=()), _person(5, 4)]
    return write_coco(tmp_path / "mixed", images, anns)


def test_training_keeps_the_images_mmdet_keeps(mixed):
    ann = os.path.join(mixed, "annotations", "person_keypoints_x.json")
    image_dir = os.path.join(mixed, "images")
    kept = {mode: CocoKeypoints(image_dir, ann, keep_images=mode).ids
            for mode in ("all", "with_person", "with_labelled_person")}
    assert kept == {"all": [1, 2, 3, 4, 5], "with_person": [1, 2, 3, 5], "with_labelled_person": [1, 5]}
    # the default training set is mmdet's filter_empty_gt; evaluation keeps every image
    cfg = DataConfig()
    assert cfg.train_images == "with_person"
    assert build_dataset(cfg, root=mixed, split="train", train=True).ids == [1, 2, 3, 5]
    assert build_dataset(cfg, root=mixed, split="val", train=False).ids == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="keep_images must be one of"):
        CocoKeypoints(image_dir, ann, keep_images="people")


def test_aspect_groups_are_mmdets_flag(mixed):
    ds = CocoKeypoints(os.path.join(mixed, "images"), os.path.join(mixed, "annotations", "person_keypoints_x.json"))
    assert ds.aspect_groups() == [1, 1, 1, 1, 0]  # w / h > 1


def test_rejected_samples_are_redrawn_from_the_same_aspect_group(mixed):
    ann = os.path.join(mixed, "annotations", "person_keypoints_x.json")

    def reject_image_1(image, target):
        return None if target["image_id"] == 1 else (image, target)

    ds = CocoKeypoints(os.path.join(mixed, "images"), ann, transforms=reject_image_1)
    random.seed(0)
    drawn = {ds[0][1]["image_id"] for _ in range(30)}
    assert drawn == {2, 3, 4}  # landscape like image 1; never the portrait image 5
    assert ds[4][1]["image_id"] == 5
    never = CocoKeypoints(os.path.join(mixed, "images"), ann, transforms=lambda image, target: None)
    with pytest.raises(RuntimeError, match="rejected 101 samples in a row"):
        never[0]


def _one_person(x, y, box):
    kpts = torch.zeros(1, 17, 3)
    kpts[0, 0] = torch.tensor([x, y, 2.0])
    return {"keypoints": kpts, "boxes": torch.tensor([box], dtype=torch.float32), "area": torch.tensor([100.0]),
            "labels": torch.zeros(1, dtype=torch.long), "image_id": 1, "orig_size": torch.tensor([100, 100])}


def test_crop_rejects_only_crops_that_cut_people_down_to_no_joint():
    """opera's RandomCrop (allow_negative_crop=True): a 30 x 30 crop of a 100 x 100 image whose person has
    box (0, 0, 50, 50) and one joint at (45, 45). Crop misses the box -> kept, no person; cuts the box but
    not the joint -> rejected; holds the joint -> kept with the person."""
    image = Image.new("RGB", (100, 100))
    transform = RandomSizeCrop(30, 30, reject_empty=True)
    seen = set()
    for seed in range(300):
        random.seed(seed)  # the crop's own draws: width, height, top, left
        random.randint(30, 30), random.randint(30, 30)
        top, left = random.randint(0, 70), random.randint(0, 70)
        random.seed(seed)
        out = transform(image, _one_person(45.0, 45.0, [0, 0, 50, 50]))
        holds_joint = left <= 45 < left + 30 and top <= 45 < top + 30
        cuts_box = left < 50 and top < 50
        case = "joint" if holds_joint else "cut" if cuts_box else "miss"
        seen.add(case)
        if case == "cut":
            assert out is None
        else:
            assert out is not None and out[0].size == (30, 30)
            assert bool((out[1]["keypoints"][..., 2] > 0).any()) == (case == "joint")
    assert seen == {"joint", "cut", "miss"}
    # without reject_empty (DETR's crop, data.augment "full" / "poet") nothing is rejected
    random.seed(1)
    assert all(RandomSizeCrop(30, 30)(image, _one_person(45.0, 45.0, [0, 0, 50, 50])) is not None for _ in range(50))


def test_rotation_rejects_when_every_joint_leaves():
    """A joint near the corner leaves a 100 x 100 image at most angles; opera's KeypointRandomAffine then
    rejects the sample. A people-free image is never rejected."""
    image = Image.new("RGB", (100, 100))
    transform = RandomRotation(60.0, p=1.0, reject_empty=True)
    outcomes = set()
    for seed in range(100):
        random.seed(seed)
        random.random()
        angle = random.uniform(-60.0, 60.0)
        _, expected = rotate(image, _one_person(2.0, 2.0, [0, 0, 5, 5]), angle=angle)
        random.seed(seed)
        out = transform(image, _one_person(2.0, 2.0, [0, 0, 5, 5]))
        left = bool((expected["keypoints"][..., 2] > 0).any())
        assert (out is None) == (not left)
        outcomes.add(left)
    assert outcomes == {True, False}
    empty = _one_person(2.0, 2.0, [0, 0, 5, 5])
    empty["keypoints"].zero_()
    random.seed(0)
    assert all(transform(image, empty) is not None for _ in range(20))


def test_group_sampler_batches_hold_one_aspect_group():
    groups = [0, 1, 1, 0, 1, 1, 1, 0, 1]  # 3 portrait, 6 landscape
    sampler = AspectRatioGroupSampler(groups, batch_size=2, seed=3)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 10  # each group padded to a multiple of 2 (3 -> 4, 6 -> 6)
    assert set(indices) == set(range(9))
    assert all(groups[a] == groups[b] for a, b in zip(indices[0::2], indices[1::2]))
    assert list(sampler) == indices  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != indices


def test_group_sampler_splits_across_processes_like_distributed_sampler():
    groups = [i % 3 == 0 for i in range(23)]
    shares = [list(AspectRatioGroupSampler(groups, batch_size=2, num_replicas=3, rank=r, seed=0)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) % 2 == 0
    assert set().union(*map(set, shares)) == set(range(23))  # every item seen, padding repeats only
    for share in shares:
        assert all(groups[a] == groups[b] for a, b in zip(share[0::2], share[1::2]))
    exact = [list(AspectRatioGroupSampler([0] * 12, batch_size=2, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(exact, [])) == list(range(12))  # no padding needed: disjoint shares
    with pytest.raises(ValueError, match="rank"):
        AspectRatioGroupSampler(groups, batch_size=2, num_replicas=2, rank=2)


def _record_batches(monkeypatch, seen):
    """train_one_epoch replaced by one that records the (h, w) of every batch's images."""
    def fake_epoch(model, criterion, loader, optimizer, **kwargs):
        seen.append([[tuple(t["orig_size"].tolist()) for t in targets] for _, _, targets in loader])
        return {}

    monkeypatch.setattr(train_module, "train_one_epoch", fake_epoch)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the recorded epochs take no step
def test_training_batches_are_grouped_and_evaluation_runs_one_image_at_a_time(mixed, tmp_path, monkeypatch):
    cfg = Config()
    cfg.data.root, cfg.data.augment, cfg.data.test_size, cfg.data.max_size = mixed, "none", 48, 64
    cfg.data.num_workers, cfg.data.train_images = 0, "all"
    cfg.train.epochs, cfg.train.repeats, cfg.train.device = 2, 3, "cpu"
    batches, eval_batch_sizes = [], []
    _record_batches(monkeypatch, batches)
    monkeypatch.setattr(train_module, "evaluate_kind",
                        lambda kind, model, post, loader, **kw: eval_batch_sizes.append(loader.batch_size) or {"AP": 0.0})
    train(cfg, output_dir=str(tmp_path), build_model=build_tiny)
    for epoch in batches:
        assert sum(len(b) for b in epoch) == 16  # 12 landscape + 3 portrait padded to 4
        assert all(len({h > w for h, w in batch}) == 1 for batch in epoch)  # (h, w): one orientation per batch
    assert eval_batch_sizes == [1]
    assert Config().eval.batch_size == 1


def test_lr_scales_with_the_total_batch_only_when_asked():
    model = torch.nn.Linear(2, 2)
    cfg = Config().train
    assert build_optimizer(model, cfg, total_batch=8).param_groups[0]["lr"] == pytest.approx(2e-4)
    cfg.lr_scale_batch = True
    assert build_optimizer(model, cfg, total_batch=8).param_groups[0]["lr"] == pytest.approx(5e-5)
    assert build_optimizer(model, cfg, total_batch=64).param_groups[0]["lr"] == pytest.approx(4e-4)
    with pytest.raises(ValueError, match="lr_scale_batch"):
        build_optimizer(model, cfg)
