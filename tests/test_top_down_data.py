"""Top-down data: person instances (mmpose's box filtering), detection files, the crop pipeline (a dot
painted at a keypoint lands where the transformed keypoint says), mmpose's random draws, targets, collate."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from posetr.config import DataConfig
from posetr.data.build import build_dataset, collate_for, crop_output_size
from posetr.data.collate import collate_crops
from posetr.data.crop_geometry import box_to_center_scale, crop_affine_matrix
from posetr.data.keypoints import keypoint_info
from posetr.data.top_down import TopDownKeypoints, instance_target, load_detections
from posetr.data.top_down_transforms import (AffineCrop, Cutout, HalfBodyTransform, RandomScaleRotation,
                                             ToCropTarget, TopDownRandomFlip, mirror_matrix)
from posetr.data.transforms import Compose
from crop_dots import centroid, paint_dot

COCO = keypoint_info("coco")
OUT = (192, 256)  # (W, H)


def _top_down_cfg(**fields):
    cfg = DataConfig()
    for k, v in fields.items():
        setattr(cfg, k, v)
    return cfg


def _write_coco(root, annotations, *, width=100, height=80):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    Image.new("RGB", (width, height), (40, 90, 140)).save(os.path.join(root, "images", "a.png"))
    anns = [dict({"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100.0}, **a)
            for i, a in enumerate(annotations)]
    cats = [{"id": 1, "name": "person", "keypoints": list(COCO.names)}]
    path = os.path.join(root, "annotations", "person_keypoints_x.json")
    with open(path, "w") as f:
        json.dump({"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
                   "annotations": anns, "categories": cats}, f)
    return os.path.join(root, "images"), path


def _kpts(*labelled):
    """Flat COCO keypoints with joints (index, x, y) labelled (v = 2)."""
    flat = [0.0] * 51
    for k, x, y in labelled:
        flat[3 * k: 3 * k + 3] = [x, y, 2]
    return flat


def test_ground_truth_boxes_are_filtered_and_clipped_as_mmpose(tmp_path):
    one = _kpts((0, 20, 20))
    unlabelled_with_coords = list(one)
    unlabelled_with_coords[3:6] = [5.0, 6.0, 0]
    image_dir, ann_file = _write_coco(str(tmp_path), [
        {"bbox": [10, 10, 30, 50], "keypoints": unlabelled_with_coords, "num_keypoints": 1},  # kept
        {"bbox": [10, 10, 30, 50], "keypoints": one, "iscrowd": 1},  # crowd
        {"bbox": [10, 10, 30, 50], "keypoints": [0] * 51},  # no keypoint
        {"bbox": [10, 10, 30, 50], "keypoints": one, "num_keypoints": 0},  # num_keypoints 0
        {"bbox": [10, 10, 30, 50], "keypoints": one, "area": 0.0},  # empty area
        {"bbox": [-10, 5, 30, 40], "keypoints": one},  # x1 = 0, x2 = x1 + w (mmpose): w stays 30
        {"bbox": [90, 10, 30, 30], "keypoints": one},  # clipped at width - 1 = 99
        {"bbox": [20, 20, 0, 10], "keypoints": one},  # zero width
        {"bbox": [150, 10, 30, 30], "keypoints": one},  # outside the image
    ])
    ds = TopDownKeypoints(image_dir, ann_file)
    boxes = [inst["bbox"] for inst in ds.instances]
    assert boxes == [[10, 10, 30, 50], [0, 5, 30, 40], [90, 10, 9, 30]]
    assert ds.instances[0]["keypoints"][1].tolist() == [0, 0, 0]  # v = 0 -> zeroed
    assert all(inst["bbox_score"] == 1.0 for inst in ds.instances) and len(ds) == 3 and ds.ids == [1]


@pytest.mark.parametrize("seed,flip", [(0, False), (1, True), (2, True), (3, False)])
def test_paint_a_dot_lands_where_the_keypoint_says(seed, flip):
    """A dot at the left wrist, warped with a random scale and rotation (and a flip: then it is the right
    wrist), is found within 0.05 crop pixel of the transformed keypoint (seen: <= 0.02; a half-pixel
    convention slip or a flip about W instead of W - 1 moves it by ~0.5-1 pixel)."""
    wrist = np.array([351.3, 207.6])
    image = paint_dot((480, 640), *wrist)
    kpts = np.zeros((17, 3), np.float32)
    kpts[9] = [*wrist, 2]
    target = instance_target({"image_id": 1, "bbox": [300.0, 100.0, 120.0, 220.0], "bbox_score": 1.0,
                              "keypoints": kpts}, num_keypoints=17, output_size=OUT, padding=1.25,
                             orig_size=(480, 640), bbox_id=0)
    np.random.seed(seed)
    pipeline = Compose([TopDownRandomFlip(flip_index=COCO.flip_index(), p=1.0 if flip else 0.0),
                        RandomScaleRotation(rotation_prob=1.0), AffineCrop(output_size=OUT)])
    crop, out = pipeline(image, target)
    assert abs(out["rotation"]) > 1 and out["flipped"] == flip
    assert not np.allclose(out["scale"], target["scale"])
    joint = 10 if flip else 9
    assert out["keypoints"][19 - joint, 2] == 0 and out["keypoints"][joint, 2] == 2
    expected = out["keypoints"][joint, :2]
    np.testing.assert_allclose(centroid(crop, expected), expected, atol=0.05)
    _, final = ToCropTarget()(crop, out)
    np.testing.assert_allclose(final["keypoints"][joint, :2].numpy() * OUT, expected, rtol=1e-6)


def test_folded_flip_equals_warping_the_mirrored_image():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    affine = crop_affine_matrix(np.array([70.0, 60.0]), np.array([90.0, 120.0]), rotation=17.0, output_size=OUT)
    folded = cv2.warpAffine(image, affine @ mirror_matrix(160), OUT, flags=cv2.INTER_LINEAR)
    mirrored = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), affine, OUT, flags=cv2.INTER_LINEAR)
    diff = np.abs(folded.astype(int) - mirrored.astype(int))  # OpenCV rounds coordinates to 1/32 pixel
    assert diff.max() <= 2 and diff.mean() < 0.02


def test_random_draws_follow_mmpose_order():
    """Flip, half-body, scale and rotation from the same seed as mmpose's draws (rand, rand, randn,
    randn, randn, rand), half-body from the selected joints' mean and 1.5 x extent."""
    rng = np.random.default_rng(0)
    kpts = np.concatenate([rng.uniform(50, 250, (17, 2)), np.full((17, 1), 2.0)], 1).astype(np.float32)
    base = instance_target({"image_id": 1, "bbox": [40.0, 40.0, 220.0, 220.0], "bbox_score": 1.0, "keypoints": kpts},
                           num_keypoints=17, output_size=OUT, padding=1.25, orig_size=(300, 300), bbox_id=0)
    pipeline = Compose([TopDownRandomFlip(flip_index=COCO.flip_index()),
                        HalfBodyTransform(upper_body_ids=COCO.upper_body_ids, aspect_ratio=0.75),
                        RandomScaleRotation()])
    half_bodies = 0
    for seed in range(60):
        np.random.seed(seed)
        _, out = pipeline(np.zeros((300, 300, 3), np.uint8), base)
        np.random.seed(seed)
        flip = np.random.rand() <= 0.5
        joints = kpts[COCO.flip_index()].copy() if flip else kpts.copy()
        if flip:
            joints[:, 0] = 299 - joints[:, 0]
        center, scale = base["center"].copy(), base["scale"].copy()
        if flip:
            center[0] = 299 - center[0]
        if np.random.rand() < 0.3:  # 17 labelled joints > 8
            half_bodies += 1
            chosen = joints[:11] if np.random.randn() < 0.5 else joints[11:]
            low, high = chosen[:, :2].min(0), chosen[:, :2].max(0)
            w, h = high - low
            w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
            center, scale = chosen[:, :2].mean(0), np.array([w, h]) * 1.5
        factor = np.clip(np.random.randn() * 0.5 + 1, 0.5, 1.5)
        rotation = np.clip(np.random.randn() * 40, -80, 80)
        rotation = rotation if np.random.rand() <= 0.6 else 0.0
        assert out["flipped"] == flip
        np.testing.assert_allclose(out["keypoints"], joints, atol=1e-4)
        np.testing.assert_allclose(out["center"], center, rtol=1e-5)
        np.testing.assert_allclose(out["scale"], scale * factor, rtol=1e-5)
        assert out["rotation"] == pytest.approx(rotation)
    assert 5 < half_bodies < 40


def test_half_body_needs_more_than_eight_labelled_joints():
    kpts = np.zeros((17, 3), np.float32)
    kpts[:8] = [[10 + i, 20 + 2 * i, 2] for i in range(8)]
    target = {"keypoints": kpts, "center": np.array([5.0, 5.0]), "scale": np.array([1.0, 1.0])}
    always = HalfBodyTransform(upper_body_ids=COCO.upper_body_ids, aspect_ratio=0.75, p=1.0)
    assert always(None, target)[1] is target
    kpts[8] = [30, 40, 2]
    _, out = always(None, target)
    np.testing.assert_allclose(out["center"], kpts[:9, :2].mean(0))


def test_target_weight_is_labelled_and_inside_the_crop():
    kpts = np.zeros((17, 3), np.float32)
    kpts[0] = [0, 0, 2]  # inside (first pixel centre)
    kpts[1] = [191, 255, 1]  # inside (last pixel centre)
    kpts[2] = [191.5, 10, 2]  # outside (beyond W - 1)
    kpts[3] = [-0.1, 10, 2]  # outside
    kpts[4] = [50, 60, 0]  # unlabelled
    target = {"keypoints": kpts, "center": np.zeros(2), "scale": np.ones(2), "bbox_score": 0.5, "image_id": 7,
              "area": 3.0, "orig_size": (300, 400), "bbox_id": 4}
    image, out = ToCropTarget()(np.full((256, 192, 3), 255, np.uint8), target)
    assert out["target_weight"][:5].tolist() == [1, 1, 0, 0, 0] and out["target_weight"][5:].eq(0).all()
    np.testing.assert_allclose(out["keypoints"][1].numpy(), [191 / 192, 255 / 256, 1])
    assert image.shape == (3, 256, 192) and image.dtype == torch.float32
    np.testing.assert_allclose(image[:, 0, 0].numpy(), (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
    assert (out["bbox_score"], out["image_id"], out["area"], out["bbox_id"]) == (0.5, 7, 3.0, 4)


def test_cutout_zeroes_one_ellipse_from_its_draws():
    image = np.full((256, 192, 3), 200, np.uint8)
    np.random.seed(3)
    out, _ = Cutout()(image, {})
    np.random.seed(3)
    np.random.rand()
    cx, cy = np.random.rand() * 192, np.random.rand() * 256
    rx, ry = 0.2 * (1 + np.random.rand(2)) * 192
    ys, xs = np.mgrid[:256, :192]
    expected = ((cx - xs) / rx) ** 2 + ((cy - ys) / ry) ** 2 <= 1
    assert ((out == 0).all(-1) == expected).all() and expected.sum() > 100
    assert (image == 200).all()  # the input is left as it was


def test_coco_sample_crops_and_targets(shared_data):
    root = os.path.join(shared_data, "coco_sample")
    ds = build_dataset(_top_down_cfg(), root=root, split="val", train=False, kind="top_down")
    assert len(ds) == 12 and len(ds.ids) == 4  # 14 persons, 12 with keypoints
    images, masks, targets = collate_for("top_down")([ds[i] for i in range(len(ds))])
    assert images.shape == (12, 3, 256, 192) and masks.shape == (12, 256, 192) and not masks.any()
    for inst, t in zip(ds.instances, targets):
        center, scale = box_to_center_scale(inst["bbox"], aspect_ratio=0.75, padding=1.25)
        np.testing.assert_allclose(t["center"].numpy(), center)
        np.testing.assert_allclose(t["scale"].numpy(), scale)
        labelled = t["keypoints"][:, 2] > 0
        inside = ((t["keypoints"][:, :2] >= 0) & (t["keypoints"][:, :2] <= torch.tensor([191 / 192, 255 / 256]))).all(1)
        assert torch.equal(t["target_weight"].bool(), labelled & inside) and labelled.any()
        # back to the image: the ground truth (unrotated crop)
        back = center + (t["keypoints"][labelled, :2].numpy() - 0.5) * scale
        np.testing.assert_allclose(back, inst["keypoints"][labelled.numpy(), :2], atol=1e-3)
        assert t["rotation"] == 0.0 and t["bbox_score"] == 1.0
    np.random.seed(0)
    train = build_dataset(_top_down_cfg(photometric=True, cutout=True), root=root, split="train", train=True,
                          kind="top_down")
    for i in range(len(train)):
        image, t = train[i]
        assert torch.isfinite(image).all() and (t["target_weight"] <= (t["keypoints"][:, 2] > 0).float()).all()


def test_crowdpose_and_ochuman_crops(shared_data):
    crowd = build_dataset(_top_down_cfg(dataset="crowdpose", input_size=[384, 288]),
                          root=os.path.join(shared_data, "crowdpose_sample"), split="val", train=False, kind="top_down")
    image, t = crowd[0]
    assert len(crowd) == 4 and image.shape == (3, 384, 288) and t["keypoints"].shape == (14, 3)
    box_areas = sorted(a["bbox"][2] * a["bbox"][3] for a in crowd.coco.dataset["annotations"] if a["num_keypoints"])
    assert sorted(inst["area"] for inst in crowd.instances) == pytest.approx(box_areas)  # CrowdPose: box area
    ochuman = build_dataset(_top_down_cfg(), root=os.path.join(shared_data, "ochuman_sample"), split="val",
                            train=False, kind="top_down")
    assert len(ochuman) == 5


def _detections(path, entries):
    with open(path, "w") as f:
        json.dump(entries, f)
    return str(path)


def test_detection_file_threshold_category_and_errors(tmp_path, shared_data):
    root = os.path.join(shared_data, "coco_sample")
    good = {"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.8}
    det = _detections(tmp_path / "det.json", [good, dict(good, score=0.1), dict(good, category_id=2),
                                              dict(good, image_id=1)])  # an image not in the annotation file
    ds = build_dataset(_top_down_cfg(use_gt_bbox=False, det_file=det, det_score_threshold=0.2), root=root,
                       split="val", train=False, kind="top_down")
    assert len(ds) == 1 and ds.instances[0]["bbox_score"] == 0.8
    image, t = ds[0]
    assert t["target_weight"].eq(0).all() and t["area"] == 0.0 and t["bbox_score"] == pytest.approx(0.8)
    ids = [785]
    for bad, match in [
        ({"image_id": 785}, r"entry 0 has no \['category_id', 'bbox', 'score'\]"),
        (dict(good, image_id=1), "none of its 1 detections is on an image of the annotation file"),
        (dict(good, image_id="785"), "entry 0: image_id must be an integer"),
        (dict(good, bbox=[1, 2, 0, 4]), "entry 0: bbox must be"),
        (dict(good, bbox=[1, 2, 3]), "entry 0: bbox must be"),
        (dict(good, score="high"), "entry 0: score must be a finite number"),
        ([1, 2], "entry 0 must be a dict"),
    ]:
        path = _detections(tmp_path / "bad.json", [bad])
        with pytest.raises(ValueError, match=match) as exc:
            load_detections(path, image_ids=ids, category_id=1, score_threshold=0.0)
        assert "bad.json" in str(exc.value)
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_detections(_detections(tmp_path / "e.json", []), image_ids=ids, category_id=1, score_threshold=0.0)
    (tmp_path / "n.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_detections(str(tmp_path / "n.json"), image_ids=ids, category_id=1, score_threshold=0.0)
    with pytest.raises(FileNotFoundError, match="detection file"):
        load_detections(str(tmp_path / "none.json"), image_ids=ids, category_id=1, score_threshold=0.0)
    with pytest.raises(ValueError, match="det_file is not set"):
        build_dataset(_top_down_cfg(use_gt_bbox=False), root=root, split="val", train=False, kind="top_down")


def test_config_errors_and_collate_checks():
    with pytest.raises(ValueError, match=r"input_size must be \[height, width\]"):
        crop_output_size(_top_down_cfg(input_size=[256]))
    assert crop_output_size(_top_down_cfg(input_size=[384, 288])) == (288, 384)
    with pytest.raises(ValueError, match="data kind"):
        collate_for("sideways")
    with pytest.raises(ValueError, match="one size"):
        collate_crops([(torch.zeros(3, 4, 3), {}), (torch.zeros(3, 4, 4), {})])
    with pytest.raises(ValueError, match="empty"):
        collate_crops([])


def test_ground_truth_instances_need_image_sizes(tmp_path):
    image_dir, ann_file = _write_coco(str(tmp_path), [{"bbox": [1, 1, 5, 5], "keypoints": _kpts((0, 2, 2))}])
    with open(ann_file) as f:
        data = json.load(f)
    del data["images"][0]["width"]
    with open(ann_file, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="image 1 has no numeric 'width'/'height'"):
        TopDownKeypoints(image_dir, ann_file)


def test_warp_pixel_centre_conventions():
    """Bilinear sampling of a linear ramp is exact, so the warp shows where each library puts pixel
    centres: OpenCV (used) at integer coordinates, as crop_affine_matrix and mmpose (to its 1/32-pixel
    fixed point); Pillow's AFFINE at half-integers (it needs the matrix conjugated by a 0.5 shift)."""
    ramp = np.mgrid[:120, :160][1].astype(np.float32)  # value = x
    affine = crop_affine_matrix(np.array([80.0, 60.0]), np.array([75.0, 100.0]), rotation=10.0, output_size=OUT)
    inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))
    qy, qx = np.mgrid[:256, :192]
    src_x = inverse[0, 0] * qx + inverse[0, 1] * qy + inverse[0, 2]  # source x of each crop pixel centre
    src_y = inverse[1, 0] * qx + inverse[1, 1] * qy + inverse[1, 2]
    inside = (src_x > 1) & (src_x < 158) & (src_y > 1) & (src_y < 118)
    warped = cv2.warpAffine(ramp, affine, OUT, flags=cv2.INTER_LINEAR)
    assert np.abs(warped - src_x)[inside].max() < 1 / 32
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    corners = tuple((shift @ inverse @ np.linalg.inv(shift))[:2].ravel())
    pillow = Image.fromarray(ramp, mode="F").transform(OUT, Image.Transform.AFFINE, corners,
                                                       resample=Image.Resampling.BILINEAR)
    assert np.abs(np.asarray(pillow) - src_x)[inside].max() < 1e-3
